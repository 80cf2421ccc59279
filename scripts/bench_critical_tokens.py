"""Peak memory and time of the critical-token estimator (`contrastive_token_probs`) by chunk size.

Usage:
    python scripts/bench_critical_tokens.py [--vocab 151936] [--length 2048] [--batch 2] [--hidden 896]

Random final hidden states of two models and two random output heads (Qwen2.5-0.5B's sizes by default), every
position scored. Each chunk size runs in its own process. The peak is what the call adds on top of its inputs and
heads: on CUDA the peak allocation; on the CPU the resident set's peak over its size before the call, with glibc told
to return freed blocks at once so that the resident set follows the live tensors. A chunk as large as all positions
is what holding whole-sequence logits would cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

WORKER_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def worker(args: argparse.Namespace, chunk_size: int) -> dict:
    from trl_adpo.critical_tokens import contrastive_token_probs

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    hidden = [torch.randn(args.batch, args.length, args.hidden, device=device) for _ in range(2)]
    heads = [torch.nn.Linear(args.hidden, args.vocab, bias=False, device=device) for _ in range(2)]
    targets = torch.randint(args.vocab, (args.batch, args.length), device=device)
    mask = torch.ones(args.batch, args.length, dtype=torch.bool, device=device)
    with torch.no_grad():  # warm the kernels on a few positions
        contrastive_token_probs(*hidden, *heads, targets, mask[:, :1].expand_as(mask) & (targets < 0), 1.0, chunk_size)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss_bytes()
    started = time.perf_counter()
    contrastive_token_probs(*hidden, *heads, targets, mask, 1.0, chunk_size)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"peak": peak, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print("RESULT " + json.dumps(worker(args, args.worker)))
        return

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    positions = args.batch * args.length
    print(f"device: {device}; vocabulary {args.vocab}, {args.batch} x {args.length} positions, hidden {args.hidden}")
    print(f"{'chunk':>8} {'peak MiB':>9} {'seconds':>8}")
    for chunk in [*args.chunks, positions]:
        command = [
            sys.executable,
            __file__,
            "--worker",
            str(chunk),
            "--vocab",
            str(args.vocab),
            "--length",
            str(args.length),
            "--batch",
            str(args.batch),
            "--hidden",
            str(args.hidden),
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=True, env=WORKER_ENV).stdout
        result = json.loads(output.split("RESULT ", 1)[1])
        label = f"{chunk}" + (" (all)" if chunk == positions else "")
        print(f"{label:>8} {result['peak'] / 2**20:>9.1f} {result['seconds']:>8.2f}")


if __name__ == "__main__":
    main()
