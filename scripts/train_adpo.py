"""Train a causal LM with ADPO from a YAML config: the same as `trl-adpo train` (see trl_adpo/cli/train.py).

python scripts/train_adpo.py --config configs/quickstart.yaml
"""

import sys

from trl_adpo.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
