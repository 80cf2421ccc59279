"""Which checkpoint a run resumes from: the one named, or the newest complete one when a kill cut a save short."""

from __future__ import annotations

from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .noise import warn

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "adapter_model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.bin",
)


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from (a save cut short), or None. Trainer writes trainer_state.json last."""
    if not (checkpoint / "trainer_state.json").is_file():
        return "it has no trainer_state.json, the file Trainer writes last"
    if not any((checkpoint / name).is_file() for name in WEIGHT_FILES) and not any(checkpoint.glob("global_step*")):
        return "it has no model weights"
    return None


def resumes(resume_from_checkpoint: str | bool | None) -> bool:
    """Whether a `resume_from_checkpoint` value asks to resume (False, None, "" and "false" do not)."""
    return resume_from_checkpoint not in (None, False, "", "false", "False")


def resolve_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint to resume from: the one named (True or "true": the newest in `output_dir`), or, when a run
    killed while saving left it half-written, the newest complete one before it, with a warning naming both."""
    if not resumes(resume_from_checkpoint):
        return None
    if resume_from_checkpoint in (True, "true", "True"):
        requested, folder = None, Path(output_dir)
    else:
        requested = Path(resume_from_checkpoint)
        if not requested.is_dir():
            raise FileNotFoundError(f"resume_from_checkpoint: {resume_from_checkpoint!r} is no checkpoint directory.")
        folder = requested.parent
    checkpoints = sorted(
        (c for c in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if c.is_dir() and c.name.split("-")[-1].isdigit()),
        key=lambda c: int(c.name.split("-")[-1]),
    )
    if requested is not None:
        checkpoints = [c for c in checkpoints if int(c.name.split("-")[-1]) <= int(requested.name.split("-")[-1])]
        checkpoints = checkpoints if requested in checkpoints else [*checkpoints, requested]
    skipped = []
    for checkpoint in reversed(checkpoints):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            if skipped:
                warn(
                    f"{skipped[0][0]} is incomplete ({skipped[0][1]}): the run was stopped while saving it. Resuming "
                    f"from {checkpoint}, the newest complete checkpoint before it."
                )
            return str(checkpoint)
        skipped.append((checkpoint, problem))
    if skipped:
        raise ValueError(
            f"resume_from_checkpoint: {skipped[0][0]} is incomplete ({skipped[0][1]}) and no complete checkpoint "
            "comes "
            "before it: start the run again without resume_from_checkpoint."
        )
    raise FileNotFoundError(f"resume_from_checkpoint: {folder} holds no {PREFIX_CHECKPOINT_DIR}-N directory.")
