"""Holding out part of each user's positives for validation."""

from __future__ import annotations

import numpy as np

from negsample._checks import check_int
from negsample.data._common import _check_float, _csr_index
from negsample.index import PositiveIndex


def holdout_split(
    index: PositiveIndex, fraction: float = 0.2, *, seed: int = 0
) -> tuple[PositiveIndex, PositiveIndex]:
    """Hold out a random share of each user's positives for validation.

    A user with ``k >= 2`` positives gives ``round(fraction * k)`` of them
    (halves rounded up), but at least 1 when ``fraction > 0`` and at most
    ``k - 1``, chosen uniformly at random without replacement. A user with one
    positive keeps it in training. Both outputs have the input's ``num_users``
    and ``num_items`` and live on its device. Deterministic given ``seed``
    (``numpy.random.default_rng(seed)``; no global state).

    Args:
        index: The positives to split.
        fraction: Share of each user's positives to hold out, in ``[0, 1)``.
        seed: Seed of the split, an int ``>= 0``.

    Returns:
        ``(train, valid)``: disjoint per user, their union is ``index``.

    Raises:
        TypeError: If ``index`` is not a :class:`~negsample.PositiveIndex`.
        ValueError: If ``fraction`` is outside ``[0, 1)`` or ``seed`` is negative.

    Example:
        >>> import torch
        >>> index = PositiveIndex.from_dict({0: range(10), 1: [4]}, num_items=10)
        >>> train, valid = holdout_split(index, 0.2, seed=0)
        >>> users = torch.tensor([0, 1])
        >>> train.degree(users).tolist(), valid.degree(users).tolist()
        ([8, 1], [2, 0])
    """
    if not isinstance(index, PositiveIndex):
        raise TypeError(f"index must be a PositiveIndex, got {type(index).__name__}")
    share = _check_float("fraction", fraction, positive=False)
    if share >= 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {share}")
    seed = check_int("seed", seed, minimum=0)
    indptr = index.indptr.cpu().numpy().astype(np.int64)
    items = index.indices.cpu().numpy().astype(np.int64)
    degrees = np.diff(indptr)
    held = np.floor(share * degrees + 0.5).astype(np.int64)
    if share > 0:
        held = np.maximum(held, 1)
    held = np.where(degrees >= 2, np.minimum(held, degrees - 1), 0)
    row_of = np.repeat(np.arange(degrees.size, dtype=np.int64), degrees)
    # A uniformly random order within each row (distinct random keys, sorted by row first):
    # its first ``held`` entries are held out.
    keys = np.random.default_rng(seed).permutation(items.size)
    if degrees.size * max(items.size, 1) < 2**63:
        order = np.argsort(row_of * items.size + keys, kind="stable")
    else:
        order = np.lexsort((keys, row_of))
    rank = np.empty(items.size, dtype=np.int64)
    rank[order] = np.arange(items.size) - indptr[row_of[order]]
    valid = rank < held[row_of]
    train_index = _csr_index(row_of[~valid], items[~valid], index.num_users, index.num_items)
    valid_index = _csr_index(row_of[valid], items[valid], index.num_users, index.num_items)
    return train_index.to(index.device), valid_index.to(index.device)
