"""Writing what a user keeps: files replaced atomically, one writer per output, no output over an input, no secret.

A result, a sample file or a report that a command rewrites goes to a temporary file beside it first, renamed over
the old one once written whole: a kill or a full disk leaves the old file or the new one, never part of one.
"""

from __future__ import annotations

import os
from pathlib import Path

PLOT_FILE = "training_dynamics.png"
"""The training-dynamics plot a run writes into its output_dir (`trl_adpo.report.plots`); its model card shows it."""

SECRET_OPTIONS = ("hub_token",)
"""Options that hold credentials: masked or left out wherever a config is written (`ADPOConfig.__getstate__`, a
run's training_config.yaml, an iterate run's config/ and progress.json)."""


def cache_dir() -> Path:
    """Where the package keeps what it can rebuild (the converted SmolLM2, the subcommands' option indexes):
    `$TRL_ADPO_CACHE`, by default `~/.cache/trl_adpo`."""
    return Path(os.environ.get("TRL_ADPO_CACHE", Path.home() / ".cache" / "trl_adpo"))


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Replace `path` with `data` (text as UTF-8; its directory made if need be), through a temporary file beside it
    that is renamed over it once written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file or directory once links are resolved (also when they do not exist yet)."""
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def refuse_output_among_inputs(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Refuse, naming both options, an output that is one of the command's inputs (or another of its outputs), or a
    directory output that holds an input directory (a model, a checkpoint): writing it would destroy what the command
    reads. A data file inside an output directory is left alone by every command, and allowed.

    Args:
        outputs: option name -> the path the command writes (None: not written).
        inputs: option name -> a path the command reads (None or a Hub name that is no local path: skipped).
    """
    written = [(name, Path(path)) for name, path in outputs.items() if path]
    read = [(name, Path(path)) for name, path in inputs.items() if path and Path(path).expanduser().exists()]
    for index, (name, output) in enumerate(written):
        for other, path in [*read, *written[index + 1 :]]:
            target = output.expanduser().resolve()
            source = path.expanduser().resolve()
            if target == source or (target in source.parents and source.is_dir()):
                raise ValueError(
                    f"{name} is {str(output)!r}, which is (or holds) {other} {str(path)!r}: writing it would "
                    f"destroy what the command reads. Give {name} a path of its own."
                )


class OutputLock:
    """A lock beside an output (`OUTPUT.lock`), held while one process writes it, so that a second process on the same
    output is refused instead of mixing its rows in. The operating system releases it when the process ends, however
    it ends: a killed run leaves no lock that blocks the next one.

    Use as a context manager; the lock file is removed on leaving.
    """

    def __init__(self, output: str | Path, option: str):
        self.output, self.option = Path(output), option
        self.path = self.output.with_name(self.output.name + ".lock")
        self._file = None

    def __enter__(self) -> OutputLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise ValueError(
                f"{self.option}: {str(self.output)!r} is being written by {holder} (its lock is {self.path.name}). "
                "Two runs into one output would mix their results: wait for it to end, stop it, or give another "
                f"{self.option}."
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"process {os.getpid()}")
        self._file.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)
        self._file.close()
