"""The ADPO objective against plain-Python oracles (tests/oracle.py) and the DPO loss."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import dpo_pair_loss, pair_loss, segments_of

from trl_adpo import adpo_loss, segment_ids

GRANULARITIES = [("static", 1, 256), ("static", 2, 256), ("static", 3, 256), ("static", 7, 256)] + [
    ("adaptive", 1, m) for m in (1, 2, 3, 4, 16, 256)
]
"""(granularity, k, m): the oracle takes all three, `adpo_loss` the one its granularity uses (see `family`)."""


def family(granularity: str, k: int, m: int) -> dict:
    """The keyword arguments of `adpo_loss` and `segment_ids` for one granularity."""
    return dict(granularity=granularity, **({"window_size": k} if granularity == "static" else {"num_segments": m}))


def segment_count(length: int, granularity: str, k: int, m: int) -> int:
    return segments_of(length, granularity, k, m)[-1] + 1


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
        chosen,
        rejected,
        chosen_mask,
        rejected_mask,
        beta=beta,
        **family(granularity, k, m),
        label_smoothing=eps,
        reduction=reduction,
    )
    expected = oracle_losses(
        chosen,
        rejected,
        chosen_mask,
        rejected_mask,
        beta=beta,
        granularity=granularity,
        k=k,
        m=m,
        eps=eps,
        reduction=reduction,
    )
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("granularity,k,m", [("static", 2, 256), ("adaptive", 1, 3), ("adaptive", 1, 16)])
def test_segment_rewards_mask_and_feedback_length_match_the_spec(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=3)
    out = adpo_loss(chosen, rejected, chosen_mask, rejected_mask, beta=0.5, **family(granularity, k, m))
    for i, (n_w, n_l) in enumerate(UNEQUAL_LENGTHS):
        count = max(segment_count(n_w, granularity, k, m), segment_count(n_l, granularity, k, m))
        assert out.feedback_length[i].item() == count
        assert out.segment_mask[i].tolist() == [j < count for j in range(out.segment_mask.shape[1])]
        for _side, values, mask, rewards in (
            (0, chosen, chosen_mask, out.chosen_rewards),
            (1, rejected, rejected_mask, out.rejected_rewards),
        ):
            tokens = unpadded(values, mask, i)
            expected = [0.0] * count
            for value, segment in zip(tokens, segments_of(len(tokens), granularity, k, m)):
                expected[segment] += 0.5 * value
            torch.testing.assert_close(rewards[i, :count], torch.tensor(expected, dtype=torch.float64))


def test_segment_ids_follow_the_spec_table():
    lengths = [10, 7, 1, 3]
    mask = torch.arange(10) < torch.tensor(lengths).unsqueeze(1)
    for granularity, k, m in GRANULARITIES:
        ids = segment_ids(mask, **family(granularity, k, m))
        for row, length in enumerate(lengths):
            expected = segments_of(length, granularity, k, m) + [-1] * (10 - length)
            assert ids[row].tolist() == expected, (granularity, k, m, length)


def sizes(ids: list[int]) -> list[int]:
    """Segment sizes of one row of segment ids, in segment order."""
    return [ids.count(j) for j in range(max(ids) + 1)]


# The paper's Figure 1, panels (e)-(g): (T, m) -> segment sizes, as drawn. Pair A is |y_w| = 5, |y_l| = 9; pair B is
# |y_w| = 7, |y_l| = 4. The longer segments come last.
FIGURE_1_ADAPTIVE = {
    (5, 1): [5],
    (9, 1): [9],
    (7, 1): [7],
    (4, 1): [4],
    (5, 2): [2, 3],
    (9, 2): [4, 5],
    (7, 2): [3, 4],
    (4, 2): [2, 2],
    (5, 4): [1, 1, 1, 2],
    (9, 4): [2, 2, 2, 3],
    (7, 4): [1, 2, 2, 2],
    (4, 4): [1, 1, 1, 1],
}
# Panels (b)-(d): (T, k) -> windows over the response's own tokens (the paper pads the shorter response to the
# longer one; the padded windows carry no tokens here).
FIGURE_1_STATIC = {
    (5, 1): [1, 1, 1, 1, 1],
    (9, 1): [1] * 9,
    (7, 1): [1] * 7,
    (4, 1): [1, 1, 1, 1],
    (5, 2): [2, 2, 1],
    (9, 2): [2, 2, 2, 2, 1],
    (7, 2): [2, 2, 2, 1],
    (4, 2): [2, 2],
    (5, 4): [4, 1],
    (9, 4): [4, 4, 1],
    (7, 4): [4, 3],
    (4, 4): [4],
}
# Terms (log-sigmoids) per pair in each panel: pair A, pair B.
FIGURE_1_TERMS = {
    ("static", 1): (9, 7),
    ("static", 2): (5, 4),
    ("static", 4): (3, 2),
    ("adaptive", 1): (1, 1),
    ("adaptive", 2): (2, 2),
    ("adaptive", 4): (4, 4),
}


@pytest.mark.parametrize("length,m", list(FIGURE_1_ADAPTIVE))
def test_adaptive_segments_reproduce_figure_1(length, m):
    ids = segment_ids(torch.ones(1, length, dtype=torch.bool), "adaptive", num_segments=m)[0].tolist()
    assert sizes(ids) == FIGURE_1_ADAPTIVE[(length, m)]
    assert ids == sorted(ids)  # contiguous segments, in order


@pytest.mark.parametrize("length,k", list(FIGURE_1_STATIC))
def test_static_windows_reproduce_figure_1(length, k):
    ids = segment_ids(torch.ones(1, length, dtype=torch.bool), "static", window_size=k)[0].tolist()
    assert sizes(ids) == FIGURE_1_STATIC[(length, k)]


@pytest.mark.parametrize("panel", list(FIGURE_1_TERMS), ids=lambda p: f"{p[0]}-{p[1]}")
def test_figure_1_pairs_have_the_figures_number_of_terms(panel):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs([(5, 9), (7, 4)], seed=1)
    granularity, size = panel
    out = adpo_loss(
        chosen,
        rejected,
        chosen_mask,
        rejected_mask,
        beta=1.0,
        **family(granularity, size, size),
    )
    assert tuple(out.feedback_length.tolist()) == FIGURE_1_TERMS[panel]


def test_the_default_granularity_is_the_papers_headline_adaptive_256():
    chosen, rejected, chosen_mask, rejected_mask = random_pairs([(300, 700), (5, 9)], seed=4)
    default = adpo_loss(chosen, rejected, chosen_mask, rejected_mask, beta=0.1)
    explicit = adpo_loss(
        chosen, rejected, chosen_mask, rejected_mask, beta=0.1, granularity="adaptive", num_segments=256
    )
    torch.testing.assert_close(default.losses, explicit.losses, rtol=0, atol=0)
    assert default.feedback_length.tolist() == [256, 9]  # at most 256 segments; one per token below 256 tokens
    assert (
        sizes(segment_ids(torch.ones(1, 700, dtype=torch.bool), "adaptive")[0].tolist())[-1] == 3
    )  # 700 tokens: 68 segments of 2, then 188 of 3


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
    for granularity, k, m in [("adaptive", 1, 1), ("static", longest, 256), ("static", longest + 50, 256)]:
        out = adpo_loss(
            chosen, rejected, chosen_mask, rejected_mask, beta=0.1, **family(granularity, k, m), label_smoothing=eps
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


@pytest.mark.parametrize("granularity,k,m", [("static", 1, 256), ("static", 3, 256), ("adaptive", 1, 4)])
def test_gradcheck_and_zero_gradient_on_padding(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs([(4, 6), (3, 2), (5, 5)], seed=5)
    chosen, rejected = chosen.nan_to_num(0.7), rejected.nan_to_num(-0.3)
    chosen.requires_grad_(True)
    rejected.requires_grad_(True)

    def losses(c, r):
        return adpo_loss(
            c, r, chosen_mask, rejected_mask, beta=0.7, **family(granularity, k, m), label_smoothing=0.1
        ).losses

    assert torch.autograd.gradcheck(losses, (chosen, rejected))
    losses(chosen, rejected).sum().backward()
    assert torch.all(chosen.grad[~chosen_mask] == 0) and torch.all(rejected.grad[~rejected_mask] == 0)
    assert torch.all(chosen.grad[chosen_mask] != 0) and torch.all(rejected.grad[rejected_mask] != 0)


@pytest.mark.parametrize("granularity,k,m", GRANULARITIES)
def test_at_the_reference_policy_every_granularity_has_dpos_gradient(granularity, k, m):
    """Where the policy is the reference (every log-ratio 0) the loss grows with the number of segments (S log 2),
    but each token's gradient is DPO's, d(-log sigmoid(x))/dx = -1/2 at x = 0: -beta/2 on a chosen token and +beta/2
    on a rejected one, for every granularity."""
    lengths = [(5, 9), (12, 3), (33, 30)]
    _, _, chosen_mask, rejected_mask = random_pairs(lengths)
    chosen = torch.zeros(chosen_mask.shape, dtype=torch.float64, requires_grad=True)
    rejected = torch.zeros(rejected_mask.shape, dtype=torch.float64, requires_grad=True)
    out = adpo_loss(chosen, rejected, chosen_mask, rejected_mask, beta=0.3, **family(granularity, k, m))
    segments = [max(segment_count(c, granularity, k, m), segment_count(r, granularity, k, m)) for c, r in lengths]
    torch.testing.assert_close(out.losses, torch.tensor(segments, dtype=torch.float64) * math.log(2))
    out.losses.sum().backward()
    torch.testing.assert_close(chosen.grad, -0.15 * chosen_mask.double(), rtol=0, atol=1e-15)
    torch.testing.assert_close(rejected.grad, 0.15 * rejected_mask.double(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("granularity,k,m", [("static", 1, 256), ("static", 2, 256), ("adaptive", 1, 3)])
def test_order_padding_and_batch_composition_do_not_change_a_pairs_loss(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=9)
    kwargs = dict(beta=0.4, **family(granularity, k, m))
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
            chosen[i : i + 1, :n_w],
            rejected[i : i + 1, :n_l],
            chosen_mask[i : i + 1, :n_w],
            rejected_mask[i : i + 1, :n_l],
            **kwargs,
        ).losses
        torch.testing.assert_close(alone, base[i : i + 1], rtol=1e-12, atol=1e-12)


def test_left_padding_gives_the_same_segments_as_right_padding():
    values = torch.randn(1, 6, dtype=torch.float64)
    right = adpo_loss(
        values,
        values * 0.5,
        torch.ones(1, 6, dtype=torch.bool),
        torch.ones(1, 6, dtype=torch.bool),
        beta=1.0,
        granularity="adaptive",
        num_segments=4,
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
    expected = [dpo_pair_loss(chosen[i].double().tolist(), rejected[i].double().tolist(), beta=0.01) for i in range(2)]
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


def test_a_tied_segment_is_no_win():
    """A segment whose chosen and rejected rewards are equal (a shared prefix token, two segments scored alike)
    counts as no win in `segment_wins` (and so in `adpo/segment_accuracy`), though it counts as a segment."""
    one = torch.ones(1, 4, dtype=torch.bool)
    chosen = torch.tensor([[0.7, 0.7, 1.0, -1.0]])
    rejected = torch.tensor([[0.7, 0.7, 0.0, 0.0]])
    out = adpo_loss(chosen, rejected, one, one, beta=1.0, granularity="static", window_size=1)
    assert out.feedback_length.tolist() == [4]
    assert out.segment_wins.tolist() == [1]  # the two ties and the loss are no wins


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
        chosen, rejected, chosen_mask, rejected_mask, beta=beta, **family(granularity, k, m), label_smoothing=eps
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
        chosen_logratios=torch.zeros(2, 3),
        rejected_logratios=torch.zeros(2, 3),
        chosen_mask=mask,
        rejected_mask=mask,
        beta=0.1,
        granularity="static",
    )
    kwargs.update(overrides)
    return adpo_loss(**kwargs)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(granularity="token"), r"granularity must be one of \('static', 'adaptive', 'explicit'\), got 'token'"),
        (dict(window_size=0), r"window_size must be an integer >= 1 \(the static window k\), got 0"),
        (dict(window_size=1.5), r"window_size must be an integer >= 1"),
        (dict(granularity="adaptive", num_segments=0), r"num_segments must be an integer >= 1 .*got 0"),
        (dict(granularity="adaptive", window_size=2), r"window_size=2 applies to granularity='static' only"),
        (
            dict(num_segments=16),
            r"num_segments=16 applies to granularity='adaptive' only, and granularity is 'static'",
        ),
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


# --- per-token weights (the basis of cADPO) ----------------------------------------------------------------------


def random_weights(values: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
    """Weights in [0, 1] on the mask, NaN elsewhere (values under a False mask must never matter)."""
    weights = torch.rand(values.shape, generator=torch.Generator().manual_seed(seed), dtype=values.dtype)
    return weights.masked_fill(~mask, float("nan"))


@pytest.mark.parametrize("granularity,k,m", GRANULARITIES)
def test_weighted_loss_matches_plain_loop_per_pair(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=21)
    chosen_weights, rejected_weights = (
        random_weights(chosen, chosen_mask, 1),
        random_weights(rejected, rejected_mask, 2),
    )
    out = adpo_loss(
        chosen,
        rejected,
        chosen_mask,
        rejected_mask,
        beta=0.6,
        **family(granularity, k, m),
        chosen_weights=chosen_weights,
        rejected_weights=rejected_weights,
    )
    expected = [
        pair_loss(
            unpadded(chosen, chosen_mask, i),
            unpadded(rejected, rejected_mask, i),
            beta=0.6,
            granularity=granularity,
            k=k,
            m=m,
            chosen_weights=unpadded(chosen_weights, chosen_mask, i),
            rejected_weights=unpadded(rejected_weights, rejected_mask, i),
        )
        for i in range(len(UNEQUAL_LENGTHS))
    ]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "granularity,k,m", [("static", 1, 256), ("static", 2, 256), ("adaptive", 1, 3), ("adaptive", 1, 256)]
)
def test_all_ones_weights_equal_the_unweighted_loss(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=22)
    kwargs = dict(beta=0.3, **family(granularity, k, m))
    plain = adpo_loss(chosen, rejected, chosen_mask, rejected_mask, **kwargs)
    ones = adpo_loss(
        chosen,
        rejected,
        chosen_mask,
        rejected_mask,
        **kwargs,
        chosen_weights=torch.ones_like(chosen),
        rejected_weights=torch.ones_like(rejected),
    )
    torch.testing.assert_close(ones.losses, plain.losses, rtol=0, atol=0)
    torch.testing.assert_close(ones.chosen_rewards, plain.chosen_rewards, rtol=0, atol=0)


def test_one_segment_with_weights_is_cdpo_computed_by_hand():
    # one pair, written out: cDPO (Lin et al.) weighs the rejected tokens by 1 - p_ce and keeps the chosen ones at 1
    chosen = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    rejected = torch.tensor([[1.0, 3.0, -0.5, 0.25]], dtype=torch.float64)
    rejected_weights = torch.tensor([[1.0, 0.2, 0.5, 0.0]], dtype=torch.float64)
    beta = 0.5
    # margin = 0.5 * ((0.5 - 1 + 2) - (1 * 1 + 0.2 * 3 + 0.5 * -0.5 + 0 * 0.25)) = 0.5 * (1.5 - 1.35) = 0.075
    expected = -math.log(1 / (1 + math.exp(-0.075)))
    out = adpo_loss(
        chosen,
        rejected,
        torch.ones_like(chosen, dtype=torch.bool),
        torch.ones_like(rejected, dtype=torch.bool),
        beta=beta,
        num_segments=1,
        rejected_weights=rejected_weights,
    )
    assert out.losses.item() == pytest.approx(expected, rel=1e-12)
    # and the same on random pairs, against the plain weighted DPO loop
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=23)
    chosen_weights, rejected_weights = (
        random_weights(chosen, chosen_mask, 3),
        random_weights(rejected, rejected_mask, 4),
    )
    out = adpo_loss(
        chosen,
        rejected,
        chosen_mask,
        rejected_mask,
        beta=0.2,
        num_segments=1,
        chosen_weights=chosen_weights,
        rejected_weights=rejected_weights,
    )
    expected = [
        dpo_pair_loss(
            unpadded(chosen, chosen_mask, i),
            unpadded(rejected, rejected_mask, i),
            beta=0.2,
            chosen_weights=unpadded(chosen_weights, chosen_mask, i),
            rejected_weights=unpadded(rejected_weights, rejected_mask, i),
        )
        for i in range(len(UNEQUAL_LENGTHS))
    ]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("granularity,k,m", [("static", 1, 256), ("adaptive", 1, 2)])
def test_weighted_gradcheck_no_gradient_through_weights_and_none_on_padding(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs([(4, 6), (3, 2), (5, 5)], seed=24)
    chosen, rejected = chosen.nan_to_num(0.7).requires_grad_(True), rejected.nan_to_num(-0.3).requires_grad_(True)
    chosen_weights = random_weights(chosen, chosen_mask, 5).clamp(min=0.1).requires_grad_(True)
    rejected_weights = random_weights(rejected, rejected_mask, 6).clamp(min=0.1).requires_grad_(True)

    def losses(c, r):
        return adpo_loss(
            c,
            r,
            chosen_mask,
            rejected_mask,
            beta=0.7,
            **family(granularity, k, m),
            chosen_weights=chosen_weights,
            rejected_weights=rejected_weights,
        ).losses

    assert torch.autograd.gradcheck(losses, (chosen, rejected))
    losses(chosen, rejected).sum().backward()
    assert torch.all(chosen.grad[~chosen_mask] == 0) and torch.all(rejected.grad[~rejected_mask] == 0)
    assert torch.all(chosen.grad[chosen_mask] != 0) and torch.all(rejected.grad[rejected_mask] != 0)
    assert chosen_weights.grad is None and rejected_weights.grad is None


def test_a_zero_weight_removes_a_tokens_log_ratio():
    one = torch.ones(1, 3, dtype=torch.bool)
    chosen, rejected = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    weighted = adpo_loss(
        chosen, rejected, one, one, beta=1.0, num_segments=1, chosen_weights=torch.tensor([[1.0, 0.0, 1.0]])
    )
    dropped = adpo_loss(torch.tensor([[1.0, 3.0]]), rejected[:, :2], one[:, :2], one[:, :2], beta=1.0, num_segments=1)
    torch.testing.assert_close(weighted.losses, dropped.losses)


@pytest.mark.parametrize(
    "weights,message",
    [
        (torch.tensor([[0.5, 1.5, 0.0], [0.0, 0.0, 0.0]]), r"chosen_weights\[0\] has the value 1.5 at token 1"),
        (torch.tensor([[0.5, 0.5, 0.5], [0.0, -0.25, 0.0]]), r"chosen_weights\[1\] has the value -0.25 at token 1"),
        (
            torch.tensor([[0.5, 0.5, float("nan")], [0.0, 0.0, 0.0]]),
            r"chosen_weights\[0\] has the value nan at token 2",
        ),
        (torch.ones(2, 4), r"chosen_weights has shape \(2, 4\) but chosen_logratios has shape \(2, 3\)"),
        (torch.ones(2, 3, dtype=torch.long), r"chosen_weights must be a float tensor"),
    ],
)
def test_invalid_weights_raise_naming_the_argument_and_the_pair(weights, message):
    with pytest.raises(ValueError, match=message):
        _call(chosen_weights=weights)


def test_weights_under_a_false_mask_never_matter():
    mask = torch.tensor([[True, True, False], [True, True, True]])
    weights = torch.tensor([[0.5, 0.5, float("nan")], [1.0, 1.0, 1.0]])
    out = _call(chosen_mask=mask, chosen_weights=weights)
    assert torch.isfinite(out.losses).all()
    assert _call(chosen_mask=mask, chosen_weights=weights.nan_to_num(7.0)).losses.tolist() == out.losses.tolist()


# --- explicit segment ids -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity,k,m", GRANULARITIES)
def test_explicit_segment_ids_of_a_family_give_that_familys_loss(granularity, k, m):
    chosen, rejected, chosen_mask, rejected_mask = random_pairs(UNEQUAL_LENGTHS, seed=31)
    kwargs = family(granularity, k, m)
    expected = adpo_loss(chosen, rejected, chosen_mask, rejected_mask, beta=0.4, **kwargs)
    out = adpo_loss(
        chosen,
        rejected,
        chosen_mask,
        rejected_mask,
        beta=0.4,
        granularity="explicit",
        chosen_segment_ids=segment_ids(chosen_mask, **kwargs),
        rejected_segment_ids=segment_ids(rejected_mask, **kwargs),
    )
    torch.testing.assert_close(out.losses, expected.losses, rtol=0, atol=0)
    assert out.feedback_length.tolist() == expected.feedback_length.tolist()


def test_explicit_segment_ids_match_plain_loop_with_uneven_cuts():
    chosen, rejected, chosen_mask, rejected_mask = random_pairs([(5, 4), (3, 6)], seed=32)
    cuts = {"chosen": [[0, 0, 0, 1, 2], [0, 1, 1]], "rejected": [[0, 1, 1, 1], [0, 0, 0, 0, 0, 0]]}
    padded = {
        side: torch.tensor([row + [99] * (width - len(row)) for row in rows])
        for side, rows, width in (("chosen", cuts["chosen"], 5), ("rejected", cuts["rejected"], 6))
    }
    out = adpo_loss(
        chosen,
        rejected,
        chosen_mask,
        rejected_mask,
        beta=0.8,
        granularity="explicit",
        chosen_segment_ids=padded["chosen"],
        rejected_segment_ids=padded["rejected"],
    )
    expected = [
        pair_loss(
            unpadded(chosen, chosen_mask, i),
            unpadded(rejected, rejected_mask, i),
            beta=0.8,
            chosen_segments=cuts["chosen"][i],
            rejected_segments=cuts["rejected"][i],
        )
        for i in range(2)
    ]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert out.feedback_length.tolist() == [3, 2]


@pytest.mark.parametrize(
    "ids,message",
    [
        ([[1, 1, 1], [0, 0, 0]], r"chosen_segment_ids\[0\] is not a valid cut .* at token 0 it is 1 after -1"),
        ([[0, 0, 1], [0, 2, 2]], r"chosen_segment_ids\[1\] is not a valid cut .* at token 1 it is 2 after 0"),
        ([[0, 1, 0], [0, 0, 0]], r"chosen_segment_ids\[0\] is not a valid cut .* at token 2 it is 0 after 1"),
    ],
)
def test_invalid_explicit_segment_ids_raise_naming_the_pair(ids, message):
    zeros = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=message):
        _call(granularity="explicit", chosen_segment_ids=torch.tensor(ids), rejected_segment_ids=zeros)


def test_explicit_segment_ids_go_with_the_explicit_granularity_only():
    zeros = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"granularity='explicit' needs chosen_segment_ids"):
        _call(granularity="explicit")
    with pytest.raises(ValueError, match=r"rejected_segment_ids is given but granularity is 'static'"):
        _call(rejected_segment_ids=zeros)
    with pytest.raises(ValueError, match=r"chosen_segment_ids must hold integer segment ids"):
        _call(granularity="explicit", chosen_segment_ids=zeros.float(), rejected_segment_ids=zeros)
