"""Shared fixtures: a tiny Llama and word-level tokenizer saved in HF format, and random preference datasets."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_adpo.examples.arithmetic import save_quickstart
from trl_adpo.examples.tiny import save_tiny_model
from trl_adpo.trainer import TRL_VERSION

WORDS = [f"w{i}" for i in range(40)]
ON_TRL028 = TRL_VERSION.major == 0
"""The TRL line under test: 0.28.x (`concatenated_forward`/`dpo_loss`) or 1.x (`_compute_loss`)."""
ON_THE_DEFAULT_LINE_ONLY = pytest.mark.skipif(
    ON_TRL028,
    reason="a benchmark script's check, run on the default TRL line (1.x) alone: the script is the same on both "
    "lines, and the trainer it calls is tested on each",
)
"""For the checks that benchmark scripts run and print what they measure (CI runs the suite on both TRL lines)."""
AS_A_DEFAULT_INSTALL_RUNS = pytest.mark.skipif(
    ON_TRL028,
    reason="the pages' commands run as a default install (TRL 1.x) runs them; the commands they call are tested on "
    "both lines (test_cli, test_train_script)",
)
"""For the documentation's commands, which a user runs on the default install."""


def token_ids(row: dict, part: str) -> list[int]:
    """The token ids of a tokenized row's prompt, chosen or rejected part, by either TRL line's column names."""
    return row[f"{part}_input_ids"] if ON_TRL028 else row[f"{part}_ids"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Llama and its tokenizer, saved the way a Hub checkpoint is."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), WORDS)


@pytest.fixture(scope="session")
def reference_model_dir(tmp_path_factory):
    """Another tiny Llama with the same tokenizer and other weights, to serve as an explicit reference model."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama-ref"), WORDS, seed=1)


@pytest.fixture
def load(tiny_model_dir):
    """Load a fresh copy of the tiny model, or of another saved model, with the code a user would write."""

    def _load(directory=None, **kwargs):
        return AutoModelForCausalLM.from_pretrained(directory or tiny_model_dir, **kwargs)

    return _load


@pytest.fixture
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def random_text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def preference_dataset(rows: int, seed: int = 0, prompt=(1, 12), completion=(1, 14)) -> Dataset:
    """Standard-format preference pairs of random words, prompts and completions of varied lengths."""
    rng = random.Random(seed)
    return Dataset.from_list(
        [
            {
                "prompt": random_text(rng, *prompt),
                "chosen": random_text(rng, *completion),
                "rejected": random_text(rng, *completion),
            }
            for _ in range(rows)
        ]
    )


@pytest.fixture
def make_dataset():
    return preference_dataset


@pytest.fixture(autouse=True, scope="session")
def quiet_progress_bars():
    """Keep the test log readable: no dataset-map or weight-loading progress bars."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


@pytest.fixture(scope="session")
def train_cli():
    """`trl-adpo train` as a module, to call its `parse_args` and `run` in the test process."""
    from trl_adpo.cli import train

    return train


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory) -> Path:
    """The offline quickstart's tiny model and arithmetic preference data, built once."""
    return save_quickstart(tmp_path_factory.mktemp("quickstart"))


@pytest.fixture(scope="session")
def critical_models(quickstart, tmp_path_factory) -> dict[str, Path]:
    """A positive and a negative model for the quickstart's tokenizer, fully fine-tuned from its tiny model on the
    correct and the wrong solutions of 1000 arithmetic pairs (3 epochs): enough to localise critical tokens."""
    from trl_adpo.cli import train_critical
    from trl_adpo.examples.arithmetic import preference_rows
    from trl_adpo.pipeline.io import write_jsonl

    work = tmp_path_factory.mktemp("critical")
    write_jsonl(preference_rows(1000, seed=0, num_steps=3), work / "pairs.jsonl")
    return train_critical.run(
        *train_critical.parse_args(
            [
                "--model_name_or_path",
                str(quickstart / "model"),
                "--dataset_name",
                str(work / "pairs.jsonl"),
                "--output_dir",
                str(work),
                "--use_peft",
                "false",
                "--learning_rate",
                "3e-3",
                "--num_train_epochs",
                "3",
                "--per_device_train_batch_size",
                "32",
                "--max_length",
                "128",
                "--bf16",
                "false",
                "--disable_tqdm",
                "true",
                "--logging_steps",
                "1000",
            ]
        )
    )


def tiny_run(quickstart: Path, output_dir: Path, *extra: str) -> list[str]:
    """Command-line overrides that point a recipe at the quickstart's tiny model and data, for a short CPU run."""
    return [
        "--model_name_or_path",
        str(quickstart / "model"),
        "--dataset_name",
        str(quickstart / "train.jsonl"),
        "--output_dir",
        str(output_dir),
        "--bf16",
        "false",
        "--max_steps",
        "2",
        "--learning_rate",
        "1e-3",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
        "--max_length",
        "128",
        *extra,
    ]
