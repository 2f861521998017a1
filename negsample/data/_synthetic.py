"""A synthetic dataset with planted low-rank structure and Zipf-like popularity."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from negsample._checks import check_int
from negsample.data._common import _check_float, _csr_index
from negsample.index import PositiveIndex

# Scores held at once by ``synthetic_dataset``: bounds memory at large sizes.
_SYNTHETIC_CHUNK_SCORES = 2**22


def synthetic_dataset(
    num_users: int = 2000,
    num_items: int = 1000,
    *,
    dim: int = 8,
    interactions_per_user: int = 20,
    popularity_alpha: float = 1.0,
    temperature: float = 0.2,
    seed: int = 0,
) -> PositiveIndex:
    """Positives with a planted low-rank structure and Zipf-like item popularity.

    User and item factors ``u, v`` are drawn ``N(0, I_dim)``; item popularity
    ranks ``r_i`` are a random permutation of ``0..num_items-1``. User ``u``'s
    positives are drawn without replacement with probability proportional to::

        exp(<u, v_i> / (sqrt(dim) * temperature)) * (1 + r_i) ** -popularity_alpha

    so a low ``temperature`` makes the taste structure sharp (the default makes
    it clearly learnable by matrix factorisation, well beyond popularity) and
    ``popularity_alpha = 0`` turns the popularity skew off. The number of
    positives per user is log-normal with mean about ``interactions_per_user``
    (sigma 0.5), clipped to ``[2, num_items - 1]``. Deterministic given
    ``seed`` (``numpy.random.default_rng(seed)``; no global state). The
    planted factors are not returned.

    Args:
        num_users: Number of users.
        num_items: Number of items, at least 3.
        dim: Rank of the planted factors.
        interactions_per_user: Mean positives per user, in ``[2, num_items - 1]``.
        popularity_alpha: Zipf exponent of the popularity, ``>= 0``.
        temperature: Sharpness of the taste structure, ``> 0``.
        seed: Seed, an int ``>= 0``.

    Returns:
        The positives as a :class:`~negsample.PositiveIndex` of shape
        ``(num_users, num_items)``; every user has at least 2.

    Example:
        >>> import torch
        >>> index = synthetic_dataset(100, 50, interactions_per_user=5, seed=1)
        >>> index.num_users, index.num_items, int(index.degree(torch.arange(100)).min()) >= 2
        (100, 50, True)
    """
    num_users = check_int("num_users", num_users, minimum=1)
    num_items = check_int("num_items", num_items, minimum=3)
    dim = check_int("dim", dim, minimum=1)
    mean_degree = check_int("interactions_per_user", interactions_per_user, minimum=2)
    if mean_degree > num_items - 1:
        raise ValueError(
            f"interactions_per_user must be <= num_items - 1 = {num_items - 1}, got {mean_degree}"
        )
    alpha = _check_float("popularity_alpha", popularity_alpha, positive=False)
    temp = _check_float("temperature", temperature, positive=True)
    seed = check_int("seed", seed, minimum=0)

    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((num_users, dim))
    item_factors = rng.standard_normal((num_items, dim)) / (math.sqrt(dim) * temp)
    log_popularity = -alpha * np.log1p(rng.permutation(num_items))
    sigma = 0.5
    sizes = rng.lognormal(math.log(mean_degree) - sigma**2 / 2, sigma, num_users)
    degrees = np.clip(np.rint(sizes), 2, num_items - 1).astype(np.int64)

    item_parts: list[npt.NDArray[np.int64]] = []
    chunk = max(1, _SYNTHETIC_CHUNK_SCORES // num_items)
    for start in range(0, num_users, chunk):
        stop = min(start + chunk, num_users)
        logits = user_factors[start:stop] @ item_factors.T + log_popularity
        # Gumbel-top-k: the k largest of logits + Gumbel noise are a draw of k items
        # without replacement with probabilities proportional to exp(logits).
        keys = logits + rng.gumbel(size=logits.shape)
        width = int(degrees[start:stop].max())
        top = np.argpartition(-keys, width - 1, axis=1)[:, :width]
        top_order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, top_order, axis=1)
        taken = np.arange(width) < degrees[start:stop, None]
        item_parts.append(top[taken].astype(np.int64))
    users = np.repeat(np.arange(num_users, dtype=np.int64), degrees)
    flat = np.sort(users * num_items + np.concatenate(item_parts))
    rows, items = np.divmod(flat, num_items)
    return _csr_index(rows, items, num_users, num_items)
