"""The generation and grading benchmarks run: `scripts/bench_generation.py --quick` (the tiny model, greedy and
sampled, the package's path against the plain `model.generate` loop), a small `scripts/bench_verifiers.py` and one
command of `scripts/bench_startup.py` (a first and a warm start of `trl-adpo`). They print figures, which no test
times; these check that they run and that their equality checks hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ON_THE_DEFAULT_LINE_ONLY

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@ON_THE_DEFAULT_LINE_ONLY
def test_the_generation_benchmark_compares_both_paths_and_finds_the_same_greedy_completions(tmp_path):
    output = run(
        "bench_generation.py", "--quick", "--work", str(tmp_path / "tiny"), "--json", str(tmp_path / "r.json")
    )
    assert "greedy: 0 of 16 completions differ, 0 verdicts" in output
    results = json.loads((tmp_path / "r.json").read_text())
    assert [r["setup"] for r in results] == ["(c) tiny, greedy", "(c) tiny, n=4 T=1"]
    for result in results:
        assert all(result[path]["problems_per_s"] > 0 for path in ("plain", "package"))
        assert [len(texts) for texts in result["package"]["completions"]] == [result["n"]] * result["problems"]


@ON_THE_DEFAULT_LINE_ONLY
def test_the_grading_benchmark_gives_the_same_verdicts_every_way():
    output = run("bench_verifiers.py", "--completions", "20", "--problems", "80", "--repeats", "1")
    rows = [line for line in output.splitlines() if line.strip().startswith("Grader")]
    assert len(rows) == 2 and all(line.rstrip().endswith("True") for line in rows)


def test_the_startup_benchmark_times_a_first_and_a_warm_run():
    output = run("bench_startup.py", "--only", "pairs --help", "--repeats", "1").splitlines()
    assert output[0].split() == ["command", "first", "s", "then", "s"]
    row = output[1].split()
    assert row[:3] == ["trl-adpo", "pairs", "--help"] and all(float(figure) > 0 for figure in row[3:])
