"""The `trl-adpo` command: one small module per subcommand, parsing and wiring only; the work lives in the package."""
