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
# Beyond it, degree_sigma**2 overflows float64; far below it every degree is clipped anyway.
_MAX_DEGREE_SIGMA = 1e150


def synthetic_dataset(
    num_users: int = 2000,
    num_items: int = 6000,
    *,
    dim: int = 8,
    interactions_per_user: int = 30,
    popularity_alpha: float = 0.6,
    temperature: float = 0.15,
    noise_fraction: float = 0.3,
    degree_sigma: float = 1.0,
    min_interactions: int = 2,
    seed: int = 0,
) -> PositiveIndex:
    """Positives with a planted low-rank structure, Zipf-like popularity and noise.

    User and item factors ``u, v`` are drawn ``N(0, I_dim)``; item popularity
    ranks ``r_i`` are a random permutation of ``0..num_items-1``. Each user
    gets a number of positives ``n_u``, log-normal with mean about
    ``interactions_per_user`` and log-scale ``degree_sigma`` (1.0 gives
    heavy-tailed degrees like those of check-in data), clipped to
    ``[min_interactions, num_items - 1]``. Of these,
    ``round(noise_fraction * n_u)`` are drawn by popularity alone, with
    probability proportional to ``(1 + r_i) ** -popularity_alpha``:
    interactions that no taste explains.
    The others are drawn without replacement with probability proportional to::

        exp(<u, v_i> / (sqrt(dim) * temperature)) * (1 + r_i) ** -popularity_alpha

    and the noise ones then among the items left. A low ``temperature`` makes
    the taste structure sharp, ``popularity_alpha = 0`` turns the popularity
    skew off, and ``noise_fraction=0, degree_sigma=0.5, min_interactions=2``
    give, seed for seed and for the same other arguments, the positives of the
    generator before it had these three arguments.
    Deterministic given ``seed`` (``numpy.random.default_rng(seed)``; no global
    state); the noise share changes which items a user has, never how many.
    The planted factors are not returned.

    The defaults are shaped after Gowalla (the tutorial's "How the defaults
    compare with Gowalla" has the degree and popularity statistics), small
    enough that the three recipes of ``negsample train`` (20 epochs for each
    BPR run, 10 for the softmax recipe) take about a minute of one CPU core
    together, and they
    rank uniform BPR below hard BPR below the softmax recipe, as Gowalla does,
    each gap larger than the spread over training seeds (see the docs'
    benchmarks page, "The built-in demo dataset").

    Args:
        num_users: Number of users.
        num_items: Number of items, at least 3.
        dim: Rank of the planted factors.
        interactions_per_user: Mean positives per user, in ``[2, num_items - 1]``.
        popularity_alpha: Zipf exponent of the popularity, ``>= 0`` (and small
            enough that ``popularity_alpha * log(num_items)`` is a finite float).
        temperature: Sharpness of the taste structure, ``> 0`` (and large enough
            that the scores do not overflow).
        noise_fraction: Share of each user's positives drawn by popularity
            only, in ``[0, 1)``.
        degree_sigma: Log-scale of the log-normal number of positives per
            user, in ``[0, 1e150]`` (0: every user has ``interactions_per_user``).
        min_interactions: Fewest positives of a user, in
            ``[2, interactions_per_user]`` (like the core filtering of real
            datasets).
        seed: Seed, an int ``>= 0``.

    Returns:
        The positives as a :class:`~negsample.PositiveIndex` of shape
        ``(num_users, num_items)``; every user has at least ``min_interactions``.

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
    noise = _check_float("noise_fraction", noise_fraction, positive=False)
    if noise >= 1:
        raise ValueError(f"noise_fraction must be in [0, 1), got {noise}")
    sigma = _check_float("degree_sigma", degree_sigma, positive=False)
    if sigma > _MAX_DEGREE_SIGMA:  # sigma**2 / 2, the log-normal's shift, would overflow
        raise ValueError(f"degree_sigma must be <= {_MAX_DEGREE_SIGMA:g}, got {sigma}")
    min_degree = check_int("min_interactions", min_interactions, minimum=2)
    if min_degree > mean_degree:
        raise ValueError(
            f"min_interactions must be <= interactions_per_user = {mean_degree}, got {min_degree}"
        )
    seed = check_int("seed", seed, minimum=0)

    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((num_users, dim))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        item_factors = rng.standard_normal((num_items, dim)) / (math.sqrt(dim) * temp)
        log_popularity = -alpha * np.log1p(rng.permutation(num_items))
    if not np.isfinite(log_popularity).all():
        raise ValueError(
            f"popularity_alpha is too large for {num_items} items: popularity_alpha * "
            f"log(num_items) must be a finite float64, got popularity_alpha={alpha}"
        )
    sizes = rng.lognormal(math.log(mean_degree) - sigma**2 / 2, sigma, num_users)
    degrees = np.clip(np.rint(sizes), min_degree, num_items - 1).astype(np.int64)
    # Of each user's positives, this many are drawn by popularity alone, the rest by taste.
    noisy = np.rint(noise * degrees).astype(np.int64)

    key_parts: list[npt.NDArray[np.int64]] = []
    chunk = max(1, _SYNTHETIC_CHUNK_SCORES // num_items)
    for start in range(0, num_users, chunk):
        stop = min(start + chunk, num_users)
        with np.errstate(over="ignore", invalid="ignore"):
            logits = user_factors[start:stop] @ item_factors.T + log_popularity
        if not np.isfinite(logits).all():
            raise ValueError(
                f"temperature is too small: the scores <u, v_i> / (sqrt(dim) * temperature) "
                f"overflow float64, got temperature={temp}"
            )
        rows, items = _gumbel_top(logits, degrees[start:stop] - noisy[start:stop], rng)
        key_parts.append((start + rows) * num_items + items)
        if noise > 0:
            by_popularity = np.repeat(log_popularity[None, :], stop - start, axis=0)
            by_popularity[rows, items] = -np.inf  # without replacement: not a taste item again
            rows, items = _gumbel_top(by_popularity, noisy[start:stop], rng)
            key_parts.append((start + rows) * num_items + items)
    rows, items = np.divmod(np.sort(np.concatenate(key_parts)), num_items)
    return _csr_index(rows, items, num_users, num_items)


def _gumbel_top(
    logits: npt.NDArray[np.float64], counts: npt.NDArray[np.int64], rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per row, ``counts[row]`` columns drawn without replacement in proportion to exp(logits).

    Gumbel-top-k: the k largest of ``logits`` plus Gumbel noise are such a draw; a
    column whose logit is -inf is never drawn while enough finite ones are left.
    Returns the drawn (row, column) pairs, row by row.
    """
    width = int(counts.max()) if counts.size else 0
    if width == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    keys = logits + rng.gumbel(size=logits.shape)
    top = np.argpartition(-keys, width - 1, axis=1)[:, :width]
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    rows, slots = np.nonzero(np.arange(width) < counts[:, None])
    return rows.astype(np.int64), top[rows, slots].astype(np.int64)
