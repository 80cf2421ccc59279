"""`trl-adpo pairs`: preference pairs from verified samples, selected as cDPO selects them.

```bash
trl-adpo pairs --samples samples.jsonl --output pairs.jsonl --critical_samples critical_samples.jsonl
```

The pairs are TRL's standard preference format (`prompt`, `chosen`, `rejected`), which `trl-adpo train` reads as it
is; `--critical_samples` also writes the positive and negative models' training rows for `trl-adpo train-critical`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from trl_adpo.cli.parsing import ConfigParser
from trl_adpo.files import refuse_output_among_inputs
from trl_adpo.pipeline.io import read_jsonl, row_location, write_jsonl
from trl_adpo.pipeline.pairs import PairSummary, critical_training_samples, select_pairs
from trl_adpo.pipeline.samples import SAMPLE_COLUMNS


@dataclass
class PairArguments:
    samples: str | None = field(default=None, metadata={"help": "Verified samples (what `trl-adpo sample` writes)."})
    output: str = field(default="outputs/pairs.jsonl", metadata={"help": "The preference pairs, as JSON Lines."})
    critical_samples: str | None = field(
        default=None,
        metadata={"help": "Also write the critical-token models' training rows (cDPO's selection) to this file."},
    )
    seed: int = field(default=0, metadata={"help": "Seed that breaks ties between answers and picks the samples."})
    pairs_per_problem: int = field(
        default=1,
        metadata={
            "help": "Pairs per problem: 1 is cDPO's selection; more add the problem's other distinct wrong "
            "completions, each once, against its correct ones in turn."
        },
    )


def run(args: PairArguments) -> PairSummary:
    if args.samples is None:
        raise ValueError("samples is not set: give the verified samples that `trl-adpo sample` wrote.")
    path = Path(args.samples)
    if not path.is_file():
        raise FileNotFoundError(f"samples: the file {args.samples!r} does not exist.")
    refuse_output_among_inputs(
        {"output": args.output, "critical_samples": args.critical_samples}, {"samples": args.samples}
    )
    samples = read_jsonl(path)
    for row_number, row in enumerate(samples):
        missing = [column for column in ("problem_id", *SAMPLE_COLUMNS, "answer") if column not in row]
        if missing:
            raise ValueError(
                f"{row_location(str(path), row_number)}: no {missing} column(s); expected what `trl-adpo sample` "
                "writes."
            )
        if not isinstance(row["correct"], bool):
            raise ValueError(
                f"{row_location(str(path), row_number)}: `correct` is {row['correct']!r}; it must be true or false "
                "(JSON booleans), the verifier's verdict."
            )
    pairs, summary = select_pairs(samples, args.seed, args.pairs_per_problem)
    if not pairs:
        raise ValueError(
            f"{path}: no problem has both a correct and an incorrect sample ({summary}). Sample more completions per "
            "problem, or at a higher temperature."
        )
    write_jsonl(pairs, Path(args.output))
    print(f"Wrote {Path(args.output).resolve()}: {summary}")
    if args.critical_samples is not None:
        rows = critical_training_samples(samples, args.seed)
        write_jsonl(rows, Path(args.critical_samples))
        positive = sum(row["correct"] for row in rows)
        print(
            f"Wrote {Path(args.critical_samples).resolve()}: {positive} positive and {len(rows) - positive} negative "
            "rows"
        )
    return summary


def make_parser() -> ConfigParser:
    return ConfigParser((PairArguments,), prog="trl-adpo pairs")


def main(argv: list[str] | None = None) -> None:
    run(*make_parser().parse(sys.argv[1:] if argv is None else argv))
