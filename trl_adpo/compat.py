"""Which TRL releases the glue works with: the tested ones, and for any other a check of the `DPOTrainer` surface the
glue relies on, so that a changed TRL fails at import with what changed instead of mid-training.

Raising the tested ceiling is a one-line change to `TESTED` (and setup.cfg) plus a CI run.
"""

from __future__ import annotations

import inspect
import warnings

from packaging.version import Version

TESTED = {"0.28": (Version("0.28"), Version("0.29")), "1.x": (Version("1.16"), Version("1.17"))}
"""The glue lines and the TRL releases each was tested with, [low, high)."""
TESTED_TEXT = "TRL 0.28.x (with transformers < 5.3) or TRL 1.16.x"
INSTALL_TESTED = "pip install 'trl>=1.16,<1.17' (or 'trl>=0.28,<0.29' with 'transformers<5.3')"

SURFACES = {
    "0.28": {
        "concatenated_forward": ("self", "model", "batch", "is_ref_model"),
        "dpo_loss": (
            "self",
            "chosen_logps",
            "rejected_logps",
            "ref_chosen_logps",
            "ref_rejected_logps",
            "loss_type",
            "model_output",
        ),
        "concatenated_inputs": ("batch", "padding_value"),
        "compute_ref_log_probs": ("self", "batch"),
        "get_batch_loss_metrics": ("self", "model", "batch", "train_eval"),
        "_prepare_dataset": ("self", "dataset", "processing_class", "args", "dataset_name"),
        "_set_signature_columns_if_needed": ("self",),
        "null_ref_context": ("self",),
        "get_train_dataloader": ("self",),
        "get_eval_dataloader": ("self", "eval_dataset"),
        "_save_checkpoint": ("self", "model", "trial"),
    },
    "1.x": {
        "_compute_loss": ("self", "model", "inputs", "return_outputs"),
        "compute_ref_log_probs": ("self", "model", "inputs"),
        "_prepare_dataset": ("self", "dataset", "processing_class", "args", "dataset_name"),
        "_precompute_ref_logps": ("self", "dataset", "name", "batch_size"),
        "_set_signature_columns_if_needed": ("self",),
    },
}
"""For each glue line, the `DPOTrainer` methods it overrides or calls, with their parameters in order."""


GLUE_MODULES = {"0.28": "trl_adpo.trainer_trl028", "1.x": "trl_adpo.trainer_trl1"}
"""The module of each glue line (`trl_adpo.trainer` imports the one of the installed TRL)."""


def glue_line(version: Version) -> str:
    """The glue for a TRL version: "0.28" for 0.28.x, "1.x" for anything newer."""
    if version < Version("0.28"):
        raise ImportError(
            f"TRL {version} is installed, older than any release trl_adpo works with ({TESTED_TEXT}). "
            f"{INSTALL_TESTED}."
        )
    return "0.28" if version < Version("0.29") else "1.x"


def surface_problems(trainer_class: type, line: str) -> list[str]:
    """What of `trainer_class` differs from what the `line` glue relies on, in words (empty when nothing does)."""
    problems = []
    for name, expected in SURFACES[line].items():
        method = getattr(trainer_class, name, None)
        if method is None:
            problems.append(f"DPOTrainer.{name} is gone")
            continue
        parameters = inspect.signature(method).parameters
        found = tuple(parameters)
        new_required = [  # parameters the glue does not pass and that have no default
            p
            for p in list(parameters.values())[len(expected) :]
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if found[: len(expected)] != expected or new_required:
            problems.append(f"DPOTrainer.{name} takes {found}, the glue calls it with {expected}")
    return problems


def check_trl(version: Version, trainer_class: type) -> str:
    """The glue line for the installed TRL; outside the tested releases, its surface is checked.

    Raises:
        ImportError: naming the TRL version, what changed, and the versions that work.
    """
    line = glue_line(version)
    low, high = TESTED[line]
    if low <= version < high:
        return line
    problems = surface_problems(trainer_class, line)
    if problems:
        raise ImportError(
            f"TRL {version} is installed, but trl_adpo was tested with {TESTED_TEXT}, and this TRL's DPOTrainer "
            "differs "
            f"from what its {line} glue relies on: " + "; ".join(problems) + f". {INSTALL_TESTED}."
        )
    warnings.warn(
        f"TRL {version} is outside the releases trl_adpo was tested with ({TESTED_TEXT}). The DPOTrainer surface "
        "its glue relies on is there, so it goes on; if training misbehaves, install a tested TRL.",
        stacklevel=3,
    )
    return line
