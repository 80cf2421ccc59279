"""Verified samples: rows of a prompt, a completion and whether the completion is correct.

`trl-adpo sample` writes them (one JSON line per sample); `trl-adpo pairs` turns them into preference pairs and into
the positive and negative training sets of the critical-token models, which `trl-adpo train-critical` trains.
"""

from __future__ import annotations

from datasets import Dataset

from .io import row_location

SAMPLE_COLUMNS = ("prompt", "completion", "correct")


def split_by_correctness(dataset: Dataset, name: str) -> tuple[Dataset, Dataset]:
    """The correct and the incorrect (prompt, completion) rows of verified samples or of a preference dataset.

    Args:
        dataset: verified samples (`prompt`, `completion`, boolean `correct`), or preference pairs (`prompt`,
            `chosen`, `rejected`), whose chosen completions count as correct and rejected ones as incorrect.
        name: the dataset's name in messages (its file, say).

    Raises:
        ValueError: naming `name` (and the row) for missing columns, a `correct` value that is no boolean, or no
            correct or no incorrect completion at all.
    """
    columns = set(dataset.column_names)
    if "correct" in columns:
        missing = [column for column in SAMPLE_COLUMNS if column not in columns]
        if missing:
            raise ValueError(f"{name}: verified samples need the columns {list(SAMPLE_COLUMNS)}; {missing} missing.")
        flags = dataset["correct"]
        bad = next((row for row, flag in enumerate(flags) if not isinstance(flag, bool)), None)
        if bad is not None:
            raise ValueError(
                f"{row_location(name, bad)}: `correct` is {flags[bad]!r}; it must be true or false (JSON booleans)."
            )
        pairs = dataset.select_columns(["prompt", "completion"])
        correct = pairs.select([row for row, flag in enumerate(flags) if flag])
        incorrect = pairs.select([row for row, flag in enumerate(flags) if not flag])
    elif {"prompt", "chosen", "rejected"} <= columns:
        correct = dataset.select_columns(["prompt", "chosen"]).rename_column("chosen", "completion")
        incorrect = dataset.select_columns(["prompt", "rejected"]).rename_column("rejected", "completion")
    else:
        raise ValueError(
            f"{name}: has the columns {sorted(columns)}, but the critical-token models train on verified samples "
            "(`prompt`, `completion`, `correct`, as `trl-adpo sample` writes them) or on preference pairs "
            "(`prompt`, `chosen`, `rejected`)."
        )
    for kind, rows in (("correct", correct), ("incorrect", incorrect)):
        if len(rows) == 0:
            raise ValueError(
                f"{name}: no {kind} completion among its {len(dataset)} rows: the "
                f"{'positive' if kind == 'correct' else 'negative'} model would have nothing to learn from. Sample "
                "more completions per problem (or at a higher temperature) until both kinds appear."
            )
    return correct, incorrect
