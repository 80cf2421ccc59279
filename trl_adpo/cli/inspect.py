"""`trl-adpo inspect`: how a granularity cuts one preference pair, and with models, each token's and segment's share.

```bash
# the segments only: a tokenizer and a granularity
trl-adpo inspect --tokenizer Qwen/Qwen2.5-0.5B-Instruct --granularity step \
    --prompt "2 + 3 * 4 = ?" --chosen $'3 * 4 = 12\n2 + 12 = 14\nThe answer is 14.' \
    --rejected $'2 + 3 = 5\n5 * 4 = 20\nThe answer is 20.'

# a dataset row, scored by a trained policy against its reference
trl-adpo inspect --dataset_name pairs.jsonl --row 3 --policy outputs/run --reference Qwen/Qwen2.5-0.5B-Instruct \
    --num_segments 16 --beta 0.1 --html outputs/pair3.html
```

Prints a table (each segment's tokens and reward; the paired segments' margins and losses) and writes a
self-contained HTML page (`--html`, default `outputs/inspect.html`) with the tokens coloured by log-ratio, the segment
boundaries drawn, the first token where the completions differ marked and, with models, each token's share of the
gradient under the granularity and under DPO side by side; `--json` writes every number. The pair is tokenized and
truncated (`--max_length`, `--truncation_mode`) exactly as training prepares it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trl_adpo.cli.parsing import ConfigParser
from trl_adpo.files import write_atomically
from trl_adpo.pipeline.io import check_model_source
from trl_adpo.report.inspector import Granularity, PairReport, inspect_pair, to_html, to_text


@dataclass
class InspectArguments:
    tokenizer: str | None = field(default=None, metadata={"help": "The tokenizer (default: the policy's)."})
    prompt: str | None = field(default=None, metadata={"help": "The pair's prompt (or use --dataset_name/--row)."})
    chosen: str | None = field(default=None, metadata={"help": "The chosen completion."})
    rejected: str | None = field(default=None, metadata={"help": "The rejected completion."})
    dataset_name: str | None = field(default=None, metadata={"help": "A preference dataset (Hub, directory or file)."})
    dataset_split: str = field(default="train", metadata={"help": "Its split."})
    row: int = field(default=0, metadata={"help": "The row of the pair."})
    policy: str | None = field(default=None, metadata={"help": "A policy (model or LoRA adapter) to score the pair."})
    reference: str | None = field(
        default=None, metadata={"help": "The reference model (default: the base of a LoRA adapter policy)."}
    )
    beta: float = field(default=0.1, metadata={"help": "beta of the rewards."})
    max_length: int | None = field(
        default=None,
        metadata={"help": "Truncate the pair as a run with this max_length does (default: no truncation)."},
    )
    truncation_mode: str = field(
        default="keep_start",
        metadata={"help": "keep_start or keep_end, as the run's.", "choices": ["keep_start", "keep_end"]},
    )
    positive_model: str | None = field(default=None, metadata={"help": "cDPO's positive model, for token weights."})
    negative_model: str | None = field(default=None, metadata={"help": "cDPO's negative model."})
    critical_token_gamma: float = field(default=1.0, metadata={"help": "gamma of contrastive estimation."})
    weight_chosen_tokens: bool = field(default=False, metadata={"help": "Also weigh the chosen tokens, by p_ce."})
    html: str = field(default="outputs/inspect.html", metadata={"help": "The HTML page to write."})
    json: str | None = field(default=None, metadata={"help": "Also write every number to this JSON file."})


def load_pair(args: InspectArguments) -> tuple:
    if args.dataset_name is None:
        missing = [name for name in ("prompt", "chosen", "rejected") if getattr(args, name) is None]
        if missing:
            raise ValueError(
                f"give --{missing[0]} (with --prompt, --chosen and --rejected), or --dataset_name and --row."
            )
        return args.prompt, args.chosen, args.rejected
    from trl_adpo.pipeline.io import load_data

    dataset = load_data(args.dataset_name, None, "dataset_name")[args.dataset_split]
    if not 0 <= args.row < len(dataset):
        raise ValueError(f"row {args.row} is out of range: {args.dataset_name} has {len(dataset)} rows.")
    row = dataset[args.row]
    missing = [name for name in ("prompt", "chosen", "rejected") if name not in row]
    if missing:
        raise ValueError(f"{args.dataset_name}, row {args.row}: no {missing[0]!r} column; it has {sorted(row)}.")
    return row["prompt"], row["chosen"], row["rejected"]


def check_tokenizer_fits(tokenizer, tokenizer_name: str, policy, policy_name: str) -> None:
    """Refuse a tokenizer whose token ids the policy has no embedding for."""
    rows = policy.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ValueError(
            f"--tokenizer {tokenizer_name!r} has {len(tokenizer)} tokens but the policy {policy_name!r} embeds "
            f"{rows}: "
            "it is not the policy's tokenizer. Leave --tokenizer out to use the policy's own."
        )


def run(args: InspectArguments, granularity: Granularity) -> PairReport:
    from transformers import AutoTokenizer

    from trl_adpo.critical_models import CriticalTokenModels, adapter_base
    from trl_adpo.trainer import ADPOTrainer

    for option in ("tokenizer", "policy", "reference", "positive_model", "negative_model"):
        check_model_source(getattr(args, option), option)
    prompt, chosen, rejected = load_pair(args)
    name = args.tokenizer or args.policy
    if name is None:
        raise ValueError("give --tokenizer (or a --policy, whose tokenizer is used).")
    policy = reference = critical = None
    if args.policy is not None:
        from trl_adpo.pipeline.generation import load_for_generation

        reference_name = args.reference or adapter_base(args.policy)
        if reference_name is None:
            raise ValueError("give --reference: the policy is no LoRA adapter, so it has no base to compare with.")
        policy, _ = load_for_generation(args.policy, device="cpu")
        reference, _ = load_for_generation(reference_name, device="cpu")
    if bool(args.positive_model) != bool(args.negative_model):
        raise ValueError("give both --positive_model and --negative_model, or neither.")
    if args.positive_model:
        critical = CriticalTokenModels.load(args.positive_model, args.negative_model, gamma=args.critical_token_gamma)
    tokenizer = AutoTokenizer.from_pretrained(
        name if args.tokenizer or adapter_base(name) is None else adapter_base(name)
    )
    if policy is not None:
        check_tokenizer_fits(tokenizer, args.tokenizer or name, policy, args.policy)
    report = inspect_pair(
        tokenizer,
        prompt,
        chosen,
        rejected,
        granularity,
        tokenize_dataset=ADPOTrainer.tokenize_dataset,
        beta=args.beta,
        max_length=args.max_length,
        truncation_mode=args.truncation_mode,
        policy=policy,
        reference=reference,
        critical_models=critical,
        weight_chosen_tokens=args.weight_chosen_tokens,
    )
    print(to_text(report))
    write_atomically(args.html, to_html(report))
    print(f"\nWrote {Path(args.html).resolve()}")
    if args.json is not None:
        write_atomically(args.json, json.dumps(report.to_dict(), indent=1))
        print(f"Wrote {Path(args.json).resolve()}")
    return report


def make_parser() -> ConfigParser:
    return ConfigParser((InspectArguments, Granularity), prog="trl-adpo inspect")


def main(argv: list[str] | None = None) -> None:
    run(*make_parser().parse(sys.argv[1:] if argv is None else argv))
