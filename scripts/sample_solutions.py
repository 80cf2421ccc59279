"""The same as `trl-adpo sample` (see trl_adpo/cli/sample.py); `--help` lists the options."""

import sys

from trl_adpo.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
