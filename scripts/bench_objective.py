"""Forward + backward time of `adpo_loss` against the plain DPO loss on the same per-token log-ratios.

Usage:
    python scripts/bench_objective.py [--device cuda] [--repeats 50]

Prints, for B=16 pairs and T=1024 and 4096 tokens, float32 and bfloat16, the median time of DPO, ADPO static k=1 and
ADPO adaptive m=16, and the ratio of each ADPO variant to DPO.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from trl_adpo import adpo_loss


def dpo_loss(chosen, rejected, chosen_mask, rejected_mask, beta: float) -> torch.Tensor:
    """The DPO sigmoid loss as TRL computes it: masked sums, then one log-sigmoid per pair."""
    margin = (chosen * chosen_mask).sum(-1) - (rejected * rejected_mask).sum(-1)
    return -F.logsigmoid(beta * margin)


def median_seconds(fn, device: torch.device, repeats: int, warmup: int = 5) -> float:
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; B={args.batch_size}; median of {args.repeats} runs")
    print(
        f"{'T':>5} {'dtype':>9} {'DPO ms':>8} {'static k=1 ms':>14} {'ratio':>6} {'adaptive m=16 ms':>17} {'ratio':>6}"
    )

    gen = torch.Generator().manual_seed(0)
    for length in (1024, 4096):
        lengths = torch.randint(length // 2, length + 1, (2, args.batch_size), generator=gen)
        masks = [(torch.arange(length) < lengths[i].unsqueeze(1)).to(device) for i in range(2)]
        for dtype in (torch.float32, torch.bfloat16):
            values = [torch.randn(args.batch_size, length, generator=gen).to(device, dtype) for _ in range(2)]
            leaves = [v.clone().requires_grad_(True) for v in values]

            def run(loss_fn):
                def step():
                    loss_fn(*leaves, *masks).mean().backward()

                return step

            dpo = run(lambda c, r, cm, rm: dpo_loss(c, r, cm, rm, beta=0.1))
            static = run(lambda c, r, cm, rm: adpo_loss(c, r, cm, rm, beta=0.1, granularity="static").losses)
            adaptive = run(
                lambda c, r, cm, rm: adpo_loss(c, r, cm, rm, beta=0.1, granularity="adaptive", num_segments=16).losses
            )
            t_dpo, t_static, t_adaptive = (median_seconds(fn, device, args.repeats) for fn in (dpo, static, adaptive))
            print(
                f"{length:>5} {str(dtype).removeprefix('torch.'):>9} {t_dpo * 1e3:>8.3f} {t_static * 1e3:>14.3f} "
                f"{t_static / t_dpo:>6.2f} {t_adaptive * 1e3:>17.3f} {t_adaptive / t_dpo:>6.2f}"
            )


if __name__ == "__main__":
    main()
