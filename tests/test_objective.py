"""The ADPO objective against plain-Python oracles (tests/oracle.py) and the DPO loss."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import dpo_pair_loss, pair_loss, segment_count, segment_of

from trl_adpo import adpo_loss, segment_ids

GRANULARITIES = [("static", 1, 1), ("static", 2, 1), ("static", 3, 1), ("static", 7, 1)] + [
    ("adaptive", 1, m) for m in (1, 2, 3, 4, 16, 256)
]


def random_pairs(lengths: list[tuple[int, int]], seed: int = 0, dtype=torch.float64):
    """Right-padded per-token log-ratios for pairs of the given (chosen, rejected) lengths, NaN in the padding."""
    gen = torch.Generator().manual_seed(seed)
    widths = [max(c for c, _ in lengths), max(r for _, r in lengths)]
    tensors = []
    for side, width in enumerate(widths):
        values = torch.randn(len(lengths), width, generator=gen, dtype=dtype) * 2
        mask = torch.arange(width) < torch.tensor([pair[side] for pair in lengths]).unsqueeze(1)
        tensors += [values.masked_fill(~mask, float("nan")), mask]
    chosen, chosen_mask, rejected, rejected_mask = tensors
    return chosen, rejected, chosen_mask, rejected_mask


def unpadded(values: torch.Tensor, mask: torch.Tensor, row: int) -> list[float]:
    return values[row][mask[row]].tolist()


def oracle_losses(chosen, rejected, chosen_mask, rejected_mask, **kwargs) -> list[float]:
    return [
        pair_loss(unpadded(chosen, chosen_mask, i), unpadded(rejected, rejected_mask, i), **kwargs)
        for i in range(chosen.shape[0])
    ]


UNEQUAL_LENGTHS = [(5, 9), (12, 3), (1, 1), (7, 7), (20, 1), (1, 17), (33, 30)]


@pytest.mark.parametrize("granularity,k,m", GRANULARITIES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_matches_plain_loop_per_pair(granularity, k, m, reduction, eps):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=k * 100 + m)
    beta = 0.3
    out = adpo_loss(
        chosen, rejected, chosen_mask, rejected_mask,
        beta=beta, granularity=granularity, window_size=k, num_segments=m, label_smoothing=eps, reduction=reduction,
    )
    expected = oracle_losses(
        chosen, rejected, chosen_mask, rejected_mask,
        beta=beta, granularity=granularity, k=k, m=m, eps=eps, reduction=reduction,
    )
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("granularity,k,m", [("static", 2, 1), ("adaptive", 1, 3), ("adaptive", 1, 16)])
def test_segment_rewards_mask_and_feedback_length_match_the_spec(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=3)
    out = adpo_loss(
        chosen, rejected, chosen_mask, rejected_mask, beta=0.5, granularity=granularity, window_size=k, num_segments=m
    )
    for i, (n_w, n_l) in enumerate(UNEQUAL_LENGTHS):
        count = max(segment_count(n_w, granularity, k, m), segment_count(n_l, granularity, k, m))
        assert out.feedback_length[i].item() == count
        assert out.segment_mask[i].tolist() == [j < count for j in range(out.segment_mask.shape[1])]
        for side, values, mask, rewards in (
            (0, chosen, chosen_mask, out.chosen_rewards),
            (1, rejected, rejected_mask, out.rejected_rewards),
        ):
            tokens = unpadded(values, mask, i)
            expected = [0.0] * count
            for t, value in enumerate(tokens):
                expected[segment_of(t, len(tokens), granularity, k, m)] += 0.5 * value
            torch.testing.assert_close(rewards[i, :count], torch.tensor(expected, dtype=torch.float64))


def test_segment_ids_follow_the_spec_table():
    lengths = [10, 7, 1, 3]
    mask = torch.arange(10) < torch.tensor(lengths).unsqueeze(1)
    for granularity, k, m in GRANULARITIES:
        ids = segment_ids(mask, granularity, window_size=k, num_segments=m)
        for row, length in enumerate(lengths):
            expected = [segment_of(t, length, granularity, k, m) for t in range(length)] + [-1] * (10 - length)
            assert ids[row].tolist() == expected, (granularity, k, m, length)


def test_segment_ids_spell_out_adaptive_example():
    mask = torch.ones(1, 10, dtype=torch.bool)
    assert segment_ids(mask, "adaptive", num_segments=4).tolist() == [[0, 0, 0, 1, 1, 2, 2, 2, 3, 3]]
    assert segment_ids(mask, "static", window_size=4).tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 2, 2]]


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_adaptive_one_segment_and_wide_static_window_are_dpo(eps):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=7)
    dpo = torch.tensor(
        [
            dpo_pair_loss(unpadded(chosen, chosen_mask, i), unpadded(rejected, rejected_mask, i), beta=0.1, eps=eps)
            for i in range(len(UNEQUAL_LENGTHS))
        ],
        dtype=torch.float64,
    )
    # the same DPO loss written with torch, as TRL writes it
    margins = 0.1 * (chosen.nan_to_num().sum(1) - rejected.nan_to_num().sum(1))
    torch_dpo = -(1 - eps) * torch.nn.functional.logsigmoid(margins) - eps * torch.nn.functional.logsigmoid(-margins)
    torch.testing.assert_close(torch_dpo, dpo)
    longest = max(max(pair) for pair in UNEQUAL_LENGTHS)
    for granularity, k, m in [("adaptive", 1, 1), ("static", longest, 1), ("static", longest + 50, 1)]:
        out = adpo_loss(
            chosen, rejected, chosen_mask, rejected_mask,
            beta=0.1, granularity=granularity, window_size=k, num_segments=m, label_smoothing=eps,
        )
        torch.testing.assert_close(out.losses, dpo, rtol=1e-12, atol=1e-12)
        assert out.feedback_length.tolist() == [1] * len(UNEQUAL_LENGTHS)


def test_adaptive_with_more_segments_than_tokens_is_token_level():
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=11)
    longest = max(max(pair) for pair in UNEQUAL_LENGTHS)
    token_level = adpo_loss(chosen, rejected, chosen_mask, rejected_mask, beta=0.2, granularity="static")
    for m in (longest, longest + 1, 4096):
        adaptive = adpo_loss(
            chosen, rejected, chosen_mask, rejected_mask, beta=0.2, granularity="adaptive", num_segments=m
        )
        torch.testing.assert_close(adaptive.losses, token_level.losses, rtol=0, atol=0)
    # and token level is the spec's sum of per-token log-sigmoids, over max(T_w, T_l) positions
    for i, (n_w, n_l) in enumerate(UNEQUAL_LENGTHS):
        s_w = unpadded(chosen, chosen_mask, i) + [0.0] * (max(n_w, n_l) - n_w)
        s_l = unpadded(rejected, rejected_mask, i) + [0.0] * (max(n_w, n_l) - n_l)
        expected = sum(-math.log(1 / (1 + math.exp(-0.2 * (a - b)))) for a, b in zip(s_w, s_l))
        assert token_level.losses[i].item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("granularity,k,m", [("static", 1, 1), ("static", 3, 1), ("adaptive", 1, 4)])
def test_gradcheck_and_zero_gradient_on_padding(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs([(4, 6), (3, 2), (5, 5)], seed=5)
    chosen, rejected = chosen.nan_to_num(0.7), rejected.nan_to_num(-0.3)
    chosen.requires_grad_(True)
    rejected.requires_grad_(True)

    def losses(c, r):
        return adpo_loss(
            c, r, chosen_mask, rejected_mask,
            beta=0.7, granularity=granularity, window_size=k, num_segments=m, label_smoothing=0.1,
        ).losses

    assert torch.autograd.gradcheck(losses, (chosen, rejected))
    losses(chosen, rejected).sum().backward()
    assert torch.all(chosen.grad[~chosen_mask] == 0) and torch.all(rejected.grad[~rejected_mask] == 0)
    assert torch.all(chosen.grad[chosen_mask] != 0) and torch.all(rejected.grad[rejected_mask] != 0)


@pytest.mark.parametrize("granularity,k,m", [("static", 1, 1), ("static", 2, 1), ("adaptive", 1, 3)])
def test_order_padding_and_batch_composition_do_not_change_a_pairs_loss(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=9)
    kwargs = dict(beta=0.4, granularity=granularity, window_size=k, num_segments=m)
    base = adpo_loss(chosen, rejected, chosen_mask, rejected_mask, **kwargs).losses

    order = torch.randperm(len(UNEQUAL_LENGTHS), generator=torch.Generator().manual_seed(0))
    permuted = adpo_loss(chosen[order], rejected[order], chosen_mask[order], rejected_mask[order], **kwargs).losses
    torch.testing.assert_close(permuted, base[order], rtol=0, atol=0)

    def pad(values, mask, extra):
        return (
            torch.cat([values, torch.full((values.shape[0], extra), 1e4, dtype=values.dtype)], dim=1),
            torch.cat([mask, torch.zeros(mask.shape[0], extra, dtype=torch.bool)], dim=1),
        )

    c, cm = pad(chosen, chosen_mask, 5)
    r, rm = pad(rejected, rejected_mask, 13)
    torch.testing.assert_close(adpo_loss(c, r, cm, rm, **kwargs).losses, base, rtol=0, atol=0)

    for i in range(len(UNEQUAL_LENGTHS)):
        n_w, n_l = UNEQUAL_LENGTHS[i]
        alone = adpo_loss(
            chosen[i : i + 1, :n_w], rejected[i : i + 1, :n_l],
            chosen_mask[i : i + 1, :n_w], rejected_mask[i : i + 1, :n_l], **kwargs,
        ).losses
        torch.testing.assert_close(alone, base[i : i + 1], rtol=1e-12, atol=1e-12)


def test_left_padding_gives_the_same_segments_as_right_padding():
    values = torch.randn(1, 6, dtype=torch.float64)
    right = adpo_loss(
        values, values * 0.5, torch.ones(1, 6, dtype=torch.bool), torch.ones(1, 6, dtype=torch.bool),
        beta=1.0, granularity="adaptive", num_segments=4,
    )
    left_values = torch.cat([torch.full((1, 3), float("nan"), dtype=torch.float64), values], dim=1)
    left_mask = torch.arange(9).unsqueeze(0) >= 3
    left = adpo_loss(
        left_values, left_values * 0.5, left_mask, left_mask, beta=1.0, granularity="adaptive", num_segments=4
    )
    torch.testing.assert_close(left.losses, right.losses, rtol=1e-12, atol=1e-12)


def test_bfloat16_inputs_are_summed_in_float32():
    gen = torch.Generator().manual_seed(0)
    chosen = (torch.rand(2, 4096, generator=gen) * 0.01 + 1.0).bfloat16()
    rejected = (torch.rand(2, 4096, generator=gen) * 0.01 + 1.0).bfloat16()
    mask = torch.ones(2, 4096, dtype=torch.bool)
    out = adpo_loss(chosen, rejected, mask, mask, beta=0.01, granularity="adaptive", num_segments=1)
    assert out.losses.dtype == torch.float32
    expected = [
        dpo_pair_loss(chosen[i].double().tolist(), rejected[i].double().tolist(), beta=0.01) for i in range(2)
    ]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)
    # summing in bfloat16 itself would be off by far more than that
    naive = 0.01 * (chosen.sum(1) - rejected.sum(1))
    assert not torch.allclose(
        -torch.nn.functional.logsigmoid(naive.float()), torch.tensor(expected, dtype=torch.float32), atol=1e-3
    )


def test_mean_reduction_divides_by_feedback_length():
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=2)
    kwargs = dict(beta=0.3, granularity="static", window_size=2)
    summed = adpo_loss(chosen, rejected, chosen_mask, rejected_mask, **kwargs)
    mean = adpo_loss(chosen, rejected, chosen_mask, rejected_mask, reduction="mean", **kwargs)
    expected = [math.ceil(max(pair) / 2) for pair in UNEQUAL_LENGTHS]
    assert summed.feedback_length.tolist() == expected
    torch.testing.assert_close(mean.losses, summed.losses / torch.tensor(expected, dtype=torch.float64))


def test_segment_statistics():
    one = torch.ones(1, 4, dtype=torch.bool)
    chosen = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
    rejected = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    out = adpo_loss(chosen, rejected, one, one, beta=1.0, granularity="static", window_size=1)
    assert out.segment_wins.tolist() == [3]
    assert out.segment_margin_sum.tolist() == [2.5]


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=5),
    granularity=st.sampled_from(["static", "adaptive"]),
    k=st.integers(1, 50),
    m=st.integers(1, 300),
    beta=st.floats(0.01, 5.0),
    eps=st.sampled_from([0.0, 0.05, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_property_matches_plain_loop(lengths, granularity, k, m, beta, eps, seed):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(lengths, seed=seed)
    out = adpo_loss(
        chosen, rejected, chosen_mask, rejected_mask,
        beta=beta, granularity=granularity, window_size=k, num_segments=m, label_smoothing=eps,
    )
    expected = oracle_losses(
        chosen, rejected, chosen_mask, rejected_mask, beta=beta, granularity=granularity, k=k, m=m, eps=eps
    )
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-10)
    assert torch.all(out.losses >= 0)
    counts = [max(segment_count(a, granularity, k, m), segment_count(b, granularity, k, m)) for a, b in lengths]
    assert out.feedback_length.tolist() == counts


def _call(**overrides):
    mask = torch.ones(2, 3, dtype=torch.bool)
    kwargs = dict(
        chosen_logratios=torch.zeros(2, 3), rejected_logratios=torch.zeros(2, 3),
        chosen_mask=mask, rejected_mask=mask, beta=0.1, granularity="static",
    )
    kwargs.update(overrides)
    return adpo_loss(**kwargs)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(granularity="token"), r"granularity must be one of \('static', 'adaptive'\), got 'token'"),
        (dict(window_size=0), r"window_size must be an integer >= 1 \(the static window k\), got 0"),
        (dict(window_size=1.5), r"window_size must be an integer >= 1"),
        (dict(granularity="adaptive", num_segments=0), r"num_segments must be an integer >= 1 .*got 0"),
        (dict(label_smoothing=0.5), r"label_smoothing must be in \[0, 0.5\), got 0.5"),
        (dict(label_smoothing=-0.1), r"label_smoothing must be in \[0, 0.5\), got -0.1"),
        (dict(reduction="max"), r"reduction must be one of \('sum', 'mean'\), got 'max'"),
        (dict(beta=0.0), r"beta must be > 0, got 0.0"),
        (dict(chosen_logratios=torch.zeros(2, 4)), r"chosen_mask has shape \(2, 3\) but chosen_logratios has shape"),
        (dict(rejected_logratios=torch.zeros(6)), r"rejected_logratios must have shape \(batch, length\)"),
        (
            dict(rejected_logratios=torch.zeros(3, 3), rejected_mask=torch.ones(3, 3, dtype=torch.bool)),
            r"chosen_logratios has 2 pairs but rejected_logratios has 3",
        ),
        (
            dict(chosen_mask=torch.tensor([[True, True, True], [False, False, False]])),
            r"pair 1 of the batch has an empty chosen completion \(chosen_mask\[1\] has no True entry",
        ),
        (
            dict(rejected_mask=torch.tensor([[False, False, False], [True, False, False]])),
            r"pair 0 of the batch has an empty rejected completion",
        ),
    ],
)
def test_invalid_arguments_raise_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message):
        _call(**overrides)


def test_segment_ids_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, length\), got shape \(4,\)"):
        segment_ids(torch.ones(4, dtype=torch.bool), "static")
    with pytest.raises(ValueError, match="granularity must be one of"):
        segment_ids(torch.ones(1, 4, dtype=torch.bool), "dynamic")
