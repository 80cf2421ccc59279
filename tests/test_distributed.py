"""Scale-out and recovery: 2 processes (gloo, CPU) against 1, exact resume, and the accelerate configs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from conftest import ON_TRL028

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_adpo.py"
COMPARED = [
    "loss",
    "grad_norm",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "logps/chosen",
    "adpo/feedback_length",
    "adpo/segment_accuracy",
    "adpo/segment_margin",
]


def run_args(quickstart: Path, output_dir: Path, batch_size: int, *extra: str) -> list[str]:
    return [
        "--config",
        str(ROOT / "configs" / "adpo_adaptive_m16.yaml"),
        "--model_name_or_path",
        str(quickstart / "model"),
        "--dataset_name",
        str(quickstart / "train.jsonl"),
        "--output_dir",
        str(output_dir),
        "--use_cpu",
        "true",
        "--bf16",
        "false",
        "--max_steps",
        "4",
        "--per_device_train_batch_size",
        str(batch_size),
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
        "--save_strategy",
        "no",
        "--max_length",
        "128",
        "--disable_tqdm",
        "true",
        *extra,
    ]


def train_logs(output_dir: Path) -> list[dict]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "loss" in entry]


def launch(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.parametrize("precompute", [False, True], ids=["live-reference", "precomputed-reference"])
def test_two_processes_give_the_loss_curve_of_one_with_the_same_global_batch(quickstart, tmp_path, precompute):
    extra = ["--precompute_ref_log_probs", "true", "--precompute_ref_batch_size", "5"] if precompute else []
    single = launch([sys.executable, str(SCRIPT), *run_args(quickstart, tmp_path / "one", 8, *extra)])
    double = launch(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(ROOT / "configs/accelerate/ddp.yaml"),
            "--num_processes",
            "2",
            "--main_process_port",
            "29517" if precompute else "29518",
            str(SCRIPT),
            *run_args(quickstart, tmp_path / "two", 4, *extra),
        ]
    )
    one, two = train_logs(tmp_path / "one"), train_logs(tmp_path / "two")
    assert len(one) == len(two) == 4
    for step, (expected, actual) in enumerate(zip(one, two)):
        for key in COMPARED:  # metrics of the whole global batch, not of rank 0's half
            assert actual[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), (step, key)
    if precompute:
        assert "computed by" not in single.stdout  # one process: nothing to report
        # 103 batches of 5 rows, 52 per process: the processes share the rows instead of each computing all 512;
        # accelerate pads the last batch to an even split, and the gather drops the 8 repeated rows again
        assert "512 rows, computed by 2 processes in shares of [260, 260]" in double.stdout


@pytest.mark.parametrize("precompute", [False, True], ids=["live-reference", "precomputed-reference"])
def test_resuming_from_a_checkpoint_repeats_the_uninterrupted_losses(train_cli, quickstart, tmp_path, precompute):
    extra = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3", "--lr_scheduler_type", "linear"]
    extra += ["--precompute_ref_log_probs", "true"] if precompute else []
    train_cli.run(*train_cli.parse_args(run_args(quickstart, tmp_path / "full", 4, *extra)))
    uninterrupted = train_logs(tmp_path / "full")

    # the run that stopped after step 3 holds what the uninterrupted run held then: its checkpoint-3
    shutil.copytree(tmp_path / "full" / "checkpoint-3", tmp_path / "stopped" / "checkpoint-3")
    if precompute and ON_TRL028:  # TRL 0.28 computes the reference when training starts: the checkpoint keeps it
        assert (tmp_path / "stopped" / "checkpoint-3" / "adpo_reference_logps" / "train").is_dir()
    train_cli.run(
        *train_cli.parse_args(
            run_args(
                quickstart,
                tmp_path / "stopped",
                4,
                *extra,
                "--resume_from_checkpoint",
                str(tmp_path / "stopped" / "checkpoint-3"),
            )
        )
    )
    resumed = train_logs(tmp_path / "stopped")
    assert [entry["step"] for entry in resumed] == [1, 2, 3, 4, 5, 6]
    for expected, actual in zip(uninterrupted[3:], resumed[3:]):
        for key in COMPARED:
            assert actual[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-7), (actual["step"], key)


@pytest.mark.parametrize("kill", ["step:5", "save:4"], ids=["killed-during-training", "killed-while-saving"])
@pytest.mark.parametrize("precompute", [False, True], ids=["live-reference", "precomputed-reference"])
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_losses(quickstart, tmp_path, kill, precompute):
    extra = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2", "--lr_scheduler_type", "linear"]
    extra += ["--precompute_ref_log_probs", "true"] if precompute else []
    launch([sys.executable, str(SCRIPT), *run_args(quickstart, tmp_path / "full", 4, *extra)])
    killed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "killed_training.py"),
            kill,
            *run_args(quickstart, tmp_path / "killed", 4, *extra),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    newest = tmp_path / "killed" / "checkpoint-4"
    if kill == "save:4":  # the kill left checkpoint-4 with its weights but without trainer_state.json
        assert (newest / "model.safetensors").is_file() and not (newest / "trainer_state.json").exists()
    resumed = launch(
        [
            sys.executable,
            str(SCRIPT),
            *run_args(
                quickstart,
                tmp_path / "killed",
                4,
                *extra,
                "--resume_from_checkpoint",
                str(newest),
            ),
        ]
    )
    if kill == "save:4":
        assert (
            f"{newest} is incomplete (it has no trainer_state.json, the file Trainer writes last): the run was "
            f"stopped while saving it. Resuming from {tmp_path / 'killed' / 'checkpoint-2'}"
        ) in resumed.stderr
    first_resumed_step = 5 if kill == "step:5" else 3
    uninterrupted = {entry["step"]: entry for entry in train_logs(tmp_path / "full")}
    after = [entry for entry in train_logs(tmp_path / "killed") if entry["step"] >= first_resumed_step]
    assert [entry["step"] for entry in after] == list(range(first_resumed_step, 7))
    for actual in after:
        for key in COMPARED:
            assert actual[key] == pytest.approx(uninterrupted[actual["step"]][key], rel=1e-6, abs=1e-7), (
                actual["step"],
                key,
            )


def test_resuming_a_precomputed_run_from_a_checkpoint_without_its_reference(train_cli, quickstart, tmp_path):
    """TRL 0.28 computes precomputed reference log-probs when training starts, after the checkpoint's weights are
    loaded, so a checkpoint that does not keep them is refused; TRL 1.x computes them at construction, from the model
    it was given, so resuming from such a checkpoint is right."""
    extra = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3"]
    train_cli.run(
        *train_cli.parse_args(run_args(quickstart, tmp_path / "full", 4, *extra))
    )  # live reference: no columns
    resume = run_args(
        quickstart,
        tmp_path / "other",
        4,
        *extra,
        "--precompute_ref_log_probs",
        "true",
        "--resume_from_checkpoint",
        str(tmp_path / "full" / "checkpoint-3"),
    )
    if ON_TRL028:
        with pytest.raises(ValueError, match="holds no per-token reference log-probs"):
            train_cli.run(*train_cli.parse_args(resume))
    else:
        train_cli.run(*train_cli.parse_args(resume))
        for expected, actual in zip(train_logs(tmp_path / "full")[3:], train_logs(tmp_path / "other")[3:]):
            assert actual["loss"] == pytest.approx(expected["loss"], rel=1e-6), actual["step"]


def test_an_fsdp_config_on_the_cpu_says_it_runs_as_plain_data_parallel(quickstart, tmp_path):
    """accelerate enables FSDP on GPUs only and turns an FSDP config into DDP on the CPU without a word; the command
    says so instead of letting the run pass for sharded."""
    result = launch(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(ROOT / "configs/accelerate/fsdp.yaml"),
            "--num_processes",
            "2",
            "--mixed_precision",
            "no",
            "--main_process_port",
            "29519",
            str(SCRIPT),
            *run_args(quickstart, tmp_path / "fsdp", 4, "--max_steps", "1"),
        ]
    )
    assert "Distributed: data parallel (MULTI_CPU, backend gloo), 2 processes" in result.stdout
    assert (
        "FSDP was asked for (an FSDP accelerate config), but accelerate runs it as plain data parallel"
        in result.stderr
    )


@pytest.mark.parametrize(
    "name,kind",
    [("ddp", "MULTI_GPU"), ("deepspeed_zero2", "DEEPSPEED"), ("deepspeed_zero3", "DEEPSPEED"), ("fsdp", "FSDP")],
)
def test_accelerate_configs_parse(name, kind):
    config = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value == kind
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])
    if name == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
