"""The same as `trl-adpo evaluate` (see trl_adpo/cli/evaluate.py); `--help` lists the options."""

import sys

from trl_adpo.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
