"""`trl-adpo iterate`: two rounds on the offline arithmetic task with a LoRA policy, the reference of each round, and a
run killed in each stage that resumes to exactly what an uninterrupted run leaves, nothing redone or lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from peft import AutoPeftModelForCausalLM
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from trl_adpo.cli import iterate
from trl_adpo.examples.arithmetic import problem_rows
from trl_adpo.pipeline.io import read_jsonl, write_jsonl

COMMAND = Path(sys.executable).parent / "trl-adpo"


@pytest.fixture(scope="module")
def problems(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("iterate-problems")
    write_jsonl(problem_rows(8, seed=50), directory / "problems.jsonl")
    write_jsonl(problem_rows(6, seed=51), directory / "heldout.jsonl")
    return directory


def config(start: Path, problems: Path, output_dir: Path) -> dict:
    """Two rounds from an SFT'd tiny model, LoRA ADPO + NLL, a few samples and steps."""
    return {
        "model_name_or_path": str(start),
        "output_dir": str(output_dir),
        "rounds": 2,
        "sample": {
            "task": "arithmetic",
            "dataset_name": str(problems / "problems.jsonl"),
            "n": 4,
            "temperature": 1.0,
            "max_new_tokens": 40,
            "batch_size": 4,
        },
        "pairs": {"seed": 0},
        "train": {
            "use_peft": True,
            "lora_r": 4,
            "lora_alpha": 8,
            "lora_target_modules": ["q_proj", "v_proj"],
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "learning_rate": 5e-3,
            "bf16": False,
            "report_to": "none",
            "save_strategy": "no",
            "disable_tqdm": True,
            "logging_steps": 1,
            "plot": False,
            "loss_type": ["sigmoid", "sft"],
            "loss_weights": [1.0, 1.0],
        },
        "evaluate": {
            "task": "arithmetic",
            "dataset_name": str(problems / "heldout.jsonl"),
            "dataset_split": "train",
            "max_new_tokens": 40,
        },
    }


def outputs(run_dir: Path) -> dict:
    """What a finished run leaves: samples, pairs, merged weights and verdicts of each round, and the report."""
    found = {"rounds": json.loads((run_dir / "rounds.json").read_text())}
    for r in (1, 2):
        directory = run_dir / f"round-{r}"
        found[f"{r}/samples"] = read_jsonl(directory / "samples.jsonl")
        found[f"{r}/pairs"] = read_jsonl(directory / "pairs.jsonl")
        found[f"{r}/weights"] = load_file(directory / "model" / "model.safetensors")
        found[f"{r}/verdicts"] = [
            p["correct"] for p in json.loads((directory / "evaluation.json").read_text())["problems"]
        ]
    return found


def assert_same(found: dict, expected: dict) -> None:
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        if key.endswith("weights"):
            assert value.keys() == found[key].keys()
            for name in value:
                torch.testing.assert_close(found[key][name], value[name], rtol=1e-6, atol=1e-7, msg=f"{key} {name}")
        else:
            assert found[key] == value, key


@pytest.fixture(scope="module")
def uninterrupted(critical_models, problems, tmp_path_factory) -> tuple[Path, list[dict]]:
    run_dir = tmp_path_factory.mktemp("iterate") / "run"
    rows = iterate.run(config(critical_models["positive"], problems, run_dir))
    return run_dir, rows


def test_two_rounds_end_to_end(uninterrupted):
    run_dir, rows = uninterrupted
    assert [row["round"] for row in rows] == [0, 1, 2]
    assert all(0 <= row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"] <= 1 for row in rows)
    assert all(row["pairs"] > 0 and 0 <= row["reward_accuracy"] <= 1 for row in rows[1:])
    assert (run_dir / "accuracy_per_round.png").is_file()
    progress = json.loads((run_dir / "progress.json").read_text())["done"]
    assert list(progress) == [
        "round-0/evaluate",
        *(f"round-{r}/{stage}" for r in (1, 2) for stage in ("sample", "pairs", "train", "merge", "evaluate")),
    ]
    # each round samples from the previous round's policy
    for r, start in ((1, None), (2, run_dir / "round-1" / "model")):
        record = json.loads((run_dir / f"round-{r}" / "samples.jsonl.run.json").read_text())
        assert start is None or record["model_name_or_path"] == str(start)


def test_a_finished_run_says_it_is_complete_and_prints_its_table_once(
    uninterrupted, critical_models, problems, capsys
):
    run_dir, rows = uninterrupted
    capsys.readouterr()
    assert iterate.run(config(critical_models["positive"], problems, run_dir)) == rows
    out = capsys.readouterr().out
    assert "After round" not in out  # no round ran
    assert out.count(f"The run in {run_dir.resolve()} is complete: its 2 round(s) were done before") == 1
    assert out.count("round  accuracy") == 1 and out.count("\n    2  ") == 1  # the table, once, with round 2


def test_a_rounds_reference_is_the_previous_rounds_policy(uninterrupted, critical_models):
    """Round 2 trains a LoRA adapter on round 1's merged policy: with the adapter disabled (the reference) it scores as
    round 1's policy, merged or as base + adapter."""
    run_dir, _ = uninterrupted
    ids = torch.tensor([[5, 20, 6, 8, 31, 9, 20, 7, 30, 12]])
    round_two = AutoPeftModelForCausalLM.from_pretrained(run_dir / "round-2" / "train")
    with torch.no_grad(), round_two.disable_adapter():
        reference = round_two(ids).logits
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(run_dir / "round-1" / "model")(ids).logits
        unmerged = AutoPeftModelForCausalLM.from_pretrained(run_dir / "round-1" / "train")(ids).logits
        start = AutoModelForCausalLM.from_pretrained(critical_models["positive"])(ids).logits
    torch.testing.assert_close(reference, merged, rtol=0, atol=0)
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(merged, start, atol=1e-4)  # round 1 did move the policy


class Killed(BaseException):
    """Stands for SIGKILL: no handler of the project's catches it."""


def kill_in(stage: str, monkeypatch) -> None:
    """Make round 1's `stage` die half-way, leaving what a kill there leaves."""
    if stage == "sample":
        from trl_adpo.pipeline import sampling

        real, calls = sampling.write_jsonl, []

        def second_batch_cut(rows, path, append=False):
            calls.append(path)
            if len(calls) == 2:
                real(rows[:3], path, append=True)
                raise Killed
            real(rows, path, append=append)

        monkeypatch.setattr(sampling, "write_jsonl", second_batch_cut)
    elif stage == "pairs":
        from trl_adpo.cli import pairs

        def half_written(rows, path, append=False):
            Path(path).write_text(json.dumps(rows[0]) + "\n")
            raise Killed

        monkeypatch.setattr(pairs, "write_jsonl", half_written)
    elif stage == "train":
        from trl_adpo.trainer import ADPOTrainer

        def saved_then_killed(self, output_dir=None, _internal_call=False):
            super(ADPOTrainer, self).save_model(output_dir, _internal_call)
            raise Killed

        monkeypatch.setattr(ADPOTrainer, "save_model", saved_then_killed)
    elif stage == "merge":
        from transformers import PreTrainedTokenizerBase

        def killed_before_the_rename(self, directory, *args, **kwargs):
            raise Killed

        monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", killed_before_the_rename)
    else:
        from trl_adpo.cli import evaluate

        real, calls = evaluate.score, []

        def second_evaluation_killed(*args, **kwargs):  # the first is round 0's
            calls.append(1)
            if len(calls) == 2:
                raise Killed
            return real(*args, **kwargs)

        monkeypatch.setattr(evaluate, "score", second_evaluation_killed)


@pytest.mark.parametrize("stage", ["sample", "pairs", "train", "merge", "evaluate"])
def test_a_run_killed_in_any_stage_resumes_to_what_an_uninterrupted_run_leaves(
    uninterrupted, critical_models, problems, tmp_path, monkeypatch, stage
):
    run_dir = tmp_path / "run"
    settings = config(critical_models["positive"], problems, run_dir)
    with monkeypatch.context() as patch:
        kill_in(stage, patch)
        with pytest.raises(Killed):
            iterate.run(settings)
    done = json.loads((run_dir / "progress.json").read_text())["done"]
    assert f"round-1/{stage}" not in done and "round-0/evaluate" in done
    before = {name: (run_dir / name).stat().st_mtime_ns for name in ("round-0/evaluation.json",)}
    iterate.run(settings)
    assert (run_dir / "round-0" / "evaluation.json").stat().st_mtime_ns == before[
        "round-0/evaluation.json"
    ]  # not redone
    assert_same(outputs(run_dir), outputs(uninterrupted[0]))


def test_kill_9_during_training_then_the_same_command_finishes_the_run(
    uninterrupted, critical_models, problems, tmp_path
):
    run_dir = tmp_path / "run"
    config_file = tmp_path / "iterate.yaml"
    config_file.write_text(yaml.safe_dump(config(critical_models["positive"], problems, run_dir)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    process = subprocess.Popen(
        [str(COMMAND), "iterate", "--config", str(config_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (run_dir / "round-1" / "train").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = subprocess.run(
        [str(COMMAND), "iterate", "--config", str(config_file)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accuracy  " in result.stdout and "95% interval" in result.stdout
    assert_same(outputs(run_dir), outputs(uninterrupted[0]))


def test_another_config_in_the_same_output_dir_is_refused(uninterrupted, critical_models, problems):
    run_dir, _ = uninterrupted
    changed = config(critical_models["positive"], problems, run_dir)
    changed["train"]["learning_rate"] = 1e-4
    with pytest.raises(ValueError, match=r"holds a run of another config: train was .* Resuming would mix two runs"):
        iterate.run(changed)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c["train"].update(output_dir="x"), r"section train: 'output_dir' is set by iterate"),
        (lambda c: c["train"].update(num_segmnts=4), r"section train: .*unknown key 'num_segmnts'"),
        (lambda c: c.update(round=3), r"unknown key 'round'"),
        (lambda c: c.update(rounds=0), r"rounds must be an integer >= 1"),
    ],
    ids=["set-by-iterate", "unknown-stage-key", "unknown-key", "rounds"],
)
def test_bad_configs_fail_before_any_work(critical_models, problems, tmp_path, change, message):
    settings = config(critical_models["positive"], problems, tmp_path / "run")
    change(settings)
    config_file = tmp_path / "iterate.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    with pytest.raises(ValueError, match=message):
        iterate.run(iterate.load_config(config_file, None), str(config_file))
    assert not (tmp_path / "run" / "round-0").exists()


def test_start_samples_serve_as_round_one_only_if_sampled_with_the_same_options(
    uninterrupted, critical_models, problems, tmp_path
):
    start_samples = uninterrupted[0] / "round-1" / "samples.jsonl"  # sampled from the start with the same section
    reused = config(critical_models["positive"], problems, tmp_path / "reused")
    reused.update(rounds=1, evaluate_start=False, start_samples=str(start_samples))
    iterate.run(reused)
    assert (tmp_path / "reused" / "round-1" / "samples.jsonl").read_text() == start_samples.read_text()

    other = config(critical_models["positive"], problems, tmp_path / "other")
    other.update(rounds=1, evaluate_start=False, start_samples=str(start_samples))
    other["sample"]["temperature"] = 0.7
    with pytest.raises(ValueError, match="holds the samples of another run: temperature was 1.0 there and is 0.7 now"):
        iterate.run(other)
