"""Critical tokens (cDPO's contrastive estimation) and cDPO/cADPO training, against plain loops.

The positive and negative models are the `critical_models` fixture: the quickstart's tiny model fully fine-tuned on
the correct and the wrong solutions of arithmetic pairs.
"""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from conftest import token_ids
from datasets import Dataset
from loop import batch_losses, loop_logratios, truncate
from oracle import pair_loss
from peft import AutoPeftModelForCausalLM, LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from trl_adpo import ADPOConfig, ADPOTrainer
from trl_adpo.critical_models import CriticalTokenModels
from trl_adpo.critical_tokens import contrastive_token_probs
from trl_adpo.examples.arithmetic import preference_rows

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
    beta=0.5,
)


# --- the estimator ------------------------------------------------------------------------------------------------


def loop_contrastive_probs(hidden_pos, hidden_neg, w_pos, w_neg, targets, mask, gamma) -> torch.Tensor:
    """p_ce one position at a time, in float64, with a full softmax."""
    probs = torch.zeros(mask.shape, dtype=torch.float64)
    for b in range(mask.shape[0]):
        for i in range(mask.shape[1]):
            if mask[b, i]:
                z = (1 + gamma) * (w_pos.double() @ hidden_pos[b, i].double()) - gamma * (
                    w_neg.double() @ hidden_neg[b, i].double()
                )
                probs[b, i] = torch.softmax(z, dim=0)[targets[b, i]]
    return probs


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.5])
def test_chunked_estimator_equals_a_full_softmax_loop(chunk_size, gamma):
    gen = torch.Generator().manual_seed(chunk_size)
    hidden_pos, hidden_neg = torch.randn(3, 11, 8, generator=gen), torch.randn(3, 11, 8, generator=gen)
    w_pos, w_neg = torch.randn(50, 8, generator=gen), torch.randn(50, 8, generator=gen)
    targets = torch.randint(50, (3, 11), generator=gen)
    mask = torch.rand(3, 11, generator=gen) > 0.3
    probs = contrastive_token_probs(
        hidden_pos, hidden_neg, lambda h: h @ w_pos.T, lambda h: h @ w_neg.T, targets, mask, gamma, chunk_size
    )
    expected = loop_contrastive_probs(hidden_pos, hidden_neg, w_pos, w_neg, targets, mask, gamma)
    torch.testing.assert_close(probs.double(), expected, rtol=1e-5, atol=1e-6)
    assert probs.dtype == torch.float32 and torch.all(probs[~mask] == 0)


def test_estimator_refuses_bad_arguments():
    hidden, targets, mask = (
        torch.zeros(1, 2, 4),
        torch.zeros(1, 2, dtype=torch.long),
        torch.ones(1, 2, dtype=torch.bool),
    )
    head = lambda h: h @ torch.ones(5, 4).T  # noqa: E731
    with pytest.raises(ValueError, match=r"gamma must be a number >= 0, got -0.5"):
        contrastive_token_probs(hidden, hidden, head, head, targets, mask, gamma=-0.5)
    with pytest.raises(ValueError, match="the two models must share one vocabulary"):
        contrastive_token_probs(hidden, hidden, head, lambda h: h @ torch.ones(6, 4).T, targets, mask)
    with pytest.raises(ValueError, match="must agree on"):
        contrastive_token_probs(hidden, hidden, head, head, targets, mask[:, :1])


def padded_batch(sequences: list[list[int]], completion_starts: list[int], pad_id: int, side: str):
    """Input ids, attention mask and scored mask (column i: token i + 1 is a completion token) of a padded batch."""
    width = max(map(len, sequences))
    input_ids = torch.full((len(sequences), width), pad_id)
    attention_mask = torch.zeros(len(sequences), width, dtype=torch.long)
    scored = torch.zeros(len(sequences), width - 1, dtype=torch.bool)
    for row, (sequence, start) in enumerate(zip(sequences, completion_starts)):
        offset = width - len(sequence) if side == "left" else 0
        input_ids[row, offset : offset + len(sequence)] = torch.tensor(sequence)
        attention_mask[row, offset : offset + len(sequence)] = 1
        scored[row, offset + start - 1 : offset + len(sequence) - 1] = True
    return input_ids, attention_mask, scored


@torch.no_grad()
def loop_sequence_probs(positive, negative, sequence: list[int], gamma: float) -> list[float]:
    """p_ce of every token after the first of one unpadded sequence, from both models' full logits."""
    ids = torch.tensor([sequence])
    contrast = (1 + gamma) * positive(ids).logits[0].double() - gamma * negative(ids).logits[0].double()
    probs = contrast.softmax(dim=-1)
    return [probs[t - 1, sequence[t]].item() for t in range(1, len(sequence))]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("chunk_size,gamma", [(1, 1.0), (5, 0.5), (256, 2.0)])
def test_model_scores_of_padded_batches_equal_one_unpadded_sequence_at_a_time(
    critical_models, quickstart, side, chunk_size, gamma
):
    tokenizer = AutoTokenizer.from_pretrained(quickstart / "model")
    models = CriticalTokenModels.load(str(critical_models["positive"]), str(critical_models["negative"]), gamma=gamma)
    models.chunk_size = chunk_size
    rows = preference_rows(5, seed=11, num_steps=random.Random(side).choice([2, 3]))
    prompts = [tokenizer(row["prompt"], add_special_tokens=False)["input_ids"] for row in rows]
    sequences = [
        p + tokenizer(row["rejected"], add_special_tokens=False)["input_ids"] for p, row in zip(prompts, rows)
    ]
    input_ids, attention_mask, scored = padded_batch(
        sequences, [len(p) for p in prompts], tokenizer.pad_token_id, side
    )
    probs = models.token_probs(input_ids, attention_mask, scored)
    positive = AutoModelForCausalLM.from_pretrained(critical_models["positive"])
    negative = AutoModelForCausalLM.from_pretrained(critical_models["negative"])
    for row, (sequence, prompt) in enumerate(zip(sequences, prompts)):
        expected = loop_sequence_probs(positive, negative, sequence, gamma)[len(prompt) - 1 :]
        torch.testing.assert_close(
            probs[row][scored[row]].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5
        )
    assert torch.all(probs[~scored] == 0)


LOGIT_TRANSFORM_MODELS = {  # architectures whose forward transforms the logits, where this transformers has them
    "gemma2": dict(final_logit_softcapping=3.0, head_dim=8),
    "granite": dict(logits_scaling=4.0),
    "cohere": dict(logit_scale=0.25),
    "falcon_h1": dict(
        lm_head_multiplier=0.5, mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8, mamba_d_state=8, mamba_chunk_size=16
    ),
    "hyperclovax": dict(logits_scaling=4.0),  # multiplies by it, where Granite divides: not reproduced, refused
}


def save_transform_model(directory, model_type: str, seed: int):
    from transformers import CONFIG_MAPPING

    torch.manual_seed(seed)
    config = CONFIG_MAPPING[model_type](
        vocab_size=48,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        **LOGIT_TRANSFORM_MODELS[model_type],
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    return str(directory)


def transform_cases():
    from transformers import CONFIG_MAPPING

    return [model_type for model_type in LOGIT_TRANSFORM_MODELS if model_type in CONFIG_MAPPING]


@pytest.mark.parametrize("model_type", transform_cases())
def test_models_that_transform_their_logits_are_scored_from_their_forwards_logits_or_refused(tmp_path, model_type):
    positive = save_transform_model(tmp_path / "positive", model_type, seed=0)
    negative = save_transform_model(tmp_path / "negative", model_type, seed=1)
    models = CriticalTokenModels.load(positive, negative)
    sequence = torch.randint(3, 48, (12,), generator=torch.Generator().manual_seed(0)).tolist()
    input_ids, attention_mask, scored = padded_batch([sequence], [4], 0, "right")
    if model_type == "hyperclovax":
        with pytest.raises(
            ValueError, match=r"positive_model='.*' \(HyperCLOVAXForCausalLM\): its forward transforms the logits"
        ):
            models.token_probs(input_ids, attention_mask, scored)
        return
    probs = models.token_probs(input_ids, attention_mask, scored)[0][scored[0]]
    expected = loop_sequence_probs(  # softmax of the logits the models' own forwards return
        AutoModelForCausalLM.from_pretrained(positive), AutoModelForCausalLM.from_pretrained(negative), sequence, 1.0
    )[3:]
    torch.testing.assert_close(probs.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_a_logit_transform_the_estimator_does_not_apply_is_refused(tmp_path, monkeypatch):
    from trl_adpo import critical_models

    monkeypatch.delitem(critical_models.LOGIT_TRANSFORMS, "logit_scale")
    models = CriticalTokenModels.load(
        save_transform_model(tmp_path / "positive", "cohere", 0),
        save_transform_model(tmp_path / "negative", "cohere", 1),
    )
    input_ids, attention_mask, scored = padded_batch([[5, 6, 7, 8, 9]], [2], 0, "right")
    with pytest.raises(
        ValueError, match=r"\(CohereForCausalLM\): its forward transforms the logits .* the config attributes"
    ):
        models.token_probs(input_ids, attention_mask, scored)


def test_the_estimator_localises_the_critical_token(critical_models, quickstart):
    """The rejected solutions go wrong at one step; their lowest-p_ce token should be the first one that differs
    from the correct solution far more often than chance (one over the number of completion tokens)."""
    tokenizer = AutoTokenizer.from_pretrained(quickstart / "model")
    models = CriticalTokenModels.load(str(critical_models["positive"]), str(critical_models["negative"]))
    hits, chance, rows = 0, 0.0, preference_rows(200, seed=5, num_steps=3)
    for row in rows:
        prompt, chosen, rejected = (
            tokenizer(row[k], add_special_tokens=False)["input_ids"] for k in ("prompt", "chosen", "rejected")
        )
        departure = next(i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b)
        input_ids, attention_mask, scored = padded_batch([prompt + rejected], [len(prompt)], 0, "right")
        probs = models.token_probs(input_ids, attention_mask, scored)[0][scored[0]]
        hits += int(probs.argmin()) == departure
        chance += 1 / len(rejected)
    rate, chance = hits / len(rows), chance / len(rows)
    print(f"critical-token localisation: {rate:.3f} of {len(rows)} rejected solutions (chance {chance:.3f})")
    assert rate > 0.25 > 5 * chance  # measured 0.44 against a chance of 0.038 (CPU, this fixture)


def test_lora_adapters_of_one_base_share_it_and_score_as_each_adapter_alone(quickstart, tmp_path):
    from trl_adpo.cli import train_critical
    from trl_adpo.pipeline.io import write_jsonl

    write_jsonl(preference_rows(32, seed=2), tmp_path / "pairs.jsonl")
    directories = train_critical.run(
        *train_critical.parse_args(
            [  # cDPO's defaults: LoRA r = 8 on the MLP
                "--model_name_or_path",
                str(quickstart / "model"),
                "--dataset_name",
                str(tmp_path / "pairs.jsonl"),
                "--output_dir",
                str(tmp_path / "critical"),
                "--learning_rate",
                "3e-2",
                "--bf16",
                "false",
                "--disable_tqdm",
                "true",
                "--per_device_train_batch_size",
                "8",
            ]
        )
    )
    models = CriticalTokenModels.load(str(directories["positive"]), str(directories["negative"]))
    assert models.models["positive"] is models.models["negative"]  # one base, two adapters
    tokenizer = AutoTokenizer.from_pretrained(quickstart / "model")
    row = preference_rows(1, seed=3)[0]
    prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
    sequence = prompt + tokenizer(row["rejected"], add_special_tokens=False)["input_ids"]
    input_ids, attention_mask, scored = padded_batch([sequence], [len(prompt)], 0, "right")
    probs = models.token_probs(input_ids, attention_mask, scored)[0][scored[0]]
    positive = AutoPeftModelForCausalLM.from_pretrained(directories["positive"])
    negative = AutoPeftModelForCausalLM.from_pretrained(directories["negative"])
    expected = loop_sequence_probs(positive, negative, sequence, 1.0)[len(prompt) - 1 :]
    torch.testing.assert_close(probs.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(  # the adapters did learn something different
        positive(input_ids).logits, negative(input_ids).logits
    )


# --- cDPO and cADPO in the trainer ----------------------------------------------------------------------------------


def cadpo_trainer(tmp_path, quickstart, critical_models, rows, ref_model=True, policy=None, **options) -> ADPOTrainer:
    if policy is None:
        policy = AutoModelForCausalLM.from_pretrained(quickstart / "model")
        torch.manual_seed(1)
        with torch.no_grad():  # a policy unlike its reference
            for parameter in policy.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
    return ADPOTrainer(
        policy,
        ref_model=AutoModelForCausalLM.from_pretrained(quickstart / "model") if ref_model else None,
        args=ADPOConfig(
            output_dir=str(tmp_path),
            positive_model=str(critical_models["positive"]),
            negative_model=str(critical_models["negative"]),
            **{**COMMON, **options},
        ),
        processing_class=AutoTokenizer.from_pretrained(quickstart / "model"),
        train_dataset=rows if isinstance(rows, Dataset) else Dataset.from_list(rows),
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(num_segments=1),
        dict(num_segments=256),
        dict(granularity="static", window_size=3),
        dict(num_segments=1, max_length=45),
        dict(num_segments=1, max_length=45, truncation_mode="keep_end"),
        dict(num_segments=4, weight_chosen_tokens=True),
    ],
    ids=["cDPO", "cADPO-m256", "cADPO-k3", "cDPO-truncated", "cDPO-truncated-keep-end", "cADPO-m4-both-sides"],
)
def test_cdpo_and_cadpo_equal_the_per_pair_loop(tmp_path, quickstart, critical_models, options):
    trainer = cadpo_trainer(tmp_path, quickstart, critical_models, preference_rows(8, seed=21), **options)
    rows = [trainer.train_dataset[i] for i in range(8)]
    positive = AutoModelForCausalLM.from_pretrained(critical_models["positive"])
    negative = AutoModelForCausalLM.from_pretrained(critical_models["negative"])
    reference = AutoModelForCausalLM.from_pretrained(quickstart / "model")
    max_length, mode = options.get("max_length"), trainer.args.truncation_mode

    def probs(row, side):
        sequence, completion_index = truncate(token_ids(row, "prompt"), token_ids(row, side), max_length, mode)
        all_probs = loop_sequence_probs(positive, negative, sequence, 1.0)
        return [p for p, index in zip(all_probs, completion_index[1:]) if index is not None]

    expected = []
    for row in rows:
        s_w = loop_logratios(trainer.model, reference, row, "chosen", max_length, mode)
        s_l = loop_logratios(trainer.model, reference, row, "rejected", max_length, mode)
        weights = {"rejected_weights": [1 - p for p in probs(row, "rejected")]}
        if options.get("weight_chosen_tokens"):
            weights["chosen_weights"] = probs(row, "chosen")
        granularity = options.get("granularity", "adaptive")
        expected.append(
            pair_loss(
                s_w,
                s_l,
                beta=0.5,
                granularity=granularity,
                k=options.get("window_size", 1),
                m=options.get("num_segments", 256),
                **weights,
            )
        )
    torch.testing.assert_close(
        batch_losses(trainer, rows).double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-5
    )


def test_cadpo_with_every_weight_one_is_adpo_step_for_step(tmp_path, quickstart, critical_models, monkeypatch):
    rows = preference_rows(12, seed=22)
    adpo = ADPOTrainer(
        AutoModelForCausalLM.from_pretrained(quickstart / "model"),
        args=ADPOConfig(output_dir=str(tmp_path / "adpo"), **COMMON),
        processing_class=AutoTokenizer.from_pretrained(quickstart / "model"),
        train_dataset=Dataset.from_list(rows),
    )
    # p_ce = 0 everywhere: every rejected weight 1 - p_ce is 1
    monkeypatch.setattr(
        "trl_adpo.critical_models.contrastive_token_probs", lambda *args, **kwargs: torch.zeros(args[5].shape)
    )
    cadpo = cadpo_trainer(
        tmp_path / "cadpo",
        quickstart,
        critical_models,
        rows,
        ref_model=False,
        policy=AutoModelForCausalLM.from_pretrained(quickstart / "model"),
    )
    adpo.train()
    cadpo.train()
    adpo_logs, cadpo_logs = ([e for e in t.state.log_history if "loss" in e] for t in (adpo, cadpo))
    assert len(adpo_logs) == len(cadpo_logs) == 3
    for expected, actual in zip(adpo_logs, cadpo_logs):
        for key in ("loss", "grad_norm", "rewards/chosen", "rewards/rejected", "adpo/segment_margin"):
            assert actual[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key
        assert actual["adpo/rejected_weight_mean"] == 1.0 and actual["adpo/rejected_weight_below_half"] == 0.0


def test_a_rejected_weight_of_exactly_one_half_is_not_counted_below_half(
    tmp_path, quickstart, critical_models, monkeypatch
):
    rows = preference_rows(8, seed=23)
    # p_ce = 0.5 everywhere: every rejected weight 1 - p_ce is exactly 0.5, which is not below one half
    monkeypatch.setattr(
        "trl_adpo.critical_models.contrastive_token_probs", lambda *args, **kwargs: torch.full(args[5].shape, 0.5)
    )
    trainer = cadpo_trainer(
        tmp_path,
        quickstart,
        critical_models,
        rows,
        ref_model=False,
        policy=AutoModelForCausalLM.from_pretrained(quickstart / "model"),
    )
    trainer.train()
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert logged and all(e["adpo/rejected_weight_mean"] == 0.5 for e in logged)
    assert all(e["adpo/rejected_weight_below_half"] == 0.0 for e in logged)


def test_logged_rewards_are_dpos_unweighted_rewards(tmp_path, quickstart, critical_models):
    """`rewards/*` are beta times the summed log-ratio, as DPO's and as documented, on both TRL lines: a cADPO run logs
    at its first step what the same run without weights logs (the weights change the loss, never the rewards)."""
    rows = preference_rows(8, seed=27)
    policy = AutoModelForCausalLM.from_pretrained(quickstart / "model")
    torch.manual_seed(1)
    with torch.no_grad():  # a policy unlike its reference: rewards that are not 0
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    plain = ADPOTrainer(
        copy.deepcopy(policy),
        ref_model=AutoModelForCausalLM.from_pretrained(quickstart / "model"),
        args=ADPOConfig(output_dir=str(tmp_path / "plain"), **{**COMMON, "max_steps": 1}),
        processing_class=AutoTokenizer.from_pretrained(quickstart / "model"),
        train_dataset=Dataset.from_list(rows),
    )
    cadpo = cadpo_trainer(tmp_path / "cadpo", quickstart, critical_models, rows, policy=policy, max_steps=1)
    first = {}
    for name, trainer in (("plain", plain), ("cadpo", cadpo)):
        trainer.train()
        first[name] = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert first["cadpo"]["adpo/rejected_weight_mean"] < 1  # the weights are there, and change the loss
    assert first["cadpo"]["loss"] != pytest.approx(first["plain"]["loss"], rel=1e-4)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert first["cadpo"][key] == pytest.approx(first["plain"][key], rel=1e-5, abs=1e-7), key
    assert first["cadpo"]["rewards/margins"] != 0


def test_cadpo_with_an_nll_term_adds_the_weighted_nll_to_cadpos_loss(tmp_path, quickstart, critical_models):
    rows = preference_rows(8, seed=29)
    first = {}
    for name, options in (("cadpo", {}), ("cadpo-nll", dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.3]))):
        trainer = cadpo_trainer(tmp_path / name, quickstart, critical_models, rows, max_steps=2, **options)
        trainer.train()
        first[name] = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert first["cadpo-nll"]["adpo/nll"] > 0 and "adpo/nll" not in first["cadpo"]
    assert first["cadpo-nll"]["loss"] == pytest.approx(
        first["cadpo"]["loss"] + 0.3 * first["cadpo-nll"]["adpo/nll"], rel=1e-4
    )
    assert first["cadpo-nll"]["adpo/rejected_weight_mean"] == pytest.approx(
        first["cadpo"]["adpo/rejected_weight_mean"]
    )


def test_weight_columns_already_in_the_data_are_computed_again(tmp_path, quickstart, critical_models):
    """Pairs that carry the weights of another run (here of a cADPO trainer that weighs the rejected side only, made
    stale), given to one that weighs both sides: the weights are dropped, with a warning, and computed again."""
    rows = preference_rows(6, seed=28)
    first = cadpo_trainer(tmp_path / "first", quickstart, critical_models, rows)
    carried = Dataset.from_list(rows).add_column(
        "rejected_weights", [[0.0] * len(weights) for weights in first.train_dataset["rejected_weights"]]
    )
    with pytest.warns(UserWarning, match=r"already holds the per-token column\(s\) \['rejected_weights'\]"):
        second = cadpo_trainer(tmp_path / "second", quickstart, critical_models, carried, weight_chosen_tokens=True)
    fresh = cadpo_trainer(tmp_path / "fresh", quickstart, critical_models, rows, weight_chosen_tokens=True)
    for column in ("chosen_weights", "rejected_weights"):
        for got, expected in zip(second.train_dataset[column], fresh.train_dataset[column]):
            torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_weights_of_a_row_do_not_depend_on_batch_size_or_order(tmp_path, quickstart, critical_models):
    rows = preference_rows(11, seed=23)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    weights = {}
    for name, data, batch_size in (("one", rows, 1), ("five", rows, 5), ("shuffled", shuffled, 4)):
        trainer = cadpo_trainer(
            tmp_path / name, quickstart, critical_models, data, precompute_ref_batch_size=batch_size
        )
        weights[name] = {row["prompt"]: row["rejected_weights"] for row in trainer.train_dataset}
    for name in ("five", "shuffled"):
        for prompt, expected in weights["one"].items():
            torch.testing.assert_close(
                torch.tensor(weights[name][prompt]), torch.tensor(expected), rtol=1e-5, atol=1e-6
            )
    assert all(0 <= w <= 1 for row in weights["one"].values() for w in row)


@pytest.mark.parametrize("policy", ["lora-precomputed-reference", "4bit-lora"])
def test_cadpo_trains_a_lora_or_4bit_policy_and_names_cdpo_in_the_card(tmp_path, quickstart, critical_models, policy):
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    quantization = None
    if policy == "4bit-lora":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
    model = AutoModelForCausalLM.from_pretrained(quickstart / "model", quantization_config=quantization)
    trainer = ADPOTrainer(
        model,
        args=ADPOConfig(
            output_dir=str(tmp_path),
            positive_model=str(critical_models["positive"]),
            negative_model=str(critical_models["negative"]),
            precompute_ref_log_probs=policy.startswith("lora"),
            **{**COMMON, "max_steps": 2},
        ),
        processing_class=AutoTokenizer.from_pretrained(quickstart / "model"),
        train_dataset=Dataset.from_list(preference_rows(8, seed=24)),
        peft_config=lora,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(math.isfinite(entry["loss"]) for entry in logs)
    assert 0 < logs[0]["adpo/rejected_weight_mean"] < 1
    assert 0 <= logs[0]["adpo/rejected_weight_below_half"] <= 1
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    for expected in (
        "Trained with cADPO",
        "| method | cADPO |",
        "2411.19943",
        "lin2025critical",
        "| positive model |",
    ):
        assert expected in card, expected


def test_an_eval_dataset_given_after_construction_is_refused(tmp_path, quickstart, critical_models):
    trainer = cadpo_trainer(tmp_path, quickstart, critical_models, preference_rows(4, seed=26))
    tokenized_without_weights = trainer.train_dataset.remove_columns("rejected_weights")
    with pytest.raises(ValueError, match="This batch has no critical-token weights: .* Pass every eval dataset"):
        trainer.evaluate(eval_dataset=tokenized_without_weights)


def test_raw_samples_are_reduced_to_cdpos_selection_before_training(quickstart, tmp_path, capsys):
    from trl_adpo.cli import train_critical
    from trl_adpo.pipeline.io import write_jsonl

    verdicts = {  # problem -> its four samples' answers and whether each is correct
        0: [("1", True), ("1", True), ("2", False), ("3", False)],  # one correct kept; wrong "2" covers half of 2
        1: [("4", False), ("4", False), ("4", False), ("5", False)],  # no correct; wrong "4" (3 of 4) covers half
        2: [("7", True)] * 4,  # one correct kept, no wrong sample
    }
    rows = [
        {
            "problem_id": problem,
            "prompt": f"a = {problem} ; a = ?",
            "completion": f"answer {answer} ({n})",
            "answer": answer,
            "reference": "x",
            "correct": correct,
        }
        for problem, samples in verdicts.items()
        for n, (answer, correct) in enumerate(samples)
    ]
    write_jsonl(rows, tmp_path / "samples.jsonl")
    args = [
        "--model_name_or_path",
        str(quickstart / "model"),
        "--dataset_name",
        str(tmp_path / "samples.jsonl"),
        "--output_dir",
        str(tmp_path / "out"),
        "--bf16",
        "false",
        "--max_steps",
        "1",
        "--disable_tqdm",
        "true",
    ]
    train_critical.run(*train_critical.parse_args(args))
    printed = capsys.readouterr().out
    assert "cDPO's selection of the 12 verified samples: 2 correct and 4 incorrect completions" in printed
    assert "Training the positive model on 2 correct" in printed and "negative model on 4 incorrect" in printed
    # the same output_dir again: refused unless asked (test_faults.py), so asked
    train_critical.run(
        *train_critical.parse_args([*args, "--cdpo_selection", "false", "--overwrite_output_dir", "true"])
    )
    assert "Training the positive model on 6 correct" in capsys.readouterr().out


# --- bad input ------------------------------------------------------------------------------------------------------


def test_a_critical_model_with_another_vocabulary_is_refused(tmp_path, quickstart, critical_models, tiny_model_dir):
    with pytest.raises(
        ValueError,
        match=r"ADPOConfig: negative_model='.*': its vocabulary \(48 tokens\) differs from the policy's tokenizer "
        r"\(35 tokens\)",
    ):
        ADPOTrainer(
            AutoModelForCausalLM.from_pretrained(quickstart / "model"),
            args=ADPOConfig(
                output_dir=str(tmp_path),
                positive_model=str(critical_models["positive"]),
                negative_model=str(tiny_model_dir),
                **COMMON,
            ),
            processing_class=AutoTokenizer.from_pretrained(quickstart / "model"),
            train_dataset=Dataset.from_list(preference_rows(4, seed=25)),
        )


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(positive_model="pos"), "positive_model is set but negative_model is not"),
        (dict(negative_model="neg"), "negative_model is set but positive_model is not"),
        (
            dict(positive_model="p", negative_model="n", critical_token_gamma=-1.0),
            r"critical_token_gamma must be a number >= 0, got -1.0",
        ),
        (dict(critical_token_gamma=2.0), "critical_token_gamma applies to critical-token weights only"),
        (dict(weight_chosen_tokens=True), "weight_chosen_tokens applies to critical-token weights only"),
    ],
)
def test_critical_token_options_are_checked(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        ADPOConfig(output_dir=str(tmp_path), report_to="none", bf16=False, **options)


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{"prompt": "a = 1 ; a = ?", "completion": "answer 1"}], r"has the columns \['completion', 'prompt'\]"),
        (
            [{"prompt": "a = 1 ; a = ?", "completion": "answer 1", "correct": True}] * 2,
            "no incorrect completion among its 2 rows",
        ),
        (
            [{"prompt": "a = 1 ; a = ?", "completion": "answer 2", "correct": False}],
            "no correct completion among its 1 rows",
        ),
        (
            [{"prompt": "a = 1 ; a = ?", "completion": "answer 1", "correct": "yes"}],
            r"samples.jsonl, line 1: `correct` is 'yes'",
        ),
    ],
    ids=["no-correct-column", "no-incorrect", "no-correct", "not-a-boolean"],
)
def test_bad_samples_fail_before_training(quickstart, tmp_path, rows, message):
    from trl_adpo.cli import train_critical
    from trl_adpo.pipeline.io import write_jsonl

    write_jsonl(rows, tmp_path / "samples.jsonl")
    with pytest.raises(ValueError, match=message):
        train_critical.run(
            *train_critical.parse_args(
                [
                    "--model_name_or_path",
                    str(quickstart / "model"),
                    "--dataset_name",
                    str(tmp_path / "samples.jsonl"),
                    "--output_dir",
                    str(tmp_path / "out"),
                    "--bf16",
                    "false",
                ]
            )
        )
    assert not (tmp_path / "out").exists()
