"""A training run's output_dir: an earlier run in it found and refused, or moved aside and put back if the new run
fails; a finished run not resumed."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from accelerate import PartialState

from trl_adpo.checkpoints import resolve_checkpoint, resumes
from trl_adpo.config import ADPOConfig
from trl_adpo.files import PLOT_FILE

RUN_FILES = (
    "trainer_state.json",
    "training_args.bin",
    "training_config.yaml",
    "README.md",
    PLOT_FILE,
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "adapter_config.json",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
)
"""What a `trl-adpo train` run writes into its output_dir, besides its checkpoints and tokenizer files."""


def earlier_run(output_dir: Path) -> list[str]:
    """The files and checkpoints of an earlier run in `output_dir` (empty when there is none)."""
    if not output_dir.is_dir():
        return []
    found = [
        name
        for name in (
            "trainer_state.json",
            "model.safetensors",
            "adapter_model.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin",
        )
        if (output_dir / name).is_file()
    ]
    return found + sorted(c.name for c in output_dir.glob("checkpoint-*") if c.is_dir())


def resuming(training_args: ADPOConfig) -> bool:
    return resumes(training_args.resume_from_checkpoint)


def check_output_dir(training_args: ADPOConfig, overwrite: bool) -> list[str]:
    """Refuse to train over an earlier run in output_dir unless resuming it or asked to replace it; the earlier run's
    files and checkpoints to replace (none when resuming or when there is no earlier run). Nothing is removed here:
    `replacing` moves them aside only once training starts, and puts them back if it fails."""
    output_dir = Path(training_args.output_dir)
    found = earlier_run(output_dir)
    if not found or resuming(training_args):
        return []
    if not overwrite:
        raise ValueError(
            f"output_dir {str(output_dir)!r} already holds a run "
            f"({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}): "
            "training into it would overwrite its model and leave its checkpoints beside the new run's state. Choose "
            "another output_dir, resume that run with --resume_from_checkpoint true, or replace it with "
            "--overwrite_output_dir true."
        )
    return [
        name
        for name in [*RUN_FILES, *(c.name for c in output_dir.glob("checkpoint-*"))]
        if (output_dir / name).exists()
    ]


def check_not_finished(training_args: ADPOConfig) -> None:
    """Refuse to resume a run that has nothing left to train: its newest checkpoint is at its last step."""
    if not resuming(training_args):
        return
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    planned = training_args.max_steps if training_args.max_steps > 0 else state.get("max_steps", 0)
    more_epochs = training_args.max_steps <= 0 and training_args.num_train_epochs > state.get("num_train_epochs", 0)
    if state.get("global_step", 0) >= planned and not more_epochs:
        raise ValueError(
            f"resume_from_checkpoint: {checkpoint} is at step {state.get('global_step')} of {planned}: the run is "
            "finished, there is nothing to resume, and it is left as it is. To train it longer, resume with a larger "
            "max_steps (or num_train_epochs)."
        )


@contextmanager
def replacing(output_dir: Path, earlier: list[str]) -> Iterator[None]:
    """Keep output_dir from holding a run that looks finished but is not: an earlier run's files (`earlier`) are moved
    aside while the new run trains and deleted once it has saved. If training or saving fails or is interrupted, the
    new run's top-level files (a model cut short by the interruption) are removed and the earlier run is put back;
    the new run's checkpoints stay when there was no earlier run, so that it can be resumed."""
    state = PartialState()
    aside = output_dir.with_name(f".{output_dir.name}.replaced")
    if earlier and state.is_main_process:
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir(parents=True)
        for name in earlier:
            os.replace(output_dir / name, aside / name)
    state.wait_for_everyone()
    try:
        yield
    except BaseException:
        if state.is_main_process:
            new = [*RUN_FILES, *((c.name for c in output_dir.glob("checkpoint-*")) if earlier else ())]
            for path in (output_dir / name for name in new):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            for name in earlier:
                os.replace(aside / name, output_dir / name)
            if earlier:
                aside.rmdir()
                print(f"The earlier run in {output_dir.resolve()} was put back as it was.", file=sys.stderr)
        raise
    if earlier and state.is_main_process:
        shutil.rmtree(aside)
        print(f"Replaced the earlier run in {output_dir.resolve()}.")
