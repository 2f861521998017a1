"""Ranking losses as plain functions (pairwise, pointwise, softmax family): the maths lives here.

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
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from negsample import _hits
from negsample._checks import _short

__all__ = [
    "Activation",
    "Reduction",
    "bce_loss",
    "bpr_loss",
    "pairwise_softmax_loss",
    "pairwise_softmax_loss_from_vectors",
    "sampled_softmax_loss",
    "sampled_softmax_loss_from_vectors",
    "softmax_at_k_loss",
    "softmax_at_k_loss_from_vectors",
]

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


def _broadcast_to_negatives(
    name: str, value: torch.Tensor, shape: torch.Size, device: torch.device
) -> torch.Tensor:
    """``value`` broadcast to the negatives' ``(B, K)`` shape, or a ``ValueError`` naming it."""
    if value.device != device:
        raise ValueError(f"{name} must be on the scores' device {device}, got {value.device}")
    try:
        return value.expand(shape) if value.ndim <= 2 else value.view(-1).expand(shape)
    except RuntimeError as err:
        raise ValueError(
            f"{name} must broadcast to the negatives' shape {tuple(shape)}, "
            f"got shape {tuple(value.shape)}"
        ) from err


def _check_offsets_and_mask(
    log_q: Any, mask: Any, shape: torch.Size, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor | float | None, torch.Tensor | None]:
    """``log_q`` as ``None``, a float or a ``(B, K)`` view; ``mask`` as ``None`` or a ``(B, K)`` view."""
    offsets: torch.Tensor | float | None = None
    if isinstance(log_q, torch.Tensor):
        if not log_q.is_floating_point():
            raise TypeError(f"log_q must be a floating-point tensor, got dtype {log_q.dtype}")
        offsets = _broadcast_to_negatives("log_q", log_q.to(dtype), shape, device)
    elif log_q is not None:
        if isinstance(log_q, (bool, np.bool_)) or not isinstance(log_q, numbers.Real):
            raise TypeError(
                f"log_q must be None, a float or a floating-point tensor, got {_short(log_q)}"
            )
        offsets = float(log_q)
    drop: torch.Tensor | None = None
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor, got "
                f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}"
            )
        drop = _broadcast_to_negatives("mask", mask, shape, device)
    return offsets, drop


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
    ``logsumexp``, and each row's two halves added in ``float64``, so it is
    finite wherever the exact value is and every difference fits in the
    dtype: finite scores anywhere in the float range, temperatures down to the
    dtype's smallest positive number. A difference that overflows to
    :math:`-\infty` counts as an exponential of 0 (so a row whose every
    difference does, with the positive out of the normaliser, has loss
    :math:`-\infty`); one that overflows to :math:`+\infty` makes the row's loss
    :math:`+\infty`, with the softmax weight shared by those entries and the
    first-order gradients finite (saturated at the dtype's largest value
    where ``1 / T`` overflows them). ``float16`` and ``bfloat16`` inputs are computed in ``float32`` and the
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
    terms, _, out_dtype = _softmax_terms(
        pos_scores, neg_scores, temperature, log_q, mask, neg_weight, include_positive
    )
    return _reduce(terms, reduction).to(out_dtype)


def _softmax_terms(
    pos_scores: Any,
    neg_scores: Any,
    temperature: Any,
    log_q: Any,
    mask: Any,
    neg_weight: Any,
    include_positive: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """:func:`sampled_softmax_loss`'s checks and ``(B,)`` per-row terms.

    Returns:
        The terms and the positives' scores ``(B,)``, both in the dtype the maths
        runs in, and the dtype of the result.
    """
    t = _check_temperature(temperature)
    weight = _check_softmax_neg_weight(neg_weight)
    include = _check_include_positive(include_positive)
    pos, neg, out_dtype = _check_scores(pos_scores, neg_scores)
    if neg_scores.ndim != 2:
        raise ValueError(f"neg_scores must have shape (B, K), got shape {tuple(neg_scores.shape)}")
    offsets, drop = _check_offsets_and_mask(log_q, mask, neg.shape, neg.dtype, neg.device)
    terms: torch.Tensor = _SampledSoftmax.apply(  # type: ignore[no-untyped-call]
        pos[:, 0], neg, t, weight, include, offsets, drop
    )
    return terms, pos[:, 0], out_dtype


def sampled_softmax_loss_from_vectors(
    pos_scores: torch.Tensor,
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor | None = None,
    row_vectors: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    log_q: torch.Tensor | float | None = None,
    mask: torch.Tensor | None = None,
    neg_weight: float = 1.0,
    include_positive: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r""":func:`sampled_softmax_loss` of negatives scored by inner products, computed fused.

    The negatives' scores are the inner products of each row's user vector with
    ``K`` item vectors shared by every row and with ``n`` item vectors of its
    own: the same loss, value and gradients (up to rounding), as

    .. code-block:: python

        neg_scores = torch.cat(
            [user_vectors @ item_vectors.T,                         # (B, K)
             (row_vectors @ user_vectors[:, :, None]).squeeze(2)],  # (B, n)
            dim=1,
        )
        sampled_softmax_loss(pos_scores, neg_scores, temperature=..., log_q=..., mask=...)

    but without the ``(B, K + n)`` score matrix as a tensor of its own: each
    block of rows computes its scores into the buffer of exponentials the
    backward needs anyway (on the CPU, blocks that stay in the cache), and the
    backward turns that buffer into the scores' gradient in place. For
    :class:`~negsample.MFModel` the vectors are
    :meth:`~negsample.MFModel.user_vectors` and
    :meth:`~negsample.MFModel.item_vectors` (normalised for cosine similarity).

    Args:
        pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
        user_vectors: ``(B, d)``, one per row.
        item_vectors: ``(K, d)`` shared by every row, or ``None``.
        row_vectors: ``(B, n, d)``, each row's own, or ``None``; at least one of
            the two, and ``K + n >= 1``.
        temperature: As in :func:`sampled_softmax_loss`.
        log_q: As there, over the ``K + n`` negatives: shared first, then each
            row's own (e.g. a ``(K + n,)`` tensor).
        mask: As there, a bool tensor broadcastable to ``(B, K + n)``.
        neg_weight: As there.
        include_positive: As there.
        reduction: As there.

    Returns:
        A scalar, or ``(B,)`` for ``reduction="none"``, in the promoted dtype of
        the scores and vectors.

    Raises:
        TypeError: If a tensor is not floating point, ``mask`` is not bool, or an
            option has the wrong type.
        ValueError: For wrong or mismatched shapes, no negatives, tensors on
            different devices, or an option out of range.

    Example:
        >>> users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> items = torch.tensor([[1.0, 1.0], [0.0, -1.0], [2.0, 0.0]])  # K = 3 shared
        >>> own = torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]])             # n = 1 per row
        >>> pos = torch.tensor([2.0, 0.0])
        >>> fused = sampled_softmax_loss_from_vectors(pos, users, items, own)
        >>> scores = torch.cat([users @ items.T, (own @ users[:, :, None])[..., 0]], 1)
        >>> torch.allclose(fused, sampled_softmax_loss(pos, scores))
        True
    """
    reduction = _check_reduction(reduction)
    terms, _, out_dtype = _softmax_terms_from_vectors(
        pos_scores,
        user_vectors,
        item_vectors,
        row_vectors,
        temperature,
        log_q,
        mask,
        neg_weight,
        include_positive,
    )
    return _reduce(terms, reduction).to(out_dtype)


def _softmax_terms_from_vectors(
    pos_scores: Any,
    user_vectors: Any,
    item_vectors: Any,
    row_vectors: Any,
    temperature: Any,
    log_q: Any,
    mask: Any,
    neg_weight: Any,
    include_positive: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """:func:`sampled_softmax_loss_from_vectors`'s checks and ``(B,)`` per-row terms.

    Returns:
        As :func:`_softmax_terms`.
    """
    t = _check_temperature(temperature)
    weight = _check_softmax_neg_weight(neg_weight)
    include = _check_include_positive(include_positive)
    vectors = _check_vectors(pos_scores, user_vectors, item_vectors, row_vectors, log_q, mask)
    terms: torch.Tensor = _SampledSoftmaxFromVectors.apply(  # type: ignore[no-untyped-call]
        vectors.pos,
        vectors.users,
        vectors.items,
        vectors.rows,
        t,
        weight,
        include,
        vectors.offsets,
        vectors.drop,
        vectors.hits,
    )
    return terms, vectors.pos, vectors.out_dtype


class _Vectors(NamedTuple):
    """The checked inputs of a loss over vectors, in the dtype the maths runs in."""

    pos: torch.Tensor
    users: torch.Tensor
    items: torch.Tensor | None
    rows: torch.Tensor | None
    offsets: torch.Tensor | float | None
    drop: torch.Tensor | None
    hits: tuple[torch.Tensor, torch.Tensor] | None
    out_dtype: torch.dtype


def _check_vectors(
    pos_scores: Any,
    user_vectors: Any,
    item_vectors: Any,
    row_vectors: Any,
    log_q: Any,
    mask: Any,
) -> _Vectors:
    """The checks of the losses over vectors (types, shapes, devices, ``log_q``, ``mask``)."""
    named: dict[str, Any] = {"pos_scores": pos_scores, "user_vectors": user_vectors}
    named.update({"item_vectors": item_vectors, "row_vectors": row_vectors})
    for name, value in named.items():
        if value is None and name in ("item_vectors", "row_vectors"):
            continue
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(f"{name} must be a floating-point tensor, got {got}")
    if item_vectors is None and row_vectors is None:
        raise ValueError("item_vectors and row_vectors are both None: there are no negatives")
    if user_vectors.ndim != 2:
        raise ValueError(
            f"user_vectors must have shape (B, d), got shape {tuple(user_vectors.shape)}"
        )
    batch, dim = user_vectors.shape
    if item_vectors is not None and (item_vectors.ndim != 2 or item_vectors.shape[1] != dim):
        raise ValueError(
            f"item_vectors must have shape (K, d) with d={dim} like user_vectors, "
            f"got shape {tuple(item_vectors.shape)}"
        )
    if row_vectors is not None and (
        row_vectors.ndim != 3 or row_vectors.shape[0] != batch or row_vectors.shape[2] != dim
    ):
        raise ValueError(
            f"row_vectors must have shape (B, n, d) with B={batch}, d={dim} like "
            f"user_vectors, got shape {tuple(row_vectors.shape)}"
        )
    if pos_scores.shape not in ((batch,), (batch, 1)):
        raise ValueError(
            f"pos_scores must have shape (B,) or (B, 1) with B={batch} like user_vectors, "
            f"got shape {tuple(pos_scores.shape)}"
        )
    if batch == 0:
        raise ValueError("the batch is empty (B = 0): user_vectors has shape (0, d)")
    shared = 0 if item_vectors is None else item_vectors.shape[0]
    per_row = 0 if row_vectors is None else row_vectors.shape[1]
    if shared + per_row == 0:
        raise ValueError("there are no negatives (K + n = 0)")
    tensors = [t_ for t_ in (pos_scores, user_vectors, item_vectors, row_vectors) if t_ is not None]
    device = user_vectors.device
    if any(tensor.device != device for tensor in tensors):
        raise ValueError(
            f"pos_scores and the vectors must be on one device, got "
            f"{sorted({str(tensor.device) for tensor in tensors})}"
        )
    out_dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        out_dtype = torch.promote_types(out_dtype, tensor.dtype)
    work = torch.promote_types(out_dtype, torch.float32)
    shape = torch.Size((batch, shared + per_row))
    offsets, drop = _check_offsets_and_mask(log_q, mask, shape, work, device)
    return _Vectors(
        pos_scores.reshape(batch).to(work),
        user_vectors.to(work),
        None if item_vectors is None else item_vectors.to(work),
        None if row_vectors is None else row_vectors.to(work),
        offsets,
        drop,
        _known_hits(mask, shape, shared),
        out_dtype,
    )


def _known_hits(
    mask: torch.Tensor | None, shape: torch.Size, first_width: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The ``(rows, columns)`` of ``mask``'s ``True`` entries, where they are known and useful.

    Known: recorded on the mask by the code that built it (a candidate set's
    mask, unchanged since; see :mod:`negsample._hits`), rows nondecreasing.
    Used on the CPU, for a mask of the negatives' own shape whose entries all lie
    in the first ``first_width`` columns (the shared items): the forward then sets
    those entries to ``-inf`` instead of a pass over the whole mask per block.
    """
    if mask is None or mask.device.type != "cpu" or mask.shape != shape:
        return None
    hits = _hits.known(mask)
    if hits is None or (hits[1].numel() and int(hits[1].max()) >= first_width):
        return None
    return hits


def _check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, else a ``TypeError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {_short(value)} ({type(value).__name__})")
    return bool(value)


def _check_thresholds(
    thresholds: Any, batch: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor | float:
    """``thresholds`` as a float or a ``(B,)`` tensor in ``dtype`` (shapes, dtype, device only)."""
    if isinstance(thresholds, torch.Tensor):
        if not thresholds.is_floating_point():
            raise TypeError(
                f"thresholds must be a float or a floating-point tensor, got dtype {thresholds.dtype}"
            )
        if thresholds.device != device:
            raise ValueError(
                f"thresholds must be on the scores' device {device}, got {thresholds.device}"
            )
        if thresholds.shape not in ((), (batch,), (batch, 1)):
            raise ValueError(
                f"thresholds must have shape (B,) or (B, 1) with B={batch}, or be a float, "
                f"got shape {tuple(thresholds.shape)}"
            )
        return thresholds.reshape(-1).to(dtype) if thresholds.ndim else thresholds.to(dtype)
    if isinstance(thresholds, (bool, np.bool_)) or not isinstance(thresholds, numbers.Real):
        raise TypeError(
            f"thresholds must be a float or a floating-point tensor, got {_short(thresholds)} "
            f"({type(thresholds).__name__})"
        )
    return float(thresholds)


def _topk_weighted(
    terms: torch.Tensor,
    pos: torch.Tensor,
    thresholds: Any,
    weight_temperature: Any,
    detach_weight: bool,
) -> torch.Tensor:
    """Each row's term times ``sigmoid((s+ - beta) / tau_w)``, the weight detached or not."""
    beta = _check_thresholds(thresholds, pos.shape[0], pos.dtype, pos.device)
    weight = torch.sigmoid((pos - beta) / weight_temperature)
    return terms * (weight.detach() if detach_weight else weight)


def softmax_at_k_loss(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    thresholds: torch.Tensor | float,
    *,
    weight_temperature: float = 1.0,
    detach_weight: bool = True,
    temperature: float = 1.0,
    log_q: torch.Tensor | float | None = None,
    mask: torch.Tensor | None = None,
    neg_weight: float = 1.0,
    include_positive: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""SL\@K: each row's sampled softmax loss weighted by how high its positive is against the top K.

    Per row, with :math:`\ell_\text{SL}` the row's :func:`sampled_softmax_loss`
    (the same ``temperature``, ``log_q``, ``mask``, ``neg_weight`` and
    ``include_positive``), :math:`\beta` the row's threshold (the score of its
    user's ``K``-th best item, see :func:`negsample.estimate_topk_thresholds`)
    and :math:`\tau_w` the weight's temperature:

    .. math::

        \ell = \sigma\Big(\frac{s^+ - \beta}{\tau_w}\Big)\, \ell_\text{SL},

    :math:`\sigma` the sigmoid. A positive scored above its user's top-``K``
    threshold weighs more than one below it, so the loss spends its gradient
    on the positives that can count in NDCG\@K. The weight reads the raw
    scores (not divided by ``temperature``). A threshold of :math:`-\infty`
    gives weight 1, i.e. exactly :func:`sampled_softmax_loss` (a warm-up
    before a first estimate); :math:`+\infty` gives weight 0.

    This is the loss of Yang et al., "Breaking the Top-K Barrier: Advancing
    Top-K Ranking Metrics Optimization in Recommender Systems" (KDD 2025), as
    their code (repository ``Tiny-Snow/IR-Benchmark``,
    ``src/itemrec/optimizer/optim_SLatK.py``) computes it with
    ``include_positive=False``, ``log_q=None`` and ``detach_weight=False``.

    **The gradient through the weight.** With ``detach_weight=False`` (the
    authors' code, and the gradient their paper analyses) the positive's score
    also gets :math:`\ell_\text{SL}\, w (1 - w) / \tau_w` through the weight
    :math:`w`: wherever the softmax term is positive this pushes :math:`s^+`
    *down*, lowering the loss by shrinking the weight instead of ranking the
    positive higher, by an amount that grows with the softmax term (many
    negatives, a small temperature, ``neg_weight > 1``). In a short trial at
    the loss scale of the ``negsample train`` softmax recipe, training
    collapsed with it and did not without it. The default, ``detach_weight=True``, treats the
    weight as a constant per step: it only chooses how much each row counts.

    Args:
        pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
        neg_scores: Scores of the negatives, shape ``(B, K)``.
        thresholds: :math:`\beta` per row: a float (one for every row) or a
            floating tensor of shape ``(B,)`` or ``(B, 1)`` on the scores'
            device, e.g. ``thresholds[users]`` for the ``(num_users,)``
            estimate; ``-inf`` allowed.
        weight_temperature: :math:`\tau_w`, a finite float ``> 0`` (the
            authors' ``tau_beta``).
        detach_weight: Treat the weight as a constant (no gradient through it);
            ``False`` is the authors' code.
        temperature: As in :func:`sampled_softmax_loss`.
        log_q: As there.
        mask: As there; a row whose negatives are all masked has loss 0 and
            zero gradients, whatever its weight.
        neg_weight: As there.
        include_positive: As there (``False`` in the authors' code).
        reduction: ``"mean"`` over the ``B`` rows, ``"sum"``, or ``"none"``
            (the ``(B,)`` weighted per-row losses).

    Returns:
        A scalar, or a ``(B,)`` tensor for ``reduction="none"``, in the
        promoted dtype of the two score tensors.

    Raises:
        TypeError: As :func:`sampled_softmax_loss`, or if ``thresholds`` is not a
            float or a floating tensor, ``weight_temperature`` is not a real
            number or ``detach_weight`` is not a bool.
        ValueError: As :func:`sampled_softmax_loss`, or for a non-positive or
            non-finite ``weight_temperature``, or ``thresholds`` of another shape
            or device.

    Example:
        >>> pos = torch.tensor([2.0, 0.0])
        >>> neg = torch.tensor([[0.0, 1.0], [3.0, 3.0]])
        >>> sampled_softmax_loss(pos, neg, reduction="none")
        tensor([0.4076, 3.7177])
        >>> softmax_at_k_loss(pos, neg, torch.tensor([1.0, 1.0]), reduction="none")
        tensor([0.2980, 0.9999])
        >>> softmax_at_k_loss(pos, neg, -math.inf, reduction="none")  # weight 1
        tensor([0.4076, 3.7177])
    """
    reduction = _check_reduction(reduction)
    tau_w = _check_positive_float("weight_temperature", weight_temperature)
    detach = _check_bool("detach_weight", detach_weight)
    terms, pos, out_dtype = _softmax_terms(
        pos_scores, neg_scores, temperature, log_q, mask, neg_weight, include_positive
    )
    weighted = _topk_weighted(terms, pos, thresholds, tau_w, detach)
    return _reduce(weighted, reduction).to(out_dtype)


def softmax_at_k_loss_from_vectors(
    pos_scores: torch.Tensor,
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor | None = None,
    row_vectors: torch.Tensor | None = None,
    *,
    thresholds: torch.Tensor | float,
    weight_temperature: float = 1.0,
    detach_weight: bool = True,
    temperature: float = 1.0,
    log_q: torch.Tensor | float | None = None,
    mask: torch.Tensor | None = None,
    neg_weight: float = 1.0,
    include_positive: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r""":func:`softmax_at_k_loss` of negatives scored by inner products, computed fused.

    The softmax term is :func:`sampled_softmax_loss_from_vectors` (the shared
    ``item_vectors`` first, then each row's ``row_vectors``; no ``(B, K + n)``
    score matrix), then weighted as in :func:`softmax_at_k_loss`: the same
    value and gradients as that function over the concatenated scores, up to
    rounding.

    Args:
        pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
        user_vectors: ``(B, d)``, one per row.
        item_vectors: ``(K, d)`` shared by every row, or ``None``.
        row_vectors: ``(B, n, d)``, each row's own, or ``None``.
        thresholds: As in :func:`softmax_at_k_loss` (keyword-only here).
        weight_temperature: As there.
        detach_weight: As there.
        temperature: As there.
        log_q: As in :func:`sampled_softmax_loss_from_vectors`, over ``K + n`` columns.
        mask: As there.
        neg_weight: As there.
        include_positive: As there.
        reduction: As there.

    Returns:
        A scalar, or ``(B,)`` for ``reduction="none"``, in the promoted dtype of
        the scores and vectors.

    Raises:
        TypeError: As :func:`sampled_softmax_loss_from_vectors` and
            :func:`softmax_at_k_loss`.
        ValueError: As :func:`sampled_softmax_loss_from_vectors` and
            :func:`softmax_at_k_loss`.

    Example:
        >>> users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> items = torch.tensor([[1.0, 1.0], [0.0, -1.0], [2.0, 0.0]])
        >>> pos, beta = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.5])
        >>> fused = softmax_at_k_loss_from_vectors(pos, users, items, thresholds=beta)
        >>> torch.allclose(fused, softmax_at_k_loss(pos, users @ items.T, beta))
        True
    """
    reduction = _check_reduction(reduction)
    tau_w = _check_positive_float("weight_temperature", weight_temperature)
    detach = _check_bool("detach_weight", detach_weight)
    terms, pos, out_dtype = _softmax_terms_from_vectors(
        pos_scores,
        user_vectors,
        item_vectors,
        row_vectors,
        temperature,
        log_q,
        mask,
        neg_weight,
        include_positive,
    )
    weighted = _topk_weighted(terms, pos, thresholds, tau_w, detach)
    return _reduce(weighted, reduction).to(out_dtype)


Activation = Literal["tanh", "atan", "relu", "exp"]
"""The surrogate activation of :func:`pairwise_softmax_loss`."""

_ACTIVATIONS = ("tanh", "atan", "relu", "exp")


def _check_activation(activation: Any) -> Activation:
    """Return ``activation`` if it is one of ``"tanh"``, ``"atan"``, ``"relu"``, ``"exp"``."""
    if not isinstance(activation, str) or activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {_short(activation)}")
    return activation  # type: ignore[return-value]


def _check_eps(eps: Any) -> float:
    """Return ``eps`` as a float if it is a real number in ``(0, 1)``."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a float in (0, 1), got {_short(eps)} ({type(eps).__name__})")
    number = float(eps)
    if not 0.0 < number < 1.0:
        raise ValueError(f"eps must be a float in (0, 1), got {number}")
    return number


def _log_activation(d: torch.Tensor, activation: Activation, eps: float) -> torch.Tensor:
    """``log sigma(d)``, with ``sigma(d)`` floored at ``eps`` for ``"atan"`` and ``"relu"``."""
    if activation == "tanh":
        # 1 + tanh(d) = 2 sigmoid(2d): its log is finite for every finite d, no floor needed.
        return math.log(2.0) - F.softplus(-2.0 * d)
    if activation == "atan":
        return torch.log(torch.clamp(1.0 + torch.atan(d), min=eps))
    if activation == "relu":
        return torch.log(torch.clamp(1.0 + d, min=eps))
    return d


def pairwise_softmax_loss(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    *,
    temperature: float = 1.0,
    activation: Activation = "tanh",
    score_scale: float = 2.0,
    log_q: torch.Tensor | float | None = None,
    mask: torch.Tensor | None = None,
    include_positive: bool = True,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Pairwise softmax loss (PSL): the softmax with each score gap's exponential replaced.

    Per row, with score gaps :math:`d_k = (s_k - s^+) / S` (``score_scale``),
    a surrogate activation :math:`\sigma` and the temperature :math:`\tau`
    applied *outside* it:

    .. math::

        \ell = \log\Big([1] + \sum_{k \text{ not masked}}
               \sigma(d_k)^{1/\tau}\, e^{-\log q_k}\Big)
             = \log\Big([1] + \sum_{k \text{ not masked}}
               e^{\log\sigma(d_k)/\tau - \log q_k}\Big),

    where ``activation`` chooses :math:`\sigma`: ``"tanh"``
    :math:`1 + \tanh d`, ``"atan"`` :math:`1 + \arctan d`, ``"relu"``
    :math:`\max(1 + d, 0)`, or ``"exp"`` :math:`e^{d}` (which makes it
    :func:`sampled_softmax_loss` at temperature :math:`S\tau`). The ``[1]``
    is the positive's own term, :math:`\sigma(0)^{1/\tau} = 1` for every
    activation: in the normaliser with ``include_positive=True`` (the paper's
    sum over every item), out of it with ``False`` (the authors' code, over
    the sampled negatives only). ``log_q`` and ``mask`` act on the negatives'
    terms exactly as in :func:`sampled_softmax_loss`, and a row whose
    negatives are all masked has loss 0 and zero gradients.

    This is the loss of Yang et al., "PSL: Rethinking and Improving Softmax
    Loss from Pairwise Perspective for Recommendation" (NeurIPS 2024), the
    softmax-like form (``method=1``) of their code (repository
    ``Tiny-Snow/IR-Benchmark``, ``src/itemrec/optimizer/optim_PSL.py``): their
    ``tau`` is ``score_scale`` (2 in their runs, with cosine scores, so that
    :math:`d \in [-1, 1]`) and their ``tau_star`` is ``temperature``.

    **Log of 0.** :math:`1 + d` is 0 or less for :math:`d \le -1` and
    :math:`1 + \arctan d` for :math:`d \le -\tan 1 \approx -1.56`, where the
    logarithm is :math:`-\infty` or undefined (the authors' scores keep
    :math:`d` in :math:`[-1, 1]`, where only ``"relu"`` at :math:`d = -1`
    reaches it). Here ``"relu"`` and ``"atan"`` are floored at ``eps``
    before the logarithm, :math:`\log\max(\sigma(d), \epsilon)`: such a
    negative adds :math:`\epsilon^{1/\tau}` to the sum and gets no gradient,
    and a row whose every term is floored (positive left out) has the finite
    loss :math:`\log n + \log(\epsilon)/\tau` over its :math:`n` unmasked
    negatives, with zero gradients, not :math:`-\infty` or NaN. ``"tanh"``
    needs no floor: :math:`\log(1 + \tanh d) = \log 2 - \operatorname{softplus}(-2d)`
    is finite for every finite :math:`d`. ``float16`` and ``bfloat16`` inputs
    are computed in ``float32`` and the result cast back.

    Args:
        pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
        neg_scores: Scores of the negatives, shape ``(B, K)``.
        temperature: :math:`\tau`, a finite float ``> 0``, outside the
            activation (the authors' ``tau_star``).
        activation: ``"tanh"``, ``"atan"``, ``"relu"`` or ``"exp"``.
        score_scale: :math:`S`, a finite float ``> 0`` dividing the score gaps
            before the activation (the authors' ``tau``).
        log_q: ``None``, a float, or a floating tensor broadcastable to
            ``(B, K)``, subtracted from each negative's exponent.
        mask: ``None`` or a bool tensor broadcastable to ``(B, K)``; ``True``
            drops that negative.
        include_positive: Whether the positive's term 1 is in the normaliser.
        eps: The floor :math:`\epsilon` of ``"relu"`` and ``"atan"``, a float
            in ``(0, 1)``.
        reduction: ``"mean"`` over the ``B`` rows, ``"sum"``, or ``"none"``
            (the ``(B,)`` per-row losses).

    Returns:
        A scalar, or a ``(B,)`` tensor for ``reduction="none"``, in the
        promoted dtype of the two score tensors.

    Raises:
        TypeError: If a score tensor or ``log_q`` is not floating point, ``mask``
            is not a bool tensor, ``temperature``, ``score_scale`` or ``eps`` is
            not a real number, or ``include_positive`` is not a bool.
        ValueError: For an unknown ``reduction`` or ``activation``, a
            non-positive or non-finite ``temperature`` or ``score_scale``, an
            ``eps`` outside ``(0, 1)``, wrong or non-broadcastable shapes, an
            empty batch or no negatives, or tensors on different devices.

    Example:
        >>> pos = torch.tensor([0.5, 0.0])
        >>> neg = torch.tensor([[0.0, 1.0], [0.5, -1.0]])
        >>> pairwise_softmax_loss(pos, neg, temperature=0.5, reduction="none")
        tensor([1.1378, 1.0435])
        >>> pairwise_softmax_loss(pos, neg, activation="exp", temperature=0.5,
        ...                       reduction="none")
        tensor([1.1803, 1.1041])
        >>> sampled_softmax_loss(pos, neg, temperature=1.0, reduction="none")
        tensor([1.1803, 1.1041])

        ``"relu"`` with every gap below -1 and the positive out: the floor.

        >>> far = torch.tensor([[-5.0, -6.0]])
        >>> pairwise_softmax_loss(torch.tensor([0.0]), far, activation="relu",
        ...                       score_scale=1.0, include_positive=False)
        tensor(-13.1224)
    """
    reduction = _check_reduction(reduction)
    tau = _check_temperature(temperature)
    kind = _check_activation(activation)
    scale = _check_positive_float("score_scale", score_scale)
    include = _check_include_positive(include_positive)
    floor = _check_eps(eps)
    pos, neg, out_dtype = _check_scores(pos_scores, neg_scores)
    if neg_scores.ndim != 2:
        raise ValueError(f"neg_scores must have shape (B, K), got shape {tuple(neg_scores.shape)}")
    offsets, drop = _check_offsets_and_mask(log_q, mask, neg.shape, neg.dtype, neg.device)
    exponents = _log_activation((neg - pos) / scale, kind, floor) / tau
    if offsets is not None:
        exponents = exponents - offsets
    valid = None
    if drop is not None:
        exponents = exponents.masked_fill(drop, -math.inf)
        # A row of -inf would make NaN gradients in logsumexp's backward (then discarded).
        valid = _has_negatives(drop)
        exponents = torch.where(valid[:, None], exponents, torch.zeros_like(exponents))
    terms = torch.logsumexp(exponents, dim=1)
    if include:
        terms = torch.logaddexp(terms, torch.zeros_like(terms))
    if valid is not None:
        terms = torch.where(valid, terms, torch.zeros_like(terms))
    return _reduce(terms, reduction).to(out_dtype)


def pairwise_softmax_loss_from_vectors(
    pos_scores: torch.Tensor,
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor | None = None,
    row_vectors: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    activation: Activation = "tanh",
    score_scale: float = 2.0,
    log_q: torch.Tensor | float | None = None,
    mask: torch.Tensor | None = None,
    include_positive: bool = True,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r""":func:`pairwise_softmax_loss` of negatives scored by inner products, computed fused.

    The negatives are scored as in :func:`sampled_softmax_loss_from_vectors`
    (``K`` items shared by every row, then ``n`` of each row's own, in that
    order for ``log_q`` and ``mask``), and the loss is
    :func:`pairwise_softmax_loss` over those scores, with the same value and
    gradients (up to rounding), the same floor ``eps`` and the same handling of
    masked rows, computed the same way as that function: each block of rows
    is scored into the buffer the backward needs (no ``(B, K + n)`` score
    matrix of its own, on the CPU blocks that stay in the cache), with the
    activation's derivative kept beside it, so the backward is three matrix
    products and no pass of autograd over the scores. ``"exp"`` is
    :func:`sampled_softmax_loss_from_vectors` at temperature
    ``score_scale * temperature``.

    Args:
        pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
        user_vectors: ``(B, d)``, one per row.
        item_vectors: ``(K, d)`` shared by every row, or ``None``.
        row_vectors: ``(B, n, d)``, each row's own, or ``None``; at least one of
            the two, and ``K + n >= 1``.
        temperature: As in :func:`pairwise_softmax_loss`.
        activation: As there.
        score_scale: As there.
        log_q: As there, over the ``K + n`` negatives.
        mask: As there, a bool tensor broadcastable to ``(B, K + n)``.
        include_positive: As there.
        eps: As there.
        reduction: As there.

    Returns:
        A scalar, or ``(B,)`` for ``reduction="none"``, in the promoted dtype of
        the scores and vectors.

    Raises:
        TypeError: As :func:`sampled_softmax_loss_from_vectors` and
            :func:`pairwise_softmax_loss`.
        ValueError: As :func:`sampled_softmax_loss_from_vectors` and
            :func:`pairwise_softmax_loss`.

    Example:
        >>> users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> items = torch.tensor([[1.0, 1.0], [0.0, -1.0], [2.0, 0.0]])
        >>> own = torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]])
        >>> pos = torch.tensor([2.0, 0.0])
        >>> fused = pairwise_softmax_loss_from_vectors(pos, users, items, own, temperature=0.5)
        >>> scores = torch.cat([users @ items.T, (own @ users[:, :, None])[..., 0]], 1)
        >>> torch.allclose(fused, pairwise_softmax_loss(pos, scores, temperature=0.5))
        True
    """
    reduction = _check_reduction(reduction)
    tau = _check_temperature(temperature)
    kind = _check_activation(activation)
    scale = _check_positive_float("score_scale", score_scale)
    include = _check_include_positive(include_positive)
    floor = _check_eps(eps)
    if kind == "exp":
        # log sigma(d) = d: the softmax of (s - s+) / (S tau); checked there.
        return sampled_softmax_loss_from_vectors(
            pos_scores,
            user_vectors,
            item_vectors,
            row_vectors,
            temperature=scale * tau,
            log_q=log_q,
            mask=mask,
            include_positive=include,
            reduction=reduction,
        )
    vectors = _check_vectors(pos_scores, user_vectors, item_vectors, row_vectors, log_q, mask)
    terms: torch.Tensor = _PairwiseSoftmaxFromVectors.apply(  # type: ignore[no-untyped-call]
        vectors.pos,
        vectors.users,
        vectors.items,
        vectors.rows,
        (tau, kind, scale, floor, include),
        vectors.offsets,
        vectors.drop,
        vectors.hits,
    )
    return _reduce(terms, reduction).to(vectors.out_dtype)


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
    z = z.clamp(max=torch.finfo(z.dtype).max)  # as in the forward: +inf weighs as the largest
    return z if drop is None else z.masked_fill(drop, -math.inf)


def _outside_scale(temperature: float, weight: float) -> float | None:
    """``T / (lambda - 1)``: ``(lambda - 1) s+ / T`` is ``s+`` divided by it (None for 1)."""
    # Divided, not multiplied by (lambda - 1) / T, which overflows for a tiny T.
    return None if weight == 1.0 else temperature / (weight - 1.0)


# Rows per block of the CPU forward: about 2**19 scores (2 MiB in float32), so that the
# block's passes (difference, offsets, mask, max, exponential, sum) run in the cache
# instead of streaming the whole (B, K) tensor from memory once per pass.
_BLOCK_SCORES = 2**19
_LOG2E = 1.0 / math.log(2.0)

# PSL's parts of exp(z - top) * dz/ds * S T, (B, width) each, and their sum per row.
_PSLParts = tuple[list[torch.Tensor], torch.Tensor]

# scores_of(start, length, outs) -> the negative scores of rows [start, start + length),
# one tensor per part of the columns, written into `outs` (that block of the parts of the
# exponentials' buffer) or returned as views.
_BlockScores = Callable[[int, int, list[torch.Tensor]], list[torch.Tensor]]


def _row_blocks(batch: int, num_negatives: int, device: torch.device) -> list[tuple[int, int]]:
    """``(start, length)`` of the row blocks the forward processes (one block off the CPU)."""
    if device.type != "cpu":
        return [(0, batch)]
    rows = max(1, _BLOCK_SCORES // max(num_negatives, 1))
    return [(start, min(rows, batch - start)) for start in range(0, batch, rows)]


def _columns(
    value: torch.Tensor | float | None, widths: list[int]
) -> list[torch.Tensor | float | None]:
    """``value`` (``(B, K)`` or not a tensor) split into the column parts of ``widths``."""
    if not isinstance(value, torch.Tensor):
        return [value] * len(widths)
    starts = [sum(widths[:i]) for i in range(len(widths))]
    return [value.narrow(1, start, width) for start, width in zip(starts, widths, strict=True)]


def _rows(value: Any, start: int, length: int) -> Any:
    """Rows ``[start, start + length)`` of a tensor; anything else as it is."""
    return value.narrow(0, start, length) if isinstance(value, torch.Tensor) else value


def _exp_block(
    outs: list[torch.Tensor],
    pos: torch.Tensor,
    negs: list[torch.Tensor],
    temperature: float,
    offsets: list[torch.Tensor | float | None],
    drops: list[torch.Tensor | None],
    include: bool,
    first_hits: tuple[torch.Tensor, torch.Tensor] | None = None,
    psl: tuple[Activation, float, float, list[torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Write ``exp(z - top)`` of one block of rows into ``outs``; return ``top`` and their sum per row.

    ``z = (s_k - s+) / T - log q_k``, ``-inf`` where masked, over the columns of
    every part; ``top`` is the row's largest ``z`` (at least 0, the positive's
    own ``z``, when it is in the normaliser), or 0 for a row of ``-inf``. Each
    ``negs[i]`` may be ``outs[i]`` itself. ``first_hits``, ``(rows, columns)``
    within the block, are masked entries of the first part given by position
    (the parts' ``drops`` are then ``None``).

    The exponential is taken as ``2 ** ((z - top) log2(e))``: torch's
    vectorised ``exp2`` is about 1.5x as fast as its ``exp`` on the CPU (the
    extra multiplication included), and this is the step's largest pass. The
    scaling comes after the shift, where ``z - top <= 0``, so it cannot
    overflow.

    ``psl``, ``(activation, score_scale, eps, facs)``, makes it PSL's
    ``z = log sigma((s_k - s+) / S) / T - log q_k`` (see
    :func:`_log_activation_into`) and writes into ``facs`` (the block of each
    part) ``exp(z - top)`` times ``d z / d s_k`` times ``S T``; the third value
    returned is then their sum per row (else ``None``).
    """
    top: torch.Tensor | None = None
    facs = [None] * len(outs) if psl is None else psl[3]
    for out, fac, neg, offset, drop in zip(outs, facs, negs, offsets, drops, strict=True):
        # Dividing the difference, not s / T: a finite score over a small T may overflow,
        # a difference that overflows is one whose exponential is exactly 0 (or inf).
        torch.sub(neg, pos[:, None], out=out)
        if psl is not None:
            assert fac is not None
            _log_activation_into(out.div_(psl[1]), fac, psl[0], psl[2])
        out.div_(temperature)
        if offset is not None:
            out.sub_(offset)
        # A difference that overflows to +inf: the row's softmax puts its weight on those
        # entries (equally), which the largest float reproduces with finite gradients. On
        # the CPU the row maxima say (for free) whether there is one; elsewhere reading
        # them would be a synchronisation, so every block is clamped.
        biggest = torch.finfo(out.dtype).max
        on_cpu = out.device.type == "cpu"
        if not on_cpu:
            out.clamp_(max=biggest)
        if drop is not None:
            # where(out=) rather than masked_fill_: the same values, about twice as fast on CPU.
            torch.where(drop, out.new_full((), -math.inf), out, out=out)
        elif first_hits is not None and out is outs[0]:
            out.index_put_(first_hits, out.new_full((), -math.inf))
        part_top = out.amax(dim=1)
        if on_cpu and bool(torch.isposinf(part_top).any()):
            out.clamp_(max=biggest)
            part_top = part_top.clamp(max=biggest)
        top = part_top if top is None else torch.maximum(top, part_top)
    assert top is not None
    if include:
        top = top.clamp_min(0.0)
    # A row of -inf (every negative masked) shifts by 0, not by -inf.
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    total: torch.Tensor | None = None
    fac_total: torch.Tensor | None = None
    for out, fac in zip(outs, facs, strict=True):
        out.sub_(top[:, None]).mul_(_LOG2E).exp2_()
        # Summed here, while the block is in the cache, not in a pass over (B, K) after.
        part_sum = out.sum(dim=1)
        total = part_sum if total is None else total + part_sum
        if fac is not None:
            part_fac = fac.mul_(out).sum(dim=1)
            fac_total = part_fac if fac_total is None else fac_total + part_fac
    assert total is not None
    return top, total, fac_total


def _log_activation_into(d: torch.Tensor, fac: torch.Tensor, kind: Activation, eps: float) -> None:
    """Overwrite ``d`` with :func:`_log_activation` of it and write its derivative into ``fac``.

    In place, on a block that sits in the cache. The derivative of
    ``log sigma(d)`` is ``1 - tanh d`` for ``"tanh"``, ``sigma'(d) / sigma(d)``
    for ``"atan"`` and ``"relu"`` where ``sigma(d) >= eps`` and 0 where the
    floor holds (as the gradient of ``clamp``), and 1 for ``"exp"``.
    """
    if kind == "tanh":
        # log(1 + tanh d) = log 2 - softplus(-2d); its derivative 1 - tanh d = 2 sigmoid(-2d).
        d.mul_(-2.0)
        torch.sigmoid(d, out=fac).mul_(2.0)
        torch.logaddexp(d, d.new_zeros(()), out=d)
        d.neg_().add_(math.log(2.0))
        return
    if kind == "exp":
        fac.fill_(1.0)
        return
    zero = d.new_zeros(())
    if kind == "atan":
        torch.mul(d, d, out=fac).add_(1.0)  # 1 + d^2
        d.atan_().add_(1.0)
        fac.mul_(d).reciprocal_()
    else:
        d.add_(1.0)
        torch.reciprocal(d, out=fac)
    torch.where(d < eps, zero, fac, out=fac)
    d.clamp_(min=eps).log_()


def _exponentials(
    scores_of: _BlockScores,
    pos: torch.Tensor,
    widths: list[int],
    temperature: float,
    offsets: torch.Tensor | float | None,
    drop: torch.Tensor | None,
    include: bool,
    hits: tuple[torch.Tensor, torch.Tensor] | None = None,
    psl: tuple[Activation, float, float] | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, _PSLParts | None]:
    """The shifted exponentials, ``(B, width)`` per part, each row's shift ``top`` and their sum.

    Computed block of rows by block of rows (see ``_BLOCK_SCORES``); ``top``
    and the sum of each row's exponentials (over every part) are ``(B,)``.
    ``hits`` (see :func:`_known_hits`), where given, replaces ``drop``.
    ``psl``, ``(activation, score_scale, eps)``, makes the exponents PSL's
    (see :func:`_exp_block`); the fourth value is then the parts of the
    exponentials times the derivatives and their sum per row (else ``None``).
    """
    batch = pos.shape[0]
    parts = [torch.empty((batch, width), dtype=pos.dtype, device=pos.device) for width in widths]
    fac_parts = [] if psl is None else [torch.empty_like(part) for part in parts]
    offset_parts, drop_parts = _columns(offsets, widths), _columns(drop, widths)
    blocks = _row_blocks(batch, sum(widths), pos.device)
    bounds: list[int] = []
    if hits is not None:
        drop_parts = [None] * len(widths)
        starts = torch.tensor([start for start, _ in blocks] + [batch], device=hits[0].device)
        bounds = torch.searchsorted(hits[0], starts).tolist()
    tops, sums, fac_sums = [], [], []
    for block, (start, length) in enumerate(blocks):
        outs = [_rows(part, start, length) for part in parts]
        block_hits = None
        if hits is not None:
            low, high = bounds[block], bounds[block + 1]
            block_hits = (hits[0][low:high] - start, hits[1][low:high])
        block_psl = None
        if psl is not None:
            block_psl = (*psl, [_rows(fac, start, length) for fac in fac_parts])
        top, total, fac_total = _exp_block(
            outs,
            _rows(pos, start, length),
            scores_of(start, length, outs),
            temperature,
            [_rows(offset, start, length) for offset in offset_parts],
            [_rows(part_drop, start, length) for part_drop in drop_parts],
            include,
            block_hits,
            block_psl,
        )
        tops.append(top)
        sums.append(total)
        if fac_total is not None:
            fac_sums.append(fac_total)
    extra = None
    if psl is not None:
        extra = (fac_parts, fac_sums[0] if len(fac_sums) == 1 else torch.cat(fac_sums))
    if len(tops) == 1:
        return parts, tops[0], sums[0], extra
    return parts, torch.cat(tops), torch.cat(sums), extra


def _has_negatives(drop: torch.Tensor) -> torch.Tensor:
    """Per row, whether some negative is not masked: ``~drop.all(dim=1)``, faster.

    The smallest byte of a bool row is 0 exactly when one entry is ``False``;
    torch's ``amin`` over bytes is vectorised where its ``all`` over bools is
    not (about 30x faster on a (2048, 3076) mask on CPU).
    """
    return drop.view(torch.uint8).amin(dim=1) == 0


def _softmax_forward(
    ctx: Any,
    scores_of: _BlockScores,
    pos: torch.Tensor,
    widths: list[int],
    temperature: float,
    weight: float,
    include: bool,
    offsets: torch.Tensor | float | None,
    drop: torch.Tensor | None,
    hits: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The per-row loss terms; keeps on ``ctx`` what :func:`_softmax_backward` needs."""
    exp_parts, top, neg_sum, _ = _exponentials(
        scores_of, pos, widths, temperature, offsets, drop, include, hits
    )
    terms, total, valid = _row_terms(
        pos, top, neg_sum, widths, temperature, weight, include, drop, hits
    )
    float_offsets = None if isinstance(offsets, torch.Tensor) else offsets
    ctx.softmax = (widths, temperature, weight, include, float_offsets, neg_sum, total, valid)
    ctx.hits = hits
    # Intermediates, kept on ctx (not saved): the first backward overwrites them.
    ctx.exp_parts = exp_parts
    return terms


def _row_terms(
    pos: torch.Tensor,
    top: torch.Tensor,
    neg_sum: torch.Tensor,
    widths: list[int],
    temperature: float,
    weight: float,
    include: bool,
    drop: torch.Tensor | None,
    hits: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Each row's loss from its shift and sum of exponentials: ``(terms, total, valid)``.

    ``total`` is the normaliser's sum (the positive's term in with
    ``include``); ``valid`` says which rows have an unmasked negative, where
    it had to be found (else ``None``); such rows' terms are 0.
    """
    total = neg_sum + torch.exp(-top) if include else neg_sum
    # Per row, in float64 (for float32 work; no wider type for float64): the two halves
    # of the loss may each overflow the work dtype where their sum does not. MPS has no
    # float64: there the halves stay in the work dtype.
    wide = pos.dtype if pos.device.type == "mps" else torch.promote_types(pos.dtype, torch.float64)
    terms = (top.to(wide) + torch.log(total.to(wide))) * weight
    outside = _outside_scale(temperature, weight)
    if outside is not None:
        terms = terms + pos.to(wide) / outside
    # A row whose largest difference overflowed (clamped to the largest float) has loss +inf.
    terms = torch.where(top == torch.finfo(pos.dtype).max, math.inf, terms).to(pos.dtype)
    valid = None
    # With the positive in and lambda = 1 an all-masked row is exactly 0 (log e^0)
    # with zero gradients already: only the other forms pay for finding such rows.
    if drop is not None and not (include and weight == 1.0):
        if hits is None:
            valid = _has_negatives(drop)
        else:
            # The hits are distinct entries: a row is all masked when it has one per column.
            valid = torch.bincount(hits[0], minlength=pos.shape[0]) < sum(widths)
        terms = torch.where(valid, terms, torch.zeros_like(terms))
    return terms, total, valid


def _softmax_backward(
    ctx: Any,
    grad: torch.Tensor,
    pos: torch.Tensor,
    scores_of: _BlockScores,
    differentiable_scores: Callable[[], torch.Tensor],
    tensor_offsets: torch.Tensor | None,
    drop: torch.Tensor | None,
    need_pos: bool,
    need_offsets: bool,
    in_place: bool = True,
) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``d loss / d s_k`` (per part of the columns), and the gradients of ``pos`` and ``log_q``.

    Returns ``(parts, row_scale, grad_pos, grad_offsets)``: the gradient of the
    scores is ``parts[i] * row_scale`` (``row_scale`` ``(B, 1)``), or ``parts``
    itself where ``row_scale`` is ``None``. With ``in_place`` the first backward
    turns the saved exponentials into that gradient in place (``row_scale``
    ``None``); a later one (``retain_graph=True``) recomputes them. Without, it
    returns the exponentials and the scale, for a caller that applies the
    scale to something smaller (the rows of a matrix product). Under
    ``create_graph=True`` everything is built from differentiable operations on
    ``differentiable_scores()`` (all columns), so that higher orders are exact.
    """
    widths, temperature, weight, include, float_offsets, neg_sum, total, valid = ctx.softmax
    offsets = float_offsets if tensor_offsets is None else tensor_offsets

    def rows_with_negatives(x: torch.Tensor) -> torch.Tensor:
        return x if valid is None else torch.where(valid, x, torch.zeros_like(x))

    # probs: each negative's softmax weight (B, K); their sum per row (B,).
    if torch.is_grad_enabled():
        z = _scaled_differences(pos, differentiable_scores(), temperature, offsets, drop)
        if valid is not None:  # rows of -inf would make NaN weights (then zeroed)
            z = torch.where(valid[:, None], z, torch.zeros_like(z))
        if include:
            z = torch.cat([torch.zeros_like(z[:, :1]), z], dim=1)
        probs = torch.softmax(z, dim=1)
        probs = probs[:, 1:] if include else probs
        row = rows_with_negatives(grad * weight)
        prob_sum = probs.sum(dim=1)
        grad_offsets = probs * -row[:, None] if need_offsets else None
        scaled = probs * (row / temperature)[:, None]
        grad_parts = [part for part in _columns(scaled, widths) if isinstance(part, torch.Tensor)]
        row_scale = None
    else:
        exp_parts = ctx.exp_parts
        if exp_parts is None:
            # A second backward through the graph: the first one used the exponentials up.
            exp_parts = _exponentials(
                scores_of, pos, widths, temperature, offsets, drop, include, ctx.hits
            )[0]
        row = rows_with_negatives(grad * weight / total)
        prob_sum = neg_sum
        grad_offsets = None
        if need_offsets:
            grad_offsets = torch.cat([part * -row[:, None] for part in exp_parts], dim=1)
        # d loss / d s_k = lambda p_k / T: the exponentials scaled in place. Where the
        # scale overflows (a tiny T) it saturates at the largest float: 0 * inf would be
        # NaN for the negatives of weight 0, and an optimiser step from a finite gradient
        # is defined.
        biggest = torch.finfo(row.dtype).max
        row_scale = (row / temperature).clamp(-biggest, biggest)[:, None]
        if in_place:
            ctx.exp_parts = None
            grad_parts = [part.mul_(row_scale) for part in exp_parts]
            row_scale = None
        else:
            ctx.exp_parts = exp_parts
            grad_parts = exp_parts
    # d loss / d log q_k = -lambda p_k; the positive (z depends on s_k - s+) gets minus
    # the negatives' sum plus the (lambda - 1) / T outside the log.
    grad_pos = None
    if need_pos:
        biggest = torch.finfo(row.dtype).max
        grad_pos = -prob_sum * (row / temperature).clamp(-biggest, biggest)
        outside = _outside_scale(temperature, weight)
        if outside is not None:
            grad_pos = grad_pos + rows_with_negatives(grad / outside)
        grad_pos = grad_pos.clamp(-biggest, biggest)
    return grad_parts, row_scale, grad_pos, grad_offsets


def _tensor_offsets(offsets: torch.Tensor | float | None) -> torch.Tensor | None:
    return offsets if isinstance(offsets, torch.Tensor) else None


def _given_scores(neg: torch.Tensor) -> _BlockScores:
    """A block's scores read from the ``(B, K)`` scores the caller passed (one part)."""

    def scores_of(start: int, length: int, outs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [neg.narrow(0, start, length)]

    return scores_of


class _SampledSoftmax(torch.autograd.Function):
    """Per-row sampled softmax loss over given scores, with a hand-written backward.

    With ``z_k = (s_k - s+) / T - log q_k`` the loss is
    ``(lambda - 1) s+ / T + lambda * log([1] + sum_k exp(z_k))``. The forward
    keeps the exponentials of the shifted ``z`` (computed in blocks of rows
    that stay in the CPU's cache) and the first backward scales them, in
    place, into the gradient of the scores: one pass, and no new ``(B, K)``
    tensor. The gradient of a masked entry is exactly 0 (its exponential is
    ``exp(-inf) = 0``).
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
        ctx.save_for_backward(pos, neg, _tensor_offsets(offsets), drop)
        return _softmax_forward(
            ctx,
            _given_scores(neg),
            pos,
            [neg.shape[1]],
            temperature,
            weight,
            include,
            offsets,
            drop,
        )

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        pos, neg, tensor_offsets, drop = ctx.saved_tensors
        need_pos, need_neg, need_offsets = (ctx.needs_input_grad[i] for i in (0, 1, 5))
        grad_parts, _, grad_pos, grad_offsets = _softmax_backward(
            ctx,
            grad,
            pos,
            _given_scores(neg),
            lambda: neg,
            tensor_offsets,
            drop,
            need_pos,
            need_offsets,
        )
        grad_neg = grad_parts[0] if need_neg else None
        return grad_pos, grad_neg, None, None, None, grad_offsets, None


def _vector_scores(
    users: torch.Tensor, items: torch.Tensor | None, rows: torch.Tensor | None
) -> torch.Tensor:
    """The negatives' scores ``(B, K + n)``: the shared items', then each row's own."""
    parts = []
    if items is not None:
        parts.append(users @ items.T)
    if rows is not None:
        parts.append(torch.bmm(rows, users.unsqueeze(2)).squeeze(2))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class _SampledSoftmaxFromVectors(torch.autograd.Function):
    """:class:`_SampledSoftmax` over the scores of vectors, never holding the scores.

    Each block of rows computes its scores (a matrix product with the shared
    items, a batched one with the row's own items) straight into its block of
    the exponentials' buffer, so the ``(B, K)`` scores are never a tensor of
    their own and never concatenated. The backward turns the buffer into the
    scores' gradient in place and multiplies it back through the two products.
    """

    @staticmethod
    def forward(
        ctx: Any,
        pos: torch.Tensor,
        users: torch.Tensor,
        items: torch.Tensor | None,
        rows: torch.Tensor | None,
        temperature: float,
        weight: float,
        include: bool,
        offsets: torch.Tensor | float | None,
        drop: torch.Tensor | None,
        hits: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        ctx.save_for_backward(pos, users, items, rows, _tensor_offsets(offsets), drop)
        return _softmax_forward(
            ctx,
            _vector_block_scores(users, items, rows),
            pos,
            _vector_widths(items, rows),
            temperature,
            weight,
            include,
            offsets,
            drop,
            hits,
        )

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        pos, users, items, rows, tensor_offsets, drop = ctx.saved_tensors
        need = ctx.needs_input_grad
        # The scores' gradient is parts * row_scale: the scale goes onto the (B, d) sides
        # of the products instead of a pass over the (B, K) exponentials.
        parts, row_scale, grad_pos, grad_offsets = _softmax_backward(
            ctx,
            grad,
            pos,
            _vector_block_scores(users, items, rows),
            lambda: _vector_scores(users, items, rows),
            tensor_offsets,
            drop,
            need[0],
            need[7],
            in_place=False,
        )
        grad_users, grad_items, grad_row_vectors = _vector_gradients(
            parts, row_scale, users, items, rows, need[1:4]
        )
        return (
            grad_pos,
            grad_users,
            grad_items,
            grad_row_vectors,
            None,
            None,
            None,
            grad_offsets,
            None,
            None,
        )


class _PairwiseSoftmaxFromVectors(torch.autograd.Function):
    """:func:`pairwise_softmax_loss` over the scores of vectors, fused like the softmax's.

    With ``d_k = (s_k - s+) / S`` and ``z_k = log sigma(d_k) / T - log q_k``
    the row's loss is ``log([1] + sum_k exp(z_k))`` and the scores' gradient
    ``p_k (log sigma)'(d_k) / (S T)``, ``p_k`` the softmax weight of ``z_k``.
    The forward keeps, per entry, ``exp(z_k - top)`` and that times the
    derivative (computed block by block while the scores are in the cache);
    the backward multiplies the second through the products, its row scale on
    the ``(B, d)`` sides. Under ``create_graph=True`` it differentiates
    :func:`pairwise_softmax_loss` over recomputed scores, so that higher
    orders are exact.
    """

    @staticmethod
    def forward(
        ctx: Any,
        pos: torch.Tensor,
        users: torch.Tensor,
        items: torch.Tensor | None,
        rows: torch.Tensor | None,
        options: tuple[float, Activation, float, float, bool],
        offsets: torch.Tensor | float | None,
        drop: torch.Tensor | None,
        hits: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        tau, kind, scale, eps, include = options
        ctx.save_for_backward(pos, users, items, rows, _tensor_offsets(offsets), drop)
        widths = _vector_widths(items, rows)
        exp_parts, top, neg_sum, extra = _exponentials(
            _vector_block_scores(users, items, rows),
            pos,
            widths,
            tau,
            offsets,
            drop,
            include,
            hits,
            (kind, scale, eps),
        )
        assert extra is not None
        fac_parts, fac_sum = extra
        terms, total, valid = _row_terms(pos, top, neg_sum, widths, tau, 1.0, include, drop, hits)
        ctx.psl = (options, offsets if not isinstance(offsets, torch.Tensor) else None, valid)
        # The exponentials alone serve only the gradient of a tensor log_q.
        ctx.buffers = (exp_parts if ctx.needs_input_grad[5] else None, fac_parts, fac_sum, total)
        return terms

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        pos, users, items, rows, tensor_offsets, drop = ctx.saved_tensors
        (tau, kind, scale, eps, include), float_offsets, valid = ctx.psl
        offsets = float_offsets if tensor_offsets is None else tensor_offsets
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():
            # create_graph=True: differentiate the loss over recomputed scores instead.
            given = (pos, users, items, rows, tensor_offsets)
            wanted = [
                x is not None and bool(n) for x, n in zip(given, (*need[:4], need[5]), strict=True)
            ]
            terms = pairwise_softmax_loss(
                pos,
                _vector_scores(users, items, rows),
                temperature=tau,
                activation=kind,
                score_scale=scale,
                log_q=offsets,
                mask=drop,
                include_positive=include,
                eps=eps,
                reduction="none",
            )
            found = iter(
                torch.autograd.grad(
                    terms,
                    [x for x, w in zip(given, wanted, strict=True) if w],
                    grad,
                    create_graph=True,
                )
            )
            g = [next(found) if w else None for w in wanted]
            return g[0], g[1], g[2], g[3], None, g[4], None, None
        exp_parts, fac_parts, fac_sum, total = ctx.buffers
        biggest = torch.finfo(grad.dtype).max
        row = grad / total
        if valid is not None:
            row = torch.where(valid, row, torch.zeros_like(row))
        # d loss / d s_k = p_k sigma'(d_k) / (S T): the kept parts times the row's scale.
        row_scale = (row / (scale * tau)).clamp(-biggest, biggest)[:, None]
        grad_pos = grad_offsets = None
        if need[0]:
            grad_pos = (-fac_sum * row_scale[:, 0]).clamp(-biggest, biggest)
        grad_users, grad_items, grad_rows = _vector_gradients(
            fac_parts, row_scale, users, items, rows, need[1:4]
        )
        if need[5]:
            # d loss / d log q_k = -p_k.
            assert exp_parts is not None
            grad_offsets = torch.cat([part * -row[:, None] for part in exp_parts], dim=1)
        return grad_pos, grad_users, grad_items, grad_rows, None, grad_offsets, None, None


def _vector_gradients(
    parts: list[torch.Tensor],
    row_scale: torch.Tensor | None,
    users: torch.Tensor,
    items: torch.Tensor | None,
    rows: torch.Tensor | None,
    need: tuple[bool, ...],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The gradients of the user, shared and per-row vectors from the scores' gradient.

    The scores' gradient is ``parts[i] * row_scale`` (``row_scale`` ``(B, 1)``,
    or ``parts`` itself where it is ``None``): the scale goes onto the ``(B, d)``
    sides of the products instead of a pass over the ``(B, K)`` parts.
    ``need`` says which of the three are wanted.
    """
    shared_part = parts[0] if items is not None else None
    row_part = parts[-1] if rows is not None else None
    grad_users = grad_items = grad_rows = None
    if need[0]:
        total = None
        if items is not None and shared_part is not None:
            total = shared_part @ items
        if rows is not None and row_part is not None:
            own = torch.bmm(row_part.unsqueeze(1), rows).squeeze(1)
            total = own if total is None else total + own
        assert total is not None
        grad_users = total if row_scale is None else total * row_scale
    scaled_users = users if row_scale is None else users * row_scale
    if need[1] and shared_part is not None:
        # (u^T P)^T: about 10% faster than P^T u on the CPU (no transposed operand).
        grad_items = (scaled_users.T @ shared_part).T.contiguous()
    if need[2] and row_part is not None:
        grad_rows = row_part.unsqueeze(2) * scaled_users.unsqueeze(1)
    return grad_users, grad_items, grad_rows


def _vector_widths(items: torch.Tensor | None, rows: torch.Tensor | None) -> list[int]:
    """The column parts: ``K`` shared items, then ``n`` of each row's own (those given)."""
    widths = [] if items is None else [items.shape[0]]
    return widths if rows is None else [*widths, rows.shape[1]]


def _vector_block_scores(
    users: torch.Tensor, items: torch.Tensor | None, rows: torch.Tensor | None
) -> _BlockScores:
    """Scores of a block of rows from the vectors, written into the block's parts."""

    def scores_of(start: int, length: int, outs: list[torch.Tensor]) -> list[torch.Tensor]:
        user_block = users.narrow(0, start, length)
        if items is not None:
            torch.mm(user_block, items.T, out=outs[0])
        if rows is not None:
            own = rows.narrow(0, start, length)
            torch.bmm(own, user_block.unsqueeze(2), out=outs[-1].unsqueeze(2))
        return outs

    return scores_of
