"""Per-token dataset columns (reference log-probs, reasoning-step segment ids, critical-token weights): their names
and dtypes, the alignment of per-token log-probs to column 0, the collator that pads the columns, and the columns a
dataset gains before training (step segment ids) or loses (per-token columns that came with the data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from trl.trainer.utils import pad

from .config import ADPOConfig
from .data import scored_completion_spans
from .noise import warn
from .segmentation import step_segment_ids

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
SEGMENT_COLUMNS = ("chosen_segment_ids", "rejected_segment_ids")
WEIGHT_COLUMNS = ("chosen_weights", "rejected_weights")
LOSS_COLUMNS = SEGMENT_COLUMNS + WEIGHT_COLUMNS
"""The per-token columns that go to the loss, not to the model."""
PER_TOKEN_COLUMNS = {
    **dict.fromkeys(REF_COLUMNS, torch.float32),
    **dict.fromkeys(SEGMENT_COLUMNS, torch.long),
    **dict.fromkeys(WEIGHT_COLUMNS, torch.float32),
}
"""Dataset columns that hold one value per scored completion token (column 0 the first scored token), and their
dtypes once collated. TRL's collators do not know them: `PerTokenCollator` pads them."""


def left_align(token_logps: torch.Tensor, scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's scored tokens, contiguous in the row, to column 0.

    Args:
        token_logps: ``(N, L)`` per-token log-probs.
        scored: ``(N, L)`` boolean, True on the completion tokens that have a log-prob.

    Returns:
        ``(N, T)`` log-probs, column 0 the first scored token, zero past the end, and their ``(N, T)`` mask, with
        ``T`` the longest row's count of scored tokens.
    """
    lengths = scored.sum(dim=1)
    columns = torch.arange(int(lengths.max()), device=scored.device)
    start = scored.int().argmax(dim=1, keepdim=True)
    aligned = token_logps.gather(1, (start + columns).clamp(max=token_logps.shape[1] - 1))
    mask = columns < lengths.unsqueeze(1)
    return aligned.masked_fill(~mask, 0.0), mask


def fit_width(values: torch.Tensor, width: int, column: str) -> torch.Tensor:
    """Right-pad a ``(B, T')`` per-token column with zeros to the policy's width ``T >= T'``."""
    if values.shape[1] > width:
        raise ValueError(
            f"The per-token column `{column}` has {values.shape[1]} tokens but the policy scores at most {width}: it "
            "does not match this dataset and `max_length`. Drop that column and let the trainer compute it again."
        )
    return torch.nn.functional.pad(values, (0, width - values.shape[1]))


@dataclass
class PerTokenCollator:
    """Wraps a preference collator: the `PER_TOKEN_COLUMNS` (lists per row) are taken out of the examples, the rest
    is collated by `collator`, and the lists come back as ``(B, T)`` tensors padded with 0."""

    collator: Callable[[list[dict[str, Any]]], dict[str, Any]]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = self.collator([{k: v for k, v in row.items() if k not in PER_TOKEN_COLUMNS} for row in examples])
        for column, dtype in PER_TOKEN_COLUMNS.items():
            if column in examples[0]:
                output[column] = pad([torch.tensor(row[column], dtype=dtype) for row in examples])
        return output


def scored_step_ids(prompt_ids: list[int], completion_ids: list[int], tokenizer, args: ADPOConfig) -> list[int]:
    """The reasoning-step segment id of each scored completion token of one row, from 0.

    The steps are cut on the whole completion; truncation to `max_length` then keeps some of its tokens, and a step
    it cuts stays a (shorter) segment.
    """
    first, stop = (
        int(i[0])
        for i in scored_completion_spans(
            [len(prompt_ids)], [len(completion_ids)], args.max_length, args.truncation_mode
        )
    )
    steps = step_segment_ids(completion_ids, tokenizer, args.step_delimiter, args.step_pattern)[first:stop]
    return [step - steps[0] for step in steps]


def gather_rows(accelerator, values: torch.Tensor, mask: torch.Tensor) -> list[list[float]]:
    """Each row's masked values as a list, gathered from all processes in dataset order."""
    values = accelerator.pad_across_processes(values.float(), dim=1)
    mask = accelerator.pad_across_processes(mask, dim=1)
    values, mask = accelerator.gather_for_metrics((values, mask))
    return [row[keep].tolist() for row, keep in zip(values.cpu(), mask.cpu())]


def without_per_token_columns(dataset, name: str):
    """`dataset` without the `PER_TOKEN_COLUMNS` it already holds (from another trainer, run or config), with a
    warning naming them.

    The trainer derives every per-token column from its own config and data (per-token reference log-probs with
    `precompute_ref_log_probs`, step segment ids with `granularity="step"`, critical-token weights with
    `positive_model`/`negative_model`), so a column that came with the data is never trusted: it is dropped here,
    before tokenization, and computed again where the config asks for it.
    """
    stale = [column for column in PER_TOKEN_COLUMNS if column in (getattr(dataset, "column_names", None) or [])]
    if not stale:
        return dataset
    warn(
        f"The {name} dataset already holds the per-token column(s) {stale}, made by another trainer or run. "
        "ADPOTrainer derives them from its own config (precompute_ref_log_probs, granularity='step', "
        "positive_model/negative_model), so they are dropped and computed again where this config asks for them."
    )
    return dataset.remove_columns(stale)


def with_step_columns(dataset: Dataset, processing_class, args: ADPOConfig, name: str, suffix: str) -> Dataset:
    """With `granularity="step"`, a tokenized `dataset` plus the step segment ids of its scored completion tokens.

    `suffix` ends the token-id columns: `_input_ids` on TRL 0.28, `_ids` on TRL 1.x.
    """
    if args.granularity != "step":
        return dataset
    if not isinstance(dataset, Dataset):
        raise ValueError(
            f"granularity='step' cuts each row into reasoning steps once, before training, which needs a map-style "
            f"`datasets.Dataset`; the {name} dataset is a {type(dataset).__name__}. Load it without streaming, or "
            "choose the static or adaptive granularity."
        )
    tokenizer = getattr(processing_class, "tokenizer", processing_class)

    def add_steps(row: dict[str, Any]) -> dict[str, list[int]]:
        prompt = row[f"prompt{suffix}"]
        return {
            column: scored_step_ids(prompt, row[f"{side}{suffix}"], tokenizer, args)
            for column, side in zip(SEGMENT_COLUMNS, ("chosen", "rejected"))
        }

    return dataset.map(
        add_steps, num_proc=args.dataset_num_proc, desc=f"Cutting the {name} dataset into reasoning steps"
    )
