"""The GPU check (benchmarks/gpu/run.py) in its CPU smoke mode: every part runs and writes its report, so that the
script is ready whenever a GPU is at hand."""

from __future__ import annotations

import importlib.util
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
    assert not [row for row in results["trainers"] if "failed" in row]
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


def test_a_failing_trainer_cell_is_reported_saved_and_the_others_still_run(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu" / "run.py")
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclass looks its module up there
    spec.loader.exec_module(gpu_check)

    def train_one(plan, shape, size, mode, method, length, *rest):
        if (mode, method) == ("full", "ADPO m=256"):
            raise RuntimeError("CUDA out of memory")
        return {"size": size, "tokens": length, "mode": mode, "method": method, "step_seconds": 2.0, "peak_mib": 10.0}

    monkeypatch.setattr(gpu_check, "train_one", train_one)
    monkeypatch.setattr(gpu_check, "pairs", lambda plan, length: None)
    results = {"command": "run.py", "device": "a GPU", "versions": {}, "wall_s": 1.0, "objective": [], "trainers": []}
    results["critical_tokens"], saved = None, []
    gpu_check.trainers(
        gpu_check.smoke_plan(), float("inf"), tmp_path, results, lambda r: saved.append(len(r["trainers"]))
    )
    assert saved == [1, 2, 3, 4, 5, 6, 7, 8]
    failed = [row for row in results["trainers"] if "failed" in row]
    assert [(row["mode"], row["method"]) for row in failed] == [("full", "ADPO m=256")]
    assert "CUDA out of memory" in failed[0]["failed"]
    report = gpu_check.report(results)
    assert "| tiny | 48 | full | ADPO m=256 | failed: RuntimeError('CUDA out of memory') |" in report
    assert "| tiny | 48 | lora | ADPO m=256 | 2.000 | 1.000 | 10 | 1.000 |" in report
