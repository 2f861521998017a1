"""The functional losses: closed-form values, gradients, stability, shapes and errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import negsample.functional as functional_module
from negsample.functional import bce_loss, bpr_loss, sampled_softmax_loss
from tests.helpers import CUDA

LossFn = Callable[..., torch.Tensor]
LOSSES: list[LossFn] = [bpr_loss, bce_loss]


def neg_log_sigmoid(x: float) -> float:
    """``-log(sigmoid(x))`` in plain Python, for the moderate ``x`` used here."""
    return -math.log(1.0 / (1.0 + math.exp(-x)))


# ---------------------------------------------------------------------- closed-form values

POS = [1.0, -0.5, 2.0]
NEG = [[0.0, 1.5], [-1.0, -0.5], [3.0, 0.25]]


def bpr_terms() -> list[list[float]]:
    return [[neg_log_sigmoid(p - n) for n in row] for p, row in zip(POS, NEG, strict=True)]


def bce_terms(weight: float) -> list[list[float]]:
    # A positive's term is -log(sigmoid(p)); a negative's -log(1 - sigmoid(n)) = -log(sigmoid(-n)).
    return [
        [neg_log_sigmoid(p)] + [weight * neg_log_sigmoid(-n) for n in row]
        for p, row in zip(POS, NEG, strict=True)
    ]


def test_bpr_closed_form_each_reduction() -> None:
    pos, neg = torch.tensor(POS, dtype=torch.float64), torch.tensor(NEG, dtype=torch.float64)
    terms = bpr_terms()
    flat = [t for row in terms for t in row]
    expected_none = torch.tensor(terms, dtype=torch.float64)
    torch.testing.assert_close(bpr_loss(pos, neg, reduction="none"), expected_none)
    torch.testing.assert_close(
        bpr_loss(pos, neg, reduction="sum"), torch.tensor(sum(flat), dtype=torch.float64)
    )
    torch.testing.assert_close(
        bpr_loss(pos, neg), torch.tensor(sum(flat) / len(flat), dtype=torch.float64)
    )


def test_bpr_hand_checked_value() -> None:
    # Equal scores: -log(1/2) = log 2 per pair.
    assert bpr_loss(torch.zeros(4), torch.zeros(4, 3)).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("neg_weight", [None, 0.5, 0.0, 2])
def test_bce_closed_form_each_reduction(neg_weight: float | None) -> None:
    pos, neg = torch.tensor(POS, dtype=torch.float64), torch.tensor(NEG, dtype=torch.float64)
    terms = bce_terms(1.0 if neg_weight is None else float(neg_weight))
    flat = [t for row in terms for t in row]
    batch, num_neg = len(POS), len(NEG[0])
    torch.testing.assert_close(
        bce_loss(pos, neg, reduction="none", neg_weight=neg_weight),
        torch.tensor(terms, dtype=torch.float64),
    )
    torch.testing.assert_close(
        bce_loss(pos, neg, reduction="sum", neg_weight=neg_weight),
        torch.tensor(sum(flat), dtype=torch.float64),
    )
    # The mean divides by B + B * N whatever the weight.
    torch.testing.assert_close(
        bce_loss(pos, neg, neg_weight=neg_weight),
        torch.tensor(sum(flat) / (batch + batch * num_neg), dtype=torch.float64),
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_matches_torch_weighted_bce_with_logits(reduction: str) -> None:
    gen = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(5, generator=gen), torch.randn(5, 3, generator=gen)
    logits = torch.cat([pos[:, None], neg], dim=1)
    targets = torch.zeros_like(logits)
    targets[:, 0] = 1
    weights = torch.full_like(logits, 1 / 3)
    weights[:, 0] = 1
    expected = F.binary_cross_entropy_with_logits(logits, targets, weights, reduction=reduction)
    torch.testing.assert_close(
        bce_loss(pos, neg, reduction=reduction, neg_weight=1 / 3),
        expected,
    )


@pytest.mark.parametrize("loss", LOSSES)
def test_pos_column_and_one_dim_neg_are_accepted(loss: LossFn) -> None:
    pos, neg = torch.tensor(POS), torch.tensor([row[0] for row in NEG])
    expected = loss(pos, neg[:, None], reduction="none")
    torch.testing.assert_close(loss(pos[:, None], neg, reduction="none"), expected)
    torch.testing.assert_close(loss(pos, neg, reduction="none"), expected)


def test_none_shapes() -> None:
    pos, neg = torch.zeros(4), torch.zeros(4, 3)
    assert bpr_loss(pos, neg, reduction="none").shape == (4, 3)
    assert bce_loss(pos, neg, reduction="none").shape == (4, 4)
    assert bpr_loss(pos, neg).shape == ()
    assert bce_loss(pos, neg, reduction="sum").shape == ()


@given(
    st.integers(1, 5),
    st.integers(1, 4),
    st.sampled_from([None, 0.0, 0.25, 3.0]),
    st.integers(0, 2**31 - 1),
)
def test_reductions_agree_with_none(
    batch: int, num_neg: int, neg_weight: float | None, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(batch, generator=gen, dtype=torch.float64) * 5
    neg = torch.randn(batch, num_neg, generator=gen, dtype=torch.float64) * 5
    bpr_none = bpr_loss(pos, neg, reduction="none")
    torch.testing.assert_close(bpr_loss(pos, neg), bpr_none.sum() / (batch * num_neg))
    torch.testing.assert_close(bpr_loss(pos, neg, reduction="sum"), bpr_none.sum())
    bce_none = bce_loss(pos, neg, reduction="none", neg_weight=neg_weight)
    torch.testing.assert_close(
        bce_loss(pos, neg, neg_weight=neg_weight), bce_none.sum() / (batch + batch * num_neg)
    )
    torch.testing.assert_close(
        bce_loss(pos, neg, reduction="sum", neg_weight=neg_weight), bce_none.sum()
    )


# ---------------------------------------------------------------------- gradients


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bpr_gradcheck(reduction: str) -> None:
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    neg = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, n: bpr_loss(p, n, reduction=reduction),
        (pos, neg),
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("neg_weight", [None, 0.25])
def test_bce_gradcheck(reduction: str, neg_weight: float | None) -> None:
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(4, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    neg = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, n: bce_loss(p, n, reduction=reduction, neg_weight=neg_weight),
        (pos, neg),
    )


# ---------------------------------------------------------------------- numerical stability


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_finite_at_large_score_differences_float32(
    loss: LossFn, reduction: str, scale: float
) -> None:
    pos = torch.full((3,), scale / 2, requires_grad=True)
    neg = torch.full((3, 2), -scale / 2, requires_grad=True)
    value = loss(pos, neg, reduction=reduction)
    value.sum().backward()
    assert torch.isfinite(value).all()
    assert pos.grad is not None and neg.grad is not None
    assert torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all()


def test_bpr_exact_values_at_large_differences() -> None:
    # softplus(-1e4) underflows to 0 and softplus(1e4) is 1e4: no log(0) = -inf.
    pos = torch.tensor([1e4, -1e4], requires_grad=True)
    neg = torch.zeros(2, 1, requires_grad=True)
    terms = bpr_loss(pos, neg, reduction="none")
    torch.testing.assert_close(terms, torch.tensor([[0.0], [1e4]]))
    terms.sum().backward()
    assert pos.grad is not None
    torch.testing.assert_close(pos.grad, torch.tensor([0.0, -1.0]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("loss", LOSSES)
def test_half_precision_inputs(loss: LossFn, dtype: torch.dtype) -> None:
    # Differences up to 2e4 and exp(20) = 4.9e8 would overflow float16 if computed in it.
    values = torch.tensor([-1e4, -20.0, 0.0, 20.0, 1e4])
    pos = values.to(dtype).requires_grad_()
    neg = values.flip(0)[:, None].expand(5, 2).contiguous().to(dtype).requires_grad_()
    out = loss(pos, neg, reduction="none")
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    expected = loss(pos.detach().float(), neg.detach().float(), reduction="none")
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    loss(pos, neg).backward()
    assert pos.grad is not None and neg.grad is not None
    assert torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all()


@pytest.mark.parametrize(
    ("pos_dtype", "neg_dtype", "expected"),
    [
        (torch.float16, torch.float32, torch.float32),
        (torch.float32, torch.float64, torch.float64),
        (torch.float16, torch.float16, torch.float16),
    ],
)
@pytest.mark.parametrize("loss", LOSSES)
def test_result_dtype_is_torch_promotion(
    loss: LossFn, pos_dtype: torch.dtype, neg_dtype: torch.dtype, expected: torch.dtype
) -> None:
    out = loss(torch.zeros(2, dtype=pos_dtype), torch.zeros(2, 3, dtype=neg_dtype))
    assert out.dtype == expected
    assert out.item() == pytest.approx(math.log(2), rel=1e-3)


# ---------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", ["avg", "Mean", "", None, 1])
def test_unknown_reduction(loss: LossFn, reduction: object) -> None:
    with pytest.raises(ValueError, match=r"reduction must be one of .*got"):
        loss(torch.zeros(2), torch.zeros(2, 1), reduction=reduction)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_non_floating_dtypes(loss: LossFn, dtype: torch.dtype) -> None:
    with pytest.raises(
        TypeError, match=rf"pos_scores must be a floating-point tensor, got dtype {dtype}"
    ):
        loss(torch.zeros(2, dtype=dtype), torch.zeros(2, 1))
    with pytest.raises(
        TypeError, match=rf"neg_scores must be a floating-point tensor, got dtype {dtype}"
    ):
        loss(torch.zeros(2), torch.zeros(2, 1, dtype=dtype))


@pytest.mark.parametrize("loss", LOSSES)
def test_non_tensors(loss: LossFn) -> None:
    with pytest.raises(TypeError, match="pos_scores must be a floating-point tensor, got list"):
        loss([1.0, 2.0], torch.zeros(2, 1))
    with pytest.raises(TypeError, match="neg_scores must be a floating-point tensor, got float"):
        loss(torch.zeros(1), 0.5)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize(
    ("pos_shape", "neg_shape", "message"),
    [
        ((3, 2), (3, 2), r"pos_scores must have shape \(B,\) or \(B, 1\), got shape \(3, 2\)"),
        ((), (3, 2), r"pos_scores must have shape \(B,\) or \(B, 1\), got shape \(\)"),
        ((3, 1, 1), (3, 2), r"pos_scores must have shape .* got shape \(3, 1, 1\)"),
        ((3,), (3, 2, 1), r"neg_scores must have shape \(B, N\) or \(B,\), got shape \(3, 2, 1\)"),
        ((3,), (), r"neg_scores must have shape .* got shape \(\)"),
        ((3,), (4, 2), r"same batch size B, got shapes \(3,\) and \(4, 2\)"),
        ((3, 1), (2,), r"same batch size B, got shapes \(3, 1\) and \(2,\)"),
        ((0,), (0, 2), r"the batch is empty \(B = 0\)"),
        ((0,), (0,), r"the batch is empty"),
        ((3,), (3, 0), r"no negatives \(N = 0\): shape \(3, 0\)"),
    ],
)
def test_bad_shapes(
    loss: LossFn, pos_shape: tuple[int, ...], neg_shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        loss(torch.zeros(pos_shape), torch.zeros(neg_shape))


@pytest.mark.parametrize(
    ("neg_weight", "error", "message"),
    [
        (-0.5, ValueError, r"neg_weight must be a finite float >= 0, got -0.5"),
        (math.inf, ValueError, r"neg_weight must be a finite float >= 0, got inf"),
        (math.nan, ValueError, r"neg_weight must be a finite float >= 0, got nan"),
        ("0.5", TypeError, r"neg_weight must be None or a non-negative float, got '0.5' \(str\)"),
        (True, TypeError, r"neg_weight must be None or a non-negative float, got True \(bool\)"),
        (torch.tensor(0.5), TypeError, r"neg_weight must be None .* \(Tensor\)"),
    ],
)
def test_bad_neg_weight(neg_weight: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        bce_loss(torch.zeros(2), torch.zeros(2, 1), neg_weight=neg_weight)


@CUDA
@pytest.mark.parametrize("loss", LOSSES)
def test_inputs_on_different_devices(loss: LossFn) -> None:
    with pytest.raises(ValueError, match="must be on the same device, got cpu and cuda"):
        loss(torch.zeros(2), torch.zeros(2, 1, device="cuda"))


@CUDA
@pytest.mark.parametrize("loss", LOSSES)
def test_cuda_matches_cpu(loss: LossFn) -> None:
    pos, neg = torch.tensor(POS), torch.tensor(NEG)
    out = loss(pos.cuda(), neg.cuda(), reduction="none")
    torch.testing.assert_close(out.cpu(), loss(pos, neg, reduction="none"))


# ---------------------------------------------------------------------- sampled softmax


def softmax_row_loss(
    pos: float, negs: list[float], t: float, log_q: list[float], masked: list[bool]
) -> float:
    """The documented formula in plain Python (no torch)."""
    terms = [pos / t] + [n / t - q for n, q, m in zip(negs, log_q, masked, strict=True) if not m]
    top = max(terms)
    return -pos / t + top + math.log(sum(math.exp(x - top) for x in terms))


SSM_POS = [1.0, -0.5, 2.0]
SSM_NEG = [[0.0, 1.5, -2.0], [-1.0, -0.5, 3.0], [3.0, 0.25, 0.5]]
SSM_LOG_Q = [-1.0, 0.5, 2.0]
SSM_MASK = [[False, True, False], [False, False, False], [True, True, True]]


@pytest.mark.parametrize("t", [1.0, 0.1, 2.5])
def test_sampled_softmax_matches_the_formula(t: float) -> None:
    out = sampled_softmax_loss(
        torch.tensor(SSM_POS, dtype=torch.float64),
        torch.tensor(SSM_NEG, dtype=torch.float64),
        temperature=t,
        log_q=torch.tensor(SSM_LOG_Q, dtype=torch.float64),
        mask=torch.tensor(SSM_MASK),
        reduction="none",
    )
    expected = [
        softmax_row_loss(p, n, t, SSM_LOG_Q, m)
        for p, n, m in zip(SSM_POS, SSM_NEG, SSM_MASK, strict=True)
    ]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    assert expected[2] == 0.0  # every negative masked: the row's loss is exactly 0


def test_sampled_softmax_equals_cross_entropy_on_the_same_logits() -> None:
    gen = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(16, generator=gen), torch.randn(16, 40, generator=gen)
    log_q = torch.randn(40, generator=gen)
    t = 0.2
    logits = torch.cat([pos[:, None] / t, neg / t - log_q], dim=1)
    target = torch.zeros(16, dtype=torch.long)
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(
            sampled_softmax_loss(pos, neg, temperature=t, log_q=log_q, reduction=reduction),
            F.cross_entropy(logits, target, reduction=reduction),
        )


def test_sampled_softmax_float_log_q_is_a_constant_shift() -> None:
    pos, neg = torch.tensor([0.5, 1.0]), torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    torch.testing.assert_close(
        sampled_softmax_loss(pos, neg, log_q=math.log(3.0)),
        sampled_softmax_loss(pos, neg, log_q=torch.full((2,), math.log(3.0))),
    )


def test_sampled_softmax_all_masked_rows_have_zero_finite_gradients() -> None:
    pos = torch.tensor([1.0, 2.0], requires_grad=True)
    # Masked entries may hold anything, even inf or NaN scores: they must not leak.
    neg = torch.tensor([[math.inf, math.nan], [1.0, -3.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [False, True]])
    loss = sampled_softmax_loss(pos, neg, temperature=0.5, mask=mask, reduction="sum")
    loss.backward()
    assert pos.grad is not None and neg.grad is not None
    assert bool(torch.isfinite(loss)) and bool(torch.isfinite(pos.grad).all())
    assert bool(torch.isfinite(neg.grad).all())
    assert pos.grad[0].item() == 0.0 and neg.grad[0].abs().sum().item() == 0.0
    assert neg.grad[1, 1].item() == 0.0 and neg.grad[1, 0].item() > 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_sampled_softmax_is_stable_in_every_float_dtype(dtype: torch.dtype) -> None:
    # Scores of +-60 at T = 0.05: exp(1200) overflows every dtype unless computed stably.
    pos = torch.tensor([60.0, -60.0, 0.0], dtype=dtype, requires_grad=True)
    neg = torch.tensor([[-60.0, 60.0], [60.0, 0.0], [0.0, 0.0]], dtype=dtype, requires_grad=True)
    loss = sampled_softmax_loss(pos, neg, temperature=0.05, reduction="none")
    assert loss.dtype == dtype
    expected = sampled_softmax_loss(
        pos.detach().double(), neg.detach().double(), temperature=0.05, reduction="none"
    )
    torch.testing.assert_close(loss.double(), expected, rtol=1e-2, atol=1e-2)
    loss.sum().backward()
    assert pos.grad is not None and bool(torch.isfinite(pos.grad).all())


def test_sampled_softmax_gradcheck() -> None:
    gen = torch.Generator().manual_seed(1)
    pos = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    neg = torch.randn(4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(4, 5, generator=gen) < 0.3
    log_q = torch.randn(5, dtype=torch.float64, generator=gen)
    assert torch.autograd.gradcheck(
        lambda p, n: sampled_softmax_loss(p, n, temperature=0.7, log_q=log_q, mask=mask),
        (pos, neg),
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, "temperature must be a finite float > 0, got 0.0"),
        ({"temperature": math.nan}, ValueError, "temperature must be a finite float > 0"),
        ({"temperature": True}, TypeError, "temperature must be a positive float"),
        ({"mask": torch.zeros(2, 3)}, TypeError, "mask must be a bool tensor"),
        (
            {"mask": torch.zeros(3, 3, dtype=torch.bool)},
            ValueError,
            r"mask must broadcast .* \(2, 3\)",
        ),
        ({"log_q": torch.zeros(3, dtype=torch.long)}, TypeError, "log_q must be a floating-point"),
        ({"log_q": torch.zeros(4)}, ValueError, "log_q must broadcast"),
        ({"log_q": "x"}, TypeError, "log_q must be None, a float"),
        ({"reduction": "max"}, ValueError, "reduction must be one of"),
    ],
)
def test_sampled_softmax_rejects_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        sampled_softmax_loss(torch.zeros(2), torch.zeros(2, 3), **kwargs)  # type: ignore[arg-type]


def test_sampled_softmax_rejects_one_dimensional_negatives() -> None:
    with pytest.raises(ValueError, match=r"neg_scores must have shape \(B, K\)"):
        sampled_softmax_loss(torch.zeros(2), torch.zeros(2))


def softmax_reference(
    pos: torch.Tensor,
    neg: torch.Tensor,
    t: float,
    *,
    log_q: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    neg_weight: float = 1.0,
    include_positive: bool = True,
) -> torch.Tensor:
    """The documented formula with plain autograd operations (no custom backward)."""
    logits = neg / t - (0.0 if log_q is None else log_q)
    if mask is not None:
        logits = logits.masked_fill(mask, -math.inf)
    if include_positive:
        logits = torch.cat([pos[:, None] / t, logits], dim=1)
    terms = -pos / t + neg_weight * torch.logsumexp(logits, dim=1)
    if mask is not None:
        terms = torch.where(mask.all(dim=1), torch.zeros_like(terms), terms)
    return terms


def bsl_as_coded(pos: list[float], negs: list[list[float]], t1: float, t2: float) -> list[float]:
    """BSL's per-row loss as its authors' code computes it, in plain Python (mode "single"
    with the negatives' mean raised to t2, as mode "multi" does when users do not repeat)."""
    return [
        -math.log(math.exp(p / t1) / (sum(math.exp(n / t1) for n in row) / len(row)) ** t2)
        for p, row in zip(pos, negs, strict=True)
    ]


@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("neg_weight", [1.0, 1.22, 0.5])
def test_sampled_softmax_negative_weight_matches_the_formula(
    include_positive: bool, neg_weight: float
) -> None:
    t = 0.3
    out = sampled_softmax_loss(
        torch.tensor(SSM_POS, dtype=torch.float64),
        torch.tensor(SSM_NEG, dtype=torch.float64),
        temperature=t,
        log_q=torch.tensor(SSM_LOG_Q, dtype=torch.float64),
        mask=torch.tensor(SSM_MASK),
        neg_weight=neg_weight,
        include_positive=include_positive,
        reduction="none",
    )
    expected = []
    for p, row, m in zip(SSM_POS, SSM_NEG, SSM_MASK, strict=True):
        terms = [n / t - q for n, q, drop in zip(row, SSM_LOG_Q, m, strict=True) if not drop]
        if not terms:  # every negative masked: 0 by the documented rule
            expected.append(0.0)
            continue
        terms += [p / t] if include_positive else []
        expected.append(-p / t + neg_weight * math.log(sum(math.exp(x) for x in terms)))
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


def test_sampled_softmax_is_bsl_as_its_code_computes_it() -> None:
    pos, negs = (
        [0.3, -0.2, 0.9],
        [[0.1, 0.5, -0.4, 0.2], [0.0, 0.0, 0.7, -0.1], [0.2, 0.8, 0.4, 0.6]],
    )
    out = sampled_softmax_loss(
        torch.tensor(pos, dtype=torch.float64),
        torch.tensor(negs, dtype=torch.float64),
        temperature=0.08,
        log_q=math.log(4),  # the mean over the K = 4 negatives
        neg_weight=1.22,
        include_positive=False,
        reduction="none",
    )
    torch.testing.assert_close(out, torch.tensor(bsl_as_coded(pos, negs, 0.08, 1.22)).double())


GRAD_CASES = [
    pytest.param(1.0, True, id="default"),
    pytest.param(1.22, False, id="bsl"),
    pytest.param(0.7, True, id="weight-with-positive"),
]


def grad_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    neg = torch.randn(4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    log_q = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(4, 5, generator=gen) < 0.3
    mask[1] = True  # one row with every negative masked
    return pos, neg, log_q, mask


@pytest.mark.parametrize(("neg_weight", "include_positive"), GRAD_CASES)
def test_sampled_softmax_gradcheck_and_gradgradcheck_through_every_input(
    neg_weight: float, include_positive: bool
) -> None:
    pos, neg, log_q, mask = grad_inputs(2)

    def loss(p: torch.Tensor, n: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return sampled_softmax_loss(
            p,
            n,
            temperature=0.7,
            log_q=q,
            mask=mask,
            neg_weight=neg_weight,
            include_positive=include_positive,
            reduction="none",
        )

    assert torch.autograd.gradcheck(loss, (pos, neg, log_q))
    assert torch.autograd.gradgradcheck(loss, (pos, neg, log_q))


@pytest.mark.parametrize(("neg_weight", "include_positive"), GRAD_CASES)
def test_sampled_softmax_gradients_match_plain_autograd_to_second_order(
    neg_weight: float, include_positive: bool
) -> None:
    options = {"neg_weight": neg_weight, "include_positive": include_positive}

    def penalised(fn: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, ...]:
        # A gradient penalty: loss + (d loss / d neg)^2, differentiated again.
        pos, neg, log_q, mask = grad_inputs(3)
        loss = fn(pos, neg, 0.5, log_q=log_q, mask=mask, **options).sum()
        (g_neg,) = torch.autograd.grad(loss, neg, create_graph=True)
        assert g_neg.requires_grad
        total = loss + (g_neg**2).sum()
        return torch.autograd.grad(total, (pos, neg, log_q))

    def ours(pos: torch.Tensor, neg: torch.Tensor, t: float, **kw: object) -> torch.Tensor:
        return sampled_softmax_loss(pos, neg, temperature=t, reduction="none", **kw)  # type: ignore[arg-type]

    for got, want in zip(penalised(ours), penalised(softmax_reference), strict=True):
        torch.testing.assert_close(got, want)


def test_sampled_softmax_log_q_gets_its_gradient() -> None:
    gen = torch.Generator().manual_seed(4)
    pos, neg = torch.randn(3, generator=gen), torch.randn(3, 3, generator=gen)
    lq = torch.zeros(3, requires_grad=True)
    loss = sampled_softmax_loss(pos, neg, log_q=lq)
    assert loss.requires_grad
    loss.backward()
    lq64 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    softmax_reference(pos.double(), neg.double(), 1.0, log_q=lq64).mean().backward()
    assert lq.grad is not None and lq64.grad is not None
    torch.testing.assert_close(lq.grad.double(), lq64.grad, rtol=1e-6, atol=1e-7)
    assert bool((lq.grad < 0).all())  # raising a log q lowers that negative's weight


@pytest.mark.parametrize(
    ("pos", "neg", "t", "expected"),
    [
        (3e38, 0.0, 0.5, 0.0),  # s+ / T overflows float32; the exact loss is 0
        (3e38, 0.0, 1e-39, 0.0),  # 1 / T overflows float32
        (3e38, 3e38, 0.5, math.log(2.0)),
        (-3e38, -3e38, 1e-39, math.log(2.0)),
        (1.0, 2.0, 1e-7, 1e7),  # s / T is large but finite: so is the loss
    ],
)
def test_sampled_softmax_is_finite_for_finite_float32_extremes(
    pos: float, neg: float, t: float, expected: float
) -> None:
    out = sampled_softmax_loss(torch.tensor([pos]), torch.tensor([[neg]]), temperature=t)
    assert bool(torch.isfinite(out))
    torch.testing.assert_close(out, torch.tensor(expected), rtol=1e-4, atol=1e-5)


def test_sampled_softmax_all_masked_rows_are_zero_without_the_positive() -> None:
    pos = torch.tensor([1.0, 2.0], requires_grad=True)
    neg = torch.tensor([[math.inf, math.nan], [1.0, -3.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [False, True]])
    loss = sampled_softmax_loss(
        pos, neg, mask=mask, neg_weight=1.5, include_positive=False, reduction="none"
    )
    assert loss[0].item() == 0.0 and bool(torch.isfinite(loss).all())
    loss.sum().backward()
    assert pos.grad is not None and neg.grad is not None
    assert pos.grad[0].item() == 0.0 and neg.grad[0].abs().sum().item() == 0.0
    assert bool(torch.isfinite(neg.grad).all())
    # The one unmasked negative takes the whole weight: d/ds = 1.5, d/ds+ = -1.
    torch.testing.assert_close(neg.grad[1], torch.tensor([1.5, 0.0]))
    torch.testing.assert_close(pos.grad[1], torch.tensor(-1.0))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"neg_weight": 0.0}, ValueError, "neg_weight must be a finite float > 0, got 0.0"),
        ({"neg_weight": math.inf}, ValueError, "neg_weight must be a finite float > 0, got inf"),
        ({"neg_weight": "1"}, TypeError, "neg_weight must be a positive float, got '1'"),
        ({"include_positive": 1}, TypeError, "include_positive must be a bool, got 1"),
    ],
)
def test_sampled_softmax_rejects_bad_negative_options(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        sampled_softmax_loss(torch.zeros(2), torch.zeros(2, 3), **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the blocked CPU forward


def random_softmax_batch(
    seed: int, batch: int, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores with extremes, a (K,) log_q, a mask with all-masked and unmasked rows (float64)."""
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(batch, dtype=torch.float64, generator=gen) * 3
    neg = torch.randn(batch, k, dtype=torch.float64, generator=gen) * 3
    neg[0, 0], neg[1, 1] = 60.0, -60.0  # one exponential near overflow, one near 0
    log_q = torch.randn(k, dtype=torch.float64, generator=gen)
    mask = torch.rand(batch, k, generator=gen) < 0.3
    mask[2] = True  # every negative masked
    mask[3] = False  # none masked
    return pos, neg, log_q, mask


@pytest.mark.parametrize("block_scores", [1, 7, 2**17], ids=["row", "rows", "one-block"])
@pytest.mark.parametrize(("neg_weight", "include_positive"), GRAD_CASES)
def test_blocked_forward_matches_the_formula_and_its_gradients(
    monkeypatch: pytest.MonkeyPatch, block_scores: int, neg_weight: float, include_positive: bool
) -> None:
    # The CPU forward works on blocks of rows; any block size gives the formula's values and
    # the gradients of plain autograd through it, in float64.
    monkeypatch.setattr(functional_module, "_BLOCK_SCORES", block_scores)
    pos, neg, log_q, mask = random_softmax_batch(5, 9, 6)
    options = {"log_q": log_q, "mask": mask, "neg_weight": neg_weight}

    def run(fn: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, ...]:
        p, n = pos.clone().requires_grad_(), neg.clone().requires_grad_()
        if fn is sampled_softmax_loss:
            out = fn(p, n, temperature=0.3, include_positive=include_positive,
                     reduction="none", **options)  # fmt: skip
        else:
            out = fn(p, n, 0.3, include_positive=include_positive, **options)
        out.backward(torch.linspace(0.5, 1.5, out.numel(), dtype=torch.float64))
        assert p.grad is not None and n.grad is not None
        return out.detach(), p.grad, n.grad

    for got, want in zip(run(sampled_softmax_loss), run(softmax_reference), strict=True):
        torch.testing.assert_close(got, want)


def test_a_second_backward_through_the_graph_gives_the_same_gradients() -> None:
    # The first backward turns the saved exponentials into the gradient in place; a second
    # one (retain_graph=True) must recompute them, not reuse the scaled values.
    pos, neg, log_q, mask = random_softmax_batch(6, 5, 4)
    pos.requires_grad_()
    neg.requires_grad_()
    loss = sampled_softmax_loss(
        pos, neg, temperature=0.5, log_q=log_q, mask=mask, neg_weight=1.22, include_positive=False
    )
    # Cloned: the first gradient of neg is the buffer that a wrong second pass would rescale.
    first = [g.clone() for g in torch.autograd.grad(loss, (pos, neg), retain_graph=True)]
    second = torch.autograd.grad(loss, (pos, neg), retain_graph=True)
    third = torch.autograd.grad(loss, (neg,))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(third[0], first[1], rtol=0, atol=0)


def test_float32_loss_and_gradients_match_float64_on_a_recipe_sized_batch() -> None:
    # The shape of a training step (many blocks of rows): float32 within rounding of float64.
    pos, neg, log_q, mask = random_softmax_batch(7, 300, 700)
    pos, neg = pos.clamp(-1, 1), neg.clamp(-1, 1)  # cosine scores
    grads = []
    for dtype in (torch.float32, torch.float64):
        p = pos.to(dtype).requires_grad_()
        n = neg.to(dtype).requires_grad_()
        loss = sampled_softmax_loss(
            p, n, temperature=0.1, log_q=log_q.to(dtype), mask=mask,
            neg_weight=1.22, include_positive=False,
        )  # fmt: skip
        loss.backward()
        assert p.grad is not None and n.grad is not None
        grads.append((loss.detach().double(), p.grad.double(), n.grad.double()))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------- from vectors, fused


def vector_batch(
    seed: int, batch: int, shared: int, per_row: int, dim: int = 3
) -> dict[str, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_()

    k = shared + per_row
    mask = torch.rand(batch, k, generator=gen) < 0.3
    mask[0] = True  # every negative masked
    mask[1] = False  # none
    return {
        "pos": randn(batch),
        "users": randn(batch, dim),
        "items": randn(shared, dim) if shared else None,
        "rows": randn(batch, per_row, dim) if per_row else None,
        "log_q": randn(k),
        "mask": mask,
    }


def scores_then_loss(v: dict[str, torch.Tensor | None], **options: object) -> torch.Tensor:
    """The two-step form: the score matrix, then sampled_softmax_loss (plain autograd)."""
    users, items, rows = v["users"], v["items"], v["rows"]
    assert users is not None and v["pos"] is not None
    parts = []
    if items is not None:
        parts.append(users @ items.T)
    if rows is not None:
        parts.append((rows @ users[:, :, None]).squeeze(2))
    neg = torch.cat(parts, dim=1)
    return softmax_reference(v["pos"], neg, log_q=v["log_q"], mask=v["mask"], **options)  # type: ignore[arg-type]


def fused(v: dict[str, torch.Tensor | None], **options: object) -> torch.Tensor:
    t = options.pop("t")
    return functional_module.sampled_softmax_loss_from_vectors(
        v["pos"],  # type: ignore[arg-type]
        v["users"],  # type: ignore[arg-type]
        v["items"],
        v["rows"],
        temperature=t,  # type: ignore[arg-type]
        log_q=v["log_q"],
        mask=v["mask"],
        reduction="none",
        **options,  # type: ignore[arg-type]
    )


VECTOR_SHAPES = [
    pytest.param(4, 3, id="shared-and-own"),
    pytest.param(5, 0, id="shared-only"),
    pytest.param(0, 2, id="own-only"),
]


@pytest.mark.parametrize(("shared", "per_row"), VECTOR_SHAPES)
@pytest.mark.parametrize("block_scores", [1, 9, 2**17], ids=["row", "rows", "one-block"])
@pytest.mark.parametrize(("neg_weight", "include_positive"), GRAD_CASES)
def test_from_vectors_equals_scores_then_loss_with_gradients(
    monkeypatch: pytest.MonkeyPatch,
    shared: int,
    per_row: int,
    block_scores: int,
    neg_weight: float,
    include_positive: bool,
) -> None:
    monkeypatch.setattr(functional_module, "_BLOCK_SCORES", block_scores)
    options = {"neg_weight": neg_weight, "include_positive": include_positive}
    results = []
    for fn in (fused, scores_then_loss):
        v = vector_batch(8, 6, shared, per_row)
        if fn is fused:
            out = fused(v, t=0.4, **options)
        else:
            out = scores_then_loss(v, t=0.4, **options)
        out.backward(torch.linspace(0.5, 1.5, 6, dtype=torch.float64))
        leaves = [v[name] for name in ("pos", "users", "items", "rows", "log_q")]
        results.append([out.detach()] + [leaf.grad for leaf in leaves if leaf is not None])
    for got, want in zip(*results, strict=True):
        assert got is not None and want is not None
        torch.testing.assert_close(got, want)
    assert results[0][0][0].item() == 0.0  # the all-masked row


def test_from_vectors_gradcheck_gradgradcheck_and_a_second_backward() -> None:
    v = vector_batch(9, 4, 3, 2)
    inputs = tuple(v[name] for name in ("pos", "users", "items", "rows", "log_q"))

    def loss(*args: torch.Tensor) -> torch.Tensor:
        return functional_module.sampled_softmax_loss_from_vectors(
            args[0], args[1], args[2], args[3], temperature=0.7, log_q=args[4],
            mask=v["mask"], neg_weight=1.22, include_positive=False, reduction="none",
        )  # fmt: skip

    assert torch.autograd.gradcheck(loss, inputs)
    assert torch.autograd.gradgradcheck(loss, inputs)
    out = loss(*inputs).sum()  # type: ignore[arg-type]
    first = [g.clone() for g in torch.autograd.grad(out, inputs, retain_graph=True)]  # type: ignore[arg-type]
    second = torch.autograd.grad(out, inputs)  # type: ignore[arg-type]
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_from_vectors_in_float32_and_half_precision() -> None:
    v = vector_batch(10, 5, 4, 2)
    want = fused(v, t=0.5).detach()
    for dtype in (torch.float32, torch.bfloat16):
        low = {
            name: None if value is None or value.dtype == torch.bool else value.detach().to(dtype)
            for name, value in v.items()
        }
        low["mask"] = v["mask"]
        got = fused(low, t=0.5)
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"items": None, "rows": None}, ValueError, "item_vectors and row_vectors are both None"),
        (
            {"users": torch.zeros(4, 2)},
            ValueError,
            r"item_vectors must have shape \(K, d\) with d=2",
        ),
        (
            {"rows": torch.zeros(3, 2, 3)},
            ValueError,
            r"row_vectors must have shape \(B, n, d\) with B=4",
        ),
        (
            {"pos": torch.zeros(5)},
            ValueError,
            r"pos_scores must have shape \(B,\) or \(B, 1\) with B=4",
        ),
        (
            {"users": torch.zeros(4, 3, dtype=torch.int64)},
            TypeError,
            "user_vectors must be a floating",
        ),
        ({"items": [[1.0]]}, TypeError, "item_vectors must be a floating-point tensor, got list"),
        ({"users": torch.zeros(4)}, ValueError, r"user_vectors must have shape \(B, d\)"),
        (
            {"log_q": torch.zeros(6)},
            ValueError,
            r"log_q must broadcast to the negatives' shape \(4, 5\)",
        ),
        ({"items": torch.zeros(0, 3), "rows": None}, ValueError, r"no negatives \(K \+ n = 0\)"),
        ({"items": torch.zeros(3, 3, device="meta")}, ValueError, "must be on one device"),
    ],
)
def test_from_vectors_rejects_bad_inputs(
    change: dict[str, object], error: type[Exception], match: str
) -> None:
    v: dict[str, object] = {
        "pos": torch.zeros(4),
        "users": torch.zeros(4, 3),
        "items": torch.zeros(3, 3),
        "rows": torch.zeros(4, 2, 3),
        "log_q": None,
        "mask": None,
    }
    v.update(change)
    with pytest.raises(error, match=match):
        fused(v, t=1.0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- extremes


def test_halves_that_overflow_alone_add_up_in_float64() -> None:
    # (lambda - 1) s+ / T = 6e38 and lambda (s - s+) / T = -6e38 each overflow float32; the
    # loss is exactly 0.
    out = sampled_softmax_loss(
        torch.tensor([3e38]),
        torch.tensor([[1.5e38]]),
        temperature=0.5,
        neg_weight=2,
        include_positive=False,
    )
    assert out.dtype == torch.float32 and out.item() == 0.0


@pytest.mark.parametrize(
    ("pos", "neg", "t", "neg_grad"),
    [
        # A difference of 4e38: +inf in float32. The weight goes to that negative alone.
        (-2e38, [2e38, 0.0], 1.0, [1.0, 0.0]),
        # Cosine scores at T = 1e-39: differences of 2e39, gradients of 5e38 saturate.
        (-1.0, [1.0, 1.0, -1.0], 1e-39, [3.4028234663852886e38, 3.4028234663852886e38, 0.0]),
    ],
)
@pytest.mark.parametrize("include_positive", [True, False])
def test_a_difference_past_the_float_range_gives_inf_with_finite_gradients(
    pos: float, neg: list[float], t: float, neg_grad: list[float], include_positive: bool
) -> None:
    p = torch.tensor([pos], requires_grad=True)
    n = torch.tensor([neg], requires_grad=True)
    loss = sampled_softmax_loss(p, n, temperature=t, include_positive=include_positive)
    assert loss.item() == math.inf
    loss.backward()
    assert p.grad is not None and n.grad is not None
    assert bool(torch.isfinite(p.grad).all()) and bool(torch.isfinite(n.grad).all())
    torch.testing.assert_close(n.grad, torch.tensor([neg_grad]))
    assert p.grad.item() < 0
