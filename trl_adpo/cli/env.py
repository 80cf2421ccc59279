"""`trl-adpo env`: the versions that matter, to paste into a bug report."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import platform
import runpy
import sys
from pathlib import Path

PACKAGES = ("trl_adpo", "torch", "trl", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "deepspeed")


def version(package: str) -> str:
    if package == "trl_adpo":  # this checkout's own, which an editable install's metadata may not be
        from trl_adpo import __version__

        return __version__
    try:
        return importlib.metadata.version(package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def report() -> dict[str, str]:
    """Package versions, the TRL glue in use, Python, the platform and the accelerator. torch itself (seconds to
    import) is imported only if its build has CUDA or ROCm, to ask for the GPUs."""
    rows = {"python": sys.version.split()[0], "platform": platform.platform()}
    rows.update({package: version(package) for package in PACKAGES})
    rows["TRL glue"] = glue_module(rows["trl"])
    build = torch_build()
    if build.get("cuda") is None and build.get("hip") is None:
        rows["CUDA"] = cuda_line(None, 0)
        return rows
    import torch

    rows["CUDA"] = cuda_line(torch.version.cuda, torch.cuda.is_available() and torch.cuda.device_count())
    if torch.cuda.is_available():
        rows["CUDA"] += f": {torch.cuda.get_device_name(0)}"
    return rows


def glue_module(trl_version: str) -> str:
    """The glue module `trl_adpo.trainer` picks for this TRL (`compat.glue_line`), or why there is none."""
    from packaging.version import InvalidVersion, Version

    from trl_adpo.compat import GLUE_MODULES, glue_line

    try:
        return GLUE_MODULES[glue_line(Version(trl_version))]
    except (ImportError, InvalidVersion) as error:
        return f"none ({str(error).split('. ')[0]})"


def torch_build() -> dict:
    """The names of torch's `torch/version.py` (`cuda`, `hip`...), read without importing torch; {} without torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return {}
    return runpy.run_path(str(Path(spec.origin).with_name("version.py")))


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
