"""The math pipeline: sample -> pairs -> train -> evaluate, offline on the arithmetic task, through the commands a user
runs; resuming an interrupted sampling run; cDPO's pair selection; the evaluation's figures; bad input."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from trl_adpo.cli import evaluate as evaluate_cli
from trl_adpo.cli import pairs as pairs_cli
from trl_adpo.cli import sample as sample_cli
from trl_adpo.cli import train as train_cli
from trl_adpo.examples.arithmetic import problem_rows
from trl_adpo.pipeline import sampling
from trl_adpo.pipeline.evaluation import majority_answer, pass_at_k, wilson_interval
from trl_adpo.pipeline.io import read_jsonl, write_jsonl
from trl_adpo.pipeline.pairs import critical_training_samples, select_pairs
from trl_adpo.pipeline.prompts import TASKS, check_template, few_shot_prefix, gsm8k_solution


@pytest.fixture(scope="module")
def problems_file(tmp_path_factory):
    directory = tmp_path_factory.mktemp("problems")
    write_jsonl(problem_rows(24, seed=40), directory / "problems.jsonl")
    write_jsonl(problem_rows(16, seed=41), directory / "heldout.jsonl")
    return directory


def sample_args(model, problems, output, *extra: str) -> list[str]:
    return [
        "--task",
        "arithmetic",
        "--dataset_name",
        str(problems),
        "--model_name_or_path",
        str(model),
        "--n",
        "4",
        "--temperature",
        "1.0",
        "--max_new_tokens",
        "40",
        "--batch_size",
        "5",
        "--output",
        str(output),
        *extra,
    ]


def test_the_whole_pipeline_runs_offline(critical_models, problems_file, tmp_path):
    # the positive critical-token model was fine-tuned on correct solutions: an SFT model of the arithmetic task
    policy = critical_models["positive"]
    summary = sample_cli.run(
        *sample_cli.make_parser().parse(
            sample_args(policy, problems_file / "problems.jsonl", tmp_path / "samples.jsonl")
        )
    )
    rows = read_jsonl(tmp_path / "samples.jsonl")
    assert len(rows) == summary.samples == 24 * 4 and summary.problems == 24
    assert set(rows[0]) == {"problem_id", "prompt", "completion", "answer", "reference", "correct"}
    assert 0 < summary.correct < summary.samples and summary.problems_with_both > 0

    pair_summary = pairs_cli.run(
        *pairs_cli.make_parser().parse(
            [
                "--samples",
                str(tmp_path / "samples.jsonl"),
                "--output",
                str(tmp_path / "pairs.jsonl"),
                "--critical_samples",
                str(tmp_path / "critical.jsonl"),
            ]
        )
    )
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    assert len(pairs) == pair_summary.pairs == summary.problems_with_both
    by_id = {(row["problem_id"], row["completion"]): row["correct"] for row in rows}
    assert all(by_id[(p["problem_id"], p["chosen"])] and not by_id[(p["problem_id"], p["rejected"])] for p in pairs)

    trainer = train_cli.run(
        *train_cli.parse_args(
            [
                "--model_name_or_path",
                str(policy),
                "--dataset_name",
                str(tmp_path / "pairs.jsonl"),
                "--output_dir",
                str(tmp_path / "adpo"),
                "--max_steps",
                "2",
                "--per_device_train_batch_size",
                "4",
                "--bf16",
                "false",
                "--report_to",
                "none",
                "--save_strategy",
                "no",
                "--disable_tqdm",
                "true",
            ]
        )
    )
    assert trainer.state.global_step == 2

    evaluation = evaluate_cli.run(
        *evaluate_cli.make_parser().parse(
            [
                "--task",
                "arithmetic",
                "--dataset_name",
                str(problems_file / "heldout.jsonl"),
                "--dataset_split",
                "train",
                "--model_name_or_path",
                str(tmp_path / "adpo"),
                "--max_new_tokens",
                "40",
                "--output",
                str(tmp_path / "evaluation.json"),
            ]
        )
    )
    written = json.loads((tmp_path / "evaluation.json").read_text())
    assert written["summary"]["problems"] == 16 == len(written["problems"])
    assert written["summary"]["accuracy"] == evaluation.summary["accuracy"]
    low, high = written["summary"]["accuracy_low"], written["summary"]["accuracy_high"]
    assert low <= evaluation.summary["accuracy"] <= high


def test_an_interrupted_sampling_run_resumes_to_the_same_rows(critical_models, problems_file, tmp_path, monkeypatch):
    args = sample_args(critical_models["positive"], problems_file / "problems.jsonl", tmp_path / "whole.jsonl")
    sample_cli.run(*sample_cli.make_parser().parse(args))

    interrupted = tmp_path / "interrupted.jsonl"
    real_write, calls = sampling.write_jsonl, itertools.count()

    def killed_during_the_third_batch(rows, path, append=False):
        if next(calls) == 2:  # calls 0 and 1 wrote batches 0 and 1
            with open(path, "a") as file:  # half of batch 2, then a line cut short
                file.writelines(json.dumps(row) + "\n" for row in rows[:7])
                file.write('{"problem_id": 12, "prom')
            raise KeyboardInterrupt
        real_write(rows, path, append=append)

    monkeypatch.setattr(sampling, "write_jsonl", killed_during_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        sample_cli.run(*sample_cli.make_parser().parse(args[:-1] + [str(interrupted)]))
    monkeypatch.setattr(sampling, "write_jsonl", real_write)
    assert len(read_jsonl(interrupted, partial_last_line=True)) == 2 * 5 * 4 + 7

    summary = sample_cli.run(*sample_cli.make_parser().parse(args[:-1] + [str(interrupted)]))
    assert summary.resumed_problems == 11  # batches 0 and 1, and the one problem of batch 2 whose 4 rows were written
    assert read_jsonl(interrupted) == read_jsonl(tmp_path / "whole.jsonl")


@pytest.mark.parametrize(
    "change,message",
    [
        (["--n", "2"], "n was 4 there and is 2 now"),
        (["--temperature", "0.7"], "temperature was 1.0 there and is 0.7 now"),
        (["--max_new_tokens", "30"], "max_new_tokens was 40 there and is 30 now"),
        (["--model_name_or_path", "other-model"], "model_name_or_path was '.*' there and is 'other-model' now"),
        (["--dataset_name", "other"], "dataset_name was '.*problems.jsonl' there and is '.*other.jsonl' now"),
        (["--chat", "true"], "template|chat was False there and is True now"),
    ],
    ids=["n", "temperature", "max_new_tokens", "model", "problems", "chat"],
)
def test_a_samples_file_resumes_only_the_run_that_started_it(
    critical_models, problems_file, tmp_path, change, message
):
    output = tmp_path / "samples.jsonl"
    args = sample_args(critical_models["positive"], problems_file / "problems.jsonl", output, "--max_problems", "5")
    sample_cli.run(*sample_cli.make_parser().parse(args))
    written = output.read_text()
    if change[0] == "--dataset_name":  # the same problems in another file: its name differs
        write_jsonl(problem_rows(24, seed=40), tmp_path / "other.jsonl")
        change = [change[0], str(tmp_path / "other.jsonl")]
    changed = args + change
    with pytest.raises(ValueError, match=f"{output} holds the samples of another run: ({message})"):
        sample_cli.run(*sample_cli.make_parser().parse(changed))
    assert output.read_text() == written  # nothing erased, nothing mixed in


def test_a_samples_file_without_its_run_record_or_a_directory_is_refused(problems_file, tmp_path):
    foreign = tmp_path / "foreign.jsonl"
    write_jsonl([{"problem_id": 0, "prompt": "x", "completion": "y", "correct": True}], foreign)
    for output, message in (
        (foreign, r"has no record of the run that wrote it \(foreign.jsonl.run.json\)"),
        (tmp_path, "is a directory; give the JSON Lines file to write"),
    ):
        args = sample_args(tmp_path / "no-such-model", problems_file / "problems.jsonl", output)
        with pytest.raises(ValueError, match=message):
            sample_cli.run(*sample_cli.make_parser().parse(args))
    assert len(read_jsonl(foreign)) == 1


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--question_column", "question"], r"problems.jsonl \(train\) has no column 'question'"),
        (["--template", "Solve it:"], r"template 'Solve it:' has no \{question\} field"),
        (["--template", "{question} {answer}"], r"template .* has the unknown field \{answer\}"),
        (["--n", "0"], r"n must be >= 1"),
        (
            ["--temperature", "0"],
            r"temperature=0 is greedy decoding, so the n=4 samples of a problem would all be the same",
        ),
        (["--verifier", "gsm8k"], None),  # the arithmetic answers are numbers: gsm8k parses them
    ],
)
def test_bad_sampling_input_fails_before_the_model_loads(tmp_path, extra, message):
    write_jsonl(problem_rows(3, seed=42), tmp_path / "problems.jsonl")
    args = sample_args(tmp_path / "no-such-model", tmp_path / "problems.jsonl", tmp_path / "out.jsonl", *extra)
    if message is None:  # a valid input gets as far as loading the (missing) model
        with pytest.raises(OSError):
            sample_cli.run(*sample_cli.make_parser().parse(args))
        return
    with pytest.raises(ValueError, match=message):
        sample_cli.run(*sample_cli.make_parser().parse(args))
    assert not (tmp_path / "out.jsonl").exists()


def test_an_unparsable_reference_answer_is_named_by_row(tmp_path):
    rows = problem_rows(4, seed=43)
    rows[2]["answer"] = "seven"
    write_jsonl(rows, tmp_path / "problems.jsonl")
    args = sample_args(tmp_path / "no-such-model", tmp_path / "problems.jsonl", tmp_path / "out.jsonl")
    with pytest.raises(
        ValueError, match=r"problems.jsonl, line 3: the arithmetic verifier cannot parse the reference answer 'seven'"
    ):
        sample_cli.run(*sample_cli.make_parser().parse(args))


# --- cDPO's selection ---------------------------------------------------------------------------------------------


def sample(problem_id, completion, answer, correct):
    return {
        "problem_id": problem_id,
        "prompt": f"q{problem_id}",
        "completion": completion,
        "answer": answer,
        "correct": correct,
    }


SAMPLES = [
    # problem 0: correct answer 5 (x2); wrong answers 7 (x3), 8 (x2), none (x1)
    sample(0, "a 5", "5", True),
    sample(0, "b 5", "5", True),
    sample(0, "c 7", "7", False),
    sample(0, "d 7", "7", False),
    sample(0, "e 7", "7", False),
    sample(0, "f 8", "8", False),
    sample(0, "g 8", "8", False),
    sample(0, "h", None, False),
    # problem 1: only correct samples; problem 2: only wrong ones; problem 3: an empty completion only
    sample(1, "a 3", "3", True),
    sample(2, "b 4", "4", False),
    sample(3, "  ", None, False),
    # problem 4: wrong answers tied 1 to 1
    sample(4, "ok 2", "2", True),
    sample(4, "x 6", "6", False),
    sample(4, "y 9", "9", False),
]


def test_pairs_take_the_most_frequent_correct_and_wrong_answers():
    pairs, summary = select_pairs(SAMPLES, seed=0)
    assert (summary.problems, summary.pairs, summary.without_correct, summary.without_incorrect) == (4, 2, 1, 1)
    first = next(p for p in pairs if p["problem_id"] == 0)
    assert first["chosen"] in ("a 5", "b 5") and first["rejected"] in ("c 7", "d 7", "e 7")
    assert first["prompt"] == "q0" and set(first) == {"problem_id", "prompt", "chosen", "rejected"}
    # ties between wrong answers are broken by the seed, and each seed's choice is stable
    tied = {
        seed: next(p for p in select_pairs(SAMPLES, seed)[0] if p["problem_id"] == 4)["rejected"] for seed in range(20)
    }
    assert set(tied.values()) == {"x 6", "y 9"}
    assert tied == {
        seed: next(p for p in select_pairs(SAMPLES, seed)[0] if p["problem_id"] == 4)["rejected"] for seed in range(20)
    }
    # a problem's pair does not depend on the other problems or their order
    alone = select_pairs([s for s in SAMPLES if s["problem_id"] == 0][::-1], seed=0)[0]
    assert alone == [first]


def test_more_pairs_per_problem_take_each_distinct_wrong_completion_once():
    pairs, summary = select_pairs(SAMPLES, seed=0, per_problem=10)
    first_pairs = select_pairs(SAMPLES, seed=0)[0]
    by_problem = {}
    for pair in pairs:
        by_problem.setdefault(pair["problem_id"], []).append(pair)
    # problem 0: 6 wrong completions, all distinct: 6 pairs, the first cDPO's; problem 4: 2 wrong: 2 pairs
    assert len(by_problem[0]) == 6 and len(by_problem[4]) == 2 and summary.pairs == 8
    assert by_problem[0][0] == next(p for p in first_pairs if p["problem_id"] == 0)
    assert sorted(p["rejected"] for p in by_problem[0]) == ["c 7", "d 7", "e 7", "f 8", "g 8", "h"]
    assert {p["chosen"] for p in by_problem[0]} == {"a 5", "b 5"}  # the correct completions in turn
    assert len(select_pairs(SAMPLES, seed=0, per_problem=2)[0]) == 4
    with pytest.raises(ValueError, match="pairs_per_problem must be >= 1"):
        select_pairs(SAMPLES, per_problem=0)


def test_critical_training_samples_follow_cdpo():
    rows = critical_training_samples(SAMPLES, seed=0)
    problem_0 = [row for row in rows if row["problem_id"] == 0]
    positives = [row for row in problem_0 if row["correct"]]
    negatives = sorted(row["completion"] for row in problem_0 if not row["correct"])
    assert len(positives) == 1  # one correct sample per problem
    # 6 wrong samples: answer 7 (3 samples) already covers half of them
    assert negatives == ["c 7", "d 7", "e 7"]
    problem_4 = [row["completion"] for row in rows if row["problem_id"] == 4 and not row["correct"]]
    assert len(problem_4) == 1  # 2 wrong samples: one answer (1 sample) covers half
    assert {row["problem_id"] for row in rows} == {0, 1, 2, 4} and set(rows[0]) == {
        "problem_id",
        "prompt",
        "completion",
        "correct",
    }


# --- evaluation figures, prompts -------------------------------------------------------------------------------------


def test_wilson_interval_matches_the_formula_worked_by_hand():
    # 7 of 10 at z = 1.96 (z^2 = 3.8416): centre (0.7 + 3.8416 / 20) / (1 + 3.8416 / 10) = 0.89208 / 1.38416 = 0.64449;
    # half-width 1.96 * sqrt(0.7 * 0.3 / 10 + 3.8416 / 400) / 1.38416 = 1.96 * sqrt(0.030604) / 1.38416 = 0.24772;
    # so 0.39677 to 0.89221
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.3968, abs=1e-4) and high == pytest.approx(0.8922, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0


@pytest.mark.parametrize("n,c,k", [(5, 2, 1), (5, 2, 2), (6, 0, 3), (6, 5, 2), (8, 3, 8)])
def test_pass_at_k_equals_counting_subsets(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    expected = sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_majority_vote_takes_the_most_frequent_answer_first_reached():
    assert majority_answer(["3", None, "4", "4", "3"]) == "3"
    assert majority_answer(["4", "3", "4"]) == "4"
    assert majority_answer([None, None]) is None


def test_few_shot_prefix_is_drawn_with_the_seed_and_formatted_per_task():
    questions, solutions = [f"q{i}" for i in range(10)], [f"Step {i} <<1+1=2>>.\n#### {i}" for i in range(10)]
    task = TASKS["gsm8k"]
    prefix = few_shot_prefix(questions, solutions, task, 3, seed=1, exemplar=task.exemplar)
    assert prefix == few_shot_prefix(questions, solutions, task, 3, seed=1, exemplar=task.exemplar)
    drawn = random.Random(1).sample(range(10), 3)
    assert prefix == "".join(f"Question: q{i}\nAnswer: Step {i} .\nThe answer is {i}.\n\n" for i in drawn)
    assert gsm8k_solution("48/2 = <<48/2=24>>24\n#### 72") == "48/2 = 24\nThe answer is 72."
    with pytest.raises(ValueError, match="num_shots=11, but the exemplar split has only 10 rows"):
        few_shot_prefix(questions, solutions, task, 11, seed=1, exemplar=task.exemplar)
    check_template("Q: {question}\\n{{literal braces}}", "template")


def test_chat_prompts_go_through_the_template_and_give_conversational_pairs(critical_models, problems_file, tmp_path):
    policy = critical_models["positive"]
    sample_cli.run(
        *sample_cli.make_parser().parse(
            sample_args(policy, problems_file / "problems.jsonl", tmp_path / "samples.jsonl", "--chat", "true")
        )
    )
    rows = read_jsonl(tmp_path / "samples.jsonl")
    questions = [row["prompt"] for row in problem_rows(24, seed=40)]
    assert all(row["prompt"] == [{"role": "user", "content": questions[row["problem_id"]]}] for row in rows)
    pairs_cli.run(
        *pairs_cli.make_parser().parse(
            ["--samples", str(tmp_path / "samples.jsonl"), "--output", str(tmp_path / "pairs.jsonl")]
        )
    )
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    assert pairs and all(
        p["prompt"][0]["role"] == "user" and p["chosen"][0]["role"] == p["rejected"][0]["role"] == "assistant"
        for p in pairs
    )
    trainer = train_cli.run(
        *train_cli.parse_args(
            [
                "--model_name_or_path",
                str(policy),
                "--dataset_name",
                str(tmp_path / "pairs.jsonl"),
                "--output_dir",
                str(tmp_path / "adpo"),
                "--max_steps",
                "1",
                "--per_device_train_batch_size",
                "2",
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
            ]
        )
    )
    prompt_ids = trainer.train_dataset[0][
        "prompt_input_ids" if "prompt_input_ids" in trainer.train_dataset.column_names else "prompt_ids"
    ]
    assert trainer.processing_class.decode(prompt_ids).startswith("user :")


def test_chat_generation_is_the_templated_text_and_needs_a_template(critical_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_adpo.pipeline.generation import generate, load_for_generation

    model, tokenizer = load_for_generation(str(critical_models["positive"]), device="cpu")
    question = problem_rows(1, seed=5)[0]["prompt"]
    chat = generate(model, tokenizer, [[{"role": "user", "content": question}]], max_new_tokens=30)[0][0]
    # the tiny tokenizer's template, written out: "{role} : {content} <eos> " per message, then "assistant : "
    ids = tokenizer(f"user : {question} <eos> assistant : ", add_special_tokens=False, return_tensors="pt")[
        "input_ids"
    ]
    output = AutoModelForCausalLM.from_pretrained(critical_models["positive"]).generate(
        ids, max_new_tokens=30, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    assert chat == tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)

    plain = AutoTokenizer.from_pretrained(critical_models["positive"])
    plain.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        generate(model, plain, [[{"role": "user", "content": question}]], max_new_tokens=3)
