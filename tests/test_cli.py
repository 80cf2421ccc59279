"""The installed `trl-adpo` command, run as a user runs it: a subprocess of the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMAND = Path(sys.executable).parent / "trl-adpo"


def trl_adpo(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([str(COMMAND), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_subcommand_with_one_line():
    from trl_adpo.cli.main import SUBCOMMANDS

    result = trl_adpo("--help")
    assert result.returncode == 0
    for name, (_, description) in SUBCOMMANDS.items():
        assert f"  {name}" in result.stdout and description in result.stdout, name


def test_an_unknown_subcommand_names_the_closest_one():
    result = trl_adpo("trian")
    assert result.returncode == 2
    assert "unknown subcommand 'trian'. Did you mean 'train'?" in result.stderr


def test_env_prints_the_versions_and_the_glue():
    import torch
    import trl

    from trl_adpo.trainer import ADPOTrainer

    result = trl_adpo("env")
    assert result.returncode == 0, result.stderr
    for expected in (f"trl           {trl.__version__}", f"torch         {torch.__version__}", ADPOTrainer.__module__):
        assert expected in result.stdout, expected
    assert "kernels" not in result.stderr  # bitsandbytes' line about an optional package is filtered


@pytest.mark.parametrize("subcommand", ["train", "sample", "pairs", "train-critical", "evaluate", "env"])
def test_each_subcommand_has_help(subcommand):
    result = trl_adpo(subcommand, "--help")
    assert result.returncode == 0, result.stderr
    assert f"trl-adpo {subcommand}" in result.stdout


def test_the_readme_cadpo_walk_runs_offline(tmp_path):
    """The quickstart's data, the two critical-token models, then cADPO: the three commands of the README."""
    for config in ("quickstart.yaml", "quickstart_critical.yaml", "quickstart_cadpo.yaml"):
        result = trl_adpo("train-critical" if "critical" in config else "train", "--config",
                          str(ROOT / "configs" / config), cwd=tmp_path)
        assert result.returncode == 0, (config, result.stderr[-3000:])
    for side in ("positive", "negative"):
        assert (tmp_path / "outputs" / "quickstart-critical" / side / "model.safetensors").is_file()
    card = (tmp_path / "outputs" / "quickstart-cadpo" / "README.md").read_text()
    assert "| method | cADPO |" in card
    state = json.loads((tmp_path / "outputs" / "quickstart-cadpo" / "trainer_state.json").read_text())
    weights = [entry["adpo/rejected_weight_mean"] for entry in state["log_history"] if "loss" in entry]
    assert weights and all(0 < w < 1 for w in weights)
