"""Options from a YAML file and the command line, as TRL's scripts take them (`TrlParser`), with clear errors."""

from __future__ import annotations

import argparse
import re

from trl import TrlParser

from trl_adpo.cli.options import check_arguments, parser_index, remember, split_config_flag


def plain_help(docstring: str) -> str:
    """A module docstring for `--help`: the Markdown code fences left out."""
    return "\n".join(line for line in docstring.strip().splitlines() if not line.startswith("```"))


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

    def parse(self, argv: list[str]) -> tuple:
        """The dataclasses, from `--config FILE` or `--config=FILE` (YAML) and command-line flags; an unknown option or
        config key is refused first (`trl_adpo.cli.options`, which keeps this parser's index for the next time)."""
        index = parser_index(self)
        remember(self.prog.removeprefix("trl-adpo "), **index)
        check_arguments(argv, index, self.prog)
        return self.parse_args_and_config(args=split_config_flag(argv))
