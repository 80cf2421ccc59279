"""Train the positive and negative critical-token models of cDPO: the same as `trl-adpo train-critical`
(see trl_adpo/cli/train_critical.py).

    python scripts/train_critical_token_models.py --config configs/quickstart_critical.yaml
"""

import sys

from trl_adpo.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train-critical", *sys.argv[1:]]))
