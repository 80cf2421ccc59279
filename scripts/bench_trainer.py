"""Step time and peak memory of ADPOTrainer against TRL's DPOTrainer on the same model and data, and the cost of
cADPO's critical-token weights.

Usage:
    python scripts/bench_trainer.py [--runs 3] [--steps 8] [--bf16]

A small Llama (built in code) trains on 512-token sequences (128-token prompts, 384-token completions). Each
trainer runs in its own process, interleaved (DPO, ADPO static k=1, ADPO adaptive m=16, ADPO m=256, cADPO m=256,
DPO, ...), so that drift of the machine hits all alike. Step time is the median over the steps after the warm-up,
over all runs. Peak memory comes from one more run of each trainer: the GPU's peak allocation on CUDA; on the CPU,
the growth of the resident set from the start of training to its peak, with glibc told to return freed blocks at
once so that the resident set follows the live tensors. Prints both for each trainer and their ratios to DPO, and
cADPO's step time over ADPO's (its weights are data, computed once before training). The one-off cost of those
weights is the construction time of a cADPO trainer less that of an ADPO trainer on `--precompute-rows` rows,
scaled to 1000 rows (two models of the policy's size score every row).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset, load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

WORDS = [f"t{i}" for i in range(2000)]
TRAINERS = {
    "DPO": {},
    "ADPO static k=1": dict(granularity="static", window_size=1),
    "ADPO adaptive m=16": dict(granularity="adaptive", num_segments=16),
    "ADPO adaptive m=256": dict(granularity="adaptive", num_segments=256),
    "cADPO adaptive m=256": dict(
        granularity="adaptive", num_segments=256, positive_model="positive", negative_model="negative"
    ),
}


# For the memory runs: glibc maps blocks of 64 KiB and more on their own and returns them when freed.
WORKER_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, synchronised with the GPU."""

    def __init__(self):
        self.times: list[float] = []

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter() - self._start)


def build_workspace(directory: Path, rows: int, precompute_rows: int) -> None:
    """Save the models (policy, and cADPO's positive and negative), tokenizer and datasets every worker loads."""
    from trl_adpo.examples.tiny import save_tiny_model

    for seed, name in enumerate(("model", "positive", "negative")):
        save_tiny_model(
            directory / name, WORDS, hidden_size=256, num_layers=4, num_heads=8, max_positions=1024, seed=seed
        )
    rng = random.Random(0)
    text = lambda n: " ".join(rng.choices(WORDS, k=n))  # noqa: E731
    for name, count in (("data", rows), ("data_precompute", precompute_rows)):
        Dataset.from_list(
            [{"prompt": text(128), "chosen": text(383), "rejected": text(383)} for _ in range(count)]
        ).save_to_disk(directory / name)


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def worker(directory: Path, name: str, steps: int, batch_size: int, bf16: bool, data: str = "data") -> dict:
    from trl import DPOConfig, DPOTrainer

    from trl_adpo import ADPOConfig, ADPOTrainer

    options = {
        key: str(directory / value) if key.endswith("_model") else value for key, value in TRAINERS[name].items()
    }
    common = dict(
        output_dir=str(directory / "out"),
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        max_length=512,
        learning_rate=1e-5,
        report_to="none",
        save_strategy="no",
        logging_steps=steps,
        bf16=bf16,
        disable_tqdm=True,
        seed=0,
    )
    config, trainer_class = (
        (DPOConfig(**common), DPOTrainer) if name == "DPO" else (ADPOConfig(**common, **options), ADPOTrainer)
    )
    timer = StepTimer()
    model = AutoModelForCausalLM.from_pretrained(directory / "model")
    started = time.perf_counter()
    trainer = trainer_class(
        model,
        args=config,
        processing_class=AutoTokenizer.from_pretrained(directory / "model"),
        train_dataset=load_from_disk(directory / data),
        callbacks=[timer],
    )
    setup = time.perf_counter() - started
    if data != "data":
        return {"setup": setup}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    baseline = rss_bytes()
    trainer.train()
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"times": timer.times, "peak": peak, "setup": setup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of each trainer")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps of each run left out of the timing")
    parser.add_argument("--batch-size", type=int, default=4, help="preference pairs per step")
    parser.add_argument("--bf16", action="store_true", help="train in bfloat16 mixed precision")
    parser.add_argument("--precompute-rows", type=int, default=256, help="rows for timing cADPO's weight precompute")
    parser.add_argument(
        "--trainers",
        nargs="+",
        choices=list(TRAINERS),
        default=list(TRAINERS),
        help="the trainers to compare (DPO, the baseline of the ratios, always runs)",
    )
    parser.add_argument("--worker", nargs=3, metavar=("DIRECTORY", "TRAINER", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        directory, name, data = args.worker
        result = worker(Path(directory), name, args.steps, args.batch_size, args.bf16, data)
        print("RESULT " + json.dumps(result))
        return

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"device: {device}; {args.runs} interleaved runs x {args.steps} steps (first {args.warmup} not timed); "
        f"{args.batch_size} pairs of 512 tokens per step; bf16={args.bf16}"
    )
    names = list(dict.fromkeys(["DPO", *args.trainers]))
    results: dict[str, dict[str, list]] = {name: {"times": [], "peaks": []} for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        build_workspace(directory, rows=args.batch_size * args.steps, precompute_rows=args.precompute_rows)

        def run_worker(name: str, steps: int, env: dict | None = None, data: str = "data") -> dict:
            command = [
                sys.executable,
                __file__,
                "--worker",
                str(directory),
                name,
                data,
                "--steps",
                str(steps),
                "--batch-size",
                str(args.batch_size),
            ] + (["--bf16"] if args.bf16 else [])
            output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
            return json.loads(output.split("RESULT ", 1)[1])

        for name in names:  # memory: one run each, with the allocator returning freed memory at once
            results[name]["peaks"].append(run_worker(name, args.warmup + 1, WORKER_ENV)["peak"])
        for run in range(args.runs):  # time: interleaved runs with the default allocator
            for name in names:
                times = run_worker(name, args.steps)["times"][args.warmup :]
                results[name]["times"] += times
                print(f"  run {run + 1}: {name:<20} median step {statistics.median(times):.3f} s")
        setups = {name: run_worker(name, 1, data="data_precompute")["setup"] for name in names if "m=256" in name}

    base_time = statistics.median(results["DPO"]["times"])
    base_peak = statistics.median(results["DPO"]["peaks"])
    print(f"\n{'trainer':<20} {'step s':>8} {'time ratio':>10} {'peak MiB':>9} {'memory ratio':>12}")
    for name, result in results.items():
        step, peak = statistics.median(result["times"]), statistics.median(result["peaks"])
        print(f"{name:<20} {step:>8.3f} {step / base_time:>10.3f} {peak / 2**20:>9.1f} {peak / base_peak:>12.3f}")
    if {"ADPO adaptive m=256", "cADPO adaptive m=256"} <= set(names):
        adpo, cadpo = (
            statistics.median(results[name]["times"]) for name in ("ADPO adaptive m=256", "cADPO adaptive m=256")
        )
        precompute = setups["cADPO adaptive m=256"] - setups["ADPO adaptive m=256"]
        print(f"\ncADPO / ADPO step time (m=256): {cadpo / adpo:.3f}")
        print(
            f"critical-token weights: {precompute:.1f} s for {args.precompute_rows} rows, "
            f"{1000 * precompute / args.precompute_rows:.1f} s per 1000 rows of 512 tokens"
        )


if __name__ == "__main__":
    main()
