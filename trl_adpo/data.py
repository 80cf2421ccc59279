"""Checks on preference datasets, run before the first training step so that a bad row fails with its number.

ADPO scores every completion token on its own or in short segments, so a completion with no token to score is an
input error (docs/objective.md), never a silent zero: an empty completion in the raw data, or one that truncation to
`max_length` empties.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset
from trl.data_utils import maybe_extract_prompt

from .noise import warn

REQUIRED_COLUMNS = ("chosen", "rejected")


class BadRowError(ValueError):
    """A row that cannot be trained on: `row` counts from 0 in the dataset named `split`; `problem` says what is
    wrong. A caller that knows the file (`trl-adpo train`) names the row by its line (`located`)."""

    def __init__(self, split: str, row: int, problem: str):
        self.split, self.row, self.problem = split, row, problem
        super().__init__(f"Row {row} of the {split} dataset{problem}")

    def located(self, where: str) -> ValueError:
        """The same error, the row named by `where` (e.g. "train.jsonl, line 3")."""
        return ValueError(f"{where}{self.problem}")


def is_conversational_value(value) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value)


def _text(value, column: str, row: int, split: str) -> str:
    """The text of a standard (str) or conversational (list of messages) prompt or completion.

    Raises:
        BadRowError: naming the row and the column when the value is neither.
    """
    if isinstance(value, str):
        return value
    if is_conversational_value(value):
        return "".join(str(message["content"] or "") for message in value)
    shown = repr(value) if len(repr(value)) < 80 else repr(value)[:77] + "..."
    name = type(value).__name__
    kind = (
        "a list whose items are not messages" if isinstance(value, list) else f"a{'n' * (name[0] in 'aeiou')} {name}"
    )
    raise BadRowError(
        split,
        row,
        f": `{column}` is {kind} ({shown}). A prompt or completion must be text, or a list of messages "
        "such as [{'role': 'assistant', 'content': '...'}]: fix that row.",
    )


def check_preference_dataset(dataset: Dataset, split: str) -> None:
    """Raise `ValueError` if `dataset` lacks the preference columns, or has a row whose prompt or completion is
    neither text nor messages, or whose completion is empty, or that is conversational where the first row is plain
    text (or the other way round), or if every row's chosen and rejected completions are the same; warn with the
    count when some are (they give no preference: their loss is log 2 per segment, whatever the model).

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
    conversational, identical = None, []
    for row, example in enumerate(dataset.select_columns(columns)):
        for column in columns:
            _text(example[column], column, row, split)
            kind = is_conversational_value(example[column])
            if conversational is None:
                conversational = kind
            elif kind != conversational:
                formats = ("plain text", "conversational (lists of messages)")
                raise BadRowError(
                    split,
                    row,
                    f": `{column}` is {formats[kind]} but the dataset's first row is {formats[conversational]}. "
                    "TRL applies the chat template to a whole dataset or to none of it: make every row one format.",
                )
        example = maybe_extract_prompt(example)
        for column in REQUIRED_COLUMNS:
            if not _text(example[column], column, row, split).strip():
                raise BadRowError(
                    split,
                    row,
                    f" has an empty `{column}` completion. ADPO needs at least one completion token in each "
                    "response: fix or drop that row.",
                )
        if example["chosen"] == example["rejected"]:
            identical.append(row)
    if identical and len(identical) == len(dataset):
        raise ValueError(
            f"In every row of the {split} dataset the chosen and rejected completions are the same: there is no "
            "preference to learn. Check how the pairs were built (chosen and rejected swapped in or copied?)."
        )
    if identical:
        warn(
            f"{len(identical)} of the {len(dataset)} rows of the {split} dataset (row {identical[0]} first, counting "
            "from 0) have the same chosen and rejected completion: they teach nothing (their loss is log 2 per "
            "segment whatever the model). Drop them."
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
            raise BadRowError(
                split,
                row,
                f" has no `{column}` token left to score after truncation to max_length={max_length} "
                f"(truncation_mode={truncation_mode!r}; the prompt has {prompt_lengths[row]} tokens, the completion "
                f"{completion_lengths[row]}); {empty.size} row(s) in all. Raise `max_length`, lower "
                "`max_prompt_length`, or drop those rows.",
            )
