"""Datasets in and out: Hub names, local dataset directories and data files, and JSON Lines written row by row.

A local data file is checked before `datasets` reads it, so that an empty file, a malformed JSON line or JSON file, or
bytes that are not UTF-8 are reported with the file and the line number instead of a parser's traceback; rows are
named by their line in the file where there is one (`row_location`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from datasets import DatasetDict, load_dataset

from ..files import write_atomically
from ..noise import first_line

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def read_jsonl(path: str | Path, *, partial_last_line: bool = False) -> list[dict]:
    """The rows of a JSON Lines file; blank lines are skipped.

    Args:
        path: the file.
        partial_last_line: drop a last line that does not parse (a run killed while writing it) instead of raising.

    Raises:
        ValueError: naming the file and the line of a line that is not a JSON object.
    """
    lines = read_text(Path(path)).splitlines()
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


def read_text(path: Path) -> str:
    """The text of a UTF-8 file; `ValueError` naming the file and the line of the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{path}, line {line}: not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start}). Save the "
            "file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None


def row_location(name: str, row: int) -> str:
    """Where row `row` (from 0) of a dataset is, for messages: "FILE, line N" for a JSON Lines or CSV file (the Nth
    line holding it; CSV counts its header), else "NAME, row N"."""
    path = Path(name)
    if path.suffix.lower() == ".jsonl" and path.is_file():
        lines = [n for n, line in enumerate(read_text(path).splitlines(), start=1) if line.strip()]
        if row < len(lines):
            return f"{name}, line {lines[row]}"
    if path.suffix.lower() == ".csv" and path.is_file():
        return f"{name}, line {row + 2}"
    return f"{name}, row {row}"


def write_jsonl(rows: Iterable[dict], path: str | Path, *, append: bool = False) -> None:
    """Write `rows` as JSON Lines, one object per line: appended to `path`, or replacing it atomically."""
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    if not append:
        write_atomically(path, "".join(lines))
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("a", encoding="utf-8") as file:
        file.writelines(lines)


def check_json_file(path: Path, text: str) -> None:
    """Refuse a .json file that is neither one JSON document nor one JSON object per line, naming the line."""
    try:
        json.loads(text)
    except json.JSONDecodeError as document_error:
        try:
            read_jsonl(path)  # JSON Lines under a .json name, which `datasets` reads too
        except ValueError:
            raise ValueError(
                f"{path}, line {document_error.lineno}: not valid JSON ({document_error.msg} at column "
                f"{document_error.colno}). A .json file holds a list of rows, or one JSON object per line; fix it."
            ) from None


def check_data_file(path: Path, option: str) -> None:
    """Raise naming `option` and the file if it is missing or empty, is text that is not UTF-8, or (JSON) does not
    parse, naming the line."""
    if not path.is_file():
        raise FileNotFoundError(f"{option}: the file {str(path)!r} does not exist (resolved to {path.resolve()}).")
    suffix = path.suffix.lower()
    text = read_text(path) if suffix in (".jsonl", ".json", ".csv") else None
    if path.stat().st_size == 0 or (suffix == ".jsonl" and not read_jsonl(path)):
        raise ValueError(f"{option}: the file {str(path)!r} is empty: it holds no rows to train or evaluate on.")
    if suffix == ".json":
        check_json_file(path, text)


def check_model_source(name: str | None, option: str) -> None:
    """Refuse, naming `option`, a model or tokenizer path that looks local but does not exist, before anything loads
    (transformers would take it for a Hub name and fail on reaching the Hub). Hub names pass."""
    if name is None or Path(name).expanduser().exists():
        return
    first = Path(name).parts[0] if Path(name).parts else ""
    local = name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(first).is_dir() or "\\" in name
    if local:
        raise FileNotFoundError(
            f"{option}: {name!r} does not exist (resolved to {Path(name).expanduser().resolve()}). Give a local model "
            "directory, or a Hub model name such as 'Qwen/Qwen2.5-0.5B-Instruct'."
        )
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        cached = any(
            isinstance(try_to_load_from_cache(name, f), str)
            for f in ("config.json", "adapter_config.json", "tokenizer_config.json")
        )
        if not cached:
            raise FileNotFoundError(
                f"{option}: {name!r} is no local directory (resolved to {Path(name).resolve()}) and, with "
                "HF_HUB_OFFLINE set, no Hub model in the local cache either. Give a local model directory, or "
                "download "
                "the model once with the network on."
            )


@contextmanager
def readable_weights(name: str, option: str) -> Iterator[None]:
    """Name `option` and the model when its weights cannot be read: a file cut short (a save interrupted, a disk
    that filled up) makes safetensors or torch fail with a message about headers or zip archives."""
    from safetensors import SafetensorError

    try:
        yield
        return
    except (SafetensorError, EOFError) as error:
        damaged = error
    except (OSError, RuntimeError) as error:
        text = str(error)
        if not any(sign in text for sign in ("header", "deserializ", "zip archive", "unexpected EOF", "truncated")):
            raise
        damaged = error
    raise ValueError(
        f"{option}: the weights of {name!r} cannot be read ({type(damaged).__name__}: {first_line(damaged)[:160]}): "
        "the file is damaged or cut short, as a save that was interrupted or ran out of disk leaves it. Use a "
        "complete model, or one of the run's checkpoints."
    ) from None


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
