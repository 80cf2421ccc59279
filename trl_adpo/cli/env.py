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
    rows["CUDA"] = (
        f"{torch.version.cuda}, {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}"
        if torch.cuda.is_available() else f"not available (torch built with CUDA {torch.version.cuda})"
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="trl-adpo env", description=__doc__).parse_args(argv)
    rows = report()
    width = max(map(len, rows))
    for name, value in rows.items():
        print(f"{name:<{width}}  {value}")
    return 0
