"""`trl-adpo train-critical`: the positive and negative models of cDPO's contrastive estimation (Lin et al. 2025).

Two LoRA adapters are trained with TRL's `SFTTrainer` from the same base, on completions only: the positive one on
the correct completions of verified samples, the negative one on the incorrect ones (or on the chosen and rejected
completions of preference pairs). They are written to `OUTPUT_DIR/positive` and `OUTPUT_DIR/negative`, ready for
`ADPOConfig(positive_model=..., negative_model=...)`.

```bash
trl-adpo train-critical --config configs/critical_token_models.yaml \\
    --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --dataset_name samples.jsonl --output_dir critical
```

Given raw verified samples (rows with `problem_id` and `answer`, as `trl-adpo sample` writes them), it first keeps
cDPO's selection of them, as `trl-adpo pairs --critical_samples` does: one correct sample per problem for the
positive model, and for the negative one the samples of the most frequent wrong answers that make up half of the
problem's wrong samples (`--cdpo_selection false` trains on every sample).

Defaults, each overridable: LoRA r = 8 on the MLP projections, learning rate 3e-4, 1 epoch. They are this project's
choice for small adapters, not numbers from Lin et al. 2025, whose recipe we have (ADPO's reference notes) says LoRA
SFT on the selected samples without these settings.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import AutoTokenizer
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

from trl_adpo.cli.models import load_model, trust_remote_code
from trl_adpo.cli.parsing import ConfigParser
from trl_adpo.files import refuse_output_among_inputs
from trl_adpo.pipeline.io import check_model_source, load_data
from trl_adpo.pipeline.pairs import critical_training_samples
from trl_adpo.pipeline.samples import split_by_correctness
from trl_adpo.report.progress import use_compact_progress

CRITICAL_MODEL_DEFAULTS = dict(
    use_peft=True,
    lora_r=8,
    lora_alpha=16,
    lora_target_modules=["gate_proj", "up_proj", "down_proj"],
    learning_rate=3e-4,
    num_train_epochs=1,
    save_strategy="no",
    report_to="none",
)
"""This project's defaults for the two models (LoRA r = 8 on the MLP projections, lr 3e-4, 1 epoch; not cDPO's
published numbers); YAML and flags override."""


@dataclass
class CriticalTokenArguments:
    """Where the verified samples come from."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Verified samples: rows of `prompt`, `completion` and boolean `correct` (what `trl-adpo sample` "
            "writes, or the positive/negative sets of `trl-adpo pairs`), or preference pairs whose chosen "
            "completions count as correct and rejected ones as incorrect. A Hub name, a directory, or a .jsonl, "
            ".json, .parquet or .csv file."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a Hub dataset."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace the positive and negative models that output_dir already holds. Without it, training "
            "into the output_dir of earlier models is refused."
        },
    )
    cdpo_selection: bool = field(
        default=True,
        metadata={
            "help": "With raw verified samples (rows with `problem_id` and `answer`, as `trl-adpo sample` writes): "
            "train on cDPO's selection of them (one correct sample per problem; the samples of the most frequent "
            "wrong answers that make up half of its wrong samples), as `trl-adpo pairs --critical_samples` "
            "selects. False: train on every sample."
        },
    )


def select_as_cdpo(dataset: Dataset, seed: int) -> Dataset:
    """cDPO's selection of raw verified samples (`trl_adpo.pipeline.pairs.critical_training_samples`)."""
    selected = critical_training_samples(dataset.to_list(), seed)
    positive = sum(row["correct"] for row in selected)
    print(
        f"cDPO's selection of the {len(dataset)} verified samples: {positive} correct and {len(selected) - positive} "
        "incorrect completions (--cdpo_selection false trains on every sample)"
    )
    return Dataset.from_list(selected)


DATACLASSES = (CriticalTokenArguments, SFTConfig, ModelConfig)


def run(script_args: CriticalTokenArguments, sft_args: SFTConfig, model_args: ModelConfig) -> dict[str, Path]:
    """Train the positive and the negative adapter; returns their directories."""
    if script_args.dataset_name is None:
        raise ValueError("dataset_name is not set: give the verified samples (a file, a directory or a Hub name).")
    if model_args.model_name_or_path is None:
        raise ValueError("model_name_or_path is not set: give the policy's base model (Hub name or directory).")
    check_model_source(model_args.model_name_or_path, "model_name_or_path")
    refuse_output_among_inputs(
        {"output_dir": sft_args.output_dir},
        {"model_name_or_path": model_args.model_name_or_path, "dataset_name": script_args.dataset_name},
    )
    earlier = [
        side
        for side in ("positive", "negative")
        if any((Path(sft_args.output_dir) / side / name).is_file() for name in ("adapter_config.json", "config.json"))
    ]
    if earlier and not script_args.overwrite_output_dir:
        raise ValueError(
            f"output_dir {sft_args.output_dir!r} already holds critical-token models ({', '.join(earlier)}): training "
            "into it would overwrite them. Choose another output_dir, or replace them with --overwrite_output_dir "
            "true."
        )
    data = load_data(script_args.dataset_name, script_args.dataset_config, "dataset_name")
    if script_args.dataset_train_split not in data:
        raise ValueError(
            f"dataset_train_split: {script_args.dataset_name!r} has no split {script_args.dataset_train_split!r}; "
            f"its splits are {list(data)}."
        )
    rows = data[script_args.dataset_train_split]
    if script_args.cdpo_selection and {"problem_id", "answer", "correct"} <= set(rows.column_names):
        split_by_correctness(rows, script_args.dataset_name)  # the checks of the rows, before the selection
        rows = select_as_cdpo(rows, sft_args.seed)
    correct, incorrect = split_by_correctness(rows, script_args.dataset_name)
    trust_code = trust_remote_code(model_args, sft_args)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, trust_remote_code=trust_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    written = {}
    for side, rows in (("positive", correct), ("negative", incorrect)):
        args = copy.deepcopy(sft_args)
        args.output_dir = str(Path(sft_args.output_dir) / side)
        print(
            f"Training the {side} model on {len(rows)} {'correct' if side == 'positive' else 'incorrect'} completions"
        )
        trainer = SFTTrainer(
            model=load_model(model_args, trust_code),
            args=args,
            train_dataset=rows,
            processing_class=tokenizer,
            peft_config=get_peft_config(model_args),
        )
        use_compact_progress(trainer)
        trainer.train()
        trainer.save_model(args.output_dir)
        written[side] = Path(args.output_dir)
    print(
        f"Positive model: {written['positive'].resolve()}\nNegative model: {written['negative'].resolve()}\n"
        f"Train cADPO with: --positive_model {written['positive']} --negative_model {written['negative']}"
    )
    return written


def make_parser() -> ConfigParser:
    return ConfigParser(DATACLASSES, prog="trl-adpo train-critical", **CRITICAL_MODEL_DEFAULTS)


def parse_args(argv: list[str] | None = None) -> tuple[CriticalTokenArguments, SFTConfig, ModelConfig]:
    return make_parser().parse(sys.argv[1:] if argv is None else argv)


def main(argv: list[str] | None = None) -> None:
    run(*parse_args(argv))
