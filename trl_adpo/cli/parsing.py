"""Options from a YAML file and the command line, as TRL's scripts take them (`TrlParser`), with clear errors."""

from __future__ import annotations

import argparse
import difflib
import re
from dataclasses import fields
from pathlib import Path

import yaml
from trl import TrlParser


def plain_help(docstring: str) -> str:
    """A module docstring for `--help`: the Markdown code fences left out."""
    return "\n".join(line for line in docstring.strip().splitlines() if not line.startswith("```"))


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


class ConfigParser(TrlParser):
    """`TrlParser` over `dataclass_types` for the command `prog`, with command-specific `defaults`.

    A YAML file given with `--config` is checked first: a missing file, or a key that is no option of any of the
    dataclasses, is reported with the file, the key and the closest option. The file overrides `defaults`, and
    command-line flags override the file.
    """

    def __init__(self, dataclass_types: tuple[type, ...], prog: str, **defaults):
        super().__init__(dataclass_types, prog=prog, usage=f"{prog} [--config FILE.yaml] [--option value ...]")
        self.dataclass_types_ = dataclass_types
        self.set_defaults(**defaults)
        for action in self._actions:  # some TRL help texts hold a bare '%', which breaks argparse's --help
            if action.help:
                action.help = re.sub(r"%(?![%(])", "%%", action.help)
                if isinstance(action.default, str) and action.default and not action.default.isprintable():
                    action.help += " (default: %(default)r)"  # a newline shows as '\n', not as a blank

    def group_options(
        self, groups: list[tuple[str, list[str]]], rest: str, shown: set[str] | None = None, full_help: str = ""
    ) -> None:
        """Show the options in `--help` under headings, in this order: each group's named options, then every other
        option under `rest` (argparse lists them in one block otherwise). With `shown`, `--help` lists the first group
        whole and, of the others, only the options in `shown`, and ends with `full_help` (how to list them all)."""
        optionals = self._optionals._group_actions
        hidden = 0
        for index, (title, names) in enumerate([*groups, (rest, None)]):
            group = self.add_argument_group(title)
            moved = [a for a in optionals if a.dest != "help" and (names is None or a.dest in names)]
            group._group_actions.extend(moved)
            optionals[:] = [a for a in optionals if a not in moved]
            if shown is not None and index > 0:
                for action in (a for a in moved if a.dest not in shown):
                    action.help, hidden = argparse.SUPPRESS, hidden + 1
        if shown is not None:
            self.epilog = f"{hidden} more options, of TRL and transformers, are not listed here: {full_help}"

    def check_config_keys(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"--config: the file {str(path)!r} does not exist.")
        config = load_yaml(path) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{path}: a config file holds `option: value` lines, not a {type(config).__name__}.")
        options = {f.name: f for dataclass_type in self.dataclass_types_ for f in fields(dataclass_type)}
        known = set(options) | {"env"}
        names = ", ".join(dataclass_type.__name__ for dataclass_type in self.dataclass_types_)
        for key, value in config.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"{path}: unknown key {key!r}: it is no option of {names}.{hint} `{self.prog} --help` lists them."
                )
            if isinstance(value, bool) and key in options and "bool" not in str(options[key].type):
                raise ValueError(
                    f"{path}: {key} is read by YAML as the boolean {str(value).lower()} (an unquoted no, yes, off "
                    f'or on is one), but {key} takes text: quote the value, e.g. {key}: "no".'
                )

    def parse(self, argv: list[str]) -> tuple:
        """The dataclasses, from `--config FILE` or `--config=FILE` (YAML) and command-line flags."""
        argv = [part for arg in argv for part in (arg.split("=", 1) if arg.startswith("--config=") else [arg])]
        if "--config" in argv:
            position = argv.index("--config") + 1
            if position == len(argv) or argv[position].startswith("--"):
                raise ValueError("--config needs a file: --config run.yaml")
            self.check_config_keys(Path(argv[position]))
        return self.parse_args_and_config(args=argv)
