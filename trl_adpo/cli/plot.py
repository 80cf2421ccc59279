"""`trl-adpo plot RUN_DIR [OTHER_RUN_DIR]`: the training dynamics of a run (the paper's Figure 2 and more) as a PNG.

```bash
trl-adpo plot outputs/quickstart-adpo                       # outputs/quickstart-adpo/training_dynamics.png
trl-adpo plot outputs/quickstart-dpo outputs/quickstart-adpo --labels DPO ADPO --output outputs/dpo_vs_adpo.png
```

Reads each run's `trainer_state.json` (the run's output_dir, or a checkpoint directory); a second run is drawn on the
same axes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trl_adpo.cli.parsing import plain_help
from trl_adpo.files import PLOT_FILE
from trl_adpo.report.plots import plot_training_dynamics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="trl-adpo plot", description=plain_help(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="one run, or two to compare")
    parser.add_argument("--labels", nargs="+", help="a name for each run in the legend (default: the directory names)")
    parser.add_argument("--output", type=Path, help=f"the PNG to write (default: RUN_DIR/{PLOT_FILE})")
    args = parser.parse_args(argv)
    if len(args.runs) > 2:
        parser.error(f"give one run directory, or two to compare; got {len(args.runs)}.")
    if args.labels is not None and len(args.labels) != len(args.runs):
        parser.error(f"--labels names {len(args.labels)} run(s) but {len(args.runs)} were given.")
    output = args.output or args.runs[0] / (
        PLOT_FILE if len(args.runs) == 1 else f"training_dynamics_vs_{args.runs[1].resolve().name}.png"
    )
    print(f"Wrote {plot_training_dynamics(args.runs, output, args.labels).resolve()}")
