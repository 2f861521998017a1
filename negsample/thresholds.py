r"""Each user's top-K score threshold, estimated from sampled items: :func:`~negsample.estimate_topk_thresholds`.

What :func:`~negsample.functional.softmax_at_k_loss` (SL\@K) weighs each
positive against: the score of the user's ``K``-th best item. Scoring every
item for every user is the exact answer and costs a full ranking; the
estimate scores each user's known positives and a sample of the other items,
and takes the ``K``-th highest of those scores, as the SL\@K authors do. It
runs under ``no_grad``, in batches of users, and draws only through a seeded
``torch.Generator`` (or the sampler it is given), so it is reproducible.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from negsample._checks import (
    _short,
    as_index_tensor,
    check_ids_in_range,
    check_int,
    make_generator,
)
from negsample._random import resolve_generator
from negsample.index import NO_NEGATIVE, PositiveIndex
from negsample.samplers import (
    HardNegativeSampler,
    Scorer,
    SharedNegativeSampler,
    UniformSampler,
)
from negsample.typing import IdsLike

__all__ = ["estimate_topk_thresholds"]


def estimate_topk_thresholds(
    scorer: Scorer,
    index: PositiveIndex,
    k: int,
    candidates: int | UniformSampler | HardNegativeSampler | SharedNegativeSampler | None = 1000,
    *,
    users: IdsLike | None = None,
    batch_size: int = 1024,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    r"""Estimate each user's top-``k`` threshold: the ``k``-th highest score over the catalogue.

    For each user, the scores of every known positive and of the candidate
    items are pooled and the ``k``-th highest is the estimate (the SL\@K
    authors' "negative sampling trick": all positives, because the top ``k``
    is mostly among them, plus ``N`` items drawn uniformly from the user's
    non-positives). Each distinct item counts once: a candidate drawn twice
    is scored once.

    What it guarantees, for the scorer as it is when called:

    * never above the exact threshold (the ``k``-th highest score over every
      item): the pooled items are distinct items of the catalogue;
    * equal to it with ``candidates=None`` (every item scored: exact, at the
      cost of a full ranking), and whenever the user's exact top ``k`` are
      all known positives;
    * ``-inf`` where fewer than ``k`` distinct items were scored (every
      scored item is then inside the top ``k``), which gives weight 1 in
      :func:`~negsample.functional.softmax_at_k_loss`.

    Between those, it is a sample quantile: the larger ``N``, the closer.
    The thresholds move as the model trains; the authors re-estimate them
    every 5 or 20 epochs and hold them fixed in between (see the docs page
    "Softmax losses with many negatives").

    Args:
        scorer: ``scorer(users, items) -> scores``, called under ``no_grad``
            with ``users`` of shape ``(b, 1)`` and ``items`` of shape ``(b, w)``
            or ``(1, w)`` (broadcasting, as :class:`~negsample.MFModel` does);
            must return ``(b, w)`` floating scores. Put a model with dropout in
            ``eval()`` mode first.
        index: The users' known positives; every one is scored.
        k: ``K``, ``>= 1``.
        candidates: What else is scored per user: an int ``N >= 1``, that many
            items drawn uniformly with replacement from each user's
            non-positives (the authors' scheme, drawn with ``generator``); a
            :class:`~negsample.UniformSampler` or
            :class:`~negsample.HardNegativeSampler` over ``index`` (its
            negatives of each user, drawn with its own generator; hard ones
            raise the estimate towards the exact value, never past it); a
            :class:`~negsample.SharedNegativeSampler` over ``index`` (one draw
            shared by a batch of users, scored as one matrix product; the
            known positives among it are dropped); or ``None`` for every item.
        users: 1-D integer ids of the users to estimate, on the index's
            device; ``None`` for all ``index.num_users``.
        batch_size: Users scored at a time, ``>= 1`` (memory: about
            ``batch_size * (max degree + N)`` scores, ``batch_size * num_items``
            with ``candidates=None``).
        generator: ``None`` (torch's default generator), an int seed or a
            ``torch.Generator`` on the index's device, for an int ``candidates``.

    Returns:
        The estimates, shape ``(len(users),)`` (``(num_users,)`` by default),
        in the scorer's dtype, on the index's device.

    Raises:
        TypeError: If ``scorer`` is not callable, ``index`` is not a
            :class:`~negsample.PositiveIndex`, ``k``, ``batch_size`` or
            ``candidates`` has the wrong type, ids are not integers, or the
            scorer returns something other than a floating tensor.
        ValueError: If ``k``, ``batch_size`` or ``candidates`` is out of range,
            a sampler samples another index or is given with a ``generator``,
            ``users`` is not 1-D, is on another device or holds an
            out-of-range id, or the scorer returns the wrong shape.

    Example:
        >>> from negsample import PositiveIndex
        >>> index = PositiveIndex.from_dict({0: [1], 1: [0, 1]}, num_items=6)
        >>> def scorer(users, items):  # user 0 prefers high ids, user 1 low ones
        ...     return torch.where(users == 0, items, -items).float()
        >>> estimate_topk_thresholds(scorer, index, 2, candidates=None)  # exact
        tensor([ 4., -1.])
        >>> estimate = estimate_topk_thresholds(scorer, index, 2, candidates=3, generator=0)
        >>> bool((estimate <= torch.tensor([4.0, -1.0])).all())
        True
        >>> estimate[1]  # user 1's top 2 are its positives 0 and 1: exact
        tensor(-1.)
    """
    if not callable(scorer):
        raise TypeError(f"scorer must be callable, got {type(scorer).__name__}")
    if not isinstance(index, PositiveIndex):
        raise TypeError(f"index must be a PositiveIndex, got {type(index).__name__}")
    k = check_int("k", k, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    generator_arg = make_generator("generator", generator)
    source: int | UniformSampler | HardNegativeSampler | SharedNegativeSampler | None = None
    if isinstance(candidates, (UniformSampler, HardNegativeSampler, SharedNegativeSampler)):
        if candidates.index is not index:
            raise ValueError(
                "candidates samples another index: build the sampler over the same PositiveIndex"
            )
        if generator_arg is not None:
            raise ValueError(
                "generator is for an int candidates; a sampler draws with its own generator"
            )
        source = candidates
    elif candidates is not None:
        number: Any = candidates  # typed int, but a caller may pass anything
        if isinstance(number, (bool, np.bool_)) or not isinstance(number, numbers.Integral):
            raise TypeError(
                f"candidates must be an int, a UniformSampler, HardNegativeSampler or "
                f"SharedNegativeSampler, or None, got {_short(number)} ({type(number).__name__})"
            )
        source = check_int("candidates", number, minimum=1)
    users_t = _check_users(index, users)
    draws = resolve_generator(generator_arg, index.device)
    estimates = []
    with torch.no_grad():
        for start in range(0, users_t.numel(), batch_size):
            block = users_t[start : start + batch_size]
            if source is None:
                items = torch.arange(index.num_items, device=index.device)[None, :]
                parts = [_scores(scorer, block, items)]
            else:
                parts = [_positive_scores(scorer, index, block)]
                parts.append(_candidate_scores(scorer, index, block, source, draws))
            dtype = parts[0].dtype
            estimates.append(_kth_highest(torch.cat([p.to(dtype) for p in parts], dim=1), k))
    if not estimates:
        return torch.empty(0, device=index.device)
    return torch.cat(estimates)


def _check_users(index: PositiveIndex, users: IdsLike | None) -> torch.Tensor:
    if users is None:
        return torch.arange(index.num_users, device=index.device)
    users_t = as_index_tensor("users", users)
    if users_t.ndim != 1:
        raise ValueError(f"users must be 1-D, got shape {tuple(users_t.shape)}")
    if users_t.device != index.device:
        raise ValueError(f"users are on {users_t.device} but the index is on {index.device}")
    check_ids_in_range("users", users_t, index.num_users, "user")
    return users_t.long()


def _scores(scorer: Scorer, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``scorer(users[:, None], items)``, checked to be ``(b, w)`` floating scores."""
    scores = scorer(users[:, None], items)
    shape = (users.numel(), items.shape[1])
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        got = scores.dtype if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise TypeError(f"scorer must return a floating-point tensor, got {got}")
    if scores.shape != shape:
        raise ValueError(
            f"scorer(users, items) must return scores of shape {shape} for users of shape "
            f"{(shape[0], 1)} and items of shape {tuple(items.shape)}, got shape "
            f"{tuple(scores.shape)}"
        )
    return scores


def _positive_scores(scorer: Scorer, index: PositiveIndex, users: torch.Tensor) -> torch.Tensor:
    """Every known positive's score, ``(b, max degree)``, ``-inf`` past each row's degree."""
    degrees = index.degree(users, validate=False)
    width = int(degrees.max()) if users.numel() else 0
    if width == 0:
        return torch.empty((users.numel(), 0), device=index.device)
    slots = torch.arange(width, device=index.device)
    present = slots < degrees[:, None]
    positions = torch.where(present, index.indptr[users].long()[:, None] + slots, 0)
    scores = _scores(scorer, users, index._items_at(positions))
    return scores.masked_fill(~present, -math.inf)


def _candidate_scores(
    scorer: Scorer,
    index: PositiveIndex,
    users: torch.Tensor,
    candidates: int | UniformSampler | HardNegativeSampler | SharedNegativeSampler,
    draws: torch.Generator | None,
) -> torch.Tensor:
    """The candidates' scores, ``-inf`` for a repeat, a known positive or no item."""
    if isinstance(candidates, SharedNegativeSampler):
        shared = candidates.sample(users)
        items, order = torch.sort(shared.items)
        drop = shared.mask[:, order] | _repeats(items[None, :])
        return _scores(scorer, users, items[None, :]).masked_fill(drop, -math.inf)
    if isinstance(candidates, int):
        drawn = index.sample(users, candidates, generator=draws, validate=False)
    else:
        drawn = candidates.sample(users, scorer)
    items = torch.sort(drawn, dim=1).values
    # A user without non-positives gets NO_NEGATIVE (-1) slots: scored as item 0, dropped.
    drop = (items == NO_NEGATIVE) | _repeats(items)
    return _scores(scorer, users, items.clamp(min=0)).masked_fill(drop, -math.inf)


def _repeats(sorted_items: torch.Tensor) -> torch.Tensor:
    """``True`` where an item equals the one before it in its (sorted) row."""
    repeat = torch.zeros_like(sorted_items, dtype=torch.bool)
    repeat[:, 1:] = sorted_items[:, 1:] == sorted_items[:, :-1]
    return repeat


def _kth_highest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's ``k``-th highest score; ``-inf`` for a row of fewer than ``k`` finite ones."""
    if scores.shape[1] < k:
        pad = scores.new_full((scores.shape[0], k - scores.shape[1]), -math.inf)
        scores = torch.cat([scores, pad], dim=1)
    return torch.topk(scores, k, dim=1).values[:, -1]
