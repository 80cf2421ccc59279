"""How long `trl-adpo` takes to answer what needs no model: help, `env` and a one-line argument error.

    python scripts/bench_startup.py            # each command 3 times, the median wall time
    python scripts/bench_startup.py --repeats 5

Each command runs in a fresh process, as a user types it; the figures are wall times on this machine, which another
job beside it slows (run it alone).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (
    ("trl-adpo --help",),
    ("trl-adpo", "train", "--help"),
    ("trl-adpo", "sample", "--help"),
    ("trl-adpo", "env"),
    ("trl-adpo", "sample", "--no_such_option", "1"),
    ("trl-adpo", "train", "--config", "no-such-file.yaml"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    executable = Path(sys.executable).parent / "trl-adpo"
    width = max(len(" ".join(command)) for command in COMMANDS)
    print(f"{'command':<{width}}  {'median s':>8}  {'min s':>6}")
    for command in COMMANDS:
        argv = [str(executable), *command[0].split()[1:], *command[1:]]
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            subprocess.run(argv, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
        print(f"{' '.join(command):<{width}}  {statistics.median(times):>8.2f}  {min(times):>6.2f}")


if __name__ == "__main__":
    main()
