"""ADPOTrainer against TRL's own DPOTrainer and against a loop that runs the models on one unpadded pair at a time."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch
from conftest import ON_TRL028, token_ids
from loop import batch_losses, loop_nll, oracle_losses
from peft import LoraConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
from trl import DPOConfig, DPOTrainer

from trl_adpo import ADPOConfig, ADPOTrainer

COMMON = dict(
    per_device_train_batch_size=4,
    per_device_eval_batch_size=4,
    max_steps=3,
    logging_steps=1,
    learning_rate=5e-3,
    report_to="none",
    bf16=False,
    save_strategy="no",
    disable_tqdm=True,
    seed=0,
)
DPO_METRICS = [
    "loss",
    "grad_norm",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
]


def adpo_config(tmp_path, **overrides) -> ADPOConfig:
    return ADPOConfig(output_dir=str(tmp_path / "adpo"), **{**COMMON, **overrides})


def train_logs(trainer) -> list[dict]:
    trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]


GRANULARITY_CASES = [
    dict(granularity="static", window_size=1),
    dict(granularity="static", window_size=2),
    dict(granularity="adaptive", num_segments=2),
    dict(granularity="adaptive", num_segments=5),  # uneven segments on completions of 2-15 tokens
]


TRUNCATIONS = [("keep_start", False), ("keep_end", False)] + ([("keep_start", True)] if ON_TRL028 else [])
"""(truncation_mode, use_logits_to_keep); TRL 1.x has no use_logits_to_keep."""


@pytest.mark.parametrize(
    "granularity", GRANULARITY_CASES, ids=lambda g: f"{g['granularity']}-{g.get('window_size', g.get('num_segments'))}"
)
@pytest.mark.parametrize("truncation", TRUNCATIONS, ids=lambda t: f"{t[0]}-ltk{t[1]}")
def test_batched_loss_equals_loop_over_unpadded_pairs(
    tmp_path, load, tokenizer, reference_model_dir, make_dataset, granularity, truncation
):
    mode, logits_to_keep = truncation
    max_length = 14  # prompts of 1-12 and completions of 2-15 tokens: many rows are truncated
    args = adpo_config(
        tmp_path,
        beta=0.5,
        max_length=max_length,
        truncation_mode=mode,
        label_smoothing=0.1,
        **granularity,
        **({"use_logits_to_keep": True} if logits_to_keep else {}),
    )
    trainer = ADPOTrainer(
        load(),
        ref_model=load(reference_model_dir),
        args=args,
        processing_class=tokenizer,
        train_dataset=make_dataset(10, seed=3),
    )
    rows = [trainer.train_dataset[i] for i in range(10)]
    assert any(len(token_ids(r, "prompt")) + len(token_ids(r, "chosen")) > max_length for r in rows)
    losses = batch_losses(trainer, rows)
    metrics = trainer._segment_metrics()

    k, m = granularity.get("window_size", 1), granularity.get("num_segments", 1)
    expected, margins = oracle_losses(
        load(),
        load(reference_model_dir),
        rows,
        max_length,
        mode,
        beta=0.5,
        granularity=granularity["granularity"],
        k=k,
        m=m,
        eps=0.1,
    )
    torch.testing.assert_close(losses.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-5)

    all_margins = [d for pair in margins for d in pair]
    assert metrics["adpo/feedback_length"] == pytest.approx(sum(map(len, margins)) / len(margins))
    # a segment both responses share (same token, same context) ties exactly in the loop and up to float noise in
    # the batch, so it may count either way
    wins_at_least = sum(d > 1e-6 for d in all_margins) / len(all_margins)
    wins_at_most = sum(d > -1e-6 for d in all_margins) / len(all_margins)
    assert wins_at_least - 1e-6 <= metrics["adpo/segment_accuracy"] <= wins_at_most + 1e-6
    assert metrics["adpo/segment_margin"] == pytest.approx(sum(all_margins) / len(all_margins), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize(
    "granularity", [dict(granularity="adaptive", num_segments=3), dict(granularity="static", window_size=2)]
)
def test_padding_batch_composition_and_order_never_change_a_pairs_loss(
    tmp_path, load, tokenizer, reference_model_dir, make_dataset, granularity
):
    trainer = ADPOTrainer(
        load(),
        ref_model=load(reference_model_dir),
        args=adpo_config(tmp_path, **granularity),
        processing_class=tokenizer,
        train_dataset=make_dataset(9, seed=12, prompt=(1, 4), completion=(1, 4)),
    )
    long_rows = ADPOTrainer(
        load(),
        ref_model=load(reference_model_dir),
        args=adpo_config(tmp_path, **granularity),
        processing_class=tokenizer,
        train_dataset=make_dataset(3, seed=13, prompt=(10, 12), completion=(12, 14)),
    ).train_dataset
    rows = [trainer.train_dataset[i] for i in range(9)]
    together = batch_losses(trainer, rows)
    reversed_order = batch_losses(trainer, rows[::-1]).flip(0)
    alone = torch.cat([batch_losses(trainer, [row]) for row in rows])
    beside_long_rows = batch_losses(trainer, rows[:3] + [long_rows[i] for i in range(3)])[:3]  # much more padding
    for other in (reversed_order, alone):
        torch.testing.assert_close(other, together, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(beside_long_rows, together[:3], rtol=1e-5, atol=1e-6)


def test_the_mean_segment_reduction_divides_each_pairs_loss_by_its_segments(
    tmp_path, load, tokenizer, reference_model_dir, make_dataset
):
    max_length, mode = 14, "keep_start"
    trainer = ADPOTrainer(
        load(),
        ref_model=load(reference_model_dir),
        args=adpo_config(
            tmp_path,
            beta=0.5,
            max_length=max_length,
            truncation_mode=mode,
            granularity="static",
            window_size=2,
            segment_reduction="mean",
        ),
        processing_class=tokenizer,
        train_dataset=make_dataset(8, seed=5),
    )
    rows = [trainer.train_dataset[i] for i in range(8)]
    expected, margins = oracle_losses(
        load(),
        load(reference_model_dir),
        rows,
        max_length,
        mode,
        beta=0.5,
        granularity="static",
        k=2,
        reduction="mean",
    )
    assert any(len(m) > 1 for m in margins)  # pairs of several segments, where mean and sum differ
    torch.testing.assert_close(
        batch_losses(trainer, rows).double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize(
    "granularity", [dict(num_segments=3), dict(granularity="step", step_delimiter="w3")], ids=["adaptive", "step"]
)
def test_tokenize_dataset_prepares_rows_exactly_as_the_trainer_does(
    tmp_path, load, tokenizer, make_dataset, granularity
):
    """`ADPOTrainer.tokenize_dataset` (what `trl-adpo inspect` scores) runs TRL's preparation without a model, on a
    trainer that `__init__` never set up: a TRL release whose preparation reads more of the trainer's state fails
    here, rather than in a user's inspector."""
    args = adpo_config(tmp_path, max_length=14, **granularity)
    dataset = make_dataset(6, seed=9)
    expected = ADPOTrainer(load(), args=args, processing_class=tokenizer, train_dataset=dataset).train_dataset
    prepared = ADPOTrainer.tokenize_dataset(dataset, tokenizer, args)
    assert prepared.column_names == expected.column_names
    assert [prepared[i] for i in range(6)] == [expected[i] for i in range(6)]


# --- TRL's DPOTrainer as the oracle ---------------------------------------------------------------------------


# TRL 1.x's sigmoid loss ignores label_smoothing (it has no cDPO), so the cDPO comparison is for TRL 0.28 only.
DPO_CASES = [(0.0, 1, "dpo"), (0.0, 2, "dpo-accumulation")] + ([(0.2, 1, "cdpo")] if ON_TRL028 else [])


@pytest.mark.parametrize("label_smoothing,accumulation", [c[:2] for c in DPO_CASES], ids=[c[2] for c in DPO_CASES])
def test_adaptive_one_segment_reproduces_dpo_trainer_step_for_step(
    tmp_path, load, tokenizer, make_dataset, label_smoothing, accumulation
):
    shared = dict(
        COMMON,
        max_steps=4,
        max_length=16,
        label_smoothing=label_smoothing,
        per_device_train_batch_size=4 // accumulation,
        gradient_accumulation_steps=accumulation,
    )
    dataset = make_dataset(16, seed=1)
    dpo = DPOTrainer(
        load(),
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), **shared),
        processing_class=tokenizer,
        train_dataset=dataset,
    )
    adpo = ADPOTrainer(
        load(),
        args=ADPOConfig(output_dir=str(tmp_path / "adpo"), granularity="adaptive", num_segments=1, **shared),
        processing_class=tokenizer,
        train_dataset=dataset,
    )
    dpo_logs, adpo_logs = train_logs(dpo), train_logs(adpo)
    assert len(dpo_logs) == len(adpo_logs) == 4
    for step, (expected, actual) in enumerate(zip(dpo_logs, adpo_logs)):
        for key in DPO_METRICS:
            assert actual[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), (step, key)
        assert actual["adpo/feedback_length"] == 1
    assert dpo_logs[-1]["loss"] != pytest.approx(dpo_logs[0]["loss"], abs=1e-4)  # the runs did move


# The NLL term, spelled as each TRL line's DPOConfig spells it: loss type "sft" (both lines) and rpo_alpha (TRL 0.28)
NLL_SPELLINGS = [dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5])] + (
    [dict(rpo_alpha=0.5)] if ON_TRL028 else []
)


@pytest.mark.parametrize("spelling", NLL_SPELLINGS, ids=lambda s: "rpo_alpha" if "rpo_alpha" in s else "loss_type-sft")
def test_adpo_with_an_nll_term_reproduces_dpo_trainers_dpo_plus_nll_step_for_step(
    tmp_path, load, tokenizer, make_dataset, spelling
):
    shared = dict(COMMON, max_steps=4, max_length=16)
    dataset = make_dataset(16, seed=1)
    dpo_spelling = dict(rpo_alpha=0.5) if ON_TRL028 else NLL_SPELLINGS[0]  # 0.28's own DPO+NLL is rpo_alpha
    logs = {}
    for name, trainer_class, config in (
        ("dpo", DPOTrainer, DPOConfig(output_dir=str(tmp_path / "dpo"), **shared, **dpo_spelling)),
        ("dpo-plain", DPOTrainer, DPOConfig(output_dir=str(tmp_path / "plain"), **shared)),
        ("adpo", ADPOTrainer, ADPOConfig(output_dir=str(tmp_path / "adpo"), num_segments=1, **shared, **spelling)),
    ):
        logs[name] = train_logs(trainer_class(load(), args=config, processing_class=tokenizer, train_dataset=dataset))
    assert len(logs["dpo"]) == len(logs["adpo"]) == 4
    for step, (expected, actual) in enumerate(zip(logs["dpo"], logs["adpo"])):
        for key in DPO_METRICS:
            assert actual[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), (step, key)
        if ON_TRL028:
            assert actual["adpo/nll"] == pytest.approx(expected["nll_loss"], rel=1e-5), step
    # at step 1 both runs have the initial weights: the difference of the losses is the weighted NLL alone
    first, plain = logs["adpo"][0], logs["dpo-plain"][0]
    assert first["loss"] - plain["loss"] == pytest.approx(0.5 * first["adpo/nll"], rel=1e-4)
    assert first["adpo/nll"] > 0


@pytest.mark.parametrize(
    "granularity", [dict(granularity="static", window_size=2), dict(num_segments=3)], ids=["static-2", "adaptive-3"]
)
def test_the_nll_term_beside_any_granularity_equals_the_loop(
    tmp_path, load, tokenizer, reference_model_dir, make_dataset, granularity
):
    max_length, mode = 14, "keep_start"
    trainer = ADPOTrainer(
        load(),
        ref_model=load(reference_model_dir),
        args=adpo_config(
            tmp_path,
            beta=0.5,
            max_length=max_length,
            truncation_mode=mode,
            loss_type=["sigmoid", "sft"],
            loss_weights=[0.8, 0.7],
            **granularity,
        ),
        processing_class=tokenizer,
        train_dataset=make_dataset(10, seed=3),
    )
    rows = [trainer.train_dataset[i] for i in range(10)]
    loss = trainer.compute_loss(trainer.model, trainer._prepare_inputs(trainer.data_collator(rows)))
    pair_losses, _ = oracle_losses(
        load(),
        load(reference_model_dir),
        rows,
        max_length,
        mode,
        beta=0.5,
        granularity=granularity.get("granularity", "adaptive"),
        k=granularity.get("window_size", 1),
        m=granularity.get("num_segments", 1),
    )
    expected = 0.8 * sum(pair_losses) / len(pair_losses) + 0.7 * loop_nll(load(), rows, max_length, mode)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_token_level_adpo_differs_from_dpo(tmp_path, load, tokenizer, make_dataset, reference_model_dir):
    dataset = make_dataset(8, seed=2)
    losses = {}
    for name, granularity in [("dpo", dict(granularity="adaptive", num_segments=1)), ("adpo", {})]:
        trainer = ADPOTrainer(
            load(),
            ref_model=load(reference_model_dir),
            args=adpo_config(tmp_path, **granularity),
            processing_class=tokenizer,
            train_dataset=dataset,
        )
        losses[name] = batch_losses(trainer, [trainer.train_dataset[i] for i in range(8)])
    assert not torch.allclose(losses["dpo"], losses["adpo"])


# --- references ---------------------------------------------------------------------------------------------------


def test_precomputed_reference_gives_the_losses_of_a_live_reference(tmp_path, load, tokenizer, make_dataset):
    train, evaluation = make_dataset(16, seed=4), make_dataset(6, seed=5)
    results = {}
    for precompute in (False, True):
        trainer = ADPOTrainer(
            load(),
            args=adpo_config(
                tmp_path,
                granularity="adaptive",
                num_segments=3,
                max_length=14,
                precompute_ref_log_probs=precompute,
                precompute_ref_batch_size=3,
            ),
            processing_class=tokenizer,
            train_dataset=train,
            eval_dataset=evaluation,
        )
        before = trainer.evaluate()
        logs = train_logs(trainer)
        results[precompute] = (before, logs, trainer.evaluate())
        if precompute:
            row = trainer.train_dataset[0]
            assert len(row["ref_chosen_logps"]) == len(token_ids(row, "chosen"))
            assert "ref_rejected_logps" in trainer.eval_dataset.column_names
    (live_before, live_logs, live_after), (pre_before, pre_logs, pre_after) = results[False], results[True]
    for live, pre in ((live_before, pre_before), (live_after, pre_after)):
        for key in ("eval_loss", "eval_rewards/margins", "eval_adpo/segment_accuracy", "eval_adpo/segment_margin"):
            assert pre[key] == pytest.approx(live[key], rel=1e-4, abs=1e-6), key
    for live, pre in zip(live_logs, pre_logs):
        for key in ("loss", "rewards/chosen", "rewards/rejected", "adpo/segment_margin"):
            assert pre[key] == pytest.approx(live[key], rel=1e-4, abs=1e-6), key
    assert pre_after["eval_loss"] != pytest.approx(pre_before["eval_loss"])


def test_peft_reference_is_the_base_model_with_adapters_disabled(tmp_path, load, tokenizer, make_dataset):
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = ADPOTrainer(
        load(),
        args=adpo_config(tmp_path, granularity="static", window_size=2, max_steps=3),
        processing_class=tokenizer,
        train_dataset=make_dataset(12, seed=6),
        peft_config=lora,
    )
    assert trainer.ref_model is None
    logs = train_logs(trainer)
    first = logs[0]
    # at step 0 the adapters are zero: every segment's log-ratio is 0 and contributes log 2
    assert first["rewards/chosen"] == 0 and first["rewards/rejected"] == 0
    assert first["loss"] == pytest.approx(first["adpo/feedback_length"] * math.log(2), rel=1e-6)
    assert logs[-1]["rewards/margins"] != 0

    # after training the adapters are not zero, and the loss is that of the adapted policy against the bare base
    rows = [trainer.train_dataset[i] for i in range(6)]
    expected, _ = oracle_losses(trainer.model, load(), rows, None, "keep_start", beta=0.1, granularity="static", k=2)
    torch.testing.assert_close(
        batch_losses(trainer, rows).double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-5
    )


def test_lora_adapters_start_the_same_in_every_run(tmp_path, load, tokenizer, make_dataset):
    """TRL 0.28 creates the adapters before Trainer seeds; ADPOTrainer seeds first, as TRL 1.x does."""
    adapters = []
    for run in range(2):
        torch.manual_seed(run)  # whatever the random state before the trainer is built
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        trainer = ADPOTrainer(
            load(),
            args=adpo_config(tmp_path),
            processing_class=tokenizer,
            train_dataset=make_dataset(4),
            peft_config=lora,
        )
        adapters.append({n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_A" in n})
    assert adapters[0] and adapters[0].keys() == adapters[1].keys()
    for name in adapters[0]:
        torch.testing.assert_close(adapters[0][name], adapters[1][name], rtol=0, atol=0, msg=name)


def test_4bit_nf4_model_with_lora_trains(tmp_path, tiny_model_dir, tokenizer, make_dataset):
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quantization)
    assert model.is_loaded_in_4bit
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = ADPOTrainer(
        model,
        args=adpo_config(tmp_path, max_steps=2, granularity="adaptive", num_segments=4),
        processing_class=tokenizer,
        train_dataset=make_dataset(8, seed=7),
        peft_config=lora,
    )
    adapters = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    assert adapters
    logs = train_logs(trainer)
    assert all(math.isfinite(entry["loss"]) for entry in logs)
    changed = [n for n, p in trainer.model.named_parameters() if n in adapters and not torch.equal(p, adapters[n])]
    assert changed == list(adapters)


def test_per_token_columns_that_come_with_the_data_are_dropped(
    tmp_path, load, tokenizer, reference_model_dir, make_dataset
):
    """Critical-token weights a plain ADPO config does not ask for, and reference log-probs a run without
    precompute_ref_log_probs does not use, are dropped with a warning: the losses are those of the clean data, and
    the model card says ADPO."""
    dataset = make_dataset(6, seed=14)
    clean = ADPOTrainer(
        load(),
        ref_model=load(reference_model_dir),
        args=adpo_config(tmp_path),
        processing_class=tokenizer,
        train_dataset=dataset,
    )
    lengths = {side: [len(token_ids(row, side)) for row in clean.train_dataset] for side in ("chosen", "rejected")}
    carried = (
        dataset.add_column("ref_chosen_logps", [[-50.0] * n for n in lengths["chosen"]])
        .add_column("ref_rejected_logps", [[-1.0] * n for n in lengths["rejected"]])
        .add_column("rejected_weights", [[0.1] * n for n in lengths["rejected"]])
    )
    with pytest.warns(
        UserWarning,
        match=r"already holds the per-token column\(s\) "
        r"\['ref_chosen_logps', 'ref_rejected_logps', 'rejected_weights'\]",
    ):
        stale = ADPOTrainer(
            load(),
            ref_model=load(reference_model_dir),
            args=adpo_config(tmp_path),
            processing_class=tokenizer,
            train_dataset=carried,
        )
    assert not {"ref_chosen_logps", "ref_rejected_logps", "rejected_weights"} & set(stale.train_dataset.column_names)
    expected = batch_losses(clean, [clean.train_dataset[i] for i in range(6)])
    torch.testing.assert_close(batch_losses(stale, [stale.train_dataset[i] for i in range(6)]), expected)
    stale.create_model_card()
    assert "| method | ADPO |" in (tmp_path / "adpo" / "README.md").read_text()


# --- the training loop around the loss ----------------------------------------------------------------------------


def test_gradient_accumulation_logs_the_loss_of_the_large_batch(tmp_path, load, tokenizer, make_dataset):
    dataset = make_dataset(8, seed=8)
    first_logs = []
    for batch_size, accumulation in ((4, 1), (2, 2)):
        trainer = ADPOTrainer(
            load(),
            args=adpo_config(
                tmp_path,
                max_steps=1,
                per_device_train_batch_size=batch_size,
                gradient_accumulation_steps=accumulation,
                granularity="static",
                window_size=2,
            ),
            processing_class=tokenizer,
            train_dataset=dataset,
        )
        first_logs.append(train_logs(trainer)[0])
        assert not torch.equal(trainer.model.lm_head.weight, load().lm_head.weight)
    large, accumulated = first_logs
    for key in ("loss", "rewards/margins", "adpo/segment_margin"):
        assert accumulated[key] == pytest.approx(large[key], rel=1e-5), key


def test_evaluation_save_and_reload(tmp_path, load, tokenizer, make_dataset):
    args = adpo_config(
        tmp_path, max_steps=4, eval_strategy="steps", eval_steps=2, granularity="adaptive", num_segments=16
    )
    trainer = ADPOTrainer(
        load(),
        args=args,
        processing_class=tokenizer,
        train_dataset=make_dataset(12, seed=9),
        eval_dataset=make_dataset(5, seed=10),
    )
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert [entry["step"] for entry in evaluations] == [2, 4]
    for key in ("eval_adpo/feedback_length", "eval_adpo/segment_accuracy", "eval_adpo/segment_margin"):
        assert key in evaluations[-1]
    assert 0 <= evaluations[-1]["eval_adpo/segment_accuracy"] <= 1

    trainer.save_model(args.output_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(args.output_dir)
    for (name, trained), (_, loaded) in zip(trainer.model.state_dict().items(), reloaded.state_dict().items()):
        torch.testing.assert_close(loaded, trained, msg=name)
    assert not torch.equal(reloaded.lm_head.weight, load().lm_head.weight)


def test_model_card_names_adpo_its_granularity_and_the_papers(tmp_path, load, tokenizer, make_dataset):
    args = adpo_config(tmp_path, granularity="static", window_size=2, label_smoothing=0.1, beta=0.25)
    trainer = ADPOTrainer(load(), args=args, processing_class=tokenizer, train_dataset=make_dataset(4))
    trainer.create_model_card(model_name="tiny-adpo", dataset_name="toy/pairs")
    card = (tmp_path / "adpo" / "README.md").read_text()
    for expected in (
        "trained with ADPO, a method introduced in [Autoregressive Direct Preference Optimization]",
        "2602.09533",
        "conservative ADPO (label smoothing)",
        "| granularity | static, k=2 |",
        "| beta | 0.25 |",
        "| label smoothing | 0.1 |",
        "toy/pairs",
        "rafailov2023direct",
        "oi2026adpo",
        "- adpo",
    ):
        assert expected in card, expected


# --- rejected input -----------------------------------------------------------------------------------------------


DPO_OPTIONS = {f.name for f in fields(DPOConfig)}
REJECTED = [
    (dict(loss_type="ipo"), "loss_type='ipo' is not supported"),
    (dict(loss_type=["sft"]), r"loss_type=\['sft'\] is not supported"),
    (dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0]), r"gives 1 weight\(s\) for the 2 loss type\(s\)"),
    (dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, -0.5]), "each weight must be a finite number >= 0"),
    (dict(rpo_alpha=1.0, loss_type=["sigmoid", "sft"]), "give the NLL term once"),
    (dict(rpo_alpha=-1.0), "rpo_alpha must be a finite number >= 0"),
    (dict(beta=float("inf")), "beta=inf is not a finite number"),
    (dict(learning_rate=float("nan")), "learning_rate=nan is not a finite number"),
    *([(dict(use_liger_kernel=True), "use_liger_kernel=True is not supported")] if ON_TRL028 else []),
    (dict(ld_alpha=0.5), "ld_alpha=0.5 is not supported"),
    (dict(use_weighting=True), "use_weighting=True is not supported"),
    (dict(padding_free=True), "padding_free=True is not supported"),
    (dict(reference_free=True), "reference_free=True is not supported"),
    (dict(f_divergence_type="js_divergence"), "f_divergence_type='js_divergence' is not supported"),
    (dict(granularity="segment"), "ADPOConfig: granularity must be one of"),
    (dict(granularity="static", window_size=0), "ADPOConfig: window_size must be an integer >= 1"),
    (
        dict(window_size=4),
        "ADPOConfig: window_size=4 applies to granularity='static' only, and granularity is 'adaptive'",
    ),
    (
        dict(granularity="static", num_segments=16),
        "ADPOConfig: num_segments=16 applies to granularity='adaptive' only",
    ),
    (dict(granularity="adaptive", num_segments=-2), "ADPOConfig: num_segments must be an integer >= 1"),
    (dict(segment_reduction="max"), "ADPOConfig: segment_reduction must be one of"),
    (dict(label_smoothing=0.5), r"ADPOConfig: label_smoothing must be in \[0, 0.5\)"),
    (dict(truncation_mode="keep_middle"), "ADPOConfig: truncation_mode must be"),
    (dict(beta=0.0), r"ADPOConfig: beta must be > 0, got 0.0; it is the KL temperature"),
    (dict(beta=-0.1), r"ADPOConfig: beta must be > 0, got -0.1"),
]
"""Each option that ADPOConfig refuses, where the installed TRL line has it (reference_free, rpo_alpha: 0.28's)."""


@pytest.mark.parametrize(
    "option,message",
    [
        case
        for case in REJECTED
        if set(case[0]) <= DPO_OPTIONS | {"granularity", "window_size", "num_segments", "segment_reduction", "beta"}
    ],
)
def test_unsupported_and_invalid_options_are_rejected(tmp_path, option, message):
    with pytest.raises(ValueError, match=message):
        ADPOConfig(output_dir=str(tmp_path), report_to="none", bf16=False, **option)


def test_the_default_config_is_the_papers_headline_adpo(tmp_path):
    args = ADPOConfig(output_dir=str(tmp_path), report_to="none", bf16=False)
    assert (args.granularity, args.num_segments, args.segment_reduction, args.label_smoothing) == (
        "adaptive",
        256,
        "sum",
        0,
    )
    assert args.granularity_description == "adaptive, m=256"


def test_a_dpo_config_is_rejected_with_the_fix(tmp_path, load, tokenizer, make_dataset):
    with pytest.raises(TypeError, match=r"needs an ADPOConfig as `args`, got DPOConfig. Replace DPOConfig\(...\)"):
        ADPOTrainer(
            load(),
            args=DPOConfig(output_dir=str(tmp_path), report_to="none", bf16=False),
            processing_class=tokenizer,
            train_dataset=make_dataset(2),
        )


@pytest.mark.parametrize(
    "rows,message",
    [
        (
            [{"prompt": "w1", "chosen": "w2", "rejected": "w3"}, {"prompt": "w1", "chosen": "  ", "rejected": "w3"}],
            r"Row 1 of the train dataset has an empty `chosen` completion",
        ),
        (
            [{"prompt": "w1", "chosen": "w2", "rejected": ""}],
            r"Row 0 of the train dataset has an empty `rejected` completion",
        ),
        ([{"prompt": "w1", "answer": "w2", "rejected": "w3"}], r"lacks the column\(s\) \['chosen'\]"),
        (
            [
                {"prompt": "w1", "chosen": "w2", "rejected": "w3"},
                {"prompt": " ".join(["w5"] * 20), "chosen": "w2", "rejected": "w3"},
            ],
            r"Row 1 of the train dataset has no `chosen` token left to score after truncation to max_length=16",
        ),
    ],
)
def test_bad_rows_fail_before_training_with_the_row_number(tmp_path, load, tokenizer, rows, message):
    from datasets import Dataset

    with pytest.raises(ValueError, match=message):
        ADPOTrainer(
            load(),
            args=adpo_config(
                tmp_path,
                max_length=16,
                truncation_mode="keep_start",
                **({"max_prompt_length": None} if ON_TRL028 else {}),
            ),
            processing_class=tokenizer,
            train_dataset=Dataset.from_list(rows),
        )


def test_pairs_whose_chosen_and_rejected_are_the_same_are_counted_in_a_warning(tmp_path, load, tokenizer):
    from datasets import Dataset

    rows = [{"prompt": "w1", "chosen": " w2", "rejected": " w3"}] * 3 + [
        {"prompt": "w1", "chosen": " w4", "rejected": " w4"}
    ] * 2
    with pytest.warns(
        UserWarning,
        match=r"2 of the 5 rows of the train dataset \(row 3 first, counting from 0\) have the "
        r"same chosen and rejected completion",
    ) as caught:
        ADPOTrainer(
            load(), args=adpo_config(tmp_path), processing_class=tokenizer, train_dataset=Dataset.from_list(rows)
        )
    ours = [w for w in caught if "same chosen and rejected" in str(w.message)]
    assert [w.filename for w in ours] == [__file__]  # the user's ADPOTrainer(...) line, not TRL's or the package's
