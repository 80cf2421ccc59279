"""The granularity inspector against the trainer: the same tokens, the same truncation, the same loss; and its
per-token gradients against the derivative of the loss written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ON_TRL028, token_ids
from datasets import Dataset
from loop import batch_losses
from tokenizers import processors
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_adpo import ADPOConfig, ADPOTrainer
from trl_adpo.examples.arithmetic import WORDS, preference_rows
from trl_adpo.examples.tiny import build_word_tokenizer, save_tiny_model
from trl_adpo.report.inspector import Granularity, inspect_pair, to_html, to_text


@pytest.fixture(scope="module")
def bos_model_dir(tmp_path_factory):
    """A tiny Llama whose tokenizer adds BOS to every text, as Llama 3's does (TRL 1.x then starts prompts with it)."""
    tokenizer = build_word_tokenizer(WORDS)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", tokenizer.bos_token_id)]
    )
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bos"), WORDS, tokenizer=tokenizer, hidden_size=32)


def perturbed(directory):
    model = AutoModelForCausalLM.from_pretrained(directory)
    torch.manual_seed(2)
    with torch.no_grad():  # a policy unlike its reference
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


CASES = [
    (dict(), None, "keep_start"),
    (dict(granularity="static", window_size=3), 40, "keep_start"),
    (dict(granularity="step", step_delimiter=";"), 38, "keep_end"),
    (dict(num_segments=1), 36, "keep_end"),
]


@pytest.mark.parametrize(
    "granularity,max_length,mode", CASES, ids=lambda v: repr(v) if isinstance(v, dict) else str(v)
)
def test_the_inspector_scores_a_pair_as_the_trainer_does(tmp_path, bos_model_dir, granularity, max_length, mode):
    rows = preference_rows(4, seed=31)
    tokenizer = AutoTokenizer.from_pretrained(bos_model_dir)
    policy, reference = perturbed(bos_model_dir), AutoModelForCausalLM.from_pretrained(bos_model_dir)
    trainer = ADPOTrainer(
        policy,
        ref_model=reference,
        args=ADPOConfig(
            output_dir=str(tmp_path),
            report_to="none",
            bf16=False,
            beta=0.5,
            max_length=max_length,
            truncation_mode=mode,
            **granularity,
        ),
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(rows),
    )
    tokenized = [trainer.train_dataset[i] for i in range(len(rows))]
    if not ON_TRL028:  # the case the inspector once got wrong: TRL 1.x starts the prompt with BOS
        assert token_ids(tokenized[0], "prompt")[0] == tokenizer.bos_token_id
    if max_length is not None:
        assert all(len(token_ids(r, "prompt")) + len(token_ids(r, "chosen")) > max_length for r in tokenized)
    expected = batch_losses(trainer, tokenized)
    for row, loss in zip(rows, expected.tolist()):
        report = inspect_pair(
            tokenizer,
            row["prompt"],
            row["chosen"],
            row["rejected"],
            Granularity(**granularity),
            tokenize_dataset=ADPOTrainer.tokenize_dataset,
            beta=0.5,
            max_length=max_length,
            truncation_mode=mode,
            policy=policy,
            reference=reference,
        )
        assert report.loss == pytest.approx(loss, rel=1e-4, abs=1e-5)
    assert str(round(report.loss, 4))[:5] in to_text(report) and "DPO" in to_html(report)


def test_the_gradients_are_the_derivative_of_the_loss_written_out(quickstart, critical_models):
    """d loss / d s(t) = -beta a_w(t) sigmoid(-M_j) on a chosen token of segment j, +beta a_l(t) sigmoid(-M_j) on a
    rejected one; under DPO M is the one margin of the whole pair."""
    from trl_adpo.critical_models import CriticalTokenModels

    tokenizer = AutoTokenizer.from_pretrained(quickstart / "model")
    row = preference_rows(1, seed=32)[0]
    report = inspect_pair(
        tokenizer,
        row["prompt"],
        row["chosen"],
        row["rejected"],
        Granularity(num_segments=4),
        tokenize_dataset=ADPOTrainer.tokenize_dataset,
        beta=0.5,
        policy=AutoModelForCausalLM.from_pretrained(critical_models["positive"]),
        reference=AutoModelForCausalLM.from_pretrained(quickstart / "model"),
        critical_models=CriticalTokenModels.load(str(critical_models["positive"]), str(critical_models["negative"])),
    )
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    dpo_margin = 0.5 * (
        sum(report.chosen.logratios) - sum(w * s for w, s in zip(report.rejected.weights, report.rejected.logratios))
    )
    for sign, side in ((-1, report.chosen), (1, report.rejected)):
        weights = side.weights or [1.0] * len(side.logratios)
        for t, segment in enumerate(side.segment_ids):
            assert side.gradients[t] == pytest.approx(
                sign * 0.5 * weights[t] * sigmoid(-report.margins[segment]), rel=1e-6
            )
            assert side.dpo_gradients[t] == pytest.approx(sign * 0.5 * weights[t] * sigmoid(-dpo_margin), rel=1e-6)
    assert report.dpo_loss == pytest.approx(-math.log(sigmoid(dpo_margin)), rel=1e-6)
    chosen_ids, rejected_ids = report.chosen.token_ids, report.rejected.token_ids
    first_difference = next(i for i, (a, b) in enumerate(zip(chosen_ids, rejected_ids)) if a != b)
    assert report.diverges_at == first_difference > 0
    assert "diverge" in to_html(report) and f"share their first {first_difference} scored tokens" in to_text(report)


@pytest.mark.parametrize(
    "granularity", [Granularity(granularity="static", window_size=1), Granularity(num_segments=4)], ids=["k1", "m4"]
)
def test_the_net_gradient_of_the_shared_prefix_is_autograds_and_its_constant_loss_is_named(
    quickstart, critical_models, granularity
):
    """A shared-prefix token is one log-ratio on both sides: the net gradient the inspector shows for it is autograd's
    derivative of the loss through that one variable (zero when both sides put it in the same segment), and each
    segment made only of such tokens adds exactly log 2, which the summary names."""
    from trl_adpo import adpo_loss
    from trl_adpo.report.inspector import constant_segments, net_gradients

    tokenizer = AutoTokenizer.from_pretrained(quickstart / "model")
    row = preference_rows(1, seed=32)[0]
    report = inspect_pair(
        tokenizer,
        row["prompt"],
        row["chosen"],
        row["rejected"],
        granularity,
        tokenize_dataset=ADPOTrainer.tokenize_dataset,
        beta=0.5,
        policy=AutoModelForCausalLM.from_pretrained(critical_models["positive"]),
        reference=AutoModelForCausalLM.from_pretrained(quickstart / "model"),
    )
    prefix = report.diverges_at
    assert prefix > 0
    assert report.chosen.logratios[:prefix] == pytest.approx(report.rejected.logratios[:prefix], abs=1e-6)
    shared = torch.tensor(report.chosen.logratios[:prefix], dtype=torch.float64, requires_grad=True)
    sides = [
        torch.cat([shared, torch.tensor(side.logratios[prefix:], dtype=torch.float64)])[None]
        for side in (report.chosen, report.rejected)
    ]
    output = adpo_loss(
        *sides,
        *(torch.ones_like(side, dtype=torch.bool) for side in sides),
        beta=0.5,
        granularity="explicit",
        chosen_segment_ids=torch.tensor([report.chosen.segment_ids]),
        rejected_segment_ids=torch.tensor([report.rejected.segment_ids]),
    )
    output.losses.sum().backward()
    net = net_gradients(report, "gradients")
    assert net["chosen"][:prefix] == net["rejected"][:prefix] == pytest.approx(shared.grad.tolist(), abs=1e-9)
    if granularity.granularity == "static":  # token-level: every shared token is a segment of its own on both sides
        assert all(abs(g) < 1e-12 for g in shared.grad.tolist())
        assert constant_segments(report) == prefix
        assert f"of which {prefix} x log 2 = {prefix * math.log(2):.4f} from the shared prefix" in to_text(report)
        assert f"{prefix} shared tokens get 0% of it" in to_text(report)
