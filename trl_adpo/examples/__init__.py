"""Examples and test support, not the library core: the offline arithmetic task and tiny models built in code."""
