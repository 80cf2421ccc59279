"""Step granularity: one segment per reasoning step, against a plain-Python oracle that splits the decoded completion.

Two tokenizers: the word-level one of the quickstart (one token per word or symbol) and a byte-level BPE built in code
whose merges cross spaces, newlines and punctuation, so that delimiters fall inside tokens.
"""

from __future__ import annotations

import random
import re

import pytest
import torch
from conftest import token_ids
from loop import batch_losses, oracle_losses
from oracle import split_steps, step_segments
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_adpo import ADPOConfig, ADPOTrainer
from trl_adpo.examples.arithmetic import preference_rows
from trl_adpo.examples.tiny import build_bpe_tokenizer, save_tiny_model
from trl_adpo.segmentation import step_segment_ids

COMMON = dict(
    per_device_train_batch_size=4,
    max_steps=2,
    logging_steps=1,
    learning_rate=5e-3,
    report_to="none",
    bf16=False,
    save_strategy="no",
    disable_tqdm=True,
    seed=0,
    beta=0.5,
)


def multiline(text: str) -> str:
    """An arithmetic solution with one step per line."""
    return text.replace(" ; ", " ;\n")


def step_rows(count: int, seed: int) -> list[dict]:
    """Arithmetic pairs with one step per line; a third of the completions end with a newline, some with ' ;'."""
    rng = random.Random(seed)
    rows = []
    for row in preference_rows(count, seed=seed, num_steps=3):
        row = {key: multiline(value) for key, value in row.items()}
        for side in ("chosen", "rejected"):
            row[side] += rng.choice(["", "", "\n", " ;"])
        rows.append(row)
    return rows


@pytest.fixture(scope="session")
def bpe_model_dir(tmp_path_factory):
    corpus = [row["prompt"] + "\n" + row["chosen"] + "\n" + row["rejected"] for row in step_rows(400, seed=99)]
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bpe"), [], tokenizer=build_bpe_tokenizer(corpus, 320))


@pytest.fixture(scope="session")
def models(quickstart, bpe_model_dir):
    """The directories of a word-level and a byte-level BPE tiny model, by name."""
    return {"word": quickstart / "model", "bpe": bpe_model_dir}


CUTS = [
    dict(delimiter="\n"),
    dict(delimiter=";"),
    dict(delimiter=" ; "),  # several tokens, or part of two tokens
    dict(delimiter="="),  # many per step, inside BPE tokens such as ' = 0 ;\ne = '
    dict(delimiter="answer"),
    dict(delimiter="#"),  # never there: one segment
    dict(pattern=r"[a-j] ="),  # a match begins a step
]


@pytest.mark.parametrize("cut", CUTS, ids=lambda c: repr(c.get("delimiter", c.get("pattern"))))
@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_step_ids_equal_the_oracle(models, kind, cut):
    tokenizer = AutoTokenizer.from_pretrained(models[kind])
    compared = 0
    for row in step_rows(25, seed=7):
        for side in ("chosen", "rejected"):
            ids = tokenizer(row[side], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            expected = step_segments(ids, tokenizer, cut.get("delimiter", "\n"), cut.get("pattern"))
            assert step_segment_ids(ids, tokenizer, cut.get("delimiter", "\n"), cut.get("pattern")) == expected
            compared += 1
    assert compared == 50


def test_bpe_tokens_hold_delimiters_with_other_text(models):
    """The BPE case is a real test of delimiters inside tokens, not a word tokenizer in disguise."""
    tokenizer = AutoTokenizer.from_pretrained(models["bpe"])
    pieces = [tokenizer.decode([i]) for row in step_rows(25, seed=7) for i in tokenizer(row["chosen"])["input_ids"]]
    assert any("\n" in piece and piece.strip() != "" and not piece.endswith("\n") for piece in pieces)
    assert any("=" in piece and piece.strip() != "=" for piece in pieces)


STEP_TEXTS = [
    "Step 1: a. Step 2: b. Step 3: c",
    "Step 1: x = 2.\nStep 2: y = 3.\nStep 12: z = 5",
    "So: Step 1: go. Step 2: stop",
]
STEP_PATTERN = r"Step \d+:"


def step_corpus() -> list[str]:
    rng = random.Random(0)
    return [
        " ".join(f"Step {n}: {rng.choice('abcxyz')} = {rng.randrange(10)}." for n in range(1, rng.randint(2, 14)))
        for _ in range(300)
    ] + STEP_TEXTS


def gpt2_style_bpe():
    """A byte-level BPE with GPT-2's pre-tokenizer regex: a word's leading space is part of its token (" Step")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        step_corpus(),
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")


def sentencepiece_style_bpe():
    """A SentencePiece-style BPE (Metaspace): a word's leading space is the "▁" of its token ("▁Step")."""
    from tokenizers.implementations import SentencePieceBPETokenizer
    from transformers import PreTrainedTokenizerFast

    backend = SentencePieceBPETokenizer()
    backend.train_from_iterator(step_corpus(), vocab_size=400, special_tokens=["<eos>"], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend._tokenizer, eos_token="<eos>")


def step_texts(tokenizer, ids: list[int], segments: list[int]) -> list[str]:
    return [tokenizer.decode([i for i, s in zip(ids, segments) if s == j]) for j in range(max(segments) + 1)]


@pytest.mark.parametrize("kind", ["gpt2-style BPE", "SentencePiece-style BPE", "word"])
@pytest.mark.parametrize("text", STEP_TEXTS)
def test_a_pattern_match_opens_its_step_on_every_kind_of_tokenizer(models, kind, text):
    """Whatever token carries the space before a match, the match is at the start of the step it opens: each step,
    stripped, begins with the pattern (but a first step before the first match), and the steps are the text's
    pieces."""
    if kind == "word":
        from trl_adpo.examples.tiny import build_word_tokenizer

        tokenizer = build_word_tokenizer(["Step", "So", *"0123456789", ":", ".", "=", *"abcxyz"])
        pattern = r"Step \d+ :"  # the word-level decoder puts a space between tokens
    else:
        tokenizer = gpt2_style_bpe() if kind.startswith("gpt2") else sentencepiece_style_bpe()
        pattern = STEP_PATTERN
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if kind != "word" and " Step" in text:  # the case that matters: a token that starts with the space before "Step"
        assert any(tokenizer.convert_ids_to_tokens(i) in ("ĠStep", "▁Step") for i in ids[1:])
    segments = step_segment_ids(ids, tokenizer, pattern=pattern)
    assert segments == step_segments(ids, tokenizer, pattern=pattern)
    steps = step_texts(tokenizer, ids, segments)
    matches = list(re.finditer(pattern, tokenizer.decode(ids)))
    assert len(steps) == len(matches) + (matches[0].start() > 0)
    for step in steps[1:] if matches[0].start() > 0 else steps:
        assert re.match(pattern, step.strip()), steps
    if kind == "gpt2-style BPE" and text == STEP_TEXTS[0]:
        assert steps == ["Step 1: a.", " Step 2: b.", " Step 3: c"]


@pytest.mark.parametrize("delimiter", [";", "\n", "answer"])
def test_word_level_steps_are_the_split_steps_tokenized_one_by_one(models, delimiter):
    tokenizer = AutoTokenizer.from_pretrained(models["word"])
    for row in step_rows(20, seed=8):
        ids = tokenizer(row["chosen"], add_special_tokens=False)["input_ids"]
        text = tokenizer.decode(ids)
        steps = [
            step for step in split_steps(text, delimiter) if tokenizer(step, add_special_tokens=False)["input_ids"]
        ]
        expected = [len(tokenizer(step, add_special_tokens=False)["input_ids"]) for step in steps]
        segments = step_segment_ids(ids, tokenizer, delimiter)
        assert [segments.count(j) for j in range(max(segments) + 1)] == expected


# --- the trainer against the loop over unpadded pairs -------------------------------------------------------------


# Prompts are 29 word-level (14-15 BPE) tokens, completions 26-28 (13-19 with EOS); the max_length values below cut
# completions inside a step.
TRAINER_CASES = [
    ("word", dict(step_delimiter=";"), None, "keep_start"),
    ("word", dict(step_delimiter=" ; "), 45, "keep_start"),
    ("bpe", dict(), None, "keep_start"),
    ("bpe", dict(step_delimiter="="), 24, "keep_start"),
    ("bpe", dict(step_pattern=r"[a-j] ="), 12, "keep_end"),
    ("word", dict(step_delimiter=";"), 20, "keep_end"),
]


@pytest.mark.parametrize(
    "kind,options,max_length,mode", TRAINER_CASES, ids=lambda v: repr(v) if isinstance(v, dict) else str(v)
)
def test_step_loss_equals_the_loop_over_unpadded_pairs(tmp_path, models, kind, options, max_length, mode):
    directory = models[kind]
    policy = AutoModelForCausalLM.from_pretrained(directory)
    torch.manual_seed(1)
    with torch.no_grad():  # a policy unlike its reference, so that every log-ratio counts
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    from datasets import Dataset

    trainer = ADPOTrainer(
        policy,
        ref_model=AutoModelForCausalLM.from_pretrained(directory),
        args=ADPOConfig(
            output_dir=str(tmp_path),
            granularity="step",
            max_length=max_length,
            truncation_mode=mode,
            **options,
            **COMMON,
        ),
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(step_rows(10, seed=3)),
    )
    rows = [trainer.train_dataset[i] for i in range(10)]
    if max_length is not None:
        assert any(len(token_ids(r, "prompt")) + len(token_ids(r, "chosen")) > max_length for r in rows)
    delimiter, pattern = options.get("step_delimiter", "\n"), options.get("step_pattern")

    def segments(row, side, scored):
        steps = step_segments(token_ids(row, side), tokenizer, delimiter, pattern)
        kept = [steps[i] for i in scored]
        return [step - kept[0] for step in kept]

    expected, margins = oracle_losses(
        trainer.model, AutoModelForCausalLM.from_pretrained(directory), rows, max_length, mode, segments, beta=0.5
    )
    torch.testing.assert_close(
        batch_losses(trainer, rows).double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-5
    )
    assert trainer.last_adpo_output.feedback_length.tolist() == [len(m) for m in margins]


def test_step_ids_that_come_with_the_data_are_cut_again(tmp_path, models):
    """Segment ids of another cut (here ';' where this config cuts at newlines) are dropped, with a warning, and the
    steps are cut again as this config says."""
    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(models["word"])

    def trainer(data, **options):
        return ADPOTrainer(
            AutoModelForCausalLM.from_pretrained(models["word"]),
            args=ADPOConfig(output_dir=str(tmp_path), granularity="step", **options, **COMMON),
            processing_class=tokenizer,
            train_dataset=data,
        )

    rows = Dataset.from_list(step_rows(6, seed=5))
    by_semicolon = trainer(rows, step_delimiter=";").train_dataset
    carried = rows.add_column("chosen_segment_ids", by_semicolon["chosen_segment_ids"]).add_column(
        "rejected_segment_ids", by_semicolon["rejected_segment_ids"]
    )
    with pytest.warns(UserWarning, match=r"\['chosen_segment_ids', 'rejected_segment_ids'\]"):
        by_line = trainer(carried).train_dataset
    assert by_line["chosen_segment_ids"] == trainer(rows).train_dataset["chosen_segment_ids"]
    assert by_line["chosen_segment_ids"] != by_semicolon["chosen_segment_ids"]


def test_one_step_is_dpo_and_a_delimiter_in_every_token_is_token_level(tmp_path, load, tokenizer, make_dataset):
    # words w0..w39: no '#' anywhere, a 'w' in every word token; completions start with a space, so that TRL 1.x,
    # which tokenizes prompt + completion, does not glue the last prompt word to the first completion word
    dataset = make_dataset(8, seed=14).map(lambda row: {side: " " + row[side] for side in ("chosen", "rejected")})

    def losses(**options):
        trainer = ADPOTrainer(
            load(),
            ref_model=load(),
            args=ADPOConfig(output_dir=str(tmp_path), **options, **COMMON),
            processing_class=tokenizer,
            train_dataset=dataset,
        )
        with torch.no_grad():
            for parameter in trainer.model.parameters():
                parameter.mul_(1.1)
        return batch_losses(trainer, [trainer.train_dataset[i] for i in range(8)])

    torch.testing.assert_close(losses(granularity="step", step_delimiter="#"), losses(num_segments=1))
    torch.testing.assert_close(losses(granularity="step", step_delimiter="w"), losses(granularity="static"))


def test_step_training_logs_the_feedback_length_and_the_card_names_the_delimiter(tmp_path, models):
    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(models["word"])
    trainer = ADPOTrainer(
        AutoModelForCausalLM.from_pretrained(models["word"]),
        args=ADPOConfig(
            output_dir=str(tmp_path), granularity="step", step_delimiter=";", precompute_ref_log_probs=True, **COMMON
        ),
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(step_rows(8, seed=4)),
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(1 <= entry["adpo/feedback_length"] <= entry["adpo/feedback_length_max"] for entry in logs)
    assert logs[0]["adpo/feedback_length_max"] >= 4  # three steps, the answer, and maybe a trailing ' ;'
    trainer.create_model_card()
    assert "| granularity | step, delimiter ';' |" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(step_delimiter=";"), "step_delimiter applies to granularity='step' only, and granularity is 'adaptive'"),
        (dict(granularity="static", step_pattern="x"), "step_pattern applies to granularity='step' only"),
        (dict(granularity="step", step_delimiter=""), "step_delimiter must be a non-empty string"),
        (
            dict(granularity="step", step_delimiter=";", step_pattern="x"),
            "give step_delimiter or step_pattern, not both",
        ),
        (dict(granularity="step", step_pattern="Step ("), r"step_pattern 'Step \(' is no regular expression"),
        (dict(granularity="step", num_segments=4), "num_segments=4 applies to granularity='adaptive' only"),
    ],
)
def test_step_options_are_checked(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        ADPOConfig(output_dir=str(tmp_path), report_to="none", bf16=False, **options)
