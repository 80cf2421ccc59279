"""What the terminal shows a user: third-party warnings, logs and progress bars they cannot act on are hidden, the
project's own warnings never are (every `trl-adpo` command and `python -m trl_adpo.examples...` start with this),
and those warnings name the user's own line, not a line inside the package or TRL."""

from __future__ import annotations

import logging
import os
import sys
import warnings

THIRD_PARTY = r"(trl|transformers|accelerate|peft|datasets|torch|bitsandbytes|deepspeed|huggingface_hub)(\.|$)"

HIDDEN_LOG_LINES = {
    # bitsandbytes, on loading on a CPU with AVX-512 BF16, asks the `kernels` package for a 4-bit kernel on the Hub;
    # offline, kernels says it skipped the publisher's trust check and bitsandbytes that it fell back to its own kernel
    "bitsandbytes.backends.cpu.ops": "kernels",
    "kernels._internals.hf_hub": "Skipping publisher trust check",
    # DeepSpeed, once installed, says on every import that it found no GPU
    "DeepSpeed": "Setting accelerator to CPU",
}
"""Third-party loggers, and the text of the lines from them that are hidden."""


def quiet_third_party_noise() -> None:
    """Hide what a user of the command cannot act on; never the project's own warnings."""
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY)
    # torch, on a machine without an accelerator, about Trainer's default `dataloader_pin_memory=True`
    warnings.filterwarnings("ignore", message=".*'pin_memory' argument is set as true but no accelerator is found")
    for logger, text in HIDDEN_LOG_LINES.items():
        logging.getLogger(logger).addFilter(lambda record, text=text: text not in record.getMessage())
    # bars of steps that take a moment (tokenizing a small dataset, loading weights): Trainer's own bar stays
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


LIBRARIES = {"trl_adpo", "trl", "transformers", "accelerate", "datasets", "peft", "torch", "multiprocess", "dill"}
"""Packages whose frames a warning of the project looks past for the line to attribute it to."""


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn`, attributed to the first caller outside trl_adpo and the libraries it runs inside (the user's
    `ADPOTrainer(...)` line, say, rather than the line of TRL that prepares the dataset)."""
    frame, stacklevel = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").split(".")[0] in LIBRARIES:
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, category, stacklevel=stacklevel)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none), for a one-line report."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
