"""What a subcommand accepts, answered without importing the libraries that define it.

`trl-adpo train`'s options are the fields of TRL's and transformers' dataclasses, and importing those takes some 10 s
on a small CPU machine. So a subcommand keeps an index of its options on disk once it has built its parser: its option
strings, the fields that take a boolean, and its help texts. Before it imports a subcommand, `trl_adpo.cli.main`
answers from the index a bare `--help` (or `--help-all`), an option that no option of the subcommand starts with, and
a `--config` file that is missing, is no YAML, or holds a key that is no option; everything else takes the full path.

The index lives in `TRL_ADPO_CACHE/cli/` (default `~/.cache/trl_adpo/cli/`), one JSON file per subcommand under a
key that changes with the package's sources, Python and the versions of the libraries that define options, so it is
never out of date. It holds no value a user gave: a help text is kept only from a bare help request, whose defaults
are the subcommand's own. A missing, unreadable or unwritable index only means the full path.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import json
import shutil
import sys
from dataclasses import fields
from functools import cache
from pathlib import Path

import yaml

from trl_adpo.files import cache_dir, write_atomically

HELP_FLAGS = ("-h", "--help", "--help-all")
LIBRARIES = ("trl", "transformers", "peft", "accelerate", "torch")
"""The libraries whose versions decide the options (the fields of their dataclasses, their help texts)."""
NOT_OPTIONS = ("--config", "--help-all")
PACKAGE = Path(__file__).resolve().parents[1]
"""Flags a `ConfigParser` command takes beside its parser's options."""


@cache
def index_key(package: Path = PACKAGE) -> str:
    """A hash of what decides the options: the sources of `package`, Python's version and the libraries' versions."""
    digest = hashlib.sha256(sys.version.encode())
    for library in LIBRARIES:
        try:
            digest.update(f"{library} {importlib.metadata.version(library)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{library} -".encode())
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + source.read_bytes())
    return digest.hexdigest()[:16]


def index_file(command: str) -> Path:
    return cache_dir() / "cli" / f"{command}-{index_key()}.json"


def read_index(command: str) -> dict:
    """The index of `command` (`options`, `fields`, `takes_bool`, `dataclasses`, `help`); {} if there is none."""
    try:
        return json.loads(index_file(command).read_text())
    except (OSError, ValueError):
        return {}


def remember(command: str, **entries) -> None:
    """Add `entries` to the index of `command` (a `help` entry merges into the texts kept); a failed write is
    ignored, as the index only saves time."""
    index = read_index(command)
    if "help" in entries:
        entries["help"] = {**index.get("help", {}), **entries["help"]}
    if {key: index.get(key) for key in entries} == entries:
        return
    try:
        write_atomically(index_file(command), json.dumps({**index, **entries}, indent=1))
    except OSError:
        pass


def help_request(argv: list[str]) -> str | None:
    """The help text's key if `argv` is a bare help request (`--help`, `-h`, `--help-all` alone; terminal width
    included, as argparse wraps to it); None otherwise."""
    if len(argv) != 1 or argv[0] not in HELP_FLAGS:
        return None
    flag = "--help" if argv[0] == "-h" else argv[0]
    return f"{flag} {shutil.get_terminal_size().columns}"


def answer_quickly(command: str, argv: list[str]) -> int | None:
    """Answer `argv` from the index of `command` if the index decides it: print a bare help request's text (0), or
    raise `ValueError`/`FileNotFoundError` for an unknown option or a bad `--config` file. None: the index does not
    decide it, take the full path."""
    index = read_index(command)
    key = help_request(argv)
    if key is not None:
        if key not in index.get("help", {}):
            return None
        print(index["help"][key], end="")
        return 0
    if "options" not in index or any(arg in HELP_FLAGS for arg in argv):
        return None
    check_arguments(argv, index, f"trl-adpo {command}")
    return None


def check_arguments(argv: list[str], index: dict, prog: str) -> None:
    """Refuse an unknown option of `argv` or a bad `--config` file, by the index of the command `prog`."""
    check_options(argv, index, prog)
    config = config_file(argv)
    if config is not None:
        check_config_file(config, index, prog)


def parser_index(parser) -> dict:
    """A `ConfigParser`'s index entries: its option strings, the fields of its dataclasses and which take booleans."""
    every = [f for dataclass_type in parser.dataclass_types_ for f in fields(dataclass_type)]
    return dict(
        options=sorted({option for action in parser._actions for option in action.option_strings} | set(NOT_OPTIONS)),
        fields=sorted({f.name for f in every}),
        takes_bool=sorted({f.name for f in every if "bool" in str(f.type)}),
        dataclasses=[dataclass_type.__name__ for dataclass_type in parser.dataclass_types_],
        allow_abbrev=parser.allow_abbrev,
    )


def check_options(argv: list[str], index: dict, prog: str) -> None:
    """Refuse the first `--flag` of `argv` that is no option of the index, naming the closest one (with argparse's
    abbreviations, an unambiguous start of an option is one)."""
    known = index["options"]
    for arg in argv:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        if flag in known or (index["allow_abbrev"] and any(option.startswith(flag) for option in known)):
            continue
        close = difflib.get_close_matches(flag, known, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ValueError(
            f"unknown option {flag}: it is no option of {', '.join(index['dataclasses'])}.{hint} `{prog} --help` "
            "lists them."
        )


def config_file(argv: list[str]) -> Path | None:
    """The file of `--config FILE` or `--config=FILE` in `argv`, if any."""
    argv = split_config_flag(argv)
    if "--config" not in argv:
        return None
    position = argv.index("--config") + 1
    if position == len(argv) or argv[position].startswith("--"):
        raise ValueError("--config needs a file: --config run.yaml")
    return Path(argv[position])


def split_config_flag(argv: list[str]) -> list[str]:
    """`argv` with `--config=FILE` written as `--config FILE`, as TrlParser reads it."""
    return [part for arg in argv for part in (arg.split("=", 1) if arg.startswith("--config=") else [arg])]


def check_config_file(path: Path, index: dict, prog: str) -> None:
    """Refuse a config file that is missing, no YAML mapping, or holds a key that is no option (naming the closest)
    or a YAML boolean for an option that takes text."""
    if not path.is_file():
        raise FileNotFoundError(f"--config: the file {str(path)!r} does not exist.")
    config = load_yaml(path) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config file holds `option: value` lines, not a {type(config).__name__}.")
    known = {*index["fields"], "env"}
    for key, value in config.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{path}: unknown key {key!r}: it is no option of {', '.join(index['dataclasses'])}.{hint} "
                f"`{prog} --help` lists them."
            )
        if isinstance(value, bool) and key in index["fields"] and key not in index["takes_bool"]:
            raise ValueError(
                f"{path}: {key} is read by YAML as the boolean {str(value).lower()} (an unquoted no, yes, off "
                f'or on is one), but {key} takes text: quote the value, e.g. {key}: "no".'
            )


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key {key!r} is given twice, on line {seen[key] + 1} and on line "
                    f"{key_node.start_mark.line + 1}: keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml(path: Path):
    """The YAML document of `path`; `ValueError` naming the file and the line of a syntax error or a repeated key
    (with the line an unclosed bracket or quote opened on)."""
    try:
        return yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context, opened = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and opened is not None and (mark is None or opened.line != mark.line):
            problem += f"; {context} on line {opened.line + 1}"
        raise ValueError(f"{path}{line}: not valid YAML ({problem}). Fix that line.") from None
