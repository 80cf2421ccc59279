"""How long `trl-adpo` takes to answer what needs no model: help, `env` and a one-line argument error.

    python scripts/bench_startup.py            # each command once cold, then 3 times warm (the median)
    python scripts/bench_startup.py --repeats 5 --only train   # the commands that hold "train"

Each command runs in a fresh process, as a user types it. "first" is its first run with an empty option index (a
fresh `TRL_ADPO_CACHE`: the subcommand is imported, and its index written); "then" the median of the runs after it,
answered from the index (`trl_adpo.cli.options`) where it decides them. The figures are wall times on this machine,
which another job beside it slows (run it alone).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (
    ("trl-adpo", "--help"),
    *(("trl-adpo", name, "--help") for name in ("train", "sample", "pairs", "train-critical", "evaluate", "iterate")),
    *(("trl-adpo", name, "--help") for name in ("plot", "inspect")),
    ("trl-adpo", "train", "--help-all"),
    ("trl-adpo", "env"),
    ("trl-adpo", "sample", "--no_such_option", "1"),
    ("trl-adpo", "train", "--lerning_rate", "1e-5"),
    ("trl-adpo", "train", "--config", "no-such-file.yaml"),
)


def wall_time(argv: list[str], cache: str) -> float:
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TRL_ADPO_CACHE": cache})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="warm runs of each command (default 3)")
    parser.add_argument("--only", default="", metavar="TEXT", help="only the commands that hold TEXT")
    args = parser.parse_args()
    chosen = [command for command in COMMANDS if args.only in " ".join(command)]
    if not chosen:
        parser.error(f"--only {args.only!r}: no command holds it")
    executable = Path(sys.executable).parent / "trl-adpo"
    width = max(len(" ".join(command)) for command in chosen)
    print(f"{'command':<{width}}  {'first s':>7}  {'then s':>6}")
    for command in chosen:
        argv = [str(executable), *command[1:]]
        with tempfile.TemporaryDirectory() as cache:
            first = wall_time(argv, cache)
            then = statistics.median(wall_time(argv, cache) for _ in range(args.repeats))
        print(f"{' '.join(command):<{width}}  {first:>7.2f}  {then:>6.2f}")


if __name__ == "__main__":
    main()
