"""Ranking losses as plain functions (pairwise, pointwise, sampled softmax): the maths lives here.

:mod:`negsample.losses` wraps each function in a thin ``nn.Module``; both take
the scores of a batch's positives, shape ``(B,)`` or ``(B, 1)``, and of its
negatives, shape ``(B, N)`` (a ``(B,)`` tensor counts as ``N = 1``), as returned
by ``model(users, pos_items)`` and ``model(users.unsqueeze(1), neg_items)``.

Both losses are written with ``softplus`` (``-log(sigmoid(x)) = softplus(-x)``),
never as ``log(sigmoid(x))``, so values and gradients stay finite for any finite
score difference. Half-precision inputs (``float16``, ``bfloat16``) are computed
in ``float32`` and the result cast back to the inputs' dtype.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from negsample._checks import _short

__all__ = ["Reduction", "bce_loss", "bpr_loss", "sampled_softmax_loss"]

Reduction = Literal["mean", "sum", "none"]
"""How a loss combines its per-term values, ``"mean"``, ``"sum"`` or ``"none"``."""

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: Any) -> Reduction:
    """Return ``reduction`` if it is one of ``"mean"``, ``"sum"``, ``"none"``."""
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {_short(reduction)}")
    return reduction  # type: ignore[return-value]


def _check_neg_weight(neg_weight: Any) -> float | None:
    """Return ``neg_weight`` as a float if it is ``None`` or a finite real ``>= 0``."""
    if neg_weight is None:
        return None
    if isinstance(neg_weight, (bool, np.bool_)) or not isinstance(neg_weight, numbers.Real):
        raise TypeError(
            f"neg_weight must be None or a non-negative float, got {_short(neg_weight)} "
            f"({type(neg_weight).__name__})"
        )
    weight = float(neg_weight)
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"neg_weight must be a finite float >= 0, got {weight}")
    return weight


def _check_scores(
    pos_scores: Any, neg_scores: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """Validate a loss's inputs (shapes, dtypes, devices only; never reads values).

    Returns:
        ``pos`` as ``(B, 1)`` and ``neg`` as ``(B, N)``, both cast to the dtype the
        maths runs in, and the dtype of the result (torch's promotion of the two).
    """
    for name, value in (("pos_scores", pos_scores), ("neg_scores", neg_scores)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a floating-point tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if pos_scores.ndim == 2 and pos_scores.shape[1] == 1:
        pos = pos_scores
    elif pos_scores.ndim == 1:
        pos = pos_scores.unsqueeze(1)
    else:
        raise ValueError(
            f"pos_scores must have shape (B,) or (B, 1), got shape {tuple(pos_scores.shape)}"
        )
    if neg_scores.ndim == 2:
        neg = neg_scores
    elif neg_scores.ndim == 1:
        neg = neg_scores.unsqueeze(1)
    else:
        raise ValueError(
            f"neg_scores must have shape (B, N) or (B,), got shape {tuple(neg_scores.shape)}"
        )
    if pos.shape[0] != neg.shape[0]:
        raise ValueError(
            f"pos_scores and neg_scores must have the same batch size B, got shapes "
            f"{tuple(pos_scores.shape)} and {tuple(neg_scores.shape)}"
        )
    if pos.shape[0] == 0:
        raise ValueError(
            f"the batch is empty (B = 0): pos_scores has shape {tuple(pos_scores.shape)}"
        )
    if neg.shape[1] == 0:
        raise ValueError(f"neg_scores has no negatives (N = 0): shape {tuple(neg_scores.shape)}")
    if pos.device != neg.device:
        raise ValueError(
            f"pos_scores and neg_scores must be on the same device, got {pos.device} and {neg.device}"
        )
    out_dtype = torch.promote_types(pos.dtype, neg.dtype)
    work_dtype = torch.promote_types(out_dtype, torch.float32)
    return pos.to(work_dtype), neg.to(work_dtype), out_dtype


def _reduce(terms: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return terms.mean()
    if reduction == "sum":
        return terms.sum()
    return terms


def bpr_loss(
    pos_scores: torch.Tensor, neg_scores: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Bayesian personalised ranking loss: ``-log(sigmoid(pos - neg))`` per pair.

    Each row's positive is paired with each of its ``N`` negatives, and the
    per-pair term is computed as ``softplus(neg - pos)``, which equals
    ``-log(sigmoid(pos - neg))`` but stays finite (with a finite gradient) for
    any finite difference, e.g. ``+-1e4`` in ``float32``.

    Args:
        pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
        neg_scores: Scores of the negatives, shape ``(B, N)``; shape ``(B,)`` is
            read as ``N = 1``.
        reduction: ``"mean"`` (average over the ``B * N`` pairs), ``"sum"``, or
            ``"none"`` (the ``(B, N)`` per-pair terms).

    Returns:
        A scalar, or a ``(B, N)`` tensor for ``reduction="none"``, in the
        promoted dtype of the two inputs.

    Raises:
        TypeError: If a score tensor is not floating point (integer, bool, complex).
        ValueError: For an unknown ``reduction``, wrong shapes, differing batch
            sizes, an empty batch (``B = 0``) or no negatives (``N = 0``), or
            inputs on different devices.

    Example:
        >>> pos = torch.tensor([2.0, 0.0])
        >>> neg = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
        >>> bpr_loss(pos, neg, reduction="none")
        tensor([[0.1269, 0.6931],
                [0.6931, 0.6931]])
        >>> bpr_loss(pos, neg)
        tensor(0.5516)
    """
    reduction = _check_reduction(reduction)
    pos, neg, out_dtype = _check_scores(pos_scores, neg_scores)
    terms = F.softplus(neg - pos)
    return _reduce(terms, reduction).to(out_dtype)


def bce_loss(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    reduction: Reduction = "mean",
    neg_weight: float | None = None,
) -> torch.Tensor:
    """Binary cross-entropy with logits: positives labelled 1, negatives labelled 0.

    The terms are ``softplus(-pos)`` for each positive (``-log(sigmoid(pos))``)
    and ``neg_weight * softplus(neg)`` for each negative
    (``-neg_weight * log(1 - sigmoid(neg))``), computed stably. With ``B`` rows
    and ``N`` negatives per row there are ``B + B * N`` terms:

    * ``"mean"``: ``(sum of positive terms + sum of weighted negative terms) / (B + B * N)``.
      The divisor does not change with ``neg_weight`` (as in torch's
      ``binary_cross_entropy_with_logits(..., weight=...)``).
    * ``"sum"``: the same numerator, undivided.
    * ``"none"``: a ``(B, 1 + N)`` tensor whose column 0 holds the positive terms
      and columns ``1..N`` the weighted negative terms.

    Args:
        pos_scores: Logits of the positives, shape ``(B,)`` or ``(B, 1)``.
        neg_scores: Logits of the negatives, shape ``(B, N)``; shape ``(B,)`` is
            read as ``N = 1``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``, as above.
        neg_weight: Factor on every negative term, a finite float ``>= 0``;
            ``None`` means 1. For example ``1 / N`` weighs a row's ``N``
            negatives together as much as its one positive.

    Returns:
        A scalar, or a ``(B, 1 + N)`` tensor for ``reduction="none"``, in the
        promoted dtype of the two inputs.

    Raises:
        TypeError: If a score tensor is not floating point, or ``neg_weight`` is
            not a real number.
        ValueError: For an unknown ``reduction``, a negative or non-finite
            ``neg_weight``, wrong shapes, differing batch sizes, an empty batch or
            no negatives, or inputs on different devices.

    Example:
        >>> pos = torch.tensor([0.0, 1.0])
        >>> neg = torch.tensor([[0.0, -1.0], [2.0, 0.0]])
        >>> bce_loss(pos, neg, reduction="none")
        tensor([[0.6931, 0.6931, 0.3133],
                [0.3133, 2.1269, 0.6931]])
        >>> bce_loss(pos, neg, neg_weight=0.5, reduction="sum")
        tensor(2.9197)
    """
    reduction = _check_reduction(reduction)
    weight = _check_neg_weight(neg_weight)
    pos, neg, out_dtype = _check_scores(pos_scores, neg_scores)
    neg_terms = F.softplus(neg)
    if weight is not None:
        neg_terms = neg_terms * weight
    terms = torch.cat([F.softplus(-pos), neg_terms], dim=1)
    return _reduce(terms, reduction).to(out_dtype)


def _check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real ``> 0``, else an error naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a positive float, got {_short(value)} ({type(value).__name__})"
        )
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite float > 0, got {number}")
    return number


def _check_temperature(temperature: Any) -> float:
    """Return ``temperature`` as a float if it is a finite real ``> 0``."""
    return _check_positive_float("temperature", temperature)


def _broadcast_to_negatives(name: str, value: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``value`` broadcast to ``neg``'s ``(B, K)`` shape, or a ``ValueError`` naming it."""
    if value.device != neg.device:
        raise ValueError(f"{name} must be on the scores' device {neg.device}, got {value.device}")
    try:
        return value.expand(neg.shape) if value.ndim <= 2 else value.view(-1).expand(neg.shape)
    except RuntimeError as err:
        raise ValueError(
            f"{name} must broadcast to the negatives' shape {tuple(neg.shape)}, "
            f"got shape {tuple(value.shape)}"
        ) from err


def _check_softmax_neg_weight(neg_weight: Any) -> float:
    """Return ``neg_weight`` as a float if it is a finite real ``> 0``."""
    return _check_positive_float("neg_weight", neg_weight)


def _check_include_positive(include_positive: Any) -> bool:
    """Return ``include_positive`` if it is a bool."""
    if not isinstance(include_positive, (bool, np.bool_)):
        raise TypeError(
            f"include_positive must be a bool, got {_short(include_positive)} "
            f"({type(include_positive).__name__})"
        )
    return bool(include_positive)


def sampled_softmax_loss(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    *,
    temperature: float = 1.0,
    log_q: torch.Tensor | float | None = None,
    mask: torch.Tensor | None = None,
    neg_weight: float = 1.0,
    include_positive: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Sampled softmax (InfoNCE) loss of each positive against its row's negatives.

    Per row, with temperature :math:`T`, positive score :math:`s^+`, negative
    scores :math:`s_k` and negative weight :math:`\lambda` (``neg_weight``):

    .. math::

        \ell = -\frac{s^+}{T} + \lambda \log\Big(e^{s^+/T}
              + \sum_{k \text{ not masked}} e^{s_k/T - \log q_k}\Big)

    With ``include_positive=False`` the :math:`e^{s^+/T}` term leaves the
    normaliser. The defaults (:math:`\lambda = 1`, positive included) are the
    usual sampled softmax, i.e. cross-entropy with the positive as the target.
    ``neg_weight`` :math:`\ne 1` weights the negatives' log-sum-exp against
    the positive's score: the gradient on the positive and the total gradient
    on the negatives stand in the ratio :math:`1 : \lambda` (positive left
    out), which no rescaling of the loss (and so no Adam step size) changes.
    The bilateral softmax loss (BSL) as its authors' code computes it is
    ``include_positive=False, neg_weight=t2, temperature=t1`` with
    ``log_q = log(K)`` (their mean over the ``K`` negatives) or the logQ
    correction below; see the docs page "Softmax losses with many negatives".

    ``log_q`` is subtracted exactly as passed (no constant added); gradients
    flow into it when it requires them (e.g. a learned correction). If the
    ``K`` negatives of a row are drawn i.i.d. from a distribution :math:`q`,
    passing ``log_q = log(K * q)`` makes the sum an unbiased estimate of
    :math:`\sum_i e^{s_i/T}` over the items that are not masked, the full
    softmax's normaliser (the "logQ correction"); ``log_q=None`` subtracts
    nothing (the uncorrected sampled softmax). Masked negatives (``True`` in
    ``mask``, e.g. known positives of the row's user) are left out of the sum;
    a row whose negatives are all masked has loss 0 and zero gradients, with
    either normaliser and any ``neg_weight``.

    Computed from the score differences :math:`(s_k - s^+)/T` with
    ``logsumexp``, so it is finite wherever the exact value is: finite scores
    anywhere in the float range, any temperature down to the dtype's smallest
    positive number (a difference that overflows to :math:`\pm\infty` is one
    whose exponential is exactly 0 or whose loss is :math:`+\infty`).
    ``float16`` and ``bfloat16`` inputs are computed in ``float32`` and the
    result cast back. Gradients of every order are exact: the first one is a
    single pass over the saved exponentials, and under ``create_graph=True``
    (a gradient penalty, ``gradgradcheck``) the backward is itself built from
    differentiable operations.

    Args:
        pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
        neg_scores: Scores of the negatives, shape ``(B, K)``.
        temperature: :math:`T`, a finite float ``> 0``; scores are divided by it.
        log_q: ``None``, a float, or a floating tensor broadcastable to
            ``(B, K)`` (e.g. ``(K,)`` for candidates shared by every row),
            subtracted from each ``s_k / T``.
        mask: ``None`` or a bool tensor broadcastable to ``(B, K)``; ``True``
            drops that negative.
        neg_weight: :math:`\lambda`, a finite float ``> 0`` multiplying the
            log-normaliser.
        include_positive: Whether :math:`e^{s^+/T}` is in the normaliser.
        reduction: ``"mean"`` over the ``B`` rows, ``"sum"``, or ``"none"``
            (the ``(B,)`` per-row losses).

    Returns:
        A scalar, or a ``(B,)`` tensor for ``reduction="none"``, in the
        promoted dtype of the two score tensors.

    Raises:
        TypeError: If a score tensor or ``log_q`` is not floating point, ``mask``
            is not a bool tensor, ``temperature`` or ``neg_weight`` is not a real
            number, or ``include_positive`` is not a bool.
        ValueError: For an unknown ``reduction``, a non-positive or non-finite
            ``temperature`` or ``neg_weight``, wrong or non-broadcastable shapes,
            an empty batch or no negatives, or tensors on different devices.

    Example:
        >>> pos = torch.tensor([2.0, 0.0])
        >>> neg = torch.tensor([[0.0, 1.0], [3.0, 3.0]])
        >>> sampled_softmax_loss(pos, neg, reduction="none")
        tensor([0.4076, 3.7177])
        >>> mask = torch.tensor([[False, False], [True, True]])  # row 1: all masked
        >>> sampled_softmax_loss(pos, neg, mask=mask, reduction="none")
        tensor([0.4076, 0.0000])

        With ``K`` uniform negatives out of ``N`` items, ``q = 1 / N`` and the
        corrected sum estimates the normaliser over all ``N`` items:

        >>> num_items, K = 1000, 2
        >>> log_q = torch.log(torch.tensor(K / num_items))
        >>> sampled_softmax_loss(pos, neg, log_q=log_q, reduction="none")
        tensor([5.5318, 9.9078])

        BSL as coded (``t1 = 0.5``, ``t2 = 1.22``): the positive out of the
        normaliser, the negatives' mean weighted by ``t2``:

        >>> sampled_softmax_loss(pos, neg, temperature=0.5, log_q=math.log(2),
        ...                      neg_weight=1.22, include_positive=False, reduction="none")
        tensor([-2.2508,  7.3200])
    """
    reduction = _check_reduction(reduction)
    t = _check_temperature(temperature)
    weight = _check_softmax_neg_weight(neg_weight)
    include = _check_include_positive(include_positive)
    pos, neg, out_dtype = _check_scores(pos_scores, neg_scores)
    if neg_scores.ndim != 2:
        raise ValueError(f"neg_scores must have shape (B, K), got shape {tuple(neg_scores.shape)}")
    shift: Any = log_q  # checked at run time: callers may pass anything
    offsets: torch.Tensor | float | None = None
    if isinstance(shift, torch.Tensor):
        if not shift.is_floating_point():
            raise TypeError(f"log_q must be a floating-point tensor, got dtype {shift.dtype}")
        offsets = _broadcast_to_negatives("log_q", shift.to(neg.dtype), neg)
    elif shift is not None:
        if isinstance(shift, (bool, np.bool_)) or not isinstance(shift, numbers.Real):
            raise TypeError(
                f"log_q must be None, a float or a floating-point tensor, got {_short(shift)}"
            )
        offsets = float(shift)
    drop: torch.Tensor | None = None
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor, got "
                f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}"
            )
        drop = _broadcast_to_negatives("mask", mask, neg)
    terms: torch.Tensor = _SampledSoftmax.apply(  # type: ignore[no-untyped-call]
        pos[:, 0], neg, t, weight, include, offsets, drop
    )
    return _reduce(terms, reduction).to(out_dtype)


def _scaled_differences(
    pos: torch.Tensor,
    neg: torch.Tensor,
    temperature: float,
    offsets: torch.Tensor | float | None,
    drop: torch.Tensor | None,
) -> torch.Tensor:
    """``(s_k - s+) / T - log q_k``, ``-inf`` where masked, from differentiable operations."""
    z = (neg - pos[:, None]) / temperature
    if offsets is not None:
        z = z - offsets
    return z if drop is None else z.masked_fill(drop, -math.inf)


def _outside_scale(temperature: float, weight: float) -> float | None:
    """``T / (lambda - 1)``: ``(lambda - 1) s+ / T`` is ``s+`` divided by it (None for 1)."""
    # Divided, not multiplied by (lambda - 1) / T, which overflows for a tiny T.
    return None if weight == 1.0 else temperature / (weight - 1.0)


# Rows per block of the CPU forward: about 2**17 scores (512 KiB in float32), so that the
# block's passes (difference, offsets, mask, max, exponential, sum) run in the cache
# instead of streaming the whole (B, K) tensor from memory once per pass.
_BLOCK_SCORES = 2**17


def _row_blocks(batch: int, num_negatives: int, device: torch.device) -> list[slice]:
    """Row ranges the forward processes one after another (one range off the CPU)."""
    if device.type != "cpu":
        return [slice(0, batch)]
    rows = max(1, _BLOCK_SCORES // max(num_negatives, 1))
    return [slice(start, start + rows) for start in range(0, batch, rows)]


def _exp_block(
    out: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    temperature: float,
    offsets: torch.Tensor | float | None,
    drop: torch.Tensor | None,
    include: bool,
) -> torch.Tensor:
    """Write ``exp(z - top)`` of one block of rows into ``out``; return ``top`` per row.

    ``z = (s_k - s+) / T - log q_k``, ``-inf`` where masked; ``top`` is the row's
    largest ``z`` (at least 0, the positive's own ``z``, when it is in the
    normaliser), or 0 for a row of ``-inf``.
    """
    # Dividing the difference, not s / T: a finite score over a small T may overflow,
    # a difference that overflows is one whose exponential is exactly 0 (or inf).
    torch.sub(neg, pos[:, None], out=out)
    out.div_(temperature)
    if offsets is not None:
        out.sub_(offsets)
    if drop is not None:
        out.masked_fill_(drop, -math.inf)
    top = out.amax(dim=1)
    if include:
        top = top.clamp_min(0.0)
    # A row of -inf (every negative masked) shifts by 0, not by -inf.
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    out.sub_(top[:, None]).exp_()
    return top


def _exponentials(
    pos: torch.Tensor,
    neg: torch.Tensor,
    temperature: float,
    offsets: torch.Tensor | float | None,
    drop: torch.Tensor | None,
    include: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shifted exponentials ``(B, K)`` and each row's shift ``top`` ``(B,)``, block by block."""
    batch, k = neg.shape
    exp_neg = torch.empty((batch, k), dtype=neg.dtype, device=neg.device)
    blocks = _row_blocks(batch, k, neg.device)
    if len(blocks) == 1:
        return exp_neg, _exp_block(exp_neg, pos, neg, temperature, offsets, drop, include)
    tops = []
    for rows in blocks:
        tops.append(
            _exp_block(
                exp_neg[rows],
                pos[rows],
                neg[rows],
                temperature,
                offsets[rows] if isinstance(offsets, torch.Tensor) else offsets,
                None if drop is None else drop[rows],
                include,
            )
        )
    return exp_neg, torch.cat(tops)


def _has_negatives(drop: torch.Tensor) -> torch.Tensor:
    """Per row, whether some negative is not masked: ``~drop.all(dim=1)``, faster.

    The smallest byte of a bool row is 0 exactly when one entry is ``False``;
    torch's ``amin`` over bytes is vectorised where its ``all`` over bools is
    not (about 30x faster on a (2048, 3076) mask on CPU).
    """
    return drop.view(torch.uint8).amin(dim=1) == 0


class _SampledSoftmax(torch.autograd.Function):
    """Per-row sampled softmax loss with a hand-written backward.

    With ``z_k = (s_k - s+) / T - log q_k`` the loss is
    ``(lambda - 1) s+ / T + lambda * log([1] + sum_k exp(z_k))``. The forward
    keeps the exponentials of the shifted ``z`` (computed in blocks of rows
    that stay in the CPU's cache) and the first backward scales them, in
    place, into the gradient of the scores: one pass, and no new ``(B, K)``
    tensor. A backward that runs again on the same graph (``retain_graph=True``)
    recomputes the exponentials from the saved inputs. The gradient of a masked
    entry is exactly 0 (its exponential is ``exp(-inf) = 0``). Under
    ``create_graph=True`` the backward recomputes the softmax weights from the
    saved inputs with differentiable operations, so higher orders are exact.
    """

    @staticmethod
    def forward(
        ctx: Any,
        pos: torch.Tensor,
        neg: torch.Tensor,
        temperature: float,
        weight: float,
        include: bool,
        offsets: torch.Tensor | float | None,
        drop: torch.Tensor | None,
    ) -> torch.Tensor:
        exp_neg, top = _exponentials(pos, neg, temperature, offsets, drop, include)
        neg_sum = exp_neg.sum(dim=1)
        total = neg_sum + torch.exp(-top) if include else neg_sum
        terms = (top + torch.log(total)) * weight
        outside = _outside_scale(temperature, weight)
        if outside is not None:
            terms = terms + pos / outside
        valid = None
        # With the positive in and lambda = 1 an all-masked row is exactly 0 (log e^0)
        # with zero gradients already: only the other forms pay for finding such rows.
        if drop is not None and not (include and weight == 1.0):
            valid = _has_negatives(drop)
            terms = torch.where(valid, terms, torch.zeros_like(terms))
        tensor_offsets = offsets if isinstance(offsets, torch.Tensor) else None
        ctx.save_for_backward(pos, neg, tensor_offsets, drop, neg_sum, total, valid)
        ctx.options = (temperature, weight, include, offsets if tensor_offsets is None else None)
        # An intermediate, kept on ctx (not saved): the first backward overwrites it.
        ctx.exp_neg = exp_neg
        return terms

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        pos, neg, tensor_offsets, drop, neg_sum, total, valid = ctx.saved_tensors
        temperature, weight, include, float_offsets = ctx.options
        offsets = tensor_offsets if tensor_offsets is not None else float_offsets
        need_pos, need_neg, need_offsets = (ctx.needs_input_grad[i] for i in (0, 1, 5))

        def rows_with_negatives(x: torch.Tensor) -> torch.Tensor:
            return x if valid is None else torch.where(valid, x, torch.zeros_like(x))

        # probs: each negative's softmax weight (B, K); their sum per row (B,).
        if torch.is_grad_enabled():
            # create_graph=True: the weights again, from differentiable operations.
            z = _scaled_differences(pos, neg, temperature, offsets, drop)
            if valid is not None:  # rows of -inf would make NaN weights (then zeroed)
                z = torch.where(valid[:, None], z, torch.zeros_like(z))
            if include:
                z = torch.cat([torch.zeros_like(z[:, :1]), z], dim=1)
            probs = torch.softmax(z, dim=1)
            probs = probs[:, 1:] if include else probs
            row = rows_with_negatives(grad * weight)
            prob_sum = probs.sum(dim=1) if need_pos else None
            grad_neg = probs * (row / temperature)[:, None] if need_neg else None
            grad_offsets = probs * -row[:, None] if need_offsets else None
        else:
            exp_neg = ctx.exp_neg
            if exp_neg is None:
                # A second backward through the graph: the first one used exp_neg up.
                exp_neg = _exponentials(pos, neg, temperature, offsets, drop, include)[0]
            row = rows_with_negatives(grad * weight / total)
            prob_sum = neg_sum
            grad_neg = grad_offsets = None
            if need_offsets:
                grad_offsets = exp_neg * -row[:, None]
            if need_neg:
                # d loss / d s_k = lambda p_k / T: the saved exponentials scaled in place.
                grad_neg = exp_neg.mul_((row / temperature)[:, None])
                ctx.exp_neg = None
        # d loss / d s_k = lambda p_k / T, d loss / d log q_k = -lambda p_k; the
        # positive (z depends on s_k - s+) gets minus the negatives' sum plus the
        # (lambda - 1) / T outside the log.
        grad_pos = None
        if need_pos:
            assert prob_sum is not None
            grad_pos = -prob_sum * (row / temperature)
            outside = _outside_scale(temperature, weight)
            if outside is not None:
                grad_pos = grad_pos + rows_with_negatives(grad / outside)
        return grad_pos, grad_neg, None, None, None, grad_offsets, None
