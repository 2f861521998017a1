"""Evaluation's top-k: kept groups of items against torch.topk over every item.

Usage::

    python benchmarks/bench_topk.py --data ../shared/data/gowalla   # its users and items
    python benchmarks/bench_topk.py                                 # generated, Gowalla's shape

Ranking for evaluation (``MFModel.recommend``, ``negsample.metrics.evaluate``)
scores every item for a chunk of users, sets each user's training items to
``-inf`` and takes the ``k + 1`` best of each row (one more tells whether a tie
straddles the k-th place). On the CPU, rows of many items first keep the
groups of 16 items (item g, g + G, g + 2G, ...) whose maxima are the row's largest and take
top-k among those. Printed, side by side in one run (median of interleaved
rounds): ``MFModel.recommend`` with the kept groups and with ``torch.topk``
over every item (the library with its groups switched off), at k = 20, for
2,048 users of the data's catalogue and for the built-in dataset's shape
(2,000 users x 6,000 items), and whether the two returned the same items.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, time_side_by_side

import negsample._ranking as ranking
from negsample import MFModel, PositiveIndex
from negsample.data import synthetic_dataset

K = 20


def compare(index: PositiveIndex, num_users: int, what: str, rounds: int) -> None:
    torch.manual_seed(0)
    model = MFModel(index.num_users, index.num_items, 64, similarity="cosine", init_std=0.1)
    users = torch.randperm(index.num_users)[:num_users]
    kept_groups = ranking._MIN_GROUPS_PER_PICK

    def with_groups() -> torch.Tensor:
        ranking._MIN_GROUPS_PER_PICK = kept_groups
        return model.recommend(users, K, exclude=index)

    def every_item() -> torch.Tensor:
        ranking._MIN_GROUPS_PER_PICK = index.num_items + 1  # never enough groups
        try:
            return model.recommend(users, K, exclude=index)
        finally:
            ranking._MIN_GROUPS_PER_PICK = kept_groups

    same = torch.equal(with_groups(), every_item())
    times = time_side_by_side(
        {"kept groups": with_groups, "every item": every_item},
        {"kept groups": 3, "every item": 3},
        rounds=rounds,
    )
    print(f"{what}: {users.numel()} users x {index.num_items} items, k={K}; same items: {same}")
    for name, seconds in times.items():
        print(f"  recommend, {name:12s} {seconds * 1e3:8.1f} ms")
    print(f"  kept groups / every item: {times['kept groups'] / times['every item']:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine())
    index, what = load_index(args.data)
    compare(index, 2048, what, args.rounds)
    compare(synthetic_dataset(), 2000, "the built-in dataset", args.rounds)


if __name__ == "__main__":
    main()
