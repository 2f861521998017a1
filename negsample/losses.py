"""Loss modules: thin ``nn.Module`` wrappers over :mod:`negsample.functional`.

Each module only stores its options (checked when it is built) and calls the
matching function, so a module and its functional form cannot drift apart.
"""

from __future__ import annotations

import torch
from torch import nn

from negsample.functional import (
    Activation,
    Reduction,
    _check_activation,
    _check_bool,
    _check_eps,
    _check_include_positive,
    _check_neg_weight,
    _check_positive_float,
    _check_reduction,
    _check_softmax_neg_weight,
    _check_temperature,
    bce_loss,
    bpr_loss,
    pairwise_softmax_loss,
    pairwise_softmax_loss_from_vectors,
    sampled_softmax_loss,
    sampled_softmax_loss_from_vectors,
    softmax_at_k_loss,
    softmax_at_k_loss_from_vectors,
)

__all__ = ["BCELoss", "BPRLoss", "PairwiseSoftmaxLoss", "SampledSoftmaxLoss", "SoftmaxAtKLoss"]


class BPRLoss(nn.Module):
    """Bayesian personalised ranking loss, ``-log(sigmoid(pos - neg))`` per pair.

    See :func:`negsample.functional.bpr_loss` for the shapes and the maths.

    Args:
        reduction: ``"mean"`` over the ``B * N`` pairs, ``"sum"``, or ``"none"``
            for the ``(B, N)`` per-pair terms.

    Raises:
        ValueError: For an unknown ``reduction``.

    Example:
        >>> loss_fn = BPRLoss()
        >>> loss_fn
        BPRLoss(reduction='mean')
        >>> loss_fn(torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        tensor(0.5982)
    """

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction: Reduction = _check_reduction(reduction)

    def forward(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        """Loss of positives ``(B,)`` or ``(B, 1)`` against negatives ``(B, N)``.

        Args:
            pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
            neg_scores: Scores of each row's negatives, shape ``(B, N)``; shape
                ``(B,)`` is read as ``N = 1``.

        Returns:
            A scalar, or the ``(B, N)`` per-pair terms for ``reduction="none"``.

        Raises:
            TypeError: If a score tensor is not floating point.
            ValueError: For wrong or mismatched shapes, an empty batch, no
                negatives, or inputs on different devices.
        """
        return bpr_loss(pos_scores, neg_scores, reduction=self.reduction)

    def extra_repr(self) -> str:
        """Show the options in the module's repr."""
        return f"reduction={self.reduction!r}"


class BCELoss(nn.Module):
    """Binary cross-entropy with logits, positives labelled 1 and negatives 0.

    See :func:`negsample.functional.bce_loss` for the shapes, the weighting and
    what each reduction divides by.

    Args:
        reduction: ``"mean"`` over all ``B + B * N`` terms, ``"sum"``, or
            ``"none"`` for a ``(B, 1 + N)`` tensor (column 0: positives).
        neg_weight: Factor on every negative term, a finite float ``>= 0``;
            ``None`` means 1.

    Raises:
        ValueError: For an unknown ``reduction`` or a negative or non-finite
            ``neg_weight``.
        TypeError: If ``neg_weight`` is not ``None`` or a real number.

    Example:
        >>> loss_fn = BCELoss(neg_weight=0.25)
        >>> loss_fn
        BCELoss(reduction='mean', neg_weight=0.25)
        >>> loss_fn(torch.tensor([0.0]), torch.zeros(1, 4))
        tensor(0.2773)
    """

    def __init__(self, reduction: Reduction = "mean", neg_weight: float | None = None) -> None:
        super().__init__()
        self.reduction: Reduction = _check_reduction(reduction)
        self.neg_weight = _check_neg_weight(neg_weight)

    def forward(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        """Loss of positives ``(B,)`` or ``(B, 1)`` against negatives ``(B, N)``.

        Args:
            pos_scores: Logits of the positives (label 1), shape ``(B,)`` or ``(B, 1)``.
            neg_scores: Logits of each row's negatives (label 0), shape ``(B, N)``;
                shape ``(B,)`` is read as ``N = 1``.

        Returns:
            A scalar, or a ``(B, 1 + N)`` tensor for ``reduction="none"``
            (column 0: the positives' terms).

        Raises:
            TypeError: If a score tensor is not floating point.
            ValueError: For wrong or mismatched shapes, an empty batch, no
                negatives, or inputs on different devices.
        """
        return bce_loss(
            pos_scores, neg_scores, reduction=self.reduction, neg_weight=self.neg_weight
        )

    def extra_repr(self) -> str:
        """Show the options in the module's repr."""
        return f"reduction={self.reduction!r}, neg_weight={self.neg_weight!r}"


class SampledSoftmaxLoss(nn.Module):
    """Sampled softmax (InfoNCE) loss with temperature, logQ correction and a negative mask.

    See :func:`negsample.functional.sampled_softmax_loss` for the formula, the
    shapes and which ``log_q`` makes the sum an unbiased estimate of the full
    softmax's normaliser. Pair it with
    :class:`~negsample.SharedNegativeSampler`: its ``mask`` and ``log_prob``
    go straight into ``forward``.

    Args:
        temperature: Scores are divided by it, a finite float ``> 0``.
        neg_weight: Weight of the negatives' log-sum-exp against the positive's
            score, a finite float ``> 0`` (``1``: the usual softmax).
        include_positive: Whether the positive is in the normaliser
            (``False`` with ``neg_weight > 1``: the bilateral softmax loss, BSL,
            as its authors' code computes it).
        reduction: ``"mean"`` over the ``B`` rows, ``"sum"``, or ``"none"`` for
            the ``(B,)`` per-row losses.

    Raises:
        ValueError: For an unknown ``reduction`` or a non-positive or
            non-finite ``temperature`` or ``neg_weight``.
        TypeError: If ``temperature`` or ``neg_weight`` is not a real number,
            or ``include_positive`` is not a bool.

    Example:
        >>> loss_fn = SampledSoftmaxLoss(temperature=0.5)
        >>> loss_fn
        SampledSoftmaxLoss(temperature=0.5, reduction='mean')
        >>> pos, neg = torch.tensor([1.0]), torch.tensor([[1.0, 0.0, 2.0]])
        >>> loss_fn(pos, neg, mask=torch.tensor([[False, False, True]]))
        tensor(0.7586)
        >>> SampledSoftmaxLoss(temperature=0.1, neg_weight=1.2, include_positive=False)
        SampledSoftmaxLoss(temperature=0.1, neg_weight=1.2, include_positive=False, reduction='mean')
    """

    def __init__(
        self,
        temperature: float = 1.0,
        reduction: Reduction = "mean",
        *,
        neg_weight: float = 1.0,
        include_positive: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.neg_weight = _check_softmax_neg_weight(neg_weight)
        self.include_positive = _check_include_positive(include_positive)
        self.reduction: Reduction = _check_reduction(reduction)

    def forward(
        self,
        pos_scores: torch.Tensor,
        neg_scores: torch.Tensor,
        *,
        log_q: torch.Tensor | float | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of positives against negatives, each row over its unmasked negatives.

        Args:
            pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
            neg_scores: Scores of the negatives, shape ``(B, K)``.
            log_q: ``None``, a float, or a floating tensor broadcastable to
                ``(B, K)``, subtracted from each ``neg / temperature``.
            mask: ``None`` or a bool tensor broadcastable to ``(B, K)``;
                ``True`` drops that negative.

        Returns:
            A scalar, or ``(B,)`` for ``reduction="none"``.
        """
        return sampled_softmax_loss(
            pos_scores,
            neg_scores,
            temperature=self.temperature,
            log_q=log_q,
            mask=mask,
            neg_weight=self.neg_weight,
            include_positive=self.include_positive,
            reduction=self.reduction,
        )

    def from_vectors(
        self,
        pos_scores: torch.Tensor,
        user_vectors: torch.Tensor,
        item_vectors: torch.Tensor | None = None,
        row_vectors: torch.Tensor | None = None,
        *,
        log_q: torch.Tensor | float | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The same loss over negatives scored as inner products, without their score matrix.

        See :func:`negsample.functional.sampled_softmax_loss_from_vectors`: the
        negatives are ``K`` items shared by every row (``item_vectors``, ``(K, d)``)
        and ``n`` of each row's own (``row_vectors``, ``(B, n, d)``), in that
        order for ``log_q`` and ``mask``. With :class:`~negsample.MFModel`,
        ``model.user_vectors(users)`` and ``model.item_vectors(items)``.

        Args:
            pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
            user_vectors: ``(B, d)``.
            item_vectors: ``(K, d)`` or ``None``.
            row_vectors: ``(B, n, d)`` or ``None``.
            log_q: ``None``, a float, or a floating tensor broadcastable to ``(B, K + n)``.
            mask: ``None`` or a bool tensor broadcastable to ``(B, K + n)``.

        Returns:
            A scalar, or ``(B,)`` for ``reduction="none"``.

        Example:
            >>> from negsample import MFModel
            >>> _ = torch.manual_seed(0)
            >>> model = MFModel(4, 10, dim=8, similarity="cosine")
            >>> users, pos_items = torch.tensor([0, 3]), torch.tensor([1, 2])
            >>> shared, own = torch.tensor([5, 6, 7]), torch.tensor([[8], [9]])
            >>> loss_fn = SampledSoftmaxLoss(temperature=0.1)
            >>> fused = loss_fn.from_vectors(
            ...     model(users, pos_items), model.user_vectors(users),
            ...     model.item_vectors(shared), model.item_vectors(own))
            >>> scores = torch.cat([model(users[:, None], shared[None, :]),
            ...                     model(users[:, None], own)], dim=1)
            >>> torch.allclose(fused, loss_fn(model(users, pos_items), scores))
            True
        """
        return sampled_softmax_loss_from_vectors(
            pos_scores,
            user_vectors,
            item_vectors,
            row_vectors,
            temperature=self.temperature,
            log_q=log_q,
            mask=mask,
            neg_weight=self.neg_weight,
            include_positive=self.include_positive,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Show the options in the module's repr (the negative options where not default)."""
        options = f"temperature={self.temperature!r}"
        if self.neg_weight != 1.0 or not self.include_positive:
            options += (
                f", neg_weight={self.neg_weight!r}, include_positive={self.include_positive!r}"
            )
        return f"{options}, reduction={self.reduction!r}"


class SoftmaxAtKLoss(nn.Module):
    r"""SL\@K: the sampled softmax loss of each row weighted by its positive against the top K.

    See :func:`negsample.functional.softmax_at_k_loss` for the formula, the
    thresholds and the choice of ``detach_weight``; the thresholds come from
    :func:`negsample.estimate_topk_thresholds`, re-estimated every few epochs.
    ``forward`` takes scores (e.g. a candidate set's
    :meth:`~negsample.samplers.CandidateSet.scores` with its ``log_q`` and
    ``mask``), :meth:`from_vectors` the vectors of
    :meth:`MFModel.candidate_vectors <negsample.MFModel.candidate_vectors>`,
    as :class:`~negsample.SampledSoftmaxLoss` does.

    Args:
        temperature: The softmax's temperature, a finite float ``> 0``.
        weight_temperature: The weight's temperature :math:`\tau_w`, a finite
            float ``> 0``.
        reduction: ``"mean"`` over the ``B`` rows, ``"sum"``, or ``"none"`` for
            the ``(B,)`` weighted per-row losses.
        detach_weight: No gradient through the weight (the default);
            ``False`` is the authors' code.
        neg_weight: As in :class:`~negsample.SampledSoftmaxLoss`.
        include_positive: As there (``False`` in the authors' code).

    Raises:
        ValueError: For an unknown ``reduction`` or a non-positive or
            non-finite temperature or ``neg_weight``.
        TypeError: If an option has the wrong type.

    Example:
        >>> loss_fn = SoftmaxAtKLoss(temperature=0.5, weight_temperature=2.0)
        >>> loss_fn
        SoftmaxAtKLoss(temperature=0.5, weight_temperature=2.0, detach_weight=True, reduction='mean')
        >>> pos, neg = torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 0.0], [0.5, 0.0]])
        >>> thresholds = torch.tensor([0.5, 0.5])
        >>> loss_fn(pos, neg, thresholds)
        tensor(0.5529)
    """

    def __init__(
        self,
        temperature: float = 1.0,
        weight_temperature: float = 1.0,
        reduction: Reduction = "mean",
        *,
        detach_weight: bool = True,
        neg_weight: float = 1.0,
        include_positive: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.weight_temperature = _check_positive_float("weight_temperature", weight_temperature)
        self.detach_weight = _check_bool("detach_weight", detach_weight)
        self.neg_weight = _check_softmax_neg_weight(neg_weight)
        self.include_positive = _check_include_positive(include_positive)
        self.reduction: Reduction = _check_reduction(reduction)

    def forward(
        self,
        pos_scores: torch.Tensor,
        neg_scores: torch.Tensor,
        thresholds: torch.Tensor | float,
        *,
        log_q: torch.Tensor | float | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Weighted loss of positives against negatives, each row over its unmasked negatives.

        Args:
            pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
            neg_scores: Scores of the negatives, shape ``(B, K)``.
            thresholds: Each row's top-``K`` threshold, ``(B,)`` or ``(B, 1)``
                (e.g. ``thresholds[users]``), or one float.
            log_q: ``None``, a float, or a floating tensor broadcastable to
                ``(B, K)``, subtracted from each ``neg / temperature``.
            mask: ``None`` or a bool tensor broadcastable to ``(B, K)``;
                ``True`` drops that negative.

        Returns:
            A scalar, or ``(B,)`` for ``reduction="none"``.
        """
        return softmax_at_k_loss(
            pos_scores,
            neg_scores,
            thresholds,
            weight_temperature=self.weight_temperature,
            detach_weight=self.detach_weight,
            temperature=self.temperature,
            log_q=log_q,
            mask=mask,
            neg_weight=self.neg_weight,
            include_positive=self.include_positive,
            reduction=self.reduction,
        )

    def from_vectors(
        self,
        pos_scores: torch.Tensor,
        user_vectors: torch.Tensor,
        item_vectors: torch.Tensor | None = None,
        row_vectors: torch.Tensor | None = None,
        *,
        thresholds: torch.Tensor | float,
        log_q: torch.Tensor | float | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The same loss over negatives scored as inner products, without their score matrix.

        See :func:`negsample.functional.softmax_at_k_loss_from_vectors` and
        :meth:`SampledSoftmaxLoss.from_vectors
        <negsample.SampledSoftmaxLoss.from_vectors>`: with a candidate set,
        ``loss_fn.from_vectors(*model.candidate_vectors(users, pos_items,
        cands.items, cands.row_items), thresholds=thresholds[users],
        log_q=cands.log_q, mask=cands.mask)``.

        Args:
            pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
            user_vectors: ``(B, d)``.
            item_vectors: ``(K, d)`` or ``None``.
            row_vectors: ``(B, n, d)`` or ``None``.
            thresholds: Each row's top-``K`` threshold, ``(B,)`` or ``(B, 1)``,
                or one float.
            log_q: ``None``, a float, or a floating tensor broadcastable to ``(B, K + n)``.
            mask: ``None`` or a bool tensor broadcastable to ``(B, K + n)``.

        Returns:
            A scalar, or ``(B,)`` for ``reduction="none"``.
        """
        return softmax_at_k_loss_from_vectors(
            pos_scores,
            user_vectors,
            item_vectors,
            row_vectors,
            thresholds=thresholds,
            weight_temperature=self.weight_temperature,
            detach_weight=self.detach_weight,
            temperature=self.temperature,
            log_q=log_q,
            mask=mask,
            neg_weight=self.neg_weight,
            include_positive=self.include_positive,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Show the options in the module's repr (the negative options where not default)."""
        options = (
            f"temperature={self.temperature!r}, weight_temperature={self.weight_temperature!r}, "
            f"detach_weight={self.detach_weight!r}"
        )
        if self.neg_weight != 1.0 or not self.include_positive:
            options += (
                f", neg_weight={self.neg_weight!r}, include_positive={self.include_positive!r}"
            )
        return f"{options}, reduction={self.reduction!r}"


class PairwiseSoftmaxLoss(nn.Module):
    r"""Pairwise softmax loss (PSL): the softmax over score gaps through a surrogate activation.

    See :func:`negsample.functional.pairwise_softmax_loss` for the formula,
    the activations, the two temperatures and the floor ``eps`` of
    ``"relu"`` and ``"atan"``. It takes scores, with ``log_q`` and ``mask``
    as :class:`~negsample.SampledSoftmaxLoss` does: for a candidate set,
    ``loss_fn(model(users, pos_items), cands.scores(model, users),
    log_q=cands.log_q, mask=cands.mask)``, or, fused and without the score
    matrix, the model's vectors through :meth:`from_vectors`.

    Args:
        temperature: :math:`\tau` outside the activation, a finite float ``> 0``
            (the authors' ``tau_star``).
        activation: ``"tanh"``, ``"atan"``, ``"relu"`` or ``"exp"``.
        reduction: ``"mean"`` over the ``B`` rows, ``"sum"``, or ``"none"`` for
            the ``(B,)`` per-row losses.
        score_scale: What the score gaps are divided by before the activation,
            a finite float ``> 0`` (the authors' ``tau``, 2 with cosine scores).
        include_positive: Whether the positive's term 1 is in the normaliser
            (``False`` in the authors' code).
        eps: The floor of ``"relu"`` and ``"atan"`` before the logarithm, in ``(0, 1)``.

    Raises:
        ValueError: For an unknown ``reduction`` or ``activation``, or an option
            out of range.
        TypeError: If an option has the wrong type.

    Example:
        >>> loss_fn = PairwiseSoftmaxLoss(temperature=0.1)
        >>> loss_fn
        PairwiseSoftmaxLoss(temperature=0.1, activation='tanh', score_scale=2.0, reduction='mean')
        >>> pos, neg = torch.tensor([0.5]), torch.tensor([[0.25, -0.5, 0.75]])
        >>> loss_fn(pos, neg, mask=torch.tensor([[False, False, True]]))
        tensor(0.2367)
    """

    def __init__(
        self,
        temperature: float = 1.0,
        activation: Activation = "tanh",
        reduction: Reduction = "mean",
        *,
        score_scale: float = 2.0,
        include_positive: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.activation: Activation = _check_activation(activation)
        self.score_scale = _check_positive_float("score_scale", score_scale)
        self.include_positive = _check_include_positive(include_positive)
        self.eps = _check_eps(eps)
        self.reduction: Reduction = _check_reduction(reduction)

    def forward(
        self,
        pos_scores: torch.Tensor,
        neg_scores: torch.Tensor,
        *,
        log_q: torch.Tensor | float | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of positives against negatives, each row over its unmasked negatives.

        Args:
            pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
            neg_scores: Scores of the negatives, shape ``(B, K)``.
            log_q: ``None``, a float, or a floating tensor broadcastable to
                ``(B, K)``, subtracted from each negative's exponent.
            mask: ``None`` or a bool tensor broadcastable to ``(B, K)``;
                ``True`` drops that negative.

        Returns:
            A scalar, or ``(B,)`` for ``reduction="none"``.
        """
        return pairwise_softmax_loss(
            pos_scores,
            neg_scores,
            temperature=self.temperature,
            activation=self.activation,
            score_scale=self.score_scale,
            log_q=log_q,
            mask=mask,
            include_positive=self.include_positive,
            eps=self.eps,
            reduction=self.reduction,
        )

    def from_vectors(
        self,
        pos_scores: torch.Tensor,
        user_vectors: torch.Tensor,
        item_vectors: torch.Tensor | None = None,
        row_vectors: torch.Tensor | None = None,
        *,
        log_q: torch.Tensor | float | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The same loss over negatives scored as inner products, without their score matrix.

        See :func:`negsample.functional.pairwise_softmax_loss_from_vectors`
        and :meth:`SampledSoftmaxLoss.from_vectors
        <negsample.SampledSoftmaxLoss.from_vectors>`: with a candidate set,
        ``loss_fn.from_vectors(*model.candidate_vectors(users, pos_items,
        cands.items, cands.row_items), log_q=cands.log_q, mask=cands.mask)``.

        Args:
            pos_scores: Scores of the positives, shape ``(B,)`` or ``(B, 1)``.
            user_vectors: ``(B, d)``.
            item_vectors: ``(K, d)`` or ``None``.
            row_vectors: ``(B, n, d)`` or ``None``.
            log_q: ``None``, a float, or a floating tensor broadcastable to ``(B, K + n)``.
            mask: ``None`` or a bool tensor broadcastable to ``(B, K + n)``.

        Returns:
            A scalar, or ``(B,)`` for ``reduction="none"``.

        Example:
            >>> from negsample import MFModel
            >>> _ = torch.manual_seed(0)
            >>> model = MFModel(4, 10, dim=8, similarity="cosine")
            >>> users, pos_items = torch.tensor([0, 3]), torch.tensor([1, 2])
            >>> shared, own = torch.tensor([5, 6, 7]), torch.tensor([[8], [9]])
            >>> loss_fn = PairwiseSoftmaxLoss(temperature=0.05, include_positive=False)
            >>> fused = loss_fn.from_vectors(
            ...     model(users, pos_items), model.user_vectors(users),
            ...     model.item_vectors(shared), model.item_vectors(own))
            >>> scores = torch.cat([model(users[:, None], shared[None, :]),
            ...                     model(users[:, None], own)], dim=1)
            >>> torch.allclose(fused, loss_fn(model(users, pos_items), scores))
            True
        """
        return pairwise_softmax_loss_from_vectors(
            pos_scores,
            user_vectors,
            item_vectors,
            row_vectors,
            temperature=self.temperature,
            activation=self.activation,
            score_scale=self.score_scale,
            log_q=log_q,
            mask=mask,
            include_positive=self.include_positive,
            eps=self.eps,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Show the options in the module's repr (``include_positive`` and ``eps`` where not default)."""
        options = (
            f"temperature={self.temperature!r}, activation={self.activation!r}, "
            f"score_scale={self.score_scale!r}"
        )
        if not self.include_positive:
            options += ", include_positive=False"
        if self.eps != 1e-6:
            options += f", eps={self.eps!r}"
        return f"{options}, reduction={self.reduction!r}"
