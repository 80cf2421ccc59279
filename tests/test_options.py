"""The option index (`trl_adpo.cli.options`): once a subcommand has run, `trl-adpo` answers its help and a mistyped
option or config key without importing it, with the very answer the full path gives."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

from trl_adpo.cli import main as cli
from trl_adpo.cli import options


@pytest.fixture
def index_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_ADPO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "cli"


def without_importing(monkeypatch):
    """Make importing a subcommand fail, so that only an answer from the index can succeed."""

    def refuse(name, *args):
        raise AssertionError(f"{name} was imported")

    monkeypatch.setattr(cli, "importlib", SimpleNamespace(import_module=refuse))


def answer(capsys, argv: list[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    "argv", [["train", "--help"], ["train", "--help-all"], ["sample", "-h"], ["iterate", "--help"]], ids=" ".join
)
def test_a_bare_help_request_is_answered_from_the_index_the_second_time(argv, index_dir, capsys, monkeypatch):
    first = answer(capsys, argv)
    assert first[0] == 0 and f"trl-adpo {argv[0]}" in first[1]
    without_importing(monkeypatch)
    assert answer(capsys, argv) == first


def test_help_all_and_help_are_kept_apart(index_dir, capsys, monkeypatch):
    full = answer(capsys, ["train", "--help-all"])[1]
    short = answer(capsys, ["train", "--help"])[1]
    without_importing(monkeypatch)
    assert answer(capsys, ["train", "--help"])[1] == short
    assert answer(capsys, ["train", "--help-all"])[1] == full
    assert "--adam_beta1" in full and "--adam_beta1" not in short


@pytest.mark.parametrize(
    "command, flag, closest",
    [("train", "--lerning_rate", "--learning_rate"), ("sample", "--max_new_tokes", "--max_new_tokens")],
)
def test_an_unknown_option_gets_the_same_line_from_the_index_as_from_the_parser(
    command, flag, closest, index_dir, capsys, monkeypatch
):
    argv = [command, flag, "1"]
    first = answer(capsys, argv)  # no index yet: the parser refuses it, before any dataclass is built
    assert first[0] == 1
    assert f"unknown option {flag}: it is no option of " in first[2] and f"Did you mean {closest}?" in first[2]
    assert "bf16" not in first[2]  # the option, not a dataclass's check of a default, is what is wrong
    without_importing(monkeypatch)
    assert answer(capsys, argv) == first


def test_an_abbreviation_argparse_accepts_is_not_refused(index_dir, capsys):
    cli.main(["train", "--help"])
    index = options.read_index("train")
    options.check_options(["--learning_rat", "1", "--lora_r=8", "--config", "x.yaml"], index, "trl-adpo train")
    with pytest.raises(ValueError, match="unknown option --lora_rank"):
        options.check_options(["--lora_rank", "8"], index, "trl-adpo train")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "learning_rat: 1\n",
            "unknown key 'learning_rat': it is no option of ScriptArguments, ADPOConfig, ModelConfig",
        ),
        ("hub_model_id: no\n", "hub_model_id is read by YAML as the boolean false"),
        ("beta: [0.1\n", "not valid YAML"),
    ],
)
def test_a_bad_config_file_gets_the_same_line_from_the_index_as_from_the_parser(
    text, message, index_dir, tmp_path, capsys, monkeypatch
):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    first = answer(capsys, ["train", "--config", str(config)])
    assert first[0] == 1 and message in first[2]
    without_importing(monkeypatch)
    assert answer(capsys, ["train", "--config", str(config)]) == first
    missing = answer(capsys, ["train", "--config", str(tmp_path / "missing.yaml")])
    assert missing[0] == 1 and "--config: the file" in missing[2] and "does not exist" in missing[2]


def test_what_the_index_cannot_decide_takes_the_full_path(index_dir, capsys, monkeypatch):
    cli.main(["train", "--help"])
    capsys.readouterr()
    imported = []
    monkeypatch.setattr("trl_adpo.cli.train.main", lambda argv: 7)
    record = lambda name: imported.append(name) or importlib.import_module(name)  # noqa: E731
    monkeypatch.setattr(cli, "importlib", SimpleNamespace(import_module=record))
    assert cli.main(["train", "--learning_rate", "1e-5"]) == 7
    assert imported == ["trl_adpo.cli.train"]


def test_no_value_a_user_gave_is_kept(index_dir, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("hub_token: hf_abcdefghijklmnopqrstuvwxyz\nlearning_rate: 0.123456\n")
    with pytest.raises(SystemExit) as done:  # argparse's end of a help request with options beside it
        cli.main(["train", "--config", str(config), "--help"])
    assert done.value.code == 0
    assert "0.123456" in capsys.readouterr().out  # the help shows the config's values...
    kept = "".join(path.read_text() for path in index_dir.iterdir())
    assert "hf_abcdefghijklmnopqrstuvwxyz" not in kept and "0.123456" not in kept  # ...which the index does not keep
    assert "learning_rate" in kept


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("TRL_ADPO_CACHE", str(blocked))  # cli/ cannot be made under a file
    assert cli.main(["sample", "--help"]) == 0
    assert "trl-adpo sample" in capsys.readouterr().out


def test_the_index_key_follows_the_sources_and_the_library_versions(tmp_path, monkeypatch):
    package = tmp_path / "package"
    (package / "cli").mkdir(parents=True)
    (package / "cli" / "train.py").write_text("x = 1\n")
    key = options.index_key(package)
    (package / "cli" / "train.py").write_text("x = 2\n")
    options.index_key.cache_clear()
    assert options.index_key(package) != key
    (package / "cli" / "train.py").write_text("x = 1\n")
    options.index_key.cache_clear()
    assert options.index_key(package) == key
    monkeypatch.setattr(options.importlib.metadata, "version", lambda name: "99.0")
    options.index_key.cache_clear()
    assert options.index_key(package) != key
    options.index_key.cache_clear()
