"""`trl-adpo iterate`: iterative on-policy rounds of sample -> pairs -> train -> evaluate, the recipe of Iterative
RPO (Pang et al. 2024, arXiv 2404.19733) with ADPO (+ NLL) as the preference loss.

```bash
trl-adpo iterate --config configs/walkthrough/iterate.yaml
trl-adpo iterate --config configs/walkthrough/iterate.yaml --rounds 3     # one more round after a finished run
```

Round r samples from the round r - 1 policy (`trl-adpo sample`), builds verified pairs (`trl-adpo pairs`), trains
from that policy with it as the reference (`trl-adpo train`: a full model is loaded again as the reference; with LoRA
the reference is the base with the adapter disabled, and the adapter is then merged into the base, so that the next
round starts from, and is referenced to, exactly this round's policy), and evaluates the result (`trl-adpo
evaluate`). Round 0 evaluates the start.

The YAML file names the start (`model_name_or_path`), the `output_dir`, the number of `rounds`, and one section per
stage holding that command's options, as its own `--config` file would: `sample` (the problems, the verifier or
task, n, temperature...), `pairs`, `train` (ADPO's and TRL's options) and `evaluate` (the held-out problems). The
paths that change with the round (models, samples, pairs, outputs) are set by the command.

`start_samples` (optional) names verified samples of the start model that `trl-adpo sample` wrote with the `sample`
section's options, used as round 1's samples instead of sampling again (refused, naming the option, if they were
sampled otherwise).

A killed run, started again with the same config, goes on from the stage it stopped in: finished stages are never
redone, a half-finished one is done again (sampling resumes its own file). It ends with a table per round (accuracy
with its 95% interval, pairs built, the final reward accuracy of training) and `accuracy_per_round.png`.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from trl_adpo.cli.options import load_yaml
from trl_adpo.cli.parsing import plain_help
from trl_adpo.critical_models import adapter_base
from trl_adpo.files import SECRET_OPTIONS, OutputLock, write_atomically
from trl_adpo.pipeline.rounds import (
    PLOT_FILE,
    Progress,
    evaluation_result,
    merge_adapter,
    plot_rounds,
    round_rows,
    round_table,
)

STAGES = ("sample", "pairs", "train", "evaluate")
SET_BY_ITERATE = {
    "sample": ("model_name_or_path", "output"),
    "pairs": ("samples", "output"),
    "train": ("model_name_or_path", "dataset_name", "output_dir", "overwrite_output_dir", "resume_from_checkpoint"),
    "evaluate": ("model_name_or_path", "output"),
}
"""The options each stage gets from the round it runs in, which the config must leave out."""
TOP_LEVEL = ("model_name_or_path", "output_dir", "rounds", "evaluate_start", "start_samples", *STAGES)


def stage_command(stage: str):
    """The `trl-adpo` command module a stage runs."""
    from trl_adpo.cli import evaluate, pairs, sample, train

    return {"sample": sample, "pairs": pairs, "train": train, "evaluate": evaluate}[stage]


def load_config(path: Path, rounds: int | None) -> dict:
    """The iterate config of `path`, with `rounds` overridden when given, checked (`check_config`)."""
    if not path.is_file():
        raise FileNotFoundError(f"--config: the file {str(path)!r} does not exist.")
    config = load_yaml(path) or {}
    if not isinstance(config, dict):
        raise ValueError(
            f"{path}: an iterate config holds `key: value` lines and sections, not a {type(config).__name__}."
        )
    if rounds is not None:
        config["rounds"] = rounds
    return check_config(config, str(path))


def check_config(config: dict, path: str) -> dict:
    """`config` with its defaults, checked: top-level keys, required values, and in each stage section, no option the
    round sets. Raises `ValueError` naming `path` and the key."""
    unknown = [key for key in config if key not in TOP_LEVEL]
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; an iterate config has the keys {list(TOP_LEVEL)}.")
    for key in ("model_name_or_path", "output_dir", "rounds", "train", "sample", "evaluate"):
        if config.get(key) is None:
            raise ValueError(
                f"{path}: `{key}` is not set; an iterate config needs {key} (see `trl-adpo iterate --help`)."
            )
    if not isinstance(config["rounds"], int) or config["rounds"] < 1:
        raise ValueError(f"{path}: rounds must be an integer >= 1, got {config['rounds']!r}.")
    config.setdefault("evaluate_start", True)
    for stage in STAGES:
        section = config.setdefault(stage, {}) or {}
        if not isinstance(section, dict):
            raise ValueError(f"{path}: `{stage}` must be a section of {stage_command(stage).__name__} options.")
        config[stage] = section
        taken = [key for key in SET_BY_ITERATE[stage] if key in section]
        if taken:
            raise ValueError(
                f"{path}, section {stage}: {taken[0]!r} is set by iterate for each round; leave it out "
                "(the start is the top-level model_name_or_path, the outputs go under output_dir)."
            )
    return config


def without_secrets(section: dict) -> dict:
    """A stage's options without the credentials (`SECRET_OPTIONS`), which no written file may hold."""
    return {key: value for key, value in section.items() if key not in SECRET_OPTIONS}


def masked(config: dict) -> dict:
    """`config` with each stage's credentials replaced by a placeholder, as progress.json records it."""
    return {
        key: (
            {k: f"<{k.upper()}>" if k in SECRET_OPTIONS and v else v for k, v in value.items()}
            if key in STAGES
            else value
        )
        for key, value in config.items()
    }


class Run:
    """One iterate run: its directory, config and progress, and the stages it runs.

    Every stage's options are checked before the run claims its `output_dir`, so that a config refused for a bad
    option leaves nothing behind; the run then holds a lock beside `output_dir` (`OUTPUT_DIR.lock`) while it works.
    Credentials (`hub_token`) are passed to the stages on their command lines, never written to the run's files.
    """

    def __init__(self, config: dict, config_name: str):
        self.config = config
        self.output_dir = Path(config["output_dir"])
        with tempfile.TemporaryDirectory() as scratch:  # each stage's options, as its command reads them
            for stage in STAGES:
                try:
                    self._parse(stage, self._paths(stage, 1, str(config["model_name_or_path"])), Path(scratch))
                except (ValueError, FileNotFoundError) as error:
                    raise ValueError(f"{config_name}, section {stage}: {error}") from None
        self.lock = OutputLock(self.output_dir, "output_dir").__enter__()
        try:
            self.progress = Progress.open(self.output_dir, masked(config), config_name)
        except BaseException:
            self.lock.__exit__()
            raise

    def _parse(self, stage: str, paths: list[str], config_dir: Path | None = None) -> tuple:
        """The parsed options of `stage`: its section (written to `config_dir`, by default the run's config/) and the
        round's `paths`."""
        config_dir = config_dir or self.output_dir / "config"
        config = config_dir / f"{stage}.yaml"
        section = self.config[stage]
        write_atomically(config, yaml.safe_dump(without_secrets(section), sort_keys=False))
        secrets = [part for key in SECRET_OPTIONS if section.get(key) for part in (f"--{key}", str(section[key]))]
        return stage_command(stage).make_parser().parse(["--config", str(config), *paths, *secrets])

    def close(self) -> None:
        self.lock.__exit__()

    def _round_dir(self, r: int) -> Path:
        return self.output_dir / f"round-{r}"

    def _paths(self, stage: str, r: int, model: str) -> list[str]:
        """The per-round options of a stage of round r, whose model (all stages but pairs) is `model`."""
        directory = self._round_dir(r)
        return {
            "sample": ["--model_name_or_path", model, "--output", str(directory / "samples.jsonl")],
            "pairs": ["--samples", str(directory / "samples.jsonl"), "--output", str(directory / "pairs.jsonl")],
            "train": [
                "--model_name_or_path",
                model,
                "--dataset_name",
                str(directory / "pairs.jsonl"),
                "--output_dir",
                str(directory / "train"),
            ],
            "evaluate": ["--model_name_or_path", model, "--output", str(directory / "evaluation.json")],
        }[stage]

    def policy(self, r: int) -> str:
        """The policy after round r (round 0: the start, merged into its base if it is a LoRA adapter)."""
        merged = self.progress.done.get(f"round-{r}/merge")
        if merged:
            return merged["policy"]
        return str(self.config["model_name_or_path"]) if r == 0 else str(self._round_dir(r) / "train")

    def merge(self, r: int, adapter: Path) -> None:
        """Merge round r's LoRA adapter into its base: the next round's start and reference."""
        if self._todo(f"round-{r}/merge"):
            self._round_dir(r).mkdir(parents=True, exist_ok=True)
            self.progress.finish(
                f"round-{r}/merge", {"policy": str(merge_adapter(adapter, self._round_dir(r) / "model"))}
            )

    def _todo(self, name: str) -> bool:
        """Whether stage `name` is still to do; prints its heading if so."""
        if name in self.progress.done:
            return False
        print(f"\n=== {name} ===", flush=True)
        return True

    def evaluate(self, r: int) -> None:
        if self._todo(f"round-{r}/evaluate"):
            self._round_dir(r).mkdir(parents=True, exist_ok=True)
            evaluation = stage_command("evaluate").run(
                *self._parse("evaluate", self._paths("evaluate", r, self.policy(r)))
            )
            self.progress.finish(f"round-{r}/evaluate", evaluation_result(evaluation.summary))

    def round(self, r: int) -> None:
        """Sample from the policy of round r - 1, pair, train from it (as the reference), merge a LoRA adapter, and
        evaluate; each stage that progress.json does not list as finished."""
        directory, start = self._round_dir(r), self.policy(r - 1)
        directory.mkdir(parents=True, exist_ok=True)
        if self._todo(f"round-{r}/sample"):
            if r == 1 and self.config.get("start_samples") and not (directory / "samples.jsonl").exists():
                self._copy_start_samples(Path(self.config["start_samples"]), directory / "samples.jsonl")
            summary = stage_command("sample").run(*self._parse("sample", self._paths("sample", r, start)))
            self.progress.finish(f"round-{r}/sample", {"samples": summary.samples, "correct": summary.correct})
        if self._todo(f"round-{r}/pairs"):
            summary = stage_command("pairs").run(*self._parse("pairs", self._paths("pairs", r, start)))
            self.progress.finish(f"round-{r}/pairs", {"pairs": summary.pairs})
        if self._todo(f"round-{r}/train"):  # a half-finished training is done again, from the start
            overwrite = ["--overwrite_output_dir", "true"] if (directory / "train").exists() else []
            trainer = stage_command("train").run(*self._parse("train", self._paths("train", r, start) + overwrite))
            logged = [entry for entry in trainer.state.log_history if "rewards/accuracies" in entry]
            del trainer
            gc.collect()
            self.progress.finish(
                f"round-{r}/train", {"reward_accuracy": logged[-1]["rewards/accuracies"] if logged else None}
            )
        if (directory / "train" / "adapter_config.json").is_file():
            self.merge(r, directory / "train")
        self.evaluate(r)

    @staticmethod
    def _copy_start_samples(samples: Path, output: Path) -> None:
        """Round 1's samples from a file `trl-adpo sample` wrote from the start model with the sample section's
        options: the sample stage then resumes it (finding it complete), or refuses it, naming the option that
        differs, if it was sampled otherwise."""
        from trl_adpo.pipeline.sampling import run_record_path

        if not samples.is_file() or not run_record_path(samples).is_file():
            raise FileNotFoundError(
                f"start_samples: {samples} (or its run record {run_record_path(samples).name}) does not exist; give "
                "a file that `trl-adpo sample` wrote from the start model with the sample section's options."
            )
        shutil.copyfile(run_record_path(samples), run_record_path(output))
        shutil.copyfile(samples, output)

    def report(self) -> str:
        """Write rounds.json and the plot; the per-round table."""
        rows = round_rows(self.progress, self.config["rounds"])
        write_atomically(self.output_dir / "rounds.json", json.dumps(rows, indent=1))
        if rows:
            plot_rounds(rows, self.output_dir / PLOT_FILE, f"{self.output_dir.name}: accuracy per round")
        return round_table(rows)


def run(config: dict, config_name: str = "the iterate config") -> list[dict]:
    """Run (or resume) the rounds of `config` (see the module docstring); returns the per-round rows."""
    config = check_config(dict(config), config_name)
    iteration = Run(config, config_name)
    try:
        finished_before = len(iteration.progress.done)
        if adapter_base(str(config["model_name_or_path"])) is not None:
            iteration.merge(0, Path(config["model_name_or_path"]))
        if config["evaluate_start"]:
            iteration.evaluate(0)
        for r in range(1, config["rounds"] + 1):
            done = len(iteration.progress.done)
            iteration.round(r)
            if len(iteration.progress.done) > done:
                print(f"\nAfter round {r} of {config['rounds']}:\n{iteration.report()}", flush=True)
        if len(iteration.progress.done) == finished_before:
            print(
                f"The run in {iteration.output_dir.resolve()} is complete: its {config['rounds']} round(s) were done "
                f"before (--rounds N with a larger N adds rounds).\n{iteration.report()}"
            )
        print(f"\nAccuracy per round: {(iteration.output_dir / PLOT_FILE).resolve()}")
        return round_rows(iteration.progress, config["rounds"])
    finally:
        iteration.close()


def interrupted(argv: list[str]) -> str:
    """What an interrupted `trl-adpo iterate` leaves, and how to go on (`trl_adpo.cli.main` prints it)."""
    output_dir = load_config(make_parser().parse_args(argv).config, None)["output_dir"]
    return (
        f"Its finished stages are recorded in {Path(output_dir) / 'progress.json'}, the stage it was in is not: the "
        "same command goes on from that stage."
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trl-adpo iterate",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, type=Path, help="the iterate YAML file")
    parser.add_argument("--rounds", type=int, help="the number of rounds (overrides the file's; more continue a run)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(sys.argv[1:] if argv is None else argv)
    run(load_config(args.config, args.rounds), str(args.config))
