"""What the sampling strategies cost, side by side in one run.

Usage::

    python benchmarks/bench_strategies.py --data ../shared/data/gowalla
    python benchmarks/bench_strategies.py        # generated index of Gowalla's shape

The vectorized ``HardNegativeSampler`` (M=10, 2 hard + 2 random, ``MFModel(dim=64)``
scorer, ``validate=False``) with uniform or popularity candidates, top-k or
softmax selection, with and without ``return_info=True``; and the
``UniformSampler`` (4 negatives) with uniform and popularity candidates.
Prints milliseconds per batch and the ratio to the default configuration
(uniform candidates, top-k) of the same sampler.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, time_side_by_side

from negsample import HardNegativeSampler, MFModel, UniformSampler

HARD: dict[str, dict[str, Any]] = {
    "uniform, top-k": {},
    "uniform, softmax": {"selection": "softmax", "temperature": 1.0},
    "popularity, top-k": {"candidates": "popularity", "alpha": 0.75},
    "popularity, softmax": {
        "candidates": "popularity",
        "alpha": 0.75,
        "selection": "softmax",
        "temperature": 1.0,
    },
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: stable on a shared machine)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    index, source = load_index(args.data)
    torch.manual_seed(0)
    model = MFModel(index.num_users, index.num_items, dim=64, validate=False)
    users = torch.randint(0, index.num_users, (args.batch_size,))
    print(f"index: {source}: {index}")
    print(f"machine: {machine()}")
    start = time.perf_counter()
    HardNegativeSampler(index, candidates="popularity")
    print(f"popularity tables built in {time.perf_counter() - start:.2f} s")
    print(f"B={args.batch_size}, validate=False, median of {args.rounds} interleaved rounds\n")

    fns = {}
    for name, kwargs in HARD.items():
        sampler = HardNegativeSampler(index, 10, 2, 2, generator=0, validate=False, **kwargs)
        fns[f"hard: {name}"] = lambda s=sampler: s.sample(users, model)
        if name == "uniform, top-k":
            fns["hard: uniform, top-k, return_info"] = lambda s=sampler: s.sample(
                users, model, return_info=True
            )
    for name in ("uniform", "popularity"):
        uniform = UniformSampler(index, 4, candidates=name, generator=0, validate=False)  # type: ignore[arg-type]
        fns[f"uniform sampler: {name}"] = lambda s=uniform: s.sample(users)
    repeats = dict.fromkeys(fns, 10)
    seconds = time_side_by_side(fns, repeats, rounds=args.rounds)
    base = {"hard": seconds["hard: uniform, top-k"], "uniform": seconds["uniform sampler: uniform"]}
    print(f"{'configuration':<38} {'ms/batch':>9} {'vs default':>11}")
    for name, t in seconds.items():
        ref = base["hard"] if name.startswith("hard") else base["uniform"]
        print(f"{name:<38} {t * 1e3:>9.2f} {t / ref:>10.2f}x")


if __name__ == "__main__":
    main()
