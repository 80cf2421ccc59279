"""Checks on preference datasets, run before the first training step so that a bad row fails with its number.

ADPO scores every completion token on its own or in short segments, so a completion with no token to score is an
input error (ADPO_SPEC.md), never a silent zero: an empty completion in the raw data, or one that truncation to
`max_length` empties.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset
from trl.data_utils import maybe_extract_prompt

REQUIRED_COLUMNS = ("chosen", "rejected")


def _text(value, column: str, row: int, split: str) -> str:
    """The text of a standard (str) or conversational (list of messages) prompt or completion.

    Raises:
        ValueError: naming the row and the column when the value is neither.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value):
        return "".join(str(message["content"] or "") for message in value)
    shown = repr(value) if len(repr(value)) < 80 else repr(value)[:77] + "..."
    name = type(value).__name__
    kind = "a list whose items are not messages" if isinstance(value, list) else f"a{'n' * (name[0] in 'aeiou')} {name}"
    raise ValueError(
        f"Row {row} of the {split} dataset: `{column}` is {kind} ({shown}). A prompt or completion must be text, or "
        "a list of messages such as [{'role': 'assistant', 'content': '...'}]: fix that row."
    )


def check_preference_dataset(dataset: Dataset, split: str) -> None:
    """Raise `ValueError` if `dataset` lacks the preference columns, or has a row whose prompt or completion is
    neither text nor messages, or whose completion is empty.

    Args:
        dataset: a preference dataset in TRL's standard or conversational format, with an explicit `prompt` column
            or with the prompt implicit in `chosen` and `rejected`.
        split: the name of the dataset in messages, e.g. "train".
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The {split} dataset lacks the column(s) {missing}: it has {dataset.column_names}. A preference dataset "
            "needs `chosen` and `rejected` (and usually `prompt`), in TRL's standard or conversational format; "
            "rename your columns to match."
        )
    columns = [column for column in ("prompt", *REQUIRED_COLUMNS) if column in dataset.column_names]
    for row, example in enumerate(dataset.select_columns(columns)):
        for column in columns:
            _text(example[column], column, row, split)
        example = maybe_extract_prompt(example)
        for column in REQUIRED_COLUMNS:
            if not _text(example[column], column, row, split).strip():
                raise ValueError(
                    f"Row {row} of the {split} dataset has an empty `{column}` completion. ADPO needs at least one "
                    "completion token in each response: fix or drop that row."
                )


def scored_completion_spans(
    prompt_lengths: np.ndarray, completion_lengths: np.ndarray, max_length: int | None, truncation_mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Which completion tokens get a log-prob once a row is truncated as `DPOTrainer` truncates it.

    A row is its prompt then its completion; truncation keeps its first (`keep_start`) or last (`keep_end`)
    `max_length` tokens. The first kept token has no context, so it is not scored even if it is a completion token.

    Returns:
        For each row, the index of the first scored completion token and one past the last: completion tokens
        ``first <= i < stop`` are scored (none when ``stop <= first``).
    """
    prompt_lengths = np.asarray(prompt_lengths, dtype=np.int64)
    completion_lengths = np.asarray(completion_lengths, dtype=np.int64)
    total = prompt_lengths + completion_lengths
    kept = total if max_length is None else np.minimum(total, max_length)
    if truncation_mode == "keep_start":
        first_kept = np.zeros_like(total)
        stop = np.maximum(kept - prompt_lengths, 0)
    else:
        first_kept = total - kept
        stop = completion_lengths
    first = np.maximum(first_kept - prompt_lengths, 0)
    starts_with_completion = (first_kept >= prompt_lengths) & (stop > first)
    return first + starts_with_completion, stop


def check_tokenized_dataset(
    dataset: Dataset, split: str, max_length: int | None, truncation_mode: str, suffix: str = "_input_ids"
) -> None:
    """Raise `ValueError` naming the first row of a tokenized dataset whose completion truncation leaves unscored.

    Args:
        dataset: a dataset tokenized by `DPOTrainer`: token ids in `prompt{suffix}`, `chosen{suffix}` and
            `rejected{suffix}` (TRL 0.28 names them `*_input_ids`, TRL 1.x `*_ids`).
        split: the name of the dataset in messages.
        max_length: `DPOConfig.max_length`.
        truncation_mode: `DPOConfig.truncation_mode`.
    """
    table = dataset.with_format("arrow")[:]
    prompt_lengths = pc.list_value_length(table[f"prompt{suffix}"]).to_numpy()
    for column in ("chosen", "rejected"):
        completion_lengths = pc.list_value_length(table[f"{column}{suffix}"]).to_numpy()
        first, stop = scored_completion_spans(prompt_lengths, completion_lengths, max_length, truncation_mode)
        empty = np.flatnonzero(stop <= first)
        if empty.size:
            row = int(empty[0])
            raise ValueError(
                f"Row {row} of the {split} dataset has no `{column}` token left to score after truncation to "
                f"max_length={max_length} (truncation_mode={truncation_mode!r}; the prompt has "
                f"{prompt_lengths[row]} tokens, the completion {completion_lengths[row]}); {empty.size} row(s) in "
                "all. Raise `max_length`, lower `max_prompt_length`, or drop those rows."
            )
