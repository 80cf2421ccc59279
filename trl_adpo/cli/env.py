"""`trl-adpo env`: the versions that matter, to paste into a bug report."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys

PACKAGES = ("trl_adpo", "torch", "trl", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "deepspeed")


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def report() -> dict[str, str]:
    """Package versions, the TRL glue in use, Python, the platform and the accelerator."""
    import torch

    from trl_adpo.trainer import ADPOTrainer

    rows = {"python": sys.version.split()[0], "platform": platform.platform()}
    rows.update({package: version(package) for package in PACKAGES})
    rows["TRL glue"] = ADPOTrainer.__module__
    rows["CUDA"] = cuda_line(torch.version.cuda, torch.cuda.is_available() and torch.cuda.device_count())
    if torch.cuda.is_available():
        rows["CUDA"] += f": {torch.cuda.get_device_name(0)}"
    return rows


def cuda_line(built_with: str | None, gpus: int) -> str:
    """What torch's build and the machine's GPUs make of CUDA; for a CUDA build on a machine without a GPU, the fix."""
    if gpus:
        return f"{built_with}, {gpus} GPU(s)"
    if built_with is None:
        return "not available (the CPU build of torch)"
    return (
        f"not available: torch is a CUDA {built_with} build (several GB) on a machine without a GPU. The CPU build "
        "does the same here: pip uninstall -y torch && pip install torch --index-url https://download.pytorch.org/whl/cpu"
    )


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="trl-adpo env", description=__doc__).parse_args(argv)
    rows = report()
    width = max(map(len, rows))
    for name, value in rows.items():
        print(f"{name:<{width}}  {value}")
    return 0
