"""`trl-adpo SUBCOMMAND ...`: the project's scripts as one installed command.

Each subcommand is a module of `trl_adpo.cli` with a `main(argv)`; it is imported only when it runs, so that
`trl-adpo --help` answers at once, and once a subcommand has run, its help and a mistyped option are answered from its
option index (`trl_adpo.cli.options`) without importing it. Before it runs, the noise a user cannot act on is
filtered: the bitsandbytes line about an optional `kernels` package, deprecation warnings raised inside TRL,
transformers and their stack, and torch's note that pinned memory needs an accelerator. The project's own warnings
always show. Bad input (a `ValueError` or `FileNotFoundError`) ends the command with its message and exit status 1,
without a traceback unless `TRL_ADPO_TRACEBACK=1` is set; so does a training run stopped by a non-finite loss
(`FloatingPointError`), and a write that finds the disk full. Ctrl-C ends a command with exit status 130 and one line
saying what it left and how to go on (each subcommand module's `interrupted(argv)`).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import importlib
import io
import os
import sys

from trl_adpo.cli.options import answer_quickly, help_request, remember
from trl_adpo.noise import first_line, quiet_third_party_noise

SUBCOMMANDS = {
    "train": ("trl_adpo.cli.train", "Train a model with ADPO from a YAML config and command-line options."),
    "sample": (
        "trl_adpo.cli.sample",
        "Sample and verify n completions per problem (resumable), for preference pairs.",
    ),
    "pairs": (
        "trl_adpo.cli.pairs",
        "Build preference pairs (and critical-token training sets) from verified samples.",
    ),
    "train-critical": (
        "trl_adpo.cli.train_critical",
        "Train the positive and negative critical-token models of cDPO/cADPO on verified samples.",
    ),
    "evaluate": ("trl_adpo.cli.evaluate", "Few-shot accuracy of a model on verified problems, with its 95% interval."),
    "iterate": (
        "trl_adpo.cli.iterate",
        "Iterative on-policy rounds: sample, pair, train (ADPO + NLL), evaluate; resumable.",
    ),
    "plot": (
        "trl_adpo.cli.plot",
        "Plot a run's training dynamics (chosen/rejected log-probs...), or two runs overlaid.",
    ),
    "inspect": (
        "trl_adpo.cli.inspect",
        "Show how a granularity cuts a pair into segments and, with models, the rewards.",
    ),
    "env": ("trl_adpo.cli.env", "Print the versions that matter for a bug report (torch, TRL and its glue, CUDA...)."),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [
        "usage: trl-adpo SUBCOMMAND [options]",
        "",
        "Autoregressive DPO (arXiv 2602.09533) for TRL.",
        "",
        "subcommands:",
    ]
    lines += [f"  {name:<{width}}  {description}" for name, (_, description) in SUBCOMMANDS.items()]
    lines += ["", "`trl-adpo SUBCOMMAND --help` lists a subcommand's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from trl_adpo import __version__

        print(f"trl-adpo {__version__}")
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        print(f"trl-adpo: unknown subcommand {name!r}.{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    quiet_third_party_noise()
    module = None
    try:
        answered = answer_quickly(name, argv[1:])  # help and bad options from the index, without importing TRL
        if answered is not None:
            return answered
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return run(module, name, argv[1:])
    except KeyboardInterrupt:  # Ctrl-C: where things stand and how to go on, in one line
        hint = getattr(module, "interrupted", lambda argv: "")(argv[1:])
        print(f"\ntrl-adpo {name}: interrupted. {hint}".rstrip(), file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FloatingPointError) as error:  # bad input, a diverged run: what and where
        if os.environ.get("TRL_ADPO_TRACEBACK"):
            raise
        print(f"trl-adpo {name}: error: {error}\n(TRL_ADPO_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 1
    except Exception as error:  # a full disk, a model the Hub does not have or cannot be reached for: its first line
        if os.environ.get("TRL_ADPO_TRACEBACK") or not (isinstance(error, OSError) or disk_full(error)):
            raise
        line = first_line(error)
        if disk_full(error):
            line = (
                f"the disk is full: a file could not be written ({line[:200]}). Free some space and run "
                "the command again; files written whole before are kept (a run resumes from its last "
                "complete checkpoint with --resume_from_checkpoint true)."
            )
        print(f"trl-adpo {name}: error: {line}\n(TRL_ADPO_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 1


def run(module, name: str, argv: list[str]) -> int:
    """Run the subcommand `module`; a bare help request's text is kept in its index (`trl_adpo.cli.options`)."""
    key = help_request(argv)
    if key is None:
        return module.main(argv) or 0
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            module.main(argv)
        except SystemExit as done:  # argparse ends a help request so
            if done.code not in (0, None):
                raise
    print(text.getvalue(), end="")
    remember(name, help={key: text.getvalue()})
    return 0


def disk_full(error: BaseException) -> bool:
    """Whether `error` says a write failed for want of space: an OSError (ENOSPC), torch's writer failing, or the
    safetensors writer's storage error."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error)
    return any(
        sign in text
        for sign in ("No space left on device", "StorageFull", "os error 28", "PytorchStreamWriter failed writing")
    )


if __name__ == "__main__":
    sys.exit(main())
