"""SL@K and PSL against float64 transcriptions of their authors' formulas, and the threshold estimate.

The transcriptions are written from the authors' code (repository
``Tiny-Snow/IR-Benchmark``, ``src/itemrec/optimizer/optim_SLatK.py`` and
``optim_PSL.py``) and papers in plain Python ``math``, independently of the
library's tensor code: one value per row, with masks and ``log_q`` applied as
the documented extension of their formulas.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch
from scipy import stats

import negsample.functional as functional_module
from negsample import (
    CandidateSampler,
    HardNegativeSampler,
    MFModel,
    PairwiseSoftmaxLoss,
    PositiveIndex,
    SharedNegativeSampler,
    SoftmaxAtKLoss,
    UniformSampler,
    estimate_topk_thresholds,
)
from negsample.functional import (
    pairwise_softmax_loss,
    pairwise_softmax_loss_from_vectors,
    sampled_softmax_loss,
    sampled_softmax_loss_from_vectors,
    softmax_at_k_loss,
    softmax_at_k_loss_from_vectors,
)
from tests.helpers import CUDA

F64 = torch.float64


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def log_sum_exp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def random_batch(
    seed: int, batch: int = 6, k: int = 7, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float64 scores, a mask with one all-masked row and one unmasked row, log_q, thresholds."""
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(batch, dtype=F64, generator=gen) * scale
    neg = torch.randn(batch, k, dtype=F64, generator=gen) * scale
    mask = torch.rand(batch, k, generator=gen) < 0.3
    mask[1] = True
    mask[2] = False
    log_q = torch.randn(k, dtype=F64, generator=gen)
    thresholds = torch.randn(batch, dtype=F64, generator=gen) * scale
    return pos, neg, mask, log_q, thresholds


# ---------------------------------------------------------------------- SL@K: transcriptions


def slatk_as_coded(
    pos: list[float], negs: list[list[float]], beta: list[float], tau: float, tau_beta: float
) -> list[float]:
    """``SLatKOptimizer.cal_loss`` per row: ``sigmoid((s+ - beta) / tau_beta) * logsumexp(d / tau)``
    with ``d = neg - pos`` over the sampled negatives only (the mean over rows is the reduction)."""
    return [
        sigmoid((p - b) / tau_beta) * log_sum_exp([(n - p) / tau for n in row])
        for p, row, b in zip(pos, negs, beta, strict=True)
    ]


def slatk_formula(
    pos: torch.Tensor,
    neg: torch.Tensor,
    beta: torch.Tensor,
    *,
    t: float,
    tau_w: float,
    log_q: torch.Tensor | None,
    mask: torch.Tensor | None,
    neg_weight: float,
    include_positive: bool,
) -> list[float]:
    """The documented loss in plain Python: the weight times the (generalised) softmax term."""
    out = []
    for b in range(pos.shape[0]):
        p = float(pos[b])
        terms = [
            float(neg[b, j]) / t - (0.0 if log_q is None else float(log_q[j]))
            for j in range(neg.shape[1])
            if mask is None or not bool(mask[b, j])
        ]
        if not terms:
            out.append(0.0)
            continue
        if include_positive:
            terms.append(p / t)
        softmax = -p / t + neg_weight * log_sum_exp(terms)
        out.append(sigmoid((p - float(beta[b])) / tau_w) * softmax)
    return out


def test_slatk_is_the_authors_code() -> None:
    pos, neg, _, _, beta = random_batch(0, scale=0.4)
    tau, tau_beta = 0.2, 2.25  # their README's command
    out = softmax_at_k_loss(
        pos, neg, beta, weight_temperature=tau_beta, temperature=tau, include_positive=False
    )
    expected = slatk_as_coded(pos.tolist(), neg.tolist(), beta.tolist(), tau, tau_beta)
    torch.testing.assert_close(out, torch.tensor(sum(expected) / len(expected), dtype=F64))


@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("neg_weight", [1.0, 1.22])
@pytest.mark.parametrize("seed", [1, 2])
def test_slatk_matches_the_formula_with_masks_and_log_q(
    seed: int, neg_weight: float, include_positive: bool
) -> None:
    pos, neg, mask, log_q, beta = random_batch(seed)
    beta[3] = -math.inf
    options = {"neg_weight": neg_weight, "include_positive": include_positive}
    out = softmax_at_k_loss(
        pos,
        neg,
        beta,
        weight_temperature=0.7,
        temperature=0.4,
        log_q=log_q,
        mask=mask,
        reduction="none",
        **options,  # type: ignore[arg-type]
    )
    expected = slatk_formula(pos, neg, beta, t=0.4, tau_w=0.7, log_q=log_q, mask=mask, **options)  # type: ignore[arg-type]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=F64))
    assert out[1].item() == 0.0  # every negative masked


def test_slatk_gradient_through_the_weight_is_the_authors_and_detached_is_not() -> None:
    pos, neg, _, _, beta = random_batch(3, scale=0.5)
    tau, tau_w = 0.3, 1.5

    def grads(detach_weight: bool | None) -> tuple[torch.Tensor, torch.Tensor]:
        p, n = pos.clone().requires_grad_(), neg.clone().requires_grad_()
        if detach_weight is None:  # the authors' code in torch, float64
            weights = torch.sigmoid((p - beta) / tau_w)
            loss = (weights * torch.logsumexp((n - p[:, None]) / tau, dim=1)).mean()
        else:
            loss = softmax_at_k_loss(
                p,
                n,
                beta,
                weight_temperature=tau_w,
                temperature=tau,
                include_positive=False,
                detach_weight=detach_weight,
            )
        loss.backward()
        assert p.grad is not None and n.grad is not None
        return p.grad, n.grad

    theirs, flowing, detached = grads(None), grads(False), grads(True)
    torch.testing.assert_close(flowing, theirs)
    torch.testing.assert_close(detached[1], theirs[1])  # the weight does not read the negatives
    # Detached, the positive loses exactly L * w (1 - w) / tau_w.
    terms = torch.logsumexp((neg - pos[:, None]) / tau, dim=1)
    w = torch.sigmoid((pos - beta) / tau_w)
    through_weight = terms * w * (1 - w) / tau_w / pos.shape[0]
    torch.testing.assert_close(theirs[0] - detached[0], through_weight)


@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("neg_weight", [1.0, 1.22])
def test_slatk_with_threshold_minus_inf_is_the_sampled_softmax(
    neg_weight: float, include_positive: bool
) -> None:
    pos, neg, mask, log_q, _ = random_batch(4)
    options = {
        "temperature": 0.3,
        "log_q": log_q,
        "mask": mask,
        "neg_weight": neg_weight,
        "include_positive": include_positive,
    }
    for reduction in ("none", "sum", "mean"):
        p1, n1 = pos.clone().requires_grad_(), neg.clone().requires_grad_()
        p2, n2 = pos.clone().requires_grad_(), neg.clone().requires_grad_()
        ours = softmax_at_k_loss(
            p1, n1, -math.inf, detach_weight=False, reduction=reduction, **options
        )
        plain = sampled_softmax_loss(p2, n2, reduction=reduction, **options)
        assert torch.equal(ours, plain)
        ours.sum().backward()
        plain.sum().backward()
        assert p1.grad is not None and p2.grad is not None
        assert torch.equal(p1.grad, p2.grad) and torch.equal(n1.grad, n2.grad)  # type: ignore[arg-type]
    assert torch.equal(
        softmax_at_k_loss(pos, neg, math.inf, reduction="none", **options),
        torch.zeros(6, dtype=F64),
    )


@pytest.mark.parametrize("detach_weight", [True, False])
def test_slatk_gradcheck_through_every_input(detach_weight: bool) -> None:
    pos, neg, mask, log_q, beta = random_batch(5)
    inputs = [x.clone().requires_grad_() for x in (pos, neg, log_q, beta)]

    def loss(n: torch.Tensor, q: torch.Tensor, p: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return softmax_at_k_loss(
            p,
            n,
            b,
            weight_temperature=0.8,
            detach_weight=detach_weight,
            temperature=0.6,
            log_q=q,
            mask=mask,
            include_positive=False,
            neg_weight=1.22,
            reduction="none",
        )

    # Detached, the loss still reads pos and the thresholds through the weight, on
    # purpose without a gradient: those two are held fixed (the difference in pos's
    # gradient is checked against the authors' in the test above).
    p, n, q, b = inputs
    checked = (n, q, p, b) if not detach_weight else (n, q)
    fixed = () if not detach_weight else (p, b)

    def of_checked(*xs: torch.Tensor) -> torch.Tensor:
        return loss(*xs, *fixed)

    assert torch.autograd.gradcheck(of_checked, checked)
    assert torch.autograd.gradgradcheck(of_checked, checked)
    loss(n, q, p, b).sum().backward()
    assert (b.grad is None) == detach_weight  # detached: the thresholds are not in the graph


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_slatk_reductions_agree_with_none(reduction: str) -> None:
    pos, neg, mask, log_q, beta = random_batch(6)
    terms = softmax_at_k_loss(pos, neg, beta, log_q=log_q, mask=mask, reduction="none")
    assert terms.shape == (6,)
    reduced = softmax_at_k_loss(pos, neg, beta, log_q=log_q, mask=mask, reduction=reduction)  # type: ignore[arg-type]
    torch.testing.assert_close(reduced, terms.mean() if reduction == "mean" else terms.sum())


def test_slatk_thresholds_in_every_accepted_form() -> None:
    pos, neg, _, _, beta = random_batch(7)
    want = softmax_at_k_loss(pos, neg, beta, reduction="none")
    torch.testing.assert_close(softmax_at_k_loss(pos, neg, beta[:, None], reduction="none"), want)
    torch.testing.assert_close(softmax_at_k_loss(pos[:, None], neg, beta, reduction="none"), want)
    one = softmax_at_k_loss(pos, neg, 0.25, reduction="none")
    torch.testing.assert_close(
        one, softmax_at_k_loss(pos, neg, torch.tensor(0.25, dtype=F64), reduction="none")
    )
    torch.testing.assert_close(
        one, softmax_at_k_loss(pos, neg, torch.full((6,), 0.25), reduction="none")
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_slatk_extreme_scores_stay_finite_and_match_float64(dtype: torch.dtype) -> None:
    big = 1e4  # losses up to 2e4: inside float16 too
    pos = torch.tensor([big, -big, 0.0, big])
    neg = torch.tensor([[-big, 0.0], [big, 0.0], [big, -big], [big, big]])
    beta = torch.tensor([0.0, big, -math.inf, -big])
    p, n = pos.to(dtype).requires_grad_(), neg.to(dtype).requires_grad_()
    out = softmax_at_k_loss(p, n, beta.to(dtype), temperature=0.5, reduction="none")
    assert out.dtype == dtype
    out.sum().backward()
    assert bool(torch.isfinite(out).all())
    assert p.grad is not None and n.grad is not None
    assert bool(torch.isfinite(p.grad).all()) and bool(torch.isfinite(n.grad).all())
    expected = slatk_formula(
        p.detach().double(),
        n.detach().double(),
        beta.to(dtype).double(),
        t=0.5,
        tau_w=1.0,
        log_q=None,
        mask=None,
        neg_weight=1.0,
        include_positive=True,
    )
    # Computed in float32 and rounded once to the dtype.
    rtol = max(torch.finfo(dtype).eps, 1e-6)
    torch.testing.assert_close(out.double(), torch.tensor(expected, dtype=F64), rtol=rtol, atol=0)


def test_slatk_from_vectors_equals_the_scores_path_with_gradients() -> None:
    gen = torch.Generator().manual_seed(8)
    users = torch.randn(5, 3, dtype=F64, generator=gen)
    items = torch.randn(4, 3, dtype=F64, generator=gen)
    rows = torch.randn(5, 2, 3, dtype=F64, generator=gen)
    pos = torch.randn(5, dtype=F64, generator=gen)
    beta = torch.randn(5, dtype=F64, generator=gen)
    mask = torch.rand(5, 6, generator=gen) < 0.3
    mask[0] = True
    log_q = torch.randn(6, dtype=F64, generator=gen)
    options = {
        "weight_temperature": 0.5,
        "detach_weight": False,
        "temperature": 0.3,
        "log_q": log_q,
        "mask": mask,
        "reduction": "none",
    }
    fused_in = [x.clone().requires_grad_() for x in (pos, users, items, rows)]
    plain_in = [x.clone().requires_grad_() for x in (pos, users, items, rows)]
    fused = softmax_at_k_loss_from_vectors(*fused_in, thresholds=beta, **options)  # type: ignore[arg-type]
    p, u, i, r = plain_in
    scores = torch.cat([u @ i.T, (r @ u[:, :, None]).squeeze(2)], dim=1)
    plain = softmax_at_k_loss(p, scores, beta, **options)  # type: ignore[arg-type]
    torch.testing.assert_close(fused, plain)
    (fused * torch.arange(1, 6)).sum().backward()
    (plain * torch.arange(1, 6)).sum().backward()
    for a, b in zip(fused_in, plain_in, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    with pytest.raises(TypeError, match="thresholds must be a float"):
        softmax_at_k_loss_from_vectors(pos, users, items, thresholds="0")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"thresholds": torch.zeros(6, dtype=torch.int64)},
            TypeError,
            "thresholds must be a float or a floating-point tensor, got dtype torch.int64",
        ),
        (
            {"thresholds": "0.5"},
            TypeError,
            r"thresholds must be a float or a floating-point tensor, got '0\.5' \(str\)",
        ),
        ({"thresholds": True}, TypeError, r"thresholds must be a float .* got True \(bool\)"),
        (
            {"thresholds": torch.zeros(5)},
            ValueError,
            r"thresholds must have shape \(B,\) or \(B, 1\) with B=6, or be a float, got shape \(5,\)",
        ),
        ({"thresholds": torch.zeros(6, 2)}, ValueError, r"got shape \(6, 2\)"),
        (
            {"thresholds": torch.zeros(6, device="meta")},
            ValueError,
            "thresholds must be on the scores' device cpu, got meta",
        ),
        (
            {"weight_temperature": 0.0},
            ValueError,
            r"weight_temperature must be a finite float > 0, got 0\.0",
        ),
        (
            {"weight_temperature": math.inf},
            ValueError,
            r"weight_temperature must be a finite float > 0, got inf",
        ),
        (
            {"weight_temperature": "1"},
            TypeError,
            "weight_temperature must be a positive float, got '1'",
        ),
        ({"detach_weight": "yes"}, TypeError, r"detach_weight must be a bool, got 'yes' \(str\)"),
        ({"detach_weight": 1}, TypeError, r"detach_weight must be a bool, got 1 \(int\)"),
        ({"temperature": -1.0}, ValueError, "temperature must be a finite float > 0"),
        ({"reduction": "avg"}, ValueError, "reduction must be one of"),
        ({"mask": torch.zeros(6, 7)}, TypeError, "mask must be a bool tensor"),
        ({"neg_scores": torch.zeros(6)}, ValueError, r"neg_scores must have shape \(B, K\)"),
    ],
)
def test_slatk_rejects_bad_inputs(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    args: dict[str, object] = {
        "pos_scores": torch.zeros(6),
        "neg_scores": torch.zeros(6, 7),
        "thresholds": 0.0,
    }
    args.update(kwargs)
    with pytest.raises(error, match=message):
        softmax_at_k_loss(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- PSL: transcriptions


def psl_activation_as_coded(d: float, activation: str) -> float:
    """``PSLOptimizer``'s ``self.sigma``: the log of the surrogate activation."""
    if activation == "tanh":
        return math.log(math.tanh(d) + 1)
    if activation == "relu":
        return math.log(max(d + 1, 0.0))  # math.log(0) raises: their log 0 case
    return math.log(math.atan(d) + 1)


def psl_as_coded(
    pos: list[float], negs: list[list[float]], tau: float, tau_star: float, activation: str
) -> list[float]:
    """``PSLOptimizer.cal_loss`` (method 1) per row: scores divided by ``tau``,
    ``d = neg - pos``, ``logsumexp(sigma(d) / tau_star)`` over the sampled negatives."""
    return [
        log_sum_exp(
            [psl_activation_as_coded(n / tau - p / tau, activation) / tau_star for n in row]
        )
        for p, row in zip(pos, negs, strict=True)
    ]


def psl_formula(
    pos: torch.Tensor,
    neg: torch.Tensor,
    *,
    tau: float,
    scale: float,
    activation: str,
    log_q: torch.Tensor | None,
    mask: torch.Tensor | None,
    include_positive: bool,
    eps: float = 1e-6,
) -> list[float]:
    """The paper's ``log sum_j sigma(d)^(1/tau)`` in plain Python, with the documented floor,
    ``log_q`` and mask, and the positive's term ``sigma(0)^(1/tau) = 1``."""

    def log_sigma(d: float) -> float:
        if activation == "tanh":
            # 1 + tanh(d) = 2 / (1 + e^(-2d)): log 2 - softplus(-2d), stable for any finite d.
            x = -2.0 * d
            return math.log(2.0) - (max(x, 0.0) + math.log1p(math.exp(-abs(x))))
        if activation == "exp":
            return d
        base = 1.0 + (math.atan(d) if activation == "atan" else d)
        return math.log(max(base, eps))

    out = []
    for b in range(pos.shape[0]):
        p = float(pos[b])
        terms = [
            log_sigma((float(neg[b, j]) - p) / scale) / tau
            - (0.0 if log_q is None else float(log_q[j]))
            for j in range(neg.shape[1])
            if mask is None or not bool(mask[b, j])
        ]
        if not terms:
            out.append(0.0)
            continue
        if include_positive:
            terms.append(0.0)
        out.append(log_sum_exp(terms))
    return out


@pytest.mark.parametrize("activation", ["tanh", "atan", "relu"])
def test_psl_is_the_authors_code_on_cosine_scores(activation: str) -> None:
    gen = torch.Generator().manual_seed(10)
    # Cosine similarities in (-0.99, 0.99) and their tau = 2: every gap in (-1, 1).
    pos = torch.rand(8, dtype=F64, generator=gen) * 1.98 - 0.99
    neg = torch.rand(8, 9, dtype=F64, generator=gen) * 1.98 - 0.99
    for tau_star in (1.0, 0.1, 0.005):
        out = pairwise_softmax_loss(
            pos,
            neg,
            temperature=tau_star,
            activation=activation,  # type: ignore[arg-type]
            score_scale=2.0,
            include_positive=False,
            reduction="none",
        )
        expected = psl_as_coded(pos.tolist(), neg.tolist(), 2.0, tau_star, activation)
        torch.testing.assert_close(out, torch.tensor(expected, dtype=F64))


@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "atan", "relu", "exp"])
@pytest.mark.parametrize("seed", [11, 12])
def test_psl_matches_the_formula_with_masks_log_q_and_floors(
    seed: int, activation: str, include_positive: bool
) -> None:
    pos, neg, mask, log_q, _ = random_batch(seed, scale=1.5)  # some gaps below -1: floored
    out = pairwise_softmax_loss(
        pos,
        neg,
        temperature=0.3,
        activation=activation,  # type: ignore[arg-type]
        score_scale=1.0,
        log_q=log_q,
        mask=mask,
        include_positive=include_positive,
        reduction="none",
    )
    expected = psl_formula(
        pos,
        neg,
        tau=0.3,
        scale=1.0,
        activation=activation,
        log_q=log_q,
        mask=mask,
        include_positive=include_positive,
    )
    torch.testing.assert_close(out, torch.tensor(expected, dtype=F64))
    assert out[1].item() == 0.0  # every negative masked


@pytest.mark.parametrize("include_positive", [True, False])
def test_psl_with_exp_is_the_sampled_softmax_at_the_product_of_temperatures(
    include_positive: bool,
) -> None:
    pos, neg, mask, log_q, _ = random_batch(13)
    p1, n1 = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    p2, n2 = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    options = {"log_q": log_q, "mask": mask, "include_positive": include_positive}
    psl = pairwise_softmax_loss(
        p1, n1, activation="exp", temperature=0.25, score_scale=2.0, reduction="none", **options
    )
    softmax = sampled_softmax_loss(p2, n2, temperature=0.5, reduction="none", **options)
    torch.testing.assert_close(psl, softmax)
    psl.sum().backward()
    softmax.sum().backward()
    torch.testing.assert_close(p1.grad, p2.grad)
    torch.testing.assert_close(n1.grad, n2.grad)


@pytest.mark.parametrize("activation", ["relu", "atan"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_psl_log_of_zero_is_floored_finite_with_zero_gradients(
    activation: str, dtype: torch.dtype
) -> None:
    # Row 0: every gap far below -1 (their code: log 0 = -inf for relu, log of a negative
    # number = NaN for atan). Row 1: one gap floored, one not.
    pos = torch.tensor([3.0, 0.0], dtype=dtype, requires_grad=True)
    neg = torch.tensor([[-4.0, -5.0, -6.0], [-3.0, 0.5, -2.5]], dtype=dtype, requires_grad=True)
    mask = torch.tensor([[False, False, False], [False, False, True]])
    out = pairwise_softmax_loss(
        pos,
        neg,
        temperature=0.1,
        activation=activation,  # type: ignore[arg-type]
        score_scale=1.0,
        mask=mask,
        include_positive=False,
        reduction="none",
    )
    assert out[0].item() == pytest.approx(math.log(3) + math.log(1e-6) / 0.1, rel=1e-6)
    out.sum().backward()
    assert pos.grad is not None and neg.grad is not None
    assert bool(torch.isfinite(pos.grad).all()) and bool(torch.isfinite(neg.grad).all())
    assert neg.grad[0].abs().sum().item() == 0.0 and pos.grad[0].item() == 0.0
    assert neg.grad[1, 0].item() == 0.0 and neg.grad[1, 1].item() > 0.0
    with pytest.raises(ValueError, match="math domain error"):
        psl_as_coded([3.0], [[-4.0]], 1.0, 0.1, activation)  # the authors' form takes log(<= 0)


def test_psl_eps_sets_the_floor() -> None:
    pos, neg = torch.tensor([0.0], dtype=F64), torch.tensor([[-5.0, 0.5]], dtype=F64)
    for eps in (1e-3, 1e-9):
        out = pairwise_softmax_loss(
            pos, neg, activation="relu", score_scale=1.0, temperature=0.5, eps=eps
        )
        expected = math.log(1 + eps**2 + 1.5**2)  # the positive's 1, the floor, 1 + 0.5
        assert out.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "atan", "relu", "exp"])
def test_psl_gradcheck(activation: str) -> None:
    pos, neg, mask, log_q, _ = random_batch(14, scale=0.5)
    neg[0, 0] = pos[0] - 3.0  # floored for relu and atan, far from the kink
    inputs = tuple(x.clone().requires_grad_() for x in (pos, neg, log_q))
    for include_positive in (True, False):

        def loss(p: torch.Tensor, n: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
            return pairwise_softmax_loss(
                p,
                n,
                temperature=0.4,
                activation=activation,  # type: ignore[arg-type]
                score_scale=1.0,
                log_q=q,
                mask=mask,
                include_positive=include_positive,  # noqa: B023
                reduction="none",
            )

        assert torch.autograd.gradcheck(loss, inputs)


def test_psl_tanh_is_finite_at_extreme_gaps_and_matches_float64() -> None:
    pos = torch.tensor([1e4, -1e4, 0.0])
    neg = torch.tensor([[-1e4, 0.0], [1e4, 1e4], [-3e4, 3e4]])
    p, n = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    out = pairwise_softmax_loss(p, n, temperature=0.05, include_positive=False, reduction="none")
    out.sum().backward()
    assert bool(torch.isfinite(out).all())
    assert p.grad is not None and n.grad is not None
    assert bool(torch.isfinite(p.grad).all()) and bool(torch.isfinite(n.grad).all())
    expected = psl_formula(
        pos.double(),
        neg.double(),
        tau=0.05,
        scale=2.0,
        activation="tanh",
        log_q=None,
        mask=None,
        include_positive=False,
    )
    torch.testing.assert_close(
        out.double(), torch.tensor(expected, dtype=F64), rtol=1e-5, atol=1e-3
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_psl_half_precision_is_computed_in_float32(dtype: torch.dtype) -> None:
    pos, neg, mask, _, _ = random_batch(15)
    out = pairwise_softmax_loss(pos.to(dtype), neg.to(dtype), mask=mask, reduction="none")
    assert out.dtype == dtype
    want = pairwise_softmax_loss(
        pos.to(dtype).float(), neg.to(dtype).float(), mask=mask, reduction="none"
    )
    torch.testing.assert_close(out, want.to(dtype))


def test_psl_mask_and_log_q_broadcast_like_the_softmax_loss() -> None:
    pos, neg, _, log_q, _ = random_batch(17)
    columns = torch.tensor([False, True, False, False, True, False, False])
    full = pairwise_softmax_loss(
        pos, neg, log_q=log_q.expand(6, 7), mask=columns.expand(6, 7), reduction="none"
    )
    torch.testing.assert_close(
        pairwise_softmax_loss(pos, neg, log_q=log_q, mask=columns, reduction="none"), full
    )
    shifted = pairwise_softmax_loss(pos, neg, log_q=0.5, include_positive=False, reduction="none")
    torch.testing.assert_close(
        shifted, pairwise_softmax_loss(pos, neg, include_positive=False, reduction="none") - 0.5
    )


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_psl_reductions_agree_with_none(reduction: str) -> None:
    pos, neg, mask, log_q, _ = random_batch(16)
    terms = pairwise_softmax_loss(pos, neg, log_q=log_q, mask=mask, reduction="none")
    assert terms.shape == (6,)
    reduced = pairwise_softmax_loss(pos, neg, log_q=log_q, mask=mask, reduction=reduction)  # type: ignore[arg-type]
    torch.testing.assert_close(reduced, terms.mean() if reduction == "mean" else terms.sum())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"activation": "sigmoid"},
            ValueError,
            r"activation must be one of \('tanh', 'atan', 'relu', 'exp'\), got 'sigmoid'",
        ),
        ({"activation": 1}, ValueError, "activation must be one of .* got 1"),
        ({"score_scale": 0.0}, ValueError, r"score_scale must be a finite float > 0, got 0\.0"),
        ({"score_scale": math.nan}, ValueError, r"score_scale must be a finite float > 0, got nan"),
        ({"score_scale": "2"}, TypeError, "score_scale must be a positive float, got '2'"),
        ({"eps": 0.0}, ValueError, r"eps must be a float in \(0, 1\), got 0\.0"),
        ({"eps": 1.0}, ValueError, r"eps must be a float in \(0, 1\), got 1\.0"),
        ({"eps": math.nan}, ValueError, r"eps must be a float in \(0, 1\), got nan"),
        ({"eps": None}, TypeError, r"eps must be a float in \(0, 1\), got None \(NoneType\)"),
        ({"temperature": 0}, ValueError, "temperature must be a finite float > 0"),
        ({"include_positive": "no"}, TypeError, "include_positive must be a bool"),
        ({"reduction": "Mean"}, ValueError, "reduction must be one of"),
        (
            {"log_q": torch.zeros(3)},
            ValueError,
            r"log_q must broadcast to the negatives' shape \(2, 4\)",
        ),
        ({"mask": torch.zeros(2, 4, dtype=torch.int8)}, TypeError, "mask must be a bool tensor"),
        ({"neg_scores": torch.zeros(2)}, ValueError, r"neg_scores must have shape \(B, K\)"),
        ({"pos_scores": torch.zeros(3)}, ValueError, "same batch size"),
        (
            {"pos_scores": torch.zeros(2, dtype=torch.int64)},
            TypeError,
            "pos_scores must be a floating-point tensor",
        ),
    ],
)
def test_psl_rejects_bad_inputs(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    args: dict[str, object] = {"pos_scores": torch.zeros(2), "neg_scores": torch.zeros(2, 4)}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        pairwise_softmax_loss(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- PSL: fused over vectors


def psl_vectors(
    seed: int, shared: int = 4, own: int = 3, batch: int = 6, dim: int = 3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Float64 positives' scores, user vectors, shared and per-row item vectors (or None)."""
    gen = torch.Generator().manual_seed(seed)
    users = torch.randn(batch, dim, dtype=F64, generator=gen)
    items = torch.randn(shared, dim, dtype=F64, generator=gen) if shared else None
    rows = torch.randn(batch, own, dim, dtype=F64, generator=gen) if own else None
    pos = torch.randn(batch, dtype=F64, generator=gen)
    return pos, users, items, rows


def concatenated_scores(
    users: torch.Tensor, items: torch.Tensor | None, rows: torch.Tensor | None
) -> torch.Tensor:
    parts = [] if items is None else [users @ items.T]
    if rows is not None:
        parts.append((rows @ users[:, :, None]).squeeze(2))
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize(("shared", "own"), [(4, 3), (7, 0), (0, 7)])
@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "atan", "relu", "exp"])
def test_psl_from_vectors_is_the_formula_with_the_scores_paths_gradients(
    activation: str, include_positive: bool, shared: int, own: int
) -> None:
    pos, users, items, rows = psl_vectors(40, shared, own)
    _, _, mask, log_q, _ = random_batch(41)  # (6, 7): row 1 all masked, row 2 none
    options = {
        "temperature": 0.3,
        "activation": activation,
        "score_scale": 1.0,  # gaps below -1: floored for relu and atan
        "mask": mask,
        "include_positive": include_positive,
        "reduction": "none",
    }
    given = (pos, users, items, rows, log_q)

    def leaves() -> list[torch.Tensor | None]:
        return [None if x is None else x.clone().requires_grad_() for x in given]

    fused_in, plain_in = leaves(), leaves()
    p, u, i, r, q = fused_in
    fused = pairwise_softmax_loss_from_vectors(p, u, i, r, log_q=q, **options)  # type: ignore[arg-type]
    p, u, i, r, q = plain_in
    plain = pairwise_softmax_loss(p, concatenated_scores(u, i, r), log_q=q, **options)  # type: ignore[arg-type]
    expected = psl_formula(
        pos,
        concatenated_scores(users, items, rows),
        tau=0.3,
        scale=1.0,
        activation=activation,
        log_q=log_q,
        mask=mask,
        include_positive=include_positive,
    )
    torch.testing.assert_close(fused, torch.tensor(expected, dtype=F64))
    assert fused[1].item() == 0.0  # every negative masked
    weights = torch.arange(1, 7, dtype=F64)
    (fused * weights).sum().backward()
    (plain * weights).sum().backward()
    for a, b in zip(fused_in, plain_in, strict=True):
        if a is None or b is None:
            assert a is b
            continue
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(a.grad, b.grad)
    assert fused_in[0] is not None and fused_in[0].grad is not None
    assert fused_in[0].grad[1].item() == 0.0


@pytest.mark.parametrize("activation", ["tanh", "atan", "relu"])
def test_psl_from_vectors_gradcheck_first_and_second_order(activation: str) -> None:
    pos, users, items, rows = psl_vectors(42, 3, 2, batch=4)
    _, _, mask, log_q, _ = random_batch(43, batch=4, k=5)
    inputs = tuple(x.clone().requires_grad_() for x in (pos, users, items, rows, log_q))  # type: ignore[union-attr]

    def loss(
        p: torch.Tensor, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor, q: torch.Tensor
    ) -> torch.Tensor:
        return pairwise_softmax_loss_from_vectors(
            p,
            u,
            i,
            r,
            temperature=0.7,
            activation=activation,  # type: ignore[arg-type]
            score_scale=1.5,
            log_q=q,
            mask=mask,
            include_positive=False,
            reduction="none",
        )

    assert torch.autograd.gradcheck(loss, inputs)
    assert torch.autograd.gradgradcheck(loss, inputs)


@pytest.mark.parametrize("activation", ["tanh", "atan", "relu"])
@pytest.mark.parametrize("block_scores", [8, 2**19])
def test_psl_from_vectors_over_a_candidate_sets_mask_in_blocks(
    monkeypatch: pytest.MonkeyPatch, block_scores: int, activation: str
) -> None:
    # 8 scores per block: a block of one row each (the rows' hits split across blocks).
    monkeypatch.setattr(functional_module, "_BLOCK_SCORES", block_scores)
    pairs = {u: [u % 7, (u + 3) % 11] for u in range(12)}
    index = PositiveIndex.from_dict(pairs, num_items=30)
    torch.manual_seed(0)
    model = MFModel(12, 30, dim=8, similarity="cosine")
    hard = HardNegativeSampler(index, 8, num_hard=2, num_random=0, generator=1)
    sampler = CandidateSampler(index, 16, in_batch=True, hard=hard, generator=0)
    users, pos_items = index.pairs()
    cands = sampler.sample(users, pos_items, model)
    assert bool(cands.mask.any())
    loss_fn = PairwiseSoftmaxLoss(0.05, activation, "none", include_positive=False)  # type: ignore[arg-type]
    fused = loss_fn.from_vectors(
        *model.candidate_vectors(users, pos_items, cands.items, cands.row_items),
        log_q=cands.log_q,
        mask=cands.mask,
    )
    fused_grads = torch.autograd.grad(fused.sum(), list(model.parameters()))
    plain = loss_fn(
        model(users, pos_items), cands.scores(model, users), log_q=cands.log_q, mask=cands.mask
    )
    plain_grads = torch.autograd.grad(plain.sum(), list(model.parameters()))
    torch.testing.assert_close(fused, plain)
    for a, b in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("include_positive", [True, False])
def test_psl_from_vectors_with_exp_is_the_fused_softmax(include_positive: bool) -> None:
    pos, users, items, rows = psl_vectors(44)
    _, _, mask, log_q, _ = random_batch(45)
    options = {
        "log_q": log_q,
        "mask": mask,
        "include_positive": include_positive,
        "reduction": "none",
    }
    psl = pairwise_softmax_loss_from_vectors(
        pos, users, items, rows, activation="exp", temperature=0.25, score_scale=2.0, **options
    )
    softmax = sampled_softmax_loss_from_vectors(pos, users, items, rows, temperature=0.5, **options)
    torch.testing.assert_close(psl, softmax)


@pytest.mark.parametrize("activation", ["relu", "atan"])
def test_psl_from_vectors_floors_the_log_of_zero_with_zero_gradients(activation: str) -> None:
    # Row 0: every gap far below -1; row 1: one floored, one not (as the scores path's test).
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    items = torch.tensor([[-4.0, -3.0], [-5.0, 0.5], [-6.0, -2.5]], requires_grad=True)
    pos = torch.tensor([3.0, 0.0], requires_grad=True)
    mask = torch.tensor([[False, False, False], [False, False, True]])
    out = pairwise_softmax_loss_from_vectors(
        pos,
        users,
        items,
        temperature=0.1,
        activation=activation,  # type: ignore[arg-type]
        score_scale=1.0,
        mask=mask,
        include_positive=False,
        reduction="none",
    )
    assert out[0].item() == pytest.approx(math.log(3) + math.log(1e-6) / 0.1, rel=1e-6)
    out.sum().backward()
    assert pos.grad is not None and users.grad is not None and items.grad is not None
    assert pos.grad[0].item() == 0.0 and users.grad[0].abs().sum().item() == 0.0
    assert items.grad[0, 1].item() == 0.0  # item 0 is floored for row 1 too
    assert items.grad[1, 1].item() != 0.0 and pos.grad[1].item() != 0.0


def test_psl_from_vectors_second_backward_equals_the_first() -> None:
    pos, users, items, rows = psl_vectors(46)
    inputs = [x.clone().requires_grad_() for x in (pos, users, items, rows)]  # type: ignore[union-attr]
    out = pairwise_softmax_loss_from_vectors(*inputs, temperature=0.2, include_positive=False)
    first = torch.autograd.grad(out, inputs, retain_graph=True)
    second = torch.autograd.grad(out, inputs)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_psl_from_vectors_half_precision_is_computed_in_float32(dtype: torch.dtype) -> None:
    pos, users, items, rows = (x.to(dtype) for x in psl_vectors(47))  # type: ignore[union-attr]
    out = pairwise_softmax_loss_from_vectors(pos, users, items, rows, reduction="none")
    assert out.dtype == dtype
    want = pairwise_softmax_loss_from_vectors(
        pos.float(), users.float(), items.float(), rows.float(), reduction="none"
    )
    torch.testing.assert_close(out, want.to(dtype))


@pytest.mark.parametrize("activation", ["tanh", "atan", "relu", "exp"])
def test_the_in_place_activation_is_the_log_activation_and_its_derivative(activation: str) -> None:
    # The fused forward's kernel against the scores path's log sigma(d) and autograd's derivative.
    d = torch.cat(
        [torch.linspace(-3.0, 3.0, 61, dtype=F64), torch.tensor([-20.0, 20.0], dtype=F64)]
    )
    leaf = d.clone().requires_grad_()
    want = functional_module._log_activation(leaf, activation, 1e-6)  # type: ignore[arg-type]
    (slope,) = torch.autograd.grad(want.sum(), leaf)
    got, fac = d.clone(), torch.empty_like(d)
    functional_module._log_activation_into(got, fac, activation, 1e-6)  # type: ignore[arg-type]
    torch.testing.assert_close(got, want.detach())
    torch.testing.assert_close(fac, slope)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"activation": "sigmoid"}, ValueError, r"activation must be one of \('tanh'"),
        ({"eps": 0.0}, ValueError, r"eps must be a float in \(0, 1\), got 0\.0"),
        ({"score_scale": -1.0}, ValueError, "score_scale must be a finite float > 0"),
        ({"item_vectors": None}, ValueError, "item_vectors and row_vectors are both None"),
        (
            {"user_vectors": torch.zeros(2, 4)},
            ValueError,
            r"item_vectors must have shape \(K, d\) with d=4",
        ),
        (
            {"pos_scores": torch.zeros(3)},
            ValueError,
            r"pos_scores must have shape \(B,\) or \(B, 1\) with B=2",
        ),
        ({"mask": torch.zeros(2, 5)}, TypeError, "mask must be a bool tensor"),
        ({"log_q": torch.zeros(4)}, ValueError, "log_q must broadcast"),
        (
            {"item_vectors": torch.zeros(5, 3, dtype=torch.int64)},
            TypeError,
            "item_vectors must be a floating-point tensor",
        ),
    ],
)
def test_psl_from_vectors_rejects_bad_inputs(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    args: dict[str, object] = {
        "pos_scores": torch.zeros(2),
        "user_vectors": torch.zeros(2, 3),
        "item_vectors": torch.zeros(5, 3),
    }
    args.update(kwargs)
    with pytest.raises(error, match=message):
        pairwise_softmax_loss_from_vectors(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- a candidate set


def test_both_losses_take_a_candidate_set_through_scores_and_slatk_through_vectors() -> None:
    pairs = {u: [u % 7, (u + 3) % 11] for u in range(12)}
    index = PositiveIndex.from_dict(pairs, num_items=30)
    torch.manual_seed(0)
    model = MFModel(12, 30, dim=8, similarity="cosine").double()
    hard = HardNegativeSampler(index, 8, num_hard=2, num_random=0, generator=1)
    sampler = CandidateSampler(index, 16, in_batch=True, hard=hard, generator=0)
    users, pos_items = index.pairs()
    cands = sampler.sample(users, pos_items, model)
    assert bool(cands.mask.any())  # in-batch columns hold known positives: masked
    thresholds = estimate_topk_thresholds(model, index, 5, 20, generator=2)[users]
    pos = model(users, pos_items)
    scores = cands.scores(model, users)
    log_q = cands.log_q.double()

    slatk = SoftmaxAtKLoss(0.2, 1.5, "none", include_positive=False)
    by_scores = slatk(pos, scores, thresholds, log_q=log_q, mask=cands.mask)
    expected = slatk_formula(
        pos.detach(),
        scores.detach(),
        thresholds,
        t=0.2,
        tau_w=1.5,
        log_q=log_q,
        mask=cands.mask,
        neg_weight=1.0,
        include_positive=False,
    )
    torch.testing.assert_close(by_scores, torch.tensor(expected, dtype=F64))
    vectors = model.candidate_vectors(users, pos_items, cands.items, cands.row_items)
    by_vectors = slatk.from_vectors(*vectors, thresholds=thresholds, log_q=log_q, mask=cands.mask)
    torch.testing.assert_close(by_vectors, by_scores)

    psl = PairwiseSoftmaxLoss(0.1, "tanh", "none")
    out = psl(pos, scores, log_q=log_q, mask=cands.mask)
    expected = psl_formula(
        pos.detach(),
        scores.detach(),
        tau=0.1,
        scale=2.0,
        activation="tanh",
        log_q=log_q,
        mask=cands.mask,
        include_positive=True,
    )
    torch.testing.assert_close(out, torch.tensor(expected, dtype=F64))
    (by_vectors.mean() + out.mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------------- the threshold estimate


def small_problem() -> tuple[PositiveIndex, MFModel]:
    gen = torch.Generator().manual_seed(20)
    pairs = {u: torch.randperm(40, generator=gen)[: 1 + u % 6].tolist() for u in range(15)}
    index = PositiveIndex.from_dict(pairs, num_items=40)
    torch.manual_seed(1)
    return index, MFModel(15, 40, dim=4).double()


def brute_force(model: MFModel, k: int) -> torch.Tensor:
    with torch.no_grad():
        scores = model.score_all(torch.arange(model.num_users))
    return torch.sort(scores, dim=1, descending=True).values[:, k - 1]


@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("batch_size", [1, 4, 1024])
def test_every_item_as_candidates_is_the_brute_force_top_k(k: int, batch_size: int) -> None:
    index, model = small_problem()
    got = estimate_topk_thresholds(model, index, k, None, batch_size=batch_size)
    assert got.shape == (15,) and got.dtype == F64 and not got.requires_grad
    torch.testing.assert_close(got, brute_force(model, k), rtol=0, atol=0)
    some = torch.tensor([3, 0, 14, 3])
    torch.testing.assert_close(
        estimate_topk_thresholds(model, index, k, None, users=some), got[some]
    )


@pytest.mark.parametrize("k", [1, 5, 20])
def test_sampled_candidates_never_exceed_the_exact_threshold(k: int) -> None:
    index, model = small_problem()
    exact = brute_force(model, k)
    samplers: list[object] = [
        3,
        60,
        UniformSampler(index, 7, generator=3),
        HardNegativeSampler(index, 10, num_hard=3, num_random=2, generator=4),
        SharedNegativeSampler(index, 25, generator=5),
        SharedNegativeSampler(index, 25, candidates="popularity", generator=6),
    ]
    for candidates in samplers:
        seed = 7 if isinstance(candidates, int) else None
        got = estimate_topk_thresholds(model, index, k, candidates, batch_size=4, generator=seed)  # type: ignore[arg-type]
        assert bool((got <= exact).all()), candidates
    # 2000 uniform draws from 34..39 non-positives miss an item with probability < 1e-30:
    # every item is then scored once, which is the exact answer.
    torch.testing.assert_close(
        estimate_topk_thresholds(model, index, k, 2000, generator=8), exact, rtol=0, atol=0
    )


def test_exact_when_the_top_k_are_known_positives() -> None:
    index = PositiveIndex.from_dict({0: [7, 8, 9], 1: [0, 1], 2: []}, num_items=10)

    def scorer(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (items * (1 - 2 * (users == 1))).double()  # user 1 prefers low ids

    got = estimate_topk_thresholds(scorer, index, 2, 1, generator=0)
    assert got[0].item() == 8.0 and got[1].item() == -1.0  # top 2 are positives: exact
    assert got[2].item() == -math.inf  # no positive and one candidate: fewer than 2 scored
    assert estimate_topk_thresholds(scorer, index, 11, None)[0].item() == -math.inf  # k > items


def test_repeated_draws_count_once() -> None:
    # Without positives, item ids as scores, K = 2 and 50 draws from 3 items: counting a
    # repeated draw twice would give 2 (item 2 drawn twice) instead of the exact 1.
    index = PositiveIndex.from_dict({0: []}, num_items=3, num_users=40)
    got = estimate_topk_thresholds(lambda u, i: i.double() + 0 * u, index, 2, 50, generator=0)
    assert torch.equal(got, torch.ones(40, dtype=F64))


def test_shared_candidates_drop_the_known_positives() -> None:
    index = PositiveIndex.from_dict({0: [4, 5], 1: [0]}, num_items=6)
    sampler = SharedNegativeSampler(index, 200, generator=0)  # every item drawn, surely
    got = estimate_topk_thresholds(lambda u, i: i.double() + 0 * u, index, 2, sampler)
    assert got.tolist() == [4.0, 4.0]  # positives 4 and 5 counted once each


def test_a_user_with_every_item_positive_uses_the_positives() -> None:
    index = PositiveIndex.from_dict({0: [0, 1, 2], 1: [2]}, num_items=3)
    got = estimate_topk_thresholds(lambda u, i: i.double() + 0 * u, index, 2, 5, generator=0)
    assert got.tolist() == [1.0, 1.0]


def test_seeded_estimates_are_reproducible() -> None:
    index, model = small_problem()
    first = estimate_topk_thresholds(model, index, 5, 4, generator=11)
    assert torch.equal(first, estimate_topk_thresholds(model, index, 5, 4, generator=11))
    gen = torch.Generator().manual_seed(11)
    assert torch.equal(first, estimate_topk_thresholds(model, index, 5, 4, generator=gen))
    assert not torch.equal(first, estimate_topk_thresholds(model, index, 5, 4, generator=gen))


def exact_distribution(
    num_items: int, positives: set[int], draws: int, k: int
) -> dict[float, float]:
    """The estimate's distribution, enumerated over every sequence of draws (item = score)."""
    complement = [i for i in range(num_items) if i not in positives]
    counts: Counter[float] = Counter()
    for drawn in itertools.product(complement, repeat=draws):
        pooled = sorted(positives | set(drawn), reverse=True)
        counts[float(pooled[k - 1]) if len(pooled) >= k else -math.inf] += 1
    total = len(complement) ** draws
    return {value: count / total for value, count in counts.items()}


@pytest.mark.parametrize(("draws", "k"), [(3, 2), (4, 3)])
def test_the_estimate_has_its_exact_distribution(draws: int, k: int) -> None:
    """Chi-square goodness of fit of 10,000 seeded users (independent rows) at level 0.001.

    The users share the positive 1 among 6 items and score items by id, so each row's
    estimate is one draw from the enumerated distribution (with (4, 3), 0.8% of rows
    score fewer than 3 distinct items: -inf). Moving 3 percentage points of probability
    between the two largest cells is detected with power above 0.99 (noncentral
    chi-square, 4 degrees of freedom, noncentrality 50 or more).
    """
    users = 10_000
    index = PositiveIndex.from_pairs(
        torch.arange(users), torch.ones(users, dtype=torch.int64), num_items=6
    )
    got = estimate_topk_thresholds(
        lambda u, i: i.double() + 0 * u, index, k, draws, batch_size=2500, generator=1234
    )
    want = exact_distribution(6, {1}, draws, k)
    values = sorted(want)
    observed = [int((got == v).sum()) for v in values]
    assert sum(observed) == users
    result = stats.chisquare(observed, [want[v] * users for v in values])
    assert result.pvalue > 1e-3, (observed, want)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k": 0}, ValueError, "k must be >= 1, got 0"),
        ({"k": 2.0}, TypeError, r"k must be an int, got 2\.0"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ({"candidates": 0}, ValueError, "candidates must be >= 1, got 0"),
        (
            {"candidates": 1.5},
            TypeError,
            r"candidates must be an int, a UniformSampler, .* got 1\.5 \(float\)",
        ),
        ({"candidates": True}, TypeError, r"candidates must be an int, .* got True \(bool\)"),
        ({"candidates": "all"}, TypeError, "candidates must be an int"),
        (
            {"generator": "seed"},
            TypeError,
            "generator must be None, an int seed or a torch.Generator",
        ),
        ({"users": torch.tensor([[0]])}, ValueError, r"users must be 1-D, got shape \(1, 1\)"),
        (
            {"users": torch.tensor([0, 15])},
            ValueError,
            r"users must be user ids in \[0, 15\), got 15",
        ),
        ({"users": torch.tensor([0.0])}, TypeError, "users must hold integer ids"),
        ({"scorer": "model"}, TypeError, "scorer must be callable, got str"),
        ({"index": {0: [1]}}, TypeError, "index must be a PositiveIndex, got dict"),
        (
            {"scorer": lambda u, i: i.float().sum(dim=1)},
            ValueError,
            r"must return scores of shape \(15, 6\) for users of shape \(15, 1\)",
        ),
        (
            {"scorer": lambda u, i: i + 0 * u},
            TypeError,
            "scorer must return a floating-point tensor, got torch.int64",
        ),
    ],
)
def test_the_estimate_rejects_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    index, model = small_problem()
    args: dict[str, object] = {"scorer": model, "index": index, "k": 2, "candidates": 4}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        estimate_topk_thresholds(**args)  # type: ignore[arg-type]


def test_the_estimate_rejects_a_sampler_of_another_index_or_with_a_generator() -> None:
    index, model = small_problem()
    other = PositiveIndex.from_dict({0: [1]}, num_items=40, num_users=15)
    with pytest.raises(ValueError, match="candidates samples another index"):
        estimate_topk_thresholds(model, index, 2, UniformSampler(other, 3))
    with pytest.raises(ValueError, match="generator is for an int candidates"):
        estimate_topk_thresholds(model, index, 2, UniformSampler(index, 3), generator=0)


@CUDA
def test_on_cuda_the_losses_match_the_cpu_and_the_estimate_is_exact_or_below() -> None:
    pos, neg, mask, log_q, beta = random_batch(30)
    for fn, options in (
        (softmax_at_k_loss, {"thresholds": beta, "detach_weight": False}),
        (pairwise_softmax_loss, {"activation": "relu", "score_scale": 1.0}),
    ):
        on_cpu = fn(pos, neg, log_q=log_q, mask=mask, reduction="none", **options)  # type: ignore[operator]
        on_gpu = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in options.items()}
        got = fn(  # type: ignore[operator]
            pos.cuda(), neg.cuda(), log_q=log_q.cuda(), mask=mask.cuda(), reduction="none", **on_gpu
        )
        torch.testing.assert_close(got.cpu(), on_cpu)
    vec = psl_vectors(48, 5, 2)
    options = {"temperature": 0.2, "log_q": log_q, "mask": mask, "reduction": "none"}
    on_cpu = pairwise_softmax_loss_from_vectors(*vec, **options)  # type: ignore[arg-type]
    got = pairwise_softmax_loss_from_vectors(
        *(x.cuda() for x in vec),  # type: ignore[union-attr]
        **{k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in options.items()},  # type: ignore[arg-type]
    )
    torch.testing.assert_close(got.cpu(), on_cpu)
    index, model = small_problem()
    index, model = index.to("cuda"), model.cuda()
    exact = estimate_topk_thresholds(model, index, 5, None)
    assert exact.device.type == "cuda"
    torch.testing.assert_close(exact.cpu(), brute_force(model.cpu(), 5))
    model.cuda()
    sampled = estimate_topk_thresholds(model, index, 5, 8, generator=0)
    shared = estimate_topk_thresholds(
        model, index, 5, SharedNegativeSampler(index, 16, generator=0)
    )
    assert bool((sampled <= exact).all()) and bool((shared <= exact).all())
