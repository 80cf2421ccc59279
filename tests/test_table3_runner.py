"""The Table 3 runner's bookkeeping (benchmarks/smollm2_table3/run.py), without a model: a setting that reuses
another's samples never runs (or overwrites) that setting's base evaluation and sampling, and is refused where its
problems or sampling differ or where the other setting has not run them yet."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner(tmp_path, monkeypatch):
    """The runner module with its repository root in tmp_path and `run` recording the commands instead."""
    spec = importlib.util.spec_from_file_location("table3_run", ROOT / "benchmarks" / "smollm2_table3" / "run.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "HERE", tmp_path / "bench")
    source, sharing = module.Setting(), module.Setting(learning_rate=1e-4, samples_of="source")
    monkeypatch.setattr(module, "SETTINGS", {"source": source, "sharing": sharing})
    module.ran = []

    def run(command: str) -> float:
        module.ran.append(command)
        argv = shlex.split(command)
        if "word_problems" in command:  # the problems stage: the files check_problems reads
            for name in ("heldout.jsonl", "problems.jsonl"):
                (tmp_path / argv[3] / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / argv[3] / name).write_text("")
        if argv[:2] == ["trl-adpo", "pairs"]:
            (tmp_path / argv[argv.index("--output") + 1]).write_text("")
        return 0.0

    monkeypatch.setattr(module, "run", run)
    return module


def write_source_stages(runner, tmp_path: Path) -> None:
    data = tmp_path / "bench" / "results" / "source" / "data"
    data.mkdir(parents=True)
    (data / "base.json").write_text(json.dumps({"problems": []}))
    (data / "samples.jsonl").write_text("")
    (data / "samples.jsonl.done").write_text("")
    stages = {"evaluate base": {"command": "trl-adpo evaluate ...", "wall_s": 150.0}}
    stages["sample"] = {"command": "trl-adpo sample ...", "wall_s": 6000.0}
    (data.parent / "stages.json").write_text(json.dumps(stages))


def test_a_sharing_setting_reads_the_source_samples_and_runs_only_its_own_stages(runner, tmp_path):
    write_source_stages(runner, tmp_path)
    stages = runner.Run("sharing").stages(critical=False)
    assert not any(c.startswith(("trl-adpo evaluate", "trl-adpo sample")) for c in runner.ran), runner.ran
    (pairs,) = [c for c in runner.ran if c.startswith("trl-adpo pairs")]
    assert "--samples bench/results/source/data/samples.jsonl" in pairs
    assert "--output bench/results/sharing/data/pairs.jsonl" in pairs
    assert stages["sample"] == {"command": "trl-adpo sample ...", "wall_s": 6000.0, "shared_with": "source"}
    assert json.loads((tmp_path / "bench" / "results" / "source" / "data" / "base.json").read_text()) == {
        "problems": []
    }


def test_a_sharing_setting_is_refused_before_its_source_has_sampled(runner):
    with pytest.raises(SystemExit, match="setting sharing reuses the evaluate base stage of setting source"):
        runner.Run("sharing").stages(critical=False)


def test_a_sharing_setting_with_other_problems_or_sampling_is_refused(runner):
    runner.SETTINGS["sharing"] = runner.Setting(max_new_tokens=128, n=4, samples_of="source")
    with pytest.raises(SystemExit, match="but n, max_new_tokens differ from that setting's"):
        runner.Run("sharing")


def test_a_setting_with_a_schedule_passes_it_to_train_and_the_constant_one_keeps_train_yaml(runner):
    runner.SETTINGS["cosine"] = runner.Setting(lr_scheduler_type="cosine", warmup_steps=10)
    cosine_train, constant_train = (runner.Run(name).cell_commands("DPO", 0)[0] for name in ("cosine", "source"))
    argv = shlex.split(cosine_train[1])
    assert argv[argv.index("--lr_scheduler_type") + 1] == "cosine"
    assert argv[argv.index("--warmup_steps") + 1] == "10"
    assert "--lr_scheduler_type" not in constant_train[1] and "--warmup_steps" not in constant_train[1]


def test_a_setting_sharing_an_unknown_setting_is_refused_by_name(runner):
    runner.SETTINGS["sharing"] = runner.Setting(samples_of="sourse")
    with pytest.raises(SystemExit, match="samples_of=sourse is not a setting; the settings are source, sharing"):
        runner.Run("sharing")


def test_the_summary_is_rebuilt_on_a_checkout_without_the_model_from_what_results_json_kept(runner, tmp_path):
    write_source_stages(runner, tmp_path)  # base.json is committed, the converted model is not
    committed = ROOT / "benchmarks" / "smollm2_table3" / "results" / "mixed-1-2-ppp4-cosine" / "results.json"
    (tmp_path / "bench" / "results" / "sharing").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "sharing" / "results.json").write_text(committed.read_text())
    summary = runner.Run("sharing").report()
    assert "the base model's completions cut there: 12.4%" in summary
    assert "| SmolLM2-135M-Instruct (base) | 16.4% |" in summary


def test_the_summary_without_a_model_or_results_json_asks_for_the_stages(runner, tmp_path):
    write_source_stages(runner, tmp_path)
    with pytest.raises(SystemExit, match=r"sharing: no base evaluation or model yet: run the stages first"):
        runner.Run("sharing").report()


def test_the_critical_token_models_go_to_the_committed_data_and_the_c_cells_train_with_them(runner, tmp_path):
    """cDPO and cADPO cells of a later session, on a fresh machine, need the models train-critical wrote: they live
    beside the committed pairs, and the cells read them from there."""
    write_source_stages(runner, tmp_path)
    experiment = runner.Run("sharing")
    experiment.stages(critical=True)
    (critical,) = [shlex.split(c) for c in runner.ran if c.startswith("trl-adpo train-critical")]
    assert critical[critical.index("--output_dir") + 1] == "bench/results/sharing/data/critical"
    for method in ("cDPO", "cADPO"):
        train = shlex.split(experiment.cell_commands(method, 0)[0][1])
        assert train[train.index("--positive_model") + 1] == "bench/results/sharing/data/critical/positive"
        assert train[train.index("--negative_model") + 1] == "bench/results/sharing/data/critical/negative"
    for name, ignored in (("adapter_model.safetensors", False), ("adapter_config.json", False), ("vocab.json", True)):
        path = f"benchmarks/smollm2_table3/results/any/data/critical/positive/{name}"
        check = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert (check.returncode == 0) == ignored, name


def test_finer_granularity_is_judged_by_each_familys_finest_minus_its_coarsest_on_the_shared_seeds(runner, tmp_path):
    """The paper's "finer granularity tends to help" gets a verdict of its own: adaptive m = 256 minus m = 2 and
    static k = 2 minus k = 8, paired over problems and the seeds both ran (k = 8's seed 2 has no k = 2 partner)."""
    write_source_stages(runner, tmp_path)
    results = tmp_path / "bench" / "results" / "sharing"
    (results / "cells").mkdir(parents=True)
    committed = ROOT / "benchmarks" / "smollm2_table3" / "results" / "mixed-1-2-ppp4-cosine" / "results.json"
    (results / "results.json").write_text(committed.read_text())  # the base model's verdicts on 500 problems
    solved = {"DPO": 100, "ADPO m=2": 100, "ADPO m=256": 50, "ADPO k=2": 60, "ADPO k=8": 40}
    for method, count in solved.items():
        for seed in (0, 1, 2) if method == "ADPO k=8" else (0, 1):
            verdicts = [i < count for i in range(500)] if seed < 2 else [True] * 500
            cell = {"method": method, "seed": seed, "accuracy": count / 500, "cut": 0.0, "commands": [], "log": []}
            path = results / "cells" / f"{runner.slug(method)}-seed{seed}.json"
            path.write_text(json.dumps({**cell, "verdicts": verdicts}))
    summary = runner.Run("sharing").report()
    # m = 256 solves 50 problems fewer than m = 2 on both seeds: -10 points, 100 cells lost, none gained
    assert re.search(r"ADPO m=256 minus ADPO m=2: -10\.0 \[\S+, \S+\] points \(0 cells gained, 100 lost\)\.", summary)
    # k = 2 solves 20 more than k = 8 on seeds 0 and 1: +4 points; k = 8's all-solved seed 2 is left out
    assert re.search(r"ADPO k=2 minus ADPO k=8: \+4\.0 \[\S+, \S+\] points \(40 cells gained, 0 lost\)\.", summary)
    assert "adaptive (ADPO m=256 minus ADPO m=2): contradicted: -10.0" in summary
    assert "static (ADPO k=2 minus ADPO k=8): supported: +4.0" in summary
