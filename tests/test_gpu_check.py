"""The GPU check (benchmarks/gpu/run.py) in its CPU smoke mode: every part runs and writes its report, so that the
script is ready whenever a GPU is at hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ON_THE_DEFAULT_LINE_ONLY

ROOT = Path(__file__).resolve().parents[1]


@ON_THE_DEFAULT_LINE_ONLY
def test_the_smoke_run_measures_every_part_and_writes_the_report(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OUT": ""}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu" / "run.py"), "--smoke", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert {row["method"] for row in results["objective"]} == {"DPO", "ADPO m=256", "ADPO static k=1", "cADPO m=256"}
    assert results["critical_tokens"]["scored_tokens_per_second"] > 0
    trained = [row for row in results["trainers"] if "skipped" not in row]
    assert {(row["mode"], row["method"]) for row in trained} == {
        (mode, method)
        for mode in ("full", "lora")
        for method in ("DPO", "ADPO m=256", "ADPO static k=1", "cADPO m=256")
    }
    assert all(row["step_seconds"] > 0 for row in trained)
    report = (tmp_path / "results.md").read_text()
    assert "| tiny | 48 | lora | cADPO m=256 |" in report and "ratio to DPO" in report
    assert not (tmp_path / "work").exists()
