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


def test_env_says_how_to_swap_a_cuda_build_for_the_cpu_one_on_a_machine_without_a_gpu():
    from trl_adpo.cli.env import cuda_line

    assert cuda_line("12.8", 2) == "12.8, 2 GPU(s)"
    assert cuda_line(None, 0) == "not available (the CPU build of torch)"
    line = cuda_line("12.8", 0)
    assert line.startswith("not available: torch is a CUDA 12.8 build (several GB) on a machine without a GPU")
    assert line.endswith(
        "pip uninstall -y torch && pip install torch --index-url https://download.pytorch.org/whl/cpu"
    )


@pytest.mark.parametrize(
    "subcommand", ["train", "sample", "pairs", "train-critical", "evaluate", "plot", "inspect", "env"]
)
def test_each_subcommand_has_help(subcommand):
    result = trl_adpo(subcommand, "--help")
    assert result.returncode == 0, result.stderr
    assert f"trl-adpo {subcommand}" in result.stdout


def test_the_readme_cadpo_walk_runs_offline(tmp_path):
    """The quickstart's data, the two critical-token models, then cADPO: the three commands of the README, each cut
    to 8 steps (the configs' own lengths are what the quickstart test and the family recipes' tests run)."""
    for config in ("quickstart.yaml", "quickstart_critical.yaml", "quickstart_cadpo.yaml"):
        result = trl_adpo(
            "train-critical" if "critical" in config else "train",
            "--config",
            str(ROOT / "configs" / config),
            "--max_steps",
            "8",
            cwd=tmp_path,
        )
        assert result.returncode == 0, (config, result.stderr[-3000:])
    for side in ("positive", "negative"):
        assert (tmp_path / "outputs" / "quickstart-critical" / side / "model.safetensors").is_file()
    card = (tmp_path / "outputs" / "quickstart-cadpo" / "README.md").read_text()
    assert "| method | cADPO |" in card
    state = json.loads((tmp_path / "outputs" / "quickstart-cadpo" / "trainer_state.json").read_text())
    weights = [entry["adpo/rejected_weight_mean"] for entry in state["log_history"] if "loss" in entry]
    assert weights and all(0 < w < 1 for w in weights)


# --- plot ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(quickstart, tmp_path_factory):
    """Two short logged runs of the quickstart model: ADPO m=256 with evaluations, and DPO."""
    from trl_adpo.cli import train

    runs = tmp_path_factory.mktemp("runs")
    for name, extra in (
        (
            "adpo",
            ["--eval_strategy", "steps", "--eval_steps", "2", "--eval_dataset_name", str(quickstart / "eval.jsonl")],
        ),
        ("dpo", ["--num_segments", "1"]),
    ):
        train.run(
            *train.parse_args(
                [
                    "--model_name_or_path",
                    str(quickstart / "model"),
                    "--dataset_name",
                    str(quickstart / "train.jsonl"),
                    "--output_dir",
                    str(runs / name),
                    "--max_steps",
                    "4",
                    "--logging_steps",
                    "1",
                    "--bf16",
                    "false",
                    "--report_to",
                    "none",
                    "--save_strategy",
                    "no",
                    "--disable_tqdm",
                    "true",
                    "--plot",
                    "false",
                    *extra,
                ]
            )
        )
    return runs


def drawn_points(png: Path) -> dict:
    from PIL import Image

    return json.loads(Image.open(png).info["Description"])


def test_plot_draws_every_logged_step_of_a_run_and_overlays_another(two_runs, tmp_path):
    assert not (two_runs / "adpo" / "training_dynamics.png").exists()  # --plot false
    result = trl_adpo("plot", str(two_runs / "adpo"))
    assert result.returncode == 0, result.stderr
    history = json.loads((two_runs / "adpo" / "trainer_state.json").read_text())["log_history"]
    drawn = drawn_points(two_runs / "adpo" / "training_dynamics.png")["adpo"]
    for key in ("logps/chosen", "logps/rejected", "rewards/margins", "adpo/segment_accuracy", "eval_logps/chosen"):
        assert drawn[key] == sum(key in entry for entry in history) > 0, key
    assert drawn["logps/chosen"] == 4 and drawn["eval_logps/chosen"] >= 2

    result = trl_adpo(
        "plot",
        str(two_runs / "dpo"),
        str(two_runs / "adpo"),
        "--labels",
        "DPO",
        "ADPO",
        "--output",
        str(tmp_path / "both.png"),
    )
    assert result.returncode == 0, result.stderr
    both = drawn_points(tmp_path / "both.png")
    assert set(both) == {"DPO", "ADPO"} and both["ADPO"] == drawn and "eval_logps/chosen" not in both["DPO"]


def test_plot_of_a_directory_without_a_run_says_what_to_give(tmp_path):
    result = trl_adpo("plot", str(tmp_path))
    assert result.returncode == 1
    assert "has no trainer_state.json: give the output_dir of a finished run" in result.stderr
    assert "Traceback" not in result.stderr


# --- inspect ------------------------------------------------------------------------------------------------------

PAIR = [
    "--prompt",
    "a = 7 ; b = 5 ; c = a + b ; d = c * a ; d = ?",
    "--chosen",
    "c = 7 + 5 = 2 ; d = 2 * 7 = 4 ; answer 4",
    "--rejected",
    "c = 7 + 5 = 3 ; d = 3 * 7 = 1 ; answer 1",
]


@pytest.mark.parametrize(
    "granularity",
    [
        ["--granularity", "static", "--window_size", "3"],
        ["--num_segments", "4"],
        [],
        ["--granularity", "step", "--step_delimiter", ";"],
        ["--granularity", "step", "--step_pattern", "[a-z] ="],
    ],
    ids=["static-3", "adaptive-4", "adaptive-256", "step-delimiter", "step-pattern"],
)
def test_inspect_shows_the_segments_of_segment_ids(quickstart, tmp_path, granularity):
    import torch
    from transformers import AutoTokenizer

    from trl_adpo import segment_ids
    from trl_adpo.segmentation import step_segment_ids

    result = trl_adpo(
        "inspect",
        "--tokenizer",
        str(quickstart / "model"),
        *PAIR,
        *granularity,
        "--html",
        str(tmp_path / "page.html"),
        "--json",
        str(tmp_path / "pair.json"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "pair.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(quickstart / "model")
    for side in ("chosen", "rejected"):
        ids = report[side]["token_ids"]
        if "step" in granularity:
            options = dict(zip(granularity[2::2], granularity[3::2]))
            expected = step_segment_ids(
                ids, tokenizer, options.get("--step_delimiter", "\n"), options.get("--step_pattern")
            )
        else:
            family = (
                {"window_size": 3}
                if "static" in granularity
                else {"num_segments": int(granularity[1]) if granularity else 256}
            )
            expected = segment_ids(
                torch.ones(1, len(ids), dtype=torch.bool),
                granularity[1] if "static" in granularity else "adaptive",
                **family,
            )[0].tolist()
        assert report[side]["segment_ids"] == expected, side
        assert tokenizer.decode(ids) == PAIR[PAIR.index(f"--{side}") + 1] + " <eos>"  # the completion, then EOS
        for segment in range(max(expected) + 1):  # each segment's tokens are listed in the terminal table
            tokens = [report[side]["tokens"][i] for i, s in enumerate(expected) if s == segment]
            assert "|".join(tokens).replace("\n", "\\n")[:100] in result.stdout
    assert (tmp_path / "page.html").read_text().count('class="token start') == sum(
        max(report[side]["segment_ids"]) + 1 for side in ("chosen", "rejected")
    )


def test_inspect_scores_equal_a_per_token_loop(quickstart, critical_models, tmp_path):
    import math

    import torch
    from oracle import pair_loss
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = trl_adpo(
        "inspect",
        "--policy",
        str(critical_models["positive"]),
        "--reference",
        str(quickstart / "model"),
        *PAIR,
        "--granularity",
        "step",
        "--step_delimiter",
        ";",
        "--beta",
        "0.5",
        "--html",
        str(tmp_path / "page.html"),
        "--json",
        str(tmp_path / "pair.json"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "pair.json").read_text())
    policy = AutoModelForCausalLM.from_pretrained(critical_models["positive"])
    reference = AutoModelForCausalLM.from_pretrained(quickstart / "model")
    prompt_ids = AutoTokenizer.from_pretrained(quickstart / "model")(report["prompt"], add_special_tokens=False)[
        "input_ids"
    ]

    def logratios(ids):
        sequence = torch.tensor([prompt_ids + ids])
        with torch.no_grad():
            p = policy(sequence).logits[0].double().log_softmax(-1)
            r = reference(sequence).logits[0].double().log_softmax(-1)
        return [
            (p[t - 1, sequence[0, t]] - r[t - 1, sequence[0, t]]).item()
            for t in range(len(prompt_ids), sequence.shape[1])
        ]

    s_w, s_l = logratios(report["chosen"]["token_ids"]), logratios(report["rejected"]["token_ids"])
    assert report["chosen"]["logratios"] == pytest.approx(s_w, abs=1e-4)
    expected = pair_loss(
        s_w,
        s_l,
        beta=0.5,
        chosen_segments=report["chosen"]["segment_ids"],
        rejected_segments=report["rejected"]["segment_ids"],
    )
    assert report["loss"] == pytest.approx(expected, rel=1e-4)
    assert report["loss"] == pytest.approx(sum(math.log1p(math.exp(-m)) for m in report["margins"]), rel=1e-9)
    assert f"ADPO loss of the pair: {report['loss']:.4f}" in result.stdout


def test_the_inspector_page_renders_in_headless_chromium(quickstart, tmp_path):
    import shutil

    from PIL import Image, ImageStat

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium on this machine: .ci/run installs Debian's chromium package, which this test needs")
    result = trl_adpo(
        "inspect",
        "--tokenizer",
        str(quickstart / "model"),
        *PAIR,
        "--granularity",
        "step",
        "--step_delimiter",
        ";",
        "--html",
        str(tmp_path / "page.html"),
    )
    assert result.returncode == 0, result.stderr
    screenshot = tmp_path / "page.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1000,700",
            f"--screenshot={screenshot}",
            (tmp_path / "page.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1000, 700)
    assert ImageStat.Stat(image).stddev[0] > 20  # text, segment tints and the table: far from a blank page
    assert len(image.getcolors(maxcolors=100000) or []) > 50


# --- train: the plot, the card, the closing summary ---------------------------------------------------------------


def test_the_quickstart_says_what_happened_and_hides_the_noise(tmp_path):
    result = trl_adpo("train", "--config", str(ROOT / "configs" / "quickstart.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = tmp_path / "outputs" / "quickstart-adpo"
    for line in (
        "On the eval pairs, before -> after training:",
        "  reward accuracy    0.00 -> ",
        "  chosen log-prob",
        "  rejected log-prob",
        "  segment accuracy",
        f"Plot: {output / 'training_dynamics.png'}",
        f"Model saved to {output}",
    ):
        assert line in result.stdout, line
    assert "***** eval metrics *****" not in result.stdout
    for noise in ("kernels", "FutureWarning", "DeprecationWarning", "pin_memory"):
        assert noise not in result.stderr, noise
    card = (output / "README.md").read_text()
    assert "![training dynamics](training_dynamics.png)" in card and (output / "training_dynamics.png").is_file()


# --- bad input, as the command shows it: one line naming what and where, no traceback ----------------------------


def bad_input_cases(quickstart: Path, other_tokenizer: Path, tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "bad.yaml").write_text("beta: 0.1\n  num_segments: [\n")
    (tmp / "run").mkdir()
    (tmp / "run" / "trainer_state.json").write_text('{"log_history": [')
    from trl_adpo.pipeline.io import write_jsonl

    write_jsonl(
        [
            {"problem_id": 0, "prompt": "p", "completion": "c", "answer": "1", "correct": True},
            {"problem_id": 0, "prompt": "p", "completion": "d", "answer": "2", "correct": "no"},
        ],
        tmp / "samples.jsonl",
    )
    problems = str(quickstart / "problems.jsonl")
    return [
        (
            ["train", "--model_name_or_path", "outputs/no-such-model", "--dataset_name", "x.jsonl", "--bf16", "false"],
            "model_name_or_path: 'outputs/no-such-model' is no local directory",
        ),
        (
            [
                "sample",
                "--task",
                "arithmetic",
                "--dataset_name",
                problems,
                "--model_name_or_path",
                str(tmp / "nothing"),
            ],
            f"model_name_or_path: '{tmp / 'nothing'}' does not exist",
        ),
        (
            ["evaluate", "--task", "arithmetic", "--dataset_name", problems, "--model_name_or_path", "./gone"],
            "model_name_or_path: './gone' does not exist",
        ),
        (
            [
                "train",
                "--model_name_or_path",
                str(quickstart / "model"),
                "--dataset_name",
                str(quickstart / "train.jsonl"),
                "--bf16",
                "false",
                "--positive_model",
                str(tmp / "pos"),
                "--negative_model",
                str(tmp / "neg"),
                "--output_dir",
                str(tmp / "out"),
            ],
            f"positive_model: '{tmp / 'pos'}' does not exist",
        ),
        (
            ["inspect", "--tokenizer", str(tmp / "tok"), "--prompt", "a", "--chosen", "b", "--rejected", "c"],
            f"tokenizer: '{tmp / 'tok'}' does not exist",
        ),
        (["train", "--config", str(tmp / "bad.yaml")], f"{tmp / 'bad.yaml'}, line 2: not valid YAML"),
        (["train", f"--config={tmp / 'bad.yaml'}"], f"{tmp / 'bad.yaml'}, line 2: not valid YAML"),
        (["sample", "--config"], "--config needs a file: --config run.yaml"),
        (
            [
                "sample",
                "--task",
                "arithmetic",
                "--dataset_name",
                problems,
                "--model_name_or_path",
                str(quickstart / "model"),
                "--output",
                str(tmp),
            ],
            "is a directory; give the JSON Lines file to write",
        ),
        (["plot", str(tmp / "run")], f"{tmp / 'run' / 'trainer_state.json'}: not a trainer state Trainer wrote"),
        (["pairs", "--samples", str(tmp / "samples.jsonl")], f"{tmp / 'samples.jsonl'}, line 2: `correct` is 'no'"),
        (
            [
                "inspect",
                "--tokenizer",
                str(other_tokenizer),
                "--policy",
                str(quickstart / "model"),
                "--reference",
                str(quickstart / "model"),
                "--prompt",
                "a",
                "--chosen",
                "b",
                "--rejected",
                "c",
            ],
            "it is not the policy's tokenizer",
        ),
    ]


def test_bad_input_gets_one_line_naming_what_and_where(quickstart, tiny_model_dir, tmp_path):
    for argv, message in bad_input_cases(quickstart, tiny_model_dir, tmp_path):
        result = trl_adpo(*argv, cwd=tmp_path)
        assert result.returncode == 1, (argv, result.stderr[-2000:])
        assert message in result.stderr, (argv, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, argv


def logged(steps: int, nll: bool = False) -> list[dict]:
    """A log history of `steps` logged training steps, as Trainer writes it (with the NLL term if asked)."""
    keys = ("logps/chosen", "logps/rejected", "rewards/margins", "rewards/accuracies", "adpo/segment_accuracy")
    keys += ("adpo/segment_margin",) + (("adpo/nll",) if nll else ())
    return [{"step": step, "loss": 0.7, **{key: 0.1 * step for key in keys}} for step in range(1, steps + 1)]


def test_a_run_of_one_logged_step_draws_its_point():
    from trl_adpo.report.plots import draw

    figure, drawn = draw([logged(1)], ["one"])
    lines = [line for axis in figure.axes for line in axis.lines]
    assert drawn["one"]["logps/chosen"] == 1 and len(lines) == 6
    assert all(line.get_marker() == "o" and len(line.get_xdata()) == 1 for line in lines)


def test_the_nll_term_gets_its_panel_and_the_legend_covers_no_line():
    from matplotlib.transforms import Bbox

    from trl_adpo.report.plots import draw

    figure, drawn = draw([logged(6, nll=True), logged(6)], ["ADPO + NLL", "DPO"])
    titles = [axis.get_title() for axis in figure.axes if axis.get_visible()]
    assert "NLL term of the chosen completions" in titles and drawn["ADPO + NLL"]["adpo/nll"] == 6
    assert "adpo/nll" not in drawn["DPO"]
    assert not any(axis.get_legend() for axis in figure.axes)  # one legend, for the figure, below the panels
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend = figure.legends[0].get_window_extent(renderer)
    for axis in figure.axes:
        if axis.get_visible():
            assert not Bbox.intersection(legend, axis.get_window_extent(renderer)), axis.get_title()
    assert len(figure.legends[0].get_texts()) == 7 + 6  # every line of both runs named once (DPO: no NLL)
    _, without = draw([logged(6)], ["DPO"])
    assert "adpo/nll" not in without["DPO"]
