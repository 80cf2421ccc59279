"""scripts/train_adpo.py: every config in configs/, end-to-end runs, Hub pushes, and bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from conftest import tiny_run
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM

from trl_adpo.examples.arithmetic import preference_rows
from trl_adpo.pipeline.io import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_adpo.py"
CONFIGS = sorted((ROOT / "configs").glob("**/*.yaml"))
CRITICAL_CONFIGS = [c for c in CONFIGS if "critical" in c.name]
PAPER_RECIPES = sorted((ROOT / "configs" / "paper").glob("*/*.yaml"))
RECIPES = [
    c
    for c in CONFIGS
    if c.parent.name == "configs"
    and not c.name.startswith("quickstart")
    and not c.name.endswith("_8b.yaml")
    and c not in CRITICAL_CONFIGS
] + [c for c in PAPER_RECIPES if c.parent.name == "llama3_8b"]


def command_for(config: Path):
    """The `trl-adpo` subcommand module a config is for."""
    from trl_adpo.cli import evaluate, sample, train, train_critical

    if config in CRITICAL_CONFIGS:
        return train_critical
    return {"sample": sample, "evaluate": evaluate}.get(config.stem.split("_")[0], train)


ITERATE_CONFIGS = [c for c in CONFIGS if c.stem == "iterate"]


@pytest.mark.parametrize("config", ITERATE_CONFIGS, ids=lambda c: str(c.relative_to(ROOT / "configs")))
def test_every_iterate_config_parses_stage_by_stage(config, tmp_path):
    from trl_adpo.cli import iterate

    settings = iterate.load_config(config, None)
    for stage in iterate.STAGES:
        (tmp_path / f"{stage}.yaml").write_text(yaml.safe_dump(settings[stage]))
        argv = ["--config", str(tmp_path / f"{stage}.yaml"), *(["--use_cpu", "true"] if stage == "train" else [])]
        parsed = iterate.stage_command(stage).make_parser().parse(argv)
        for key, value in settings[stage].items():
            owner = next(o for o in parsed if hasattr(o, key))
            parsed_value = getattr(owner, key)
            assert value in (parsed_value, getattr(parsed_value, "value", None)) or key == "report_to", (stage, key)


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


# --- every config -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [c for c in CONFIGS if c.parent.name != "accelerate" and c not in ITERATE_CONFIGS],
    ids=lambda c: str(c.relative_to(ROOT / "configs")),
)
def test_every_config_parses_into_the_options_it_names(config):
    command = command_for(config)
    # use_cpu lets TrainingArguments accept the GPU recipes' bf16 on this machine
    extra = ["--use_cpu", "true"] if command.__name__.endswith(("train", "train_critical")) else []
    parsed_args = command.make_parser().parse(["--config", str(config), *extra])
    written = yaml.safe_load(config.read_text())
    for key, value in written.items():
        if key == "report_to" and value == "none":
            value = []  # TrainingArguments' spelling of "none"
        owner = next(o for o in parsed_args if hasattr(o, key))
        parsed = getattr(owner, key)
        assert parsed == value or str(parsed) == str(value) or getattr(parsed, "value", None) == value, key


@pytest.mark.parametrize("config", RECIPES, ids=lambda c: str(c.relative_to(ROOT / "configs")))
def test_each_family_recipe_trains_a_tiny_model(train_cli, quickstart, critical_models, tmp_path, config):
    extra = ["--dtype", "float32"] if "dtype" in yaml.safe_load(config.read_text()) else []  # the paper's bf16 LoRA
    if config.name in ("cdpo.yaml", "cadpo.yaml"):  # and their two critical-token models
        extra += [
            "--positive_model",
            str(critical_models["positive"]),
            "--negative_model",
            str(critical_models["negative"]),
        ]
    trainer = train_cli.run(*train_cli.parse_args(["--config", str(config), *tiny_run(quickstart, tmp_path), *extra]))
    written = yaml.safe_load(config.read_text())
    for key in (
        "granularity",
        "window_size",
        "num_segments",
        "step_delimiter",
        "label_smoothing",
        "beta",
        "critical_token_gamma",
    ):
        if key in written:
            assert getattr(trainer.args, key) == written[key]
    assert trainer.state.global_step == 2
    (AutoPeftModelForCausalLM if trainer.args.critical_tokens else AutoModelForCausalLM).from_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert trainer.args.granularity_description in card and f"| method | {trainer.args.method_name} |" in card


def test_the_8b_recipes_ask_for_lora_and_4bit(train_cli):
    _, training_args, lora = train_cli.parse_args(
        ["--config", str(ROOT / "configs" / "lora_8b.yaml"), "--use_cpu", "true"]
    )
    _, _, qlora = train_cli.parse_args(["--config", str(ROOT / "configs" / "qlora_8b.yaml"), "--use_cpu", "true"])
    assert lora.use_peft and not lora.load_in_4bit and training_args.bf16 and training_args.gradient_checkpointing
    assert qlora.use_peft and qlora.load_in_4bit and qlora.bnb_4bit_quant_type == "nf4"


# --- end to end, in a subprocess, as a user runs it ---------------------------------------------------------------


def test_quickstart_end_to_end(tmp_path):
    result = run_script("--config", str(ROOT / "configs" / "quickstart.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = tmp_path / "outputs" / "quickstart-adpo"
    assert f"Model saved to {output}" in result.stdout
    assert "it/s]" in result.stderr  # Trainer's progress bar
    assert (tmp_path / ".quickstart" / "model" / "config.json").exists()
    assert json.loads((output / "eval_results.json").read_text())["eval_adpo/feedback_length"] > 1
    AutoModelForCausalLM.from_pretrained(output)
    # a newcomer runs the demo again: it replaces its own output, and says so
    again = run_script("--config", str(ROOT / "configs" / "quickstart.yaml"), "--max_steps", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Replaced the earlier run in {output}." in again.stdout
    assert json.loads((output / "trainer_state.json").read_text())["global_step"] == 2


@pytest.mark.parametrize("config", ["quickstart_lora.yaml", "quickstart_qlora.yaml"])
def test_lora_and_4bit_configs_end_to_end(tmp_path, config):
    result = run_script("--config", str(ROOT / "configs" / config), "--max_steps", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = next((tmp_path / "outputs").iterdir())
    assert (output / "adapter_model.safetensors").exists() and not (output / "model.safetensors").exists()
    AutoPeftModelForCausalLM.from_pretrained(output)


def test_local_conversational_jsonl_end_to_end(tmp_path, quickstart):
    rows = [
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
        }
        for row in preference_rows(24, seed=5)
    ]
    write_jsonl(rows, tmp_path / "conversations.jsonl")
    result = run_script(
        "--config",
        str(ROOT / "configs" / "adpo_static_k2.yaml"),
        *tiny_run(quickstart, tmp_path / "out", "--gradient_checkpointing", "false"),
        "--dataset_name",
        "conversations.jsonl",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")


# --- Hub pushes, intercepted -------------------------------------------------------------------------------------


def test_push_to_hub_uploads_model_tokenizer_config_and_card(train_cli, quickstart, tmp_path, monkeypatch):
    import huggingface_hub
    import transformers.trainer

    uploads = []

    def fake_create_repo(repo_id, **kwargs):
        return types.SimpleNamespace(repo_id=repo_id)

    def fake_upload_folder(repo_id, folder_path, **kwargs):
        files = {p.name: p for p in Path(folder_path).iterdir() if p.is_file()}
        uploads.append(
            (repo_id, sorted(files), files["README.md"].read_text(), files["training_config.yaml"].read_text())
        )

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    # Trainer reaches the Hub through HfApi's methods, or (transformers < 5.3) through functions bound at import
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: fake_create_repo(repo_id))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: fake_upload_folder(**kw))
    for name, fake in (("create_repo", fake_create_repo), ("upload_folder", fake_upload_folder)):
        if hasattr(transformers.trainer, name):
            monkeypatch.setattr(transformers.trainer, name, fake)
    args = train_cli.parse_args(
        [
            "--config",
            str(ROOT / "configs" / "adpo_adaptive_m16.yaml"),
            *tiny_run(quickstart, tmp_path),
            "--push_to_hub",
            "true",
            "--hub_model_id",
            "someone/tiny-adpo",
            "--logging_steps",
            "1",
        ]
    )
    train_cli.run(*args)

    assert len(uploads) == 1
    repo_id, files, card, run_config = uploads[0]
    assert repo_id == "someone/tiny-adpo"
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "training_config.yaml",
        "README.md",
        "training_dynamics.png",
    ):
        assert name in files, name
    assert "![training dynamics](training_dynamics.png)" in card
    for expected in (
        "ADPO",
        "| granularity | adaptive, m=16 |",
        "| beta | 0.1 |",
        str(quickstart / "train.jsonl"),
        "2602.09533",
        "oi2026adpo",
    ):
        assert expected in card, expected
    assert yaml.safe_load(run_config)["num_segments"] == 16
    assert "hf_test_token" not in run_config


def test_push_to_hub_without_a_token_fails_before_training(train_cli, quickstart, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    args = train_cli.parse_args(
        [
            "--config",
            str(ROOT / "configs" / "adpo_static_k1.yaml"),
            *tiny_run(quickstart, tmp_path / "out"),
            "--push_to_hub",
            "true",
            "--hub_model_id",
            "someone/tiny-adpo",
        ]
    )
    with pytest.raises(ValueError, match="no Hugging Face token was found: run `hf auth login`"):
        train_cli.run(*args)
    assert not (tmp_path / "out").exists()


# --- bad input: a clear error before any training step ------------------------------------------------------------


def test_unknown_yaml_key_names_the_file_and_the_key(train_cli, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("granularity: adaptive\nnum_segmnts: 16\n")
    with pytest.raises(ValueError, match=rf"{config}: unknown key 'num_segmnts': .* Did you mean 'num_segments'\?"):
        train_cli.parse_args(["--config", str(config)])
    with pytest.raises(FileNotFoundError, match=r"--config: the file '.*absent.yaml' does not exist"):
        train_cli.parse_args(["--config", str(tmp_path / "absent.yaml")])


def test_missing_data_file_is_named(train_cli, quickstart, tmp_path):
    args = train_cli.parse_args(
        [
            "--config",
            str(ROOT / "configs" / "adpo_static_k1.yaml"),
            *tiny_run(quickstart, tmp_path / "out"),
            "--dataset_name",
            str(tmp_path / "missing.jsonl"),
        ]
    )
    with pytest.raises(FileNotFoundError, match=r"dataset_name: the file '.*missing.jsonl' does not exist"):
        train_cli.run(*args)


def test_an_empty_quickstart_dir_builds_nothing(train_cli, quickstart, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path is the working directory: nothing may be written there
    args = train_cli.parse_args(
        [
            "--config",
            str(ROOT / "configs" / "quickstart.yaml"),
            *tiny_run(quickstart, tmp_path / "out"),
            "--quickstart_dir",
            "",
            "--dataset_name",
            str(tmp_path / "missing.jsonl"),
        ]
    )
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        train_cli.run(*args)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "rows,extra,message",
    [
        (
            [{"prompt": "a = 1 ; b = ?", "answer": "2"}],
            [],
            r"The train dataset lacks the column\(s\) \['chosen', 'rejected'\]",
        ),
        (
            [{"prompt": "a = 1", "chosen": "answer 1", "rejected": "answer 2"}] * 2
            + [{"prompt": "a = 1", "chosen": "answer 1", "rejected": ""}],
            [],
            r"data.jsonl, line 3 has an empty `rejected` completion",
        ),
        (
            [
                {"prompt": "a = 1", "chosen": "answer 1", "rejected": "answer 2"},
                {"prompt": " ".join(["a = 1 ;"] * 8), "chosen": "answer 1", "rejected": "answer 2"},
            ],
            ["--max_length", "12", "--truncation_mode", "keep_start"],
            r"data.jsonl, line 2 has no `chosen` token left to score after truncation to max_length=12",
        ),
        (
            [
                {"prompt": "a = 1", "chosen": "answer 1", "rejected": "answer 2"},
                {"prompt": "a = 1", "chosen": 7, "rejected": "x"},
            ],
            [],
            r"data.jsonl, line 2: `chosen` is an int \(7\)\. A prompt or completion must be text, or a list",
        ),
        (
            [{"prompt": "a = 1", "chosen": {"text": "answer 1"}, "rejected": "answer 2"}],
            [],
            r"data.jsonl, line 1: `chosen` is a dict \(\{'text': 'answer 1'\}\)",
        ),
        (
            [
                {
                    "prompt": [{"role": "user", "content": "a = 1"}],
                    "chosen": [{"text": "answer 1"}],
                    "rejected": [{"role": "assistant", "content": "answer 2"}],
                }
            ],
            [],
            r"data.jsonl, line 1: `chosen` is a list whose items are not messages",
        ),
        (
            [{"prompt": "a = 1", "chosen": "answer 1", "rejected": "answer 2"}],
            ["--beta", "0"],
            r"ADPOConfig: beta must be > 0, got 0.0",
        ),
        (
            [
                {"prompt": "a = 1", "chosen": "answer 1", "rejected": "answer 2"},
                {
                    "prompt": [{"role": "user", "content": "a = 1"}],
                    "chosen": [{"role": "assistant", "content": "answer 1"}],
                    "rejected": [{"role": "assistant", "content": "answer 2"}],
                },
            ],
            [],
            r"data.jsonl, line 2: `prompt` is conversational \(lists of messages\) but the dataset's first row is "
            r"plain text",
        ),
        (
            [{"prompt": "a = 1", "chosen": "answer 1", "rejected": "answer 1"}] * 3,
            [],
            r"In every row of the train dataset the chosen and rejected completions are the same",
        ),
        (
            [{"prompt": "a = 1", "chosen": "answer 1", "rejected": "answer 2"}],
            ["--granularity", "step", "--step_pattern", "x*"],
            r"step_pattern 'x\*' matches the empty string",
        ),
    ],
    ids=[
        "missing-columns",
        "empty-completion",
        "truncated-away",
        "number-completion",
        "dict-completion",
        "list-of-non-messages",
        "beta-zero",
        "mixed-formats",
        "all-identical",
        "empty-matching-pattern",
    ],
)
def test_bad_rows_fail_before_training(train_cli, quickstart, tmp_path, rows, extra, message):
    write_jsonl(rows, tmp_path / "data.jsonl")
    with pytest.raises(ValueError, match=message):
        train_cli.run(
            *train_cli.parse_args(
                [
                    "--config",
                    str(ROOT / "configs" / "adpo_static_k1.yaml"),
                    *tiny_run(quickstart, tmp_path / "out"),
                    "--dataset_name",
                    str(tmp_path / "data.jsonl"),
                    *extra,
                ]
            )
        )
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "content,message",
    [
        ("", r"dataset_name: the file '.*data.jsonl' is empty"),
        (
            '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b" "rejected": "c"}\n',
            r"data.jsonl, line 2: not valid JSON",
        ),
        (
            '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "caf\xe9", "chosen": "b", "rejected": "c"}\n',
            r"data.jsonl, line 2: not UTF-8 text \(byte 0xe9",
        ),
        (
            '[{"prompt": "a", "chosen": "b", "rejected": "c"},\n {"prompt": "a" "chosen": "b"}]\n',
            r"data.json, line 2: not valid JSON",
        ),
    ],
    ids=["empty-file", "malformed-line", "not-utf8", "malformed-json-file"],
)
def test_a_bad_data_file_fails_before_the_model_loads(train_cli, quickstart, tmp_path, monkeypatch, content, message):
    data = tmp_path / ("data.json" if "data.json," in message else "data.jsonl")
    data.write_bytes(content.encode("latin-1") if "UTF-8" in message else content.encode())
    args = train_cli.parse_args(
        [
            "--config",
            str(ROOT / "configs" / "adpo_static_k1.yaml"),
            *tiny_run(quickstart, tmp_path / "out"),
            "--dataset_name",
            str(data),
        ]
    )
    monkeypatch.setattr(
        train_cli, "load_model", lambda *a, **k: pytest.fail("the model was loaded before the data was checked")
    )
    with pytest.raises(ValueError, match=message):
        train_cli.run(*args)


def test_help_documents_every_adpo_option(train_cli):
    text = train_cli.make_parser().format_help()
    for option in (
        "--granularity {static,adaptive,step}",
        "--window_size",
        "--num_segments",
        "--segment_reduction",
        "--step_delimiter",
        "--step_pattern",
        "--quickstart_dir",
        "--eval_dataset_name",
        "--load_in_4bit",
        "--use_peft",
    ):
        assert option in text, option
    assert "--step_delimiter" in text and "(default: '\\n')" in " ".join(text.split())


def test_help_lists_the_common_options_and_help_all_every_one(train_cli, capsys):
    for flag, shown, hidden in (("--help", True, False), ("--help-all", True, True)):
        with pytest.raises(SystemExit):
            train_cli.parse_args([flag])
        text = capsys.readouterr().out
        assert ("--learning_rate" in text) and ("--num_segments" in text) and ("--lora_r" in text) == shown
        assert ("--adam_beta1" in text) == hidden and ("--lora_dropout" in text) == hidden
        assert ("lists them all" in text) == (not hidden)
    assert len(text.splitlines()) > 3 * len(train_cli.make_parser(full_help=False).format_help().splitlines())


# --- nothing the user saved is lost -------------------------------------------------------------------------------


def test_a_finished_run_is_not_overwritten_unless_asked_and_then_leaves_no_stale_checkpoint(
    train_cli, quickstart, tmp_path
):
    output = tmp_path / "run"
    first = train_cli.run(
        *train_cli.parse_args(tiny_run(quickstart, output, "--save_strategy", "steps", "--save_steps", "1"))
    )
    assert first.state.global_step == 2 and (output / "checkpoint-2").is_dir()
    weights = (output / "model.safetensors").read_bytes()
    with pytest.raises(
        ValueError,
        match=r"already holds a run \(trainer_state.json, model.safetensors, checkpoint-1, "
        r"checkpoint-2\).*--resume_from_checkpoint true.*--overwrite_output_dir true",
    ):
        train_cli.run(*train_cli.parse_args(tiny_run(quickstart, output, "--learning_rate", "5e-3")))
    assert (output / "model.safetensors").read_bytes() == weights  # untouched

    train_cli.run(
        *train_cli.parse_args(tiny_run(quickstart, output, "--max_steps", "3", "--overwrite_output_dir", "true"))
    )
    assert not list(output.glob("checkpoint-*"))  # the old run's checkpoints are gone: none can be resumed by mistake
    assert (output / "model.safetensors").read_bytes() != weights
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 3  # the new run's state


def test_no_written_file_holds_a_token_and_a_run_resumes_and_reruns_from_what_it_saved(
    train_cli, quickstart, tmp_path, monkeypatch
):
    import torch

    secrets = ("hf_FLAGsecret123456", "hf_ENVsecret654321")
    monkeypatch.setenv("HF_TOKEN", secrets[1])
    output = tmp_path / "run"
    args = tiny_run(
        quickstart,
        output,
        "--hub_token",
        secrets[0],
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--pad_token",
        "<pad>",
        "--logging_steps",
        "1",
    )
    trainer = train_cli.run(*train_cli.parse_args(args))
    assert trainer.args.hub_token == secrets[0]  # the live config keeps it, for a push
    written = [path for path in output.rglob("*") if path.is_file()]
    assert any(path.parent.name == "checkpoint-1" for path in written)
    for path in written:
        data = path.read_bytes()
        assert not any(secret.encode() in data for secret in secrets), path
    for saved in output.rglob("training_args.bin"):
        assert torch.load(saved, weights_only=False).hub_token == "<HUB_TOKEN>"

    run_config = yaml.safe_load((output / "training_config.yaml").read_text())
    assert run_config["hub_token"] is None  # credentials left empty, every other option kept
    for name, value in (
        ("critical_token_gamma", 1.0),
        ("weight_chosen_tokens", False),
        ("pad_token", "<pad>"),
        ("num_segments", 256),
        ("max_steps", 2),
    ):
        assert run_config[name] == value, name
    rerun = train_cli.parse_args(
        ["--config", str(output / "training_config.yaml"), "--output_dir", str(tmp_path / "again")]
    )
    original = train_cli.parse_args(args + ["--output_dir", str(tmp_path / "again")])
    for parsed, expected in zip(rerun, original):
        for field in dataclasses.fields(expected):
            if field.init and field.name != "hub_token":
                assert getattr(parsed, field.name) == getattr(expected, field.name), field.name

    # resuming from a checkpoint whose saved arguments hold no token: the token comes from the flag again
    resumed = train_cli.run(
        *train_cli.parse_args(
            tiny_run(
                quickstart,
                output,
                "--hub_token",
                secrets[0],
                "--max_steps",
                "3",
                "--resume_from_checkpoint",
                "true",
                "--save_strategy",
                "no",
            )
        )
    )
    assert resumed.state.global_step == 3 and resumed.args.hub_token == secrets[0]


def test_report_to_tensorboard_writes_the_adpo_metrics_to_event_files(train_cli, quickstart, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output = tmp_path / "run"
    args = tiny_run(
        quickstart,
        output,
        "--report_to",
        "tensorboard",
        "--logging_steps",
        "1",
        "--max_steps",
        "3",
        "--loss_type",
        "sigmoid",
        "sft",
        "--loss_weights",
        "1.0",
        "1.0",
    )
    train_cli.run(*train_cli.parse_args(args))
    events = sorted((output / "runs").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/rewards/accuracies",
        "train/adpo/feedback_length",
        "train/adpo/segment_accuracy",
        "train/adpo/segment_margin",
        "train/adpo/nll",
    ):
        assert tag in tags, (tag, sorted(tags))
    assert [event.step for event in accumulator.Scalars("train/adpo/segment_accuracy")] == [1, 2, 3]


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_saves_no_model(train_cli, quickstart, tmp_path):
    output = tmp_path / "run"
    args = tiny_run(
        quickstart,
        output,
        "--learning_rate",
        "1e30",
        "--max_steps",
        "4",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--optim",
        "sgd",
    )
    with pytest.raises(
        FloatingPointError,
        match=r"Step 2: the training loss is not finite \(the ADPO loss of pair \d+ of "
        r"the batch is nan\)\. Training stops here, before anything is saved",
    ):
        train_cli.run(*train_cli.parse_args(args))
    assert not (output / "model.safetensors").exists()  # no model of NaN weights
    assert (output / "checkpoint-1" / "model.safetensors").is_file()  # the good checkpoint before it is kept
