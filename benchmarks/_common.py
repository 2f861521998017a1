"""Shared pieces of the benchmark scripts: data, a scorer, a side-by-side timer."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from negsample import PositiveIndex
from negsample.data import load_lightgcn

GOWALLA_SHAPE = (29_858, 40_981, 810_128)


def synthetic_like_gowalla(seed: int = 0) -> PositiveIndex:
    """An index of Gowalla's shape with skewed user degrees and item popularity."""
    num_users, num_items, nnz = GOWALLA_SHAPE
    rng = np.random.default_rng(seed)
    degree = rng.lognormal(mean=0.0, sigma=1.0, size=num_users)
    degree = np.maximum(1, np.round(degree / degree.sum() * nnz * 1.02)).astype(np.int64)
    users = np.repeat(np.arange(num_users), degree)
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
    items = rng.choice(num_items, size=users.size, p=popularity / popularity.sum())
    return PositiveIndex.from_pairs(users, items, num_users, num_items)


def load_index(data: str | None) -> tuple[PositiveIndex, str]:
    """Gowalla's train split from ``data`` if given, else a generated index of its shape."""
    if data:
        train = load_lightgcn(Path(data) / "train.txt")
        return train.to_index(), f"Gowalla train split ({data})"
    return (
        synthetic_like_gowalla(),
        "generated index of Gowalla's shape (pass --data for the real one)",
    )


def samples_side_by_side(
    fns: dict[str, Callable[[], object]], repeats: dict[str, int], rounds: int = 5
) -> dict[str, list[float]]:
    """Seconds per call of each function in each round, interleaving them round by round.

    Each round calls every function once untimed just before timing it, so that
    none is timed with the caches the previous function left cold (a slow peer
    run just before would otherwise penalise whichever function follows it).
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()  # warm-up: its own data back in the caches
            start = time.perf_counter()
            for _ in range(repeats[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / repeats[name])
    return samples


def time_side_by_side(
    fns: dict[str, Callable[[], object]], repeats: dict[str, int], rounds: int = 5
) -> dict[str, float]:
    """Median seconds per call of each function, interleaving them round by round."""
    samples = samples_side_by_side(fns, repeats, rounds)
    return {name: statistics.median(values) for name, values in samples.items()}


def machine() -> str:
    """One line describing where the numbers were measured."""
    return (
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )
