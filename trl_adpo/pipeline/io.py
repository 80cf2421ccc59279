"""Datasets in and out: Hub names, local dataset directories and data files, and JSON Lines written row by row.

A local data file is checked before `datasets` reads it, so that an empty file or a malformed JSON line is reported
with the file and the line number instead of a parser's traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from datasets import DatasetDict, load_dataset

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def read_jsonl(path: str | Path, *, partial_last_line: bool = False) -> list[dict]:
    """The rows of a JSON Lines file; blank lines are skipped.

    Args:
        path: the file.
        partial_last_line: drop a last line that does not parse (a run killed while writing it) instead of raising.

    Raises:
        ValueError: naming the file and the line of a line that is not a JSON object.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if partial_last_line and number == len(lines):
                break
            raise ValueError(
                f"{path}, line {number}: not valid JSON ({error.msg} at column {error.colno}): {line[:80]!r}. Each "
                "line of a .jsonl file must be one JSON object; fix or remove that line."
            ) from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: a JSON {type(row).__name__}, not an object with named columns.")
        rows.append(row)
    return rows


def write_jsonl(rows: Iterable[dict], path: str | Path, *, append: bool = False) -> None:
    """Write `rows` as JSON Lines, one object per line."""
    with Path(path).open("a" if append else "w", encoding="utf-8") as file:
        file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def check_data_file(path: Path, option: str) -> None:
    """Raise naming `option` and the file if it is missing or empty, or (JSON Lines) has a malformed line."""
    if not path.is_file():
        raise FileNotFoundError(f"{option}: the file {str(path)!r} does not exist (resolved to {path.resolve()}).")
    if path.stat().st_size == 0 or (path.suffix.lower() == ".jsonl" and not read_jsonl(path)):
        raise ValueError(f"{option}: the file {str(path)!r} is empty: it holds no rows to train or evaluate on.")


def is_data_file(name: str) -> bool:
    """Whether `name` is a local data file (by its extension), which `load_data` reads as a single split."""
    return Path(name).suffix.lower() in FILE_FORMATS


def load_data(name: str, config: str | None, option: str) -> DatasetDict:
    """Load a Hub dataset, a local dataset directory or a local data file, naming `option` in errors."""
    path = Path(name)
    file_format = FILE_FORMATS.get(path.suffix.lower())
    if file_format is not None:
        check_data_file(path, option)
        return load_dataset(file_format, data_files=str(path))
    try:
        return load_dataset(name, config)
    except Exception as error:
        raise ValueError(
            f"{option}: could not load {name!r} as a local dataset directory or a Hub dataset ({error}). Give a "
            f"Hub dataset name, a directory, or a file ending in {', '.join(FILE_FORMATS)}."
        ) from error
