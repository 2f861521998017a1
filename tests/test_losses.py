"""The loss modules: equal to the functional forms, eager argument checks, repr."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from negsample.functional import (
    bce_loss,
    bpr_loss,
    pairwise_softmax_loss,
    sampled_softmax_loss,
    softmax_at_k_loss,
    softmax_at_k_loss_from_vectors,
)
from negsample.losses import (
    BCELoss,
    BPRLoss,
    PairwiseSoftmaxLoss,
    SampledSoftmaxLoss,
    SoftmaxAtKLoss,
)

REDUCTIONS = ["mean", "sum", "none"]


def scores(seed: int, batch: int, num_neg: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, generator=gen) * 3, torch.randn(batch, num_neg, generator=gen) * 3


@given(st.sampled_from(REDUCTIONS), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_bpr_module_equals_functional(reduction: str, batch: int, num_neg: int, seed: int) -> None:
    pos, neg = scores(seed, batch, num_neg)
    module = BPRLoss(reduction=reduction)
    assert torch.equal(module(pos, neg), bpr_loss(pos, neg, reduction=reduction))


@given(
    st.sampled_from(REDUCTIONS),
    st.sampled_from([None, 0.0, 0.5, 4]),
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(0, 2**31 - 1),
)
def test_bce_module_equals_functional(
    reduction: str, neg_weight: float | None, batch: int, num_neg: int, seed: int
) -> None:
    pos, neg = scores(seed, batch, num_neg)
    module = BCELoss(reduction=reduction, neg_weight=neg_weight)
    expected = bce_loss(pos, neg, reduction=reduction, neg_weight=neg_weight)
    assert torch.equal(module(pos, neg), expected)


def test_closed_form_through_the_modules() -> None:
    pos, neg = torch.tensor([1.0]), torch.tensor([[1.0, -1.0]])
    # BPR: softplus(0) = log 2 and softplus(-2) = log(1 + e^-2).
    expected_bpr = (math.log(2) + math.log1p(math.exp(-2))) / 2
    assert BPRLoss()(pos, neg).item() == pytest.approx(expected_bpr)
    # BCE: -log(sigmoid(1)) for the positive, 0.5 * -log(1 - sigmoid(n)) per negative, / 3 terms.
    terms = [
        math.log1p(math.exp(-1)),
        0.5 * math.log1p(math.exp(1)),
        0.5 * math.log1p(math.exp(-1)),
    ]
    assert BCELoss(neg_weight=0.5)(pos, neg).item() == pytest.approx(sum(terms) / 3)


def test_gradients_flow_through_the_modules() -> None:
    pos = torch.tensor([0.5, -0.5], requires_grad=True)
    neg = torch.tensor([[0.0], [1.0]], requires_grad=True)
    (BPRLoss()(pos, neg) + BCELoss()(pos, neg)).backward()
    assert pos.grad is not None and neg.grad is not None
    assert bool((pos.grad < 0).all()) and bool((neg.grad > 0).all())


def test_modules_hold_no_parameters_or_state() -> None:
    for module in (BPRLoss(), BCELoss(neg_weight=0.1)):
        assert list(module.parameters()) == []
        assert module.state_dict() == {}


def test_repr() -> None:
    assert repr(BPRLoss()) == "BPRLoss(reduction='mean')"
    assert repr(BPRLoss("none")) == "BPRLoss(reduction='none')"
    assert repr(BCELoss()) == "BCELoss(reduction='mean', neg_weight=None)"
    assert repr(BCELoss("sum", neg_weight=1)) == "BCELoss(reduction='sum', neg_weight=1.0)"


@pytest.mark.parametrize("reduction", ["avg", None, "MEAN"])
def test_bad_reduction_fails_at_construction(reduction: object) -> None:
    with pytest.raises(ValueError, match="reduction must be one of"):
        BPRLoss(reduction=reduction)
    with pytest.raises(ValueError, match="reduction must be one of"):
        BCELoss(reduction=reduction)


def test_bad_neg_weight_fails_at_construction() -> None:
    with pytest.raises(ValueError, match=r"neg_weight must be a finite float >= 0, got -1\.0"):
        BCELoss(neg_weight=-1)
    with pytest.raises(
        TypeError, match=r"neg_weight must be None or a non-negative float, got 'x'"
    ):
        BCELoss(neg_weight="x")


def test_input_errors_come_from_the_functional_checks() -> None:
    with pytest.raises(TypeError, match="pos_scores must be a floating-point tensor"):
        BPRLoss()(torch.zeros(2, dtype=torch.int64), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="same batch size"):
        BCELoss()(torch.zeros(2), torch.zeros(3, 1))


def test_sampled_softmax_module_is_the_function_with_its_options() -> None:
    gen = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(5, generator=gen), torch.randn(5, 7, generator=gen)
    mask = torch.rand(5, 7, generator=gen) < 0.2
    log_q = torch.randn(7, generator=gen)
    module = SampledSoftmaxLoss(temperature=0.3, reduction="none")
    torch.testing.assert_close(
        module(pos, neg, log_q=log_q, mask=mask),
        sampled_softmax_loss(pos, neg, temperature=0.3, log_q=log_q, mask=mask, reduction="none"),
    )
    with pytest.raises(ValueError, match="temperature must be a finite float > 0"):
        SampledSoftmaxLoss(temperature=-1.0)


def test_sampled_softmax_module_passes_the_negative_options() -> None:
    gen = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(5, generator=gen), torch.randn(5, 7, generator=gen)
    module = SampledSoftmaxLoss(0.2, "sum", neg_weight=1.22, include_positive=False)
    torch.testing.assert_close(
        module(pos, neg, log_q=0.5),
        sampled_softmax_loss(
            pos,
            neg,
            temperature=0.2,
            log_q=0.5,
            neg_weight=1.22,
            include_positive=False,
            reduction="sum",
        ),
    )
    assert repr(module) == (
        "SampledSoftmaxLoss(temperature=0.2, neg_weight=1.22, include_positive=False, "
        "reduction='sum')"
    )
    with pytest.raises(ValueError, match=r"neg_weight must be a finite float > 0, got -1\.0"):
        SampledSoftmaxLoss(neg_weight=-1.0)
    with pytest.raises(TypeError, match="include_positive must be a bool"):
        SampledSoftmaxLoss(include_positive="no")  # type: ignore[arg-type]


def test_softmax_at_k_module_is_the_function_with_its_options() -> None:
    gen = torch.Generator().manual_seed(2)
    pos, neg = torch.randn(5, generator=gen), torch.randn(5, 7, generator=gen)
    mask = torch.rand(5, 7, generator=gen) < 0.2
    log_q, beta = torch.randn(7, generator=gen), torch.randn(5, generator=gen)
    module = SoftmaxAtKLoss(
        0.3, 1.5, "none", detach_weight=False, neg_weight=1.22, include_positive=False
    )
    options = {
        "weight_temperature": 1.5,
        "detach_weight": False,
        "temperature": 0.3,
        "neg_weight": 1.22,
        "include_positive": False,
        "reduction": "none",
    }
    assert torch.equal(
        module(pos, neg, beta, log_q=log_q, mask=mask),
        softmax_at_k_loss(pos, neg, beta, log_q=log_q, mask=mask, **options),  # type: ignore[arg-type]
    )
    users, items = torch.randn(5, 3, generator=gen), torch.randn(7, 3, generator=gen)
    assert torch.equal(
        module.from_vectors(pos, users, items, thresholds=beta, mask=mask),
        softmax_at_k_loss_from_vectors(pos, users, items, thresholds=beta, mask=mask, **options),  # type: ignore[arg-type]
    )
    assert repr(module) == (
        "SoftmaxAtKLoss(temperature=0.3, weight_temperature=1.5, detach_weight=False, "
        "neg_weight=1.22, include_positive=False, reduction='none')"
    )
    assert repr(SoftmaxAtKLoss()) == (
        "SoftmaxAtKLoss(temperature=1.0, weight_temperature=1.0, detach_weight=True, "
        "reduction='mean')"
    )
    assert list(module.parameters()) == [] and module.state_dict() == {}


def test_softmax_at_k_module_checks_its_options_when_built() -> None:
    with pytest.raises(
        ValueError, match=r"weight_temperature must be a finite float > 0, got 0\.0"
    ):
        SoftmaxAtKLoss(weight_temperature=0.0)
    with pytest.raises(TypeError, match="detach_weight must be a bool"):
        SoftmaxAtKLoss(detach_weight="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature must be a finite float > 0"):
        SoftmaxAtKLoss(temperature=-1.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        SoftmaxAtKLoss(reduction="avg")  # type: ignore[arg-type]


def test_pairwise_softmax_module_is_the_function_with_its_options() -> None:
    gen = torch.Generator().manual_seed(3)
    pos, neg = torch.randn(5, generator=gen), torch.randn(5, 7, generator=gen)
    mask = torch.rand(5, 7, generator=gen) < 0.2
    log_q = torch.randn(7, generator=gen)
    module = PairwiseSoftmaxLoss(
        0.2, "relu", "sum", score_scale=1.5, include_positive=False, eps=1e-4
    )
    assert torch.equal(
        module(pos, neg, log_q=log_q, mask=mask),
        pairwise_softmax_loss(
            pos,
            neg,
            temperature=0.2,
            activation="relu",
            score_scale=1.5,
            log_q=log_q,
            mask=mask,
            include_positive=False,
            eps=1e-4,
            reduction="sum",
        ),
    )
    assert repr(module) == (
        "PairwiseSoftmaxLoss(temperature=0.2, activation='relu', score_scale=1.5, "
        "include_positive=False, eps=0.0001, reduction='sum')"
    )
    with pytest.raises(ValueError, match="activation must be one of"):
        PairwiseSoftmaxLoss(activation="sigmoid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"eps must be a float in \(0, 1\), got 2\.0"):
        PairwiseSoftmaxLoss(eps=2.0)
    with pytest.raises(ValueError, match="score_scale must be a finite float > 0"):
        PairwiseSoftmaxLoss(score_scale=-2.0)
