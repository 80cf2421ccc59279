"""The reasoning benchmark's --quick smoke run goes through every stage (SFT, sampling, critical-token models, two
rounds of `trl-adpo iterate` per method) and writes its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ON_THE_DEFAULT_LINE_ONLY

ROOT = Path(__file__).resolve().parents[1]
METHODS = [
    "DPO",
    "ADPO m=256",
    "ADPO static k=1",
    "ADPO static k=2",
    "ADPO static k=4",
    "ADPO static k=8",
    "ADPO adaptive m=2",
    "ADPO adaptive m=16",
    "ADPO step (;)",
    "cDPO",
    "cADPO",
]


@ON_THE_DEFAULT_LINE_ONLY
def test_quick_run_writes_the_table_the_plot_and_the_raw_results(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reasoning" / "run.py"), "--quick", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    assert "| SFT (start) |" in table
    for method in METHODS:
        assert f"| {method} |" in table, method
    for plot in ("training_dynamics.png", "accuracy.png", "accuracy_per_round.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = json.loads((tmp_path / "results.json").read_text())
    assert set(raw["methods"]) == set(METHODS)
    rounds = raw["settings"]["rounds"]
    for runs in raw["methods"].values():
        assert all(0 <= run["accuracy"] <= 1 and run["curve"] for run in runs)
        assert all(len(run["verdicts"]) == raw["settings"]["heldout_problems"] for run in runs)
        assert all(len(run["per_round"]) == rounds and run["per_round"][-1] == run["accuracy"] for run in runs)
    assert set(raw["differences"]) == set(METHODS) - {"DPO"} and set(raw["versus_sft"]) == set(METHODS)
    assert all(d["low"] <= d["mean"] <= d["high"] for d in [*raw["differences"].values(), *raw["versus_sft"].values()])
