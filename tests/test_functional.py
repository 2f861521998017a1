"""The functional losses: closed-form values, gradients, stability, shapes and errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

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
        ({"mask": torch.zeros(3, 3, dtype=torch.bool)}, ValueError, r"mask must broadcast .* \(2, 3\)"),
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
