"""The paper's Tables 2-3 in miniature, where preference training helps: DPO, ADPO's granularities, cDPO and cADPO,
with the NLL term and iterative on-policy rounds, on chained arithmetic, 2 CPU cores.

    python benchmarks/reasoning/run.py --search    # DPO alone in each candidate setting: where does it beat SFT?
    python benchmarks/reasoning/run.py             # the method set in the chosen setting (Settings' defaults)
    python benchmarks/reasoning/run.py --quick     # a smoke run of every stage, some 30 seconds

1. Task: chained arithmetic modulo 10 (`trl_adpo.examples.arithmetic`), each problem with an exact verifier; disjoint
   problem sets for SFT, preference sampling, and the held-out evaluation.
2. SFT: a small Llama, built in code, learns from correct worked solutions for a fixed number of steps, which leaves
   its greedy accuracy well short of 100% (`trl_adpo.examples.arithmetic.train_sft`, the only stage outside the
   package's commands).
3. The package's pipeline, as a user runs it: `trl-adpo sample` from the SFT model (shared by every run's first
   round), `trl-adpo pairs` and `trl-adpo train-critical` (cDPO's critical-token models, from those samples), then
   for every method and seed `trl-adpo iterate`: `rounds` rounds of sample, pairs (one pair set per seed), train (the
   method's granularity, the NLL term, the last policy as reference; benchmarks/reasoning/preference.yaml) and
   evaluate (greedy, on the held-out problems).
4. Statistics: per method, mean and std of the final accuracy over seeds, and paired differences over the same
   problems and seeds (to DPO, to the SFT start; cADPO to cDPO) with 95% bootstrap intervals resampling both.
5. Report: results.md, results.json (every raw number, per-problem verdicts included), accuracy.png (each method's
   difference to DPO), accuracy_per_round.png and training_dynamics.png (Figure-2 style, round 1). `--search`
   writes search.md and search.json, which results.md quotes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
import yaml

from trl_adpo.cli import iterate as iterate_cli
from trl_adpo.cli import pairs as pairs_cli
from trl_adpo.cli import sample as sample_cli
from trl_adpo.cli import train_critical as critical_cli
from trl_adpo.examples.arithmetic import WORDS, Problem, sample_problem, train_sft
from trl_adpo.examples.tiny import build_tiny_llama, build_word_tokenizer
from trl_adpo.pipeline.evaluation import first_verdicts, paired_difference
from trl_adpo.pipeline.io import write_jsonl

HERE = Path(__file__).resolve().parent
DPO = {"granularity": "adaptive", "num_segments": 1}
ADPO_M256 = {"granularity": "adaptive", "num_segments": 256}
METHODS = {
    "DPO": DPO,
    "ADPO m=256": ADPO_M256,
    "ADPO static k=1": {"granularity": "static", "window_size": 1},
    "ADPO static k=2": {"granularity": "static", "window_size": 2},
    "ADPO static k=4": {"granularity": "static", "window_size": 4},
    "ADPO static k=8": {"granularity": "static", "window_size": 8},
    "ADPO adaptive m=2": {"granularity": "adaptive", "num_segments": 2},
    "ADPO adaptive m=16": {"granularity": "adaptive", "num_segments": 16},
    "ADPO step (;)": {"granularity": "step", "step_delimiter": ";"},
    "cDPO": DPO,
    "cADPO": ADPO_M256,
}
CRITICAL = ("cDPO", "cADPO")
PLOTTED = ("DPO", "ADPO m=256", "cADPO")


@dataclass(frozen=True)
class Settings:
    num_initial: int = 3  # variables given a digit in the prompt
    num_steps: int = 6  # derived variables, one worked step each
    sft_problems: int = 20000
    preference_problems: int = 1536
    heldout_problems: int = 2000
    sft_steps: int = 600
    samples_per_problem: int = 8
    temperature: float = 1.0
    beta: float = 0.1
    learning_rate: float = 1e-4
    critical_learning_rate: float = 2e-4  # twice the plain rate, as the paper trains its c-variants
    critical_model_learning_rate: float = 1e-3
    critical_model_epochs: int = 2
    preference_steps: int = 96
    verifier: str = "arithmetic"  # how samples are judged: the final digit, or every step ("arithmetic_steps")
    pairs_per_problem: int = 1  # cDPO's one pair; more take each other distinct wrong sample once
    nll_weight: float = 1.0  # the chosen completions' NLL beside the preference loss; 0 is the plain loss
    rounds: int = 2
    logging_steps: int = 8
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    bootstrap: int = 2000


QUICK = Settings(
    sft_problems=256,
    preference_problems=24,
    heldout_problems=16,
    sft_steps=10,
    samples_per_problem=4,
    preference_steps=2,
    logging_steps=1,
    seeds=(0,),
    bootstrap=50,
    critical_model_epochs=1,
    rounds=2,
)

# Where DPO is tried before the full run, each on `SEARCH_SEEDS`: the search the results report, not only the winner.
SEARCH_SEEDS = (0, 1)
SEARCH = [
    ("DPO, no NLL, 1 round (trl_adpo 0.2's setting: results/one-round-no-nll)", dict(nll_weight=0.0, rounds=1)),
    ("DPO + NLL, 1 round", dict(rounds=1)),
    ("DPO + NLL, 2 rounds", dict(rounds=2)),
    ("DPO + NLL, 3 rounds", dict(rounds=3)),
    ("DPO + NLL, 2 rounds, lr 5e-5", dict(rounds=2, learning_rate=5e-5)),
    ("DPO + NLL, 2 rounds, weaker SFT start (300 steps)", dict(rounds=2, sft_steps=300)),
    ("DPO + NLL, 1 round, every step verified", dict(rounds=1, verifier="arithmetic_steps")),
]


def make_problems(settings: Settings) -> dict[str, list[Problem]]:
    """Disjoint problem sets (no prompt in two of them)."""
    rng, seen, sets = random.Random(1234), set(), {}
    sizes = {
        "heldout": settings.heldout_problems,
        "preference": settings.preference_problems,
        "sft": settings.sft_problems,
    }
    for name, size in sizes.items():
        sets[name] = []
        while len(sets[name]) < size:
            problem = sample_problem(rng, settings.num_steps, settings.num_initial)
            if problem.prompt not in seen:
                seen.add(problem.prompt)
                sets[name].append(problem)
    return sets


def problem_file(problems: list[Problem], path: Path) -> str:
    if not path.exists():
        write_jsonl([{"prompt": p.prompt, "answer": str(p.answer), "solution": p.solution()} for p in problems], path)
    return str(path)


PREFERENCE_KEYS = ("num_steps", "num_initial", "preference_problems", "heldout_problems")


def key(settings: Settings, *names: str) -> str:
    """A short hash of the settings a cached stage depends on."""
    return hashlib.sha256(json.dumps([getattr(settings, n) for n in names]).encode()).hexdigest()[:10]


class Work:
    """The stages every run shares, cached in a work directory (kept between invocations with --work)."""

    def __init__(self, settings: Settings, directory: Path):
        self.settings, self.directory = settings, directory
        self.problems = make_problems(settings)
        self.heldout = problem_file(
            self.problems["heldout"],
            directory / f"heldout-{key(settings, 'num_steps', 'num_initial', 'heldout_problems')}.jsonl",
        )
        self.preference = problem_file(
            self.problems["preference"],
            directory / f"preference-{key(settings, *PREFERENCE_KEYS)}.jsonl",
        )
        self.max_new_tokens = 8 * settings.num_steps + 4

    def sft(self) -> Path:
        """A small Llama trained from scratch on correct solutions for `sft_steps` steps (cached)."""
        settings = self.settings
        directory = self.directory / f"sft-{key(settings, 'num_steps', 'num_initial', 'sft_problems', 'sft_steps')}"
        if not (directory / "config.json").is_file():
            print(f"SFT: {settings.sft_steps} steps from scratch on correct solutions", flush=True)
            tokenizer = build_word_tokenizer(WORDS)
            torch.manual_seed(0)
            model = build_tiny_llama(len(tokenizer), hidden_size=128, num_layers=4, num_heads=4, max_positions=256)
            history = train_sft(model, tokenizer, self.problems["sft"], settings.sft_steps, learning_rate=1e-3)
            partial = directory.with_name(directory.name + ".partial")
            model.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
            (partial / "sft_history.json").write_text(json.dumps(history))
            partial.rename(directory)
        return directory

    def start_samples(self, sft: Path) -> Path:
        """`trl-adpo sample` from the SFT model: the first round's samples of every run (cached, resumable)."""
        name = key(
            self.settings, "preference_problems", "samples_per_problem", "temperature", "heldout_problems", "verifier"
        )
        output = sft / f"samples-{name}.jsonl"
        summary = sample_cli.run(
            *sample_cli.make_parser().parse(["--config", str(self.sample_config(sft)), "--output", str(output)])
        )
        print(f"   {summary}", flush=True)
        return output

    def sample_section(self) -> dict:
        steps = (
            {"verifier": "arithmetic_steps", "answer_column": "solution"}
            if self.settings.verifier == "arithmetic_steps"
            else {}
        )
        return {
            "task": "arithmetic",
            **steps,
            "dataset_name": self.preference,
            "n": self.settings.samples_per_problem,
            "temperature": self.settings.temperature,
            "max_new_tokens": self.max_new_tokens,
            "batch_size": 64,
            "dtype": "float32",
            "seed": 0,
        }

    def sample_config(self, sft: Path) -> Path:
        path = self.directory / "sample.yaml"
        path.write_text(yaml.safe_dump({**self.sample_section(), "model_name_or_path": str(sft)}))
        return path

    def critical_models(self, sft: Path, samples: Path) -> dict[str, Path]:
        """cDPO's positive and negative models from the SFT model's own verified samples (cached)."""
        name = key(
            self.settings,
            "preference_problems",
            "samples_per_problem",
            "critical_model_learning_rate",
            "critical_model_epochs",
            "heldout_problems",
            "verifier",
        )
        directory = sft / f"critical-{name}"
        if not (directory / "negative" / "adapter_config.json").is_file():
            rows = directory.with_name(directory.name + "-samples.jsonl")
            pairs_cli.run(
                *pairs_cli.make_parser().parse(
                    [
                        "--samples",
                        str(samples),
                        "--output",
                        str(rows.with_suffix(".pairs.jsonl")),
                        "--critical_samples",
                        str(rows),
                    ]
                )
            )
            critical_cli.run(
                *critical_cli.parse_args(
                    [
                        "--config",
                        str(HERE / "critical_models.yaml"),
                        "--model_name_or_path",
                        str(sft),
                        "--dataset_name",
                        str(rows),
                        "--output_dir",
                        str(directory),
                        "--learning_rate",
                        str(self.settings.critical_model_learning_rate),
                        "--num_train_epochs",
                        str(self.settings.critical_model_epochs),
                    ]
                )
            )
        return {"positive": directory / "positive", "negative": directory / "negative"}

    def iterate(self, name: str, seed: int, sft: Path, samples: Path, critical: dict[str, Path]) -> dict:
        """One method and seed: `trl-adpo iterate` from the SFT model; its final verdicts, accuracy per round and
        round 1's training curve."""
        settings = self.settings
        c_variant = name in CRITICAL
        train = {
            **yaml.safe_load((HERE / "preference.yaml").read_text()),
            **METHODS[name],
            "beta": settings.beta,
            "learning_rate": settings.critical_learning_rate if c_variant else settings.learning_rate,
            "max_steps": settings.preference_steps,
            "logging_steps": settings.logging_steps,
            "seed": seed,
            "plot": False,
        }
        if settings.nll_weight > 0:
            train.update(loss_type=["sigmoid", "sft"], loss_weights=[1.0, settings.nll_weight])
        if c_variant:
            train.update(positive_model=str(critical["positive"]), negative_model=str(critical["negative"]))
        slug = name.replace(" ", "_").replace("=", "").replace("(;)", "semicolon")
        run_dir = (
            self.directory
            / "runs"
            / f"{slug}-{seed}-{key(settings, *(f for f in asdict(settings) if f not in ('seeds', 'bootstrap')))}"
        )
        config = {
            "model_name_or_path": str(sft),
            "output_dir": str(run_dir),
            "rounds": settings.rounds,
            "evaluate_start": False,
            "start_samples": str(samples),
            "sample": self.sample_section(),
            "pairs": {"seed": seed, "pairs_per_problem": settings.pairs_per_problem},
            "train": train,
            "evaluate": {
                "task": "arithmetic",
                "dataset_name": self.heldout,
                "max_new_tokens": self.max_new_tokens,
                "batch_size": 500,
                "dtype": "float32",
            },
        }
        rows = iterate_cli.run(config, f"{name}, seed {seed}")
        final = run_dir / f"round-{settings.rounds}" / "evaluation.json"
        verdicts = first_verdicts(final)
        state = json.loads((run_dir / "round-1" / "train" / "trainer_state.json").read_text())
        logs = [entry for entry in state["log_history"] if "logps/chosen" in entry]
        curve = [
            {k: entry[k] for k in ("step", "logps/chosen", "logps/rejected", "rewards/accuracies")} for entry in logs
        ]
        return {
            "seed": seed,
            "accuracy": float(np.mean(verdicts)),
            "verdicts": verdicts,
            "curve": curve,
            "per_round": [row["accuracy"] for row in rows],
            "pairs": [row["pairs"] for row in rows],
        }

    def sft_verdicts(self, sft: Path) -> list[bool]:
        """The SFT start on the held-out problems: round 0 of an evaluation-only iterate run would do the same."""
        from trl_adpo.cli import evaluate as evaluate_cli

        output = sft / f"heldout-evaluation-{key(self.settings, 'heldout_problems', 'num_steps', 'num_initial')}.json"
        if not output.is_file():
            evaluate_cli.run(
                *evaluate_cli.make_parser().parse(
                    [
                        "--task",
                        "arithmetic",
                        "--dataset_name",
                        self.heldout,
                        "--model_name_or_path",
                        str(sft),
                        "--max_new_tokens",
                        str(self.max_new_tokens),
                        "--batch_size",
                        "500",
                        "--dtype",
                        "float32",
                        "--output",
                        str(output),
                    ]
                )
            )
        return first_verdicts(output)


def interval(d: dict) -> str:
    return f"{100 * d['mean']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def describe(settings: Settings) -> str:
    nll = f"plus {settings.nll_weight:g} x the chosen completions' NLL" if settings.nll_weight > 0 else "no NLL term"
    selection = f"up to {settings.pairs_per_problem} pairs per problem"
    if settings.pairs_per_problem == 1:
        selection = "cDPO's pair selection"
    judged = "every step verified" if settings.verifier == "arithmetic_steps" else "the final answer verified"
    return (
        f"SFT {settings.sft_steps} steps; {settings.rounds} round(s) of {settings.samples_per_problem} samples of "
        f"each of {settings.preference_problems} problems (temperature {settings.temperature:g}, {judged}), "
        f"{selection}, "
        f"{settings.preference_steps} steps of batch 16 at constant lr {settings.learning_rate:g} (c-variants "
        f"{settings.critical_learning_rate:g}), beta {settings.beta:g}, {nll}; the last round's policy is the next "
        "round's start and reference"
    )


def search(settings: Settings, work_dir: Path, output_dir: Path, command: str) -> None:
    """DPO alone, in each setting of `SEARCH`, on `SEARCH_SEEDS`: its held-out accuracy against the SFT start."""
    started, found = time.time(), []
    for label, overrides in SEARCH:
        tried = replace(settings, seeds=SEARCH_SEEDS, **overrides)
        work = Work(tried, work_dir)
        sft = work.sft()
        samples = work.start_samples(sft)
        sft_verdicts = np.array(work.sft_verdicts(sft))
        runs = [work.iterate("DPO", seed, sft, samples, {}) for seed in tried.seeds]
        verdicts = np.array([run["verdicts"] for run in runs])
        versus = paired_difference(
            verdicts, np.array([sft_verdicts] * len(runs)), settings.bootstrap, np.random.default_rng(0)
        )
        found.append(
            {
                "label": label,
                "settings": overrides,
                "sft_accuracy": float(sft_verdicts.mean()),
                "dpo_accuracy": [run["accuracy"] for run in runs],
                "per_round": [run["per_round"] for run in runs],
                "dpo_vs_sft": versus,
            }
        )
        print(
            f"   {label}: SFT {sft_verdicts.mean():.3f}, DPO {[round(r['accuracy'], 3) for r in runs]}, "
            f"difference {interval(versus)}",
            flush=True,
        )
    lines = [
        "# Where does DPO improve the SFT start? The settings tried",
        "",
        f"Made by `{command}` in {(time.time() - started) / 60:.1f} minutes on CPU, {torch.get_num_threads()} threads"
        f"{', reusing the runs an earlier invocation left in the work directory' if '--work' in command else ''}. "
        f"DPO (adaptive m = 1) alone, seeds {list(SEARCH_SEEDS)}, {settings.heldout_problems} held-out problems; the "
        f"base setting: {describe(settings)}. Difference to SFT: paired over problems and seeds, points, 95% "
        "bootstrap interval.",
        "",
        "| setting | SFT start (%) | DPO per seed (%) | DPO - SFT (points) |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {row['label']} | {100 * row['sft_accuracy']:.1f} | "
        f"{', '.join(f'{100 * a:.1f}' for a in row['dpo_accuracy'])} "
        f"| {interval(row['dpo_vs_sft'])} |"
        for row in found
    ]
    (output_dir / "search.md").write_text("\n".join(lines) + "\n")
    (output_dir / "search.json").write_text(
        json.dumps({"base": asdict(settings), "seeds": SEARCH_SEEDS, "tried": found}, indent=1)
    )
    print("\n".join(lines))


def write_report(settings: Settings, results: dict, output_dir: Path, command: str) -> None:
    """results.md, results.json, accuracy.png, accuracy_per_round.png and training_dynamics.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, differences = results["methods"], results["differences"]
    accuracies = {name: [run["accuracy"] for run in runs] for name, runs in methods.items()}
    lines = [
        "# The paper's Tables 2-3 in miniature, where preference training helps: chained arithmetic (mod 10), 2 CPU "
        "cores",
        "",
        f"Made by `{command}` in {results['wall_minutes']:.1f} minutes on {results['machine']}.",
        "",
        f"Held-out greedy accuracy (%) after the last round, {settings.heldout_problems} problems of "
        f"{settings.num_initial} given and {settings.num_steps} derived variables, {len(settings.seeds)} seeds "
        f"{list(settings.seeds)}. Every method starts from the same SFT model ({100 * results['sft_accuracy']:.1f}% "
        f"held-out): {describe(settings)}. The seed picks the pairs and the order of training; later rounds sample "
        "from each run's own policy.",
        "",
        "Differences: paired over the same problems and seeds, in points, with a 95% bootstrap interval resampling "
        "seeds and problems. Solutions are 37-43 tokens long, so the headline adaptive m = 256 is one segment per "
        "token here, the same objective as static k = 1.",
        "",
        "| method | accuracy (%) mean +- std | difference to SFT | difference to DPO | final reward accuracy |",
        "| --- | --- | --- | --- | --- |",
        f"| SFT (start) | {100 * results['sft_accuracy']:.1f} | | | |",
    ]
    for name, runs in methods.items():
        std = statistics.stdev(accuracies[name]) if len(runs) > 1 else 0.0
        versus = "" if name == "DPO" else interval(differences[name])
        lines.append(
            f"| {name} | {100 * statistics.mean(accuracies[name]):.1f} +- {100 * std:.1f} | "
            f"{interval(results['versus_sft'][name])} | {versus} | "
            f"{statistics.mean(run['final_reward_accuracy'] for run in runs):.2f} |"
        )
    if results["cadpo_vs_cdpo"] is not None:
        lines += ["", f"- cADPO against cDPO: {interval(results['cadpo_vs_cdpo'])} points."]
    if results["resolution"] is not None:
        lines.append(
            f"- Smallest resolvable difference: an interval's half-width is {100 * results['resolution']:.1f} points "
            "(median over the methods against DPO); a true difference smaller than that cannot be told from zero here."
        )
    search_file = output_dir / "search.md"
    if search_file.is_file():
        lines += ["", "How this setting was found (search.md):", "", *search_file.read_text().splitlines()[4:]]
    (output_dir / "results.md").write_text("\n".join(lines) + "\n")
    (output_dir / "results.json").write_text(json.dumps({"settings": asdict(settings), **results}, indent=1))

    names = [name for name in methods if name != "DPO"]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    for y, name in enumerate(names):
        d = differences[name]
        axis.errorbar(
            100 * d["mean"],
            y,
            xerr=[[100 * (d["mean"] - d["low"])], [100 * (d["high"] - d["mean"])]],
            fmt="o",
            color="C2" if name in CRITICAL else "C0",
            capsize=3,
        )
    axis.axvline(0, color="gray", linewidth=1)
    axis.set_yticks(range(len(names)), names)
    axis.invert_yaxis()
    axis.set_xlabel("held-out accuracy minus DPO's (points), 95% bootstrap interval")
    figure.tight_layout()
    figure.savefig(output_dir / "accuracy.png", dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6.5, 4))
    for index, name in enumerate(methods):
        per_round = np.array([[results["sft_accuracy"], *run["per_round"]] for run in methods[name]]) * 100
        axis.plot(
            range(per_round.shape[1]),
            per_round.mean(axis=0),
            "o-" if name in PLOTTED else ".-",
            color=f"C{index % 10}",
            label=name,
            linewidth=2 if name in PLOTTED else 0.8,
        )
    axis.set_xticks(range(settings.rounds + 1))
    axis.set_xlabel("round (0: the SFT start)")
    axis.set_ylabel("held-out accuracy (%), mean over seeds")
    axis.legend(fontsize=7, ncol=2)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output_dir / "accuracy_per_round.png", dpi=120)
    plt.close(figure)

    plotted = [name for name in PLOTTED if name in methods]
    figure, axes = plt.subplots(1, len(plotted), figsize=(4 * len(plotted), 3.2), sharey=True, squeeze=False)
    for axis, name in zip(axes[0], plotted):
        curves = [run["curve"] for run in methods[name]]
        steps = [point["step"] for point in curves[0]]
        for metric, style, color in (("logps/chosen", "-", "C0"), ("logps/rejected", "--", "C3")):
            mean = [statistics.mean(curve[i][metric] for curve in curves) for i in range(len(steps))]
            axis.plot(steps, mean, style, color=color, label=metric.split("/")[1])
        axis.set_title(f"{name}, round 1")
        axis.set_xlabel("training step")
    axes[0][0].set_ylabel("log-prob of the completion")
    axes[0][0].legend()
    figure.suptitle("Log-probs of chosen (solid) and rejected (dashed) completions, mean over seeds")
    figure.tight_layout()
    figure.savefig(output_dir / "training_dynamics.png", dpi=120)
    plt.close(figure)


def compare(settings: Settings, names: list[str], work_dir: Path, output_dir: Path, command: str) -> None:
    """Every method and seed in one setting, and the report."""
    started = time.time()
    work = Work(settings, work_dir)
    sft = work.sft()
    sft_verdicts = work.sft_verdicts(sft)
    print(f"   SFT held-out accuracy {np.mean(sft_verdicts):.3f}", flush=True)
    samples = work.start_samples(sft)
    critical = work.critical_models(sft, samples) if any(name in CRITICAL for name in names) else {}
    methods: dict[str, list[dict]] = {name: [] for name in names}
    for seed in settings.seeds:
        for name in names:
            run = work.iterate(name, seed, sft, samples, critical)
            run["final_reward_accuracy"] = run["curve"][-1]["rewards/accuracies"] if run["curve"] else 0.0
            methods[name].append(run)
            print(
                f"   seed {seed} {name:<20} held-out accuracy per round {[round(a, 3) for a in run['per_round']]}",
                flush=True,
            )

    rng = np.random.default_rng(0)
    verdicts = {name: np.array([run["verdicts"] for run in runs]) for name, runs in methods.items()}
    start = np.array([sft_verdicts] * len(settings.seeds))
    differences = {
        name: paired_difference(verdicts[name], verdicts["DPO"], settings.bootstrap, rng)
        for name in methods
        if name != "DPO"
    }
    results = {
        "sft_accuracy": float(np.mean(sft_verdicts)),
        "sft_verdicts": sft_verdicts,
        "methods": methods,
        "differences": differences,
        "versus_sft": {name: paired_difference(verdicts[name], start, settings.bootstrap, rng) for name in methods},
        "cadpo_vs_cdpo": paired_difference(verdicts["cADPO"], verdicts["cDPO"], settings.bootstrap, rng)
        if {"cADPO", "cDPO"} <= set(methods)
        else None,
        "resolution": float(np.median([(d["high"] - d["low"]) / 2 for d in differences.values()]))
        if differences
        else None,
        "wall_minutes": (time.time() - started) / 60,
        "machine": f"CPU, {torch.get_num_threads()} threads",
        "command": command,
    }
    write_report(settings, results, output_dir, command)
    print((output_dir / "results.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of every stage")
    parser.add_argument("--search", action="store_true", help="DPO alone in each candidate setting (SEARCH)")
    parser.add_argument(
        "--report",
        action="store_true",
        help="only write results.md and the figures again, from the output directory's results.json",
    )
    parser.add_argument("--output-dir", type=Path, default=HERE / "results", help="where the report is written")
    parser.add_argument(
        "--work",
        type=Path,
        help="keep the models, samples and runs here, to reuse them (default: a temporary directory)",
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="a subset, to try settings (with DPO)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="override a setting, e.g. beta=0.5")
    args = parser.parse_args()
    settings = QUICK if args.quick else Settings()
    for override in args.set:
        name, value = override.split("=", 1)
        kind = type(getattr(settings, name))
        settings = replace(settings, **{name: tuple(map(int, value.split(","))) if kind is tuple else kind(value)})
    unknown = [name for name in args.methods if name not in METHODS]
    if unknown or "DPO" not in args.methods:
        parser.error(f"--methods: {unknown or 'DPO is needed'}; the methods are {list(METHODS)}")
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    command = " ".join(
        [
            "python benchmarks/reasoning/run.py",
            *(["--quick"] if args.quick else []),
            *(["--search"] if args.search else []),
            *(["--work", "DIR"] if args.work else []),
            *(["--methods", *map(repr, args.methods)] if args.methods != list(METHODS) else []),
            *(["--set", *args.set] if args.set else []),
        ]
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.report:
        saved = json.loads((args.output_dir / "results.json").read_text())
        fields = saved.pop("settings")
        write_report(Settings(**{**fields, "seeds": tuple(fields["seeds"])}), saved, args.output_dir, saved["command"])
        return
    with tempfile.TemporaryDirectory() as temporary:
        work_dir = args.work or Path(temporary)
        work_dir.mkdir(parents=True, exist_ok=True)
        if args.search:
            search(settings, work_dir, args.output_dir, command)
        else:
            compare(settings, args.methods, work_dir, args.output_dir, command)


if __name__ == "__main__":
    main()
