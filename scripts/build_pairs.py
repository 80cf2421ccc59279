"""The same as `trl-adpo pairs` (see trl_adpo/cli/pairs.py); `--help` lists the options."""

import sys

from trl_adpo.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["pairs", *sys.argv[1:]]))
