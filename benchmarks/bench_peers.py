"""Exact uniform negatives: our sampler against PyTorch Geometric's and RecBole's, side by side.

Usage::

    pip install -e ".[bench]"       # the peers: torch_geometric, recbole
    python benchmarks/bench_peers.py --data ../shared/data/gowalla
    python benchmarks/bench_peers.py        # generated index of Gowalla's shape

The workload is BPR training: batches of B training rows ``(user, positive item)``
drawn from the training pairs, and ``k`` uniform negatives per row that must not
be known positives of the row's user. Everyone returns the same number of
negatives per batch. Per batch:

* ours: ``UniformSampler(index, num_negatives=k)``, with the default
  ``validate=True`` and with ``validate=False``;
* RecBole: ``Sampler(["train"], [train]).set_phase("train")`` and
  ``sample_by_user_ids(users, pos_items, k)``, the call its training data loader
  makes. ``train`` is a minimal stand-in for RecBole's ``Dataset`` holding exactly
  what ``Sampler`` reads (field names, ``user_num``, ``item_num``, ``inter_feat``)
  in RecBole's id space (id 0 is the padding id, so ids are ours + 1): RecBole's
  ``Config`` does not run on NumPy 2 (it assigns ``np.float = np.float_``), but
  ``recbole.sampler`` does. It redraws, in a Python loop over the rows, every
  draw that hits one of the user's positives, so it is exact;
* PyG ``negative_sampling``: it samples negative *edges* of a graph, not
  negatives per row. To get negatives for the batch's users it is given the
  bipartite graph of the batch's rows (row ``r`` linked to every positive of its
  user), ``num_nodes=(B, num_items)``, ``num_neg_samples=B * k``, and
  ``method="dense"`` (the faster of its two methods here). It excludes every
  positive, but returns ``B * k`` negatives spread at random over the rows (some
  rows get none), sampled without replacement;
* PyG ``structured_negative_sampling`` on the batch's own edges (user ids as
  sources, item ids as destinations, ``num_nodes=num_items``, so that it draws
  items only): one negative per edge (the edges repeated ``k`` times). It only
  excludes the edges it is given, so it returns a user's other positives.

``structured_negative_sampling`` is exact only when given the whole training
graph, which makes it a once-per-epoch call, so a second table compares one
negative for every training pair of the epoch (the pairs in index order, as a
once-per-epoch sampler draws them before shuffling): ours on all rows at once
against PyG on the whole graph, with item ids (``num_nodes=num_items``; exact, items
only) and as the documented homogeneous graph (items offset by ``num_users``,
``num_nodes=num_users + num_items``; it then also draws user nodes, which are not
items).

Every negative is checked with ``index.contains``. Goal: ours (default
validation) at least 5x faster than each peer, and no known positive returned.
Torch runs on one thread by default (``--threads``): the peers' work is
single-threaded NumPy and Python, and on a busy shared machine torch's thread
pool can stall.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, time_side_by_side

from negsample import PositiveIndex, UniformSampler

GOAL = 5.0
PYG_METHOD = "dense"
INSTALL = 'pip install -e ".[bench]"'
SLOW = ("RecBole sample_by_user_ids", "PyG negative_sampling")  # timed once per round


def import_peer(module: str, name: str) -> ModuleType | None:
    """The peer's module, or ``None`` with a message saying how to install it."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        print(f"skipping {name}: cannot import {module} ({error}); install it with {INSTALL}")
        return None


def training_pairs(index: PositiveIndex) -> tuple[torch.Tensor, torch.Tensor]:
    """Every training pair as ``(users, items)``, in index order."""
    degree = (index.indptr[1:] - index.indptr[:-1]).long()
    return torch.repeat_interleave(torch.arange(index.num_users), degree), index.indices.long()


def recbole_sampler(recbole_sampler_module: ModuleType, index: PositiveIndex) -> Any:
    """RecBole's ``Sampler`` for the train phase, in RecBole's ids (ours + 1; 0 is padding)."""
    users, items = training_pairs(index)
    train = SimpleNamespace(
        uid_field="user_id",
        iid_field="item_id",
        user_num=index.num_users + 1,
        item_num=index.num_items + 1,
        inter_feat={"user_id": users + 1, "item_id": items + 1},
    )
    return recbole_sampler_module.Sampler(["train"], [train]).set_phase("train")


def rows_subgraph(index: PositiveIndex, users: torch.Tensor) -> torch.Tensor:
    """``edge_index`` linking row ``r`` of the batch to every positive of ``users[r]``."""
    indptr = index.indptr.long()
    degree = indptr[users + 1] - indptr[users]
    rows = torch.repeat_interleave(torch.arange(users.numel()), degree)
    first = torch.cumsum(degree, 0) - degree
    position = torch.arange(rows.numel()) - first[rows] + indptr[users][rows]
    return torch.stack([rows, index.indices.long()[position]])


def pyg_negative_edges(
    pyg: ModuleType, index: PositiveIndex, users: torch.Tensor, k: int
) -> torch.Tensor:
    """PyG's negative edges ``(row, item)`` of the batch's rows: ``B * k`` in all, not per row."""
    batch = users.numel()
    return pyg.negative_sampling(
        rows_subgraph(index, users),
        num_nodes=(batch, index.num_items),
        num_neg_samples=batch * k,
        method=PYG_METHOD,
    )


def batch_methods(
    index: PositiveIndex,
    users: torch.Tensor,
    pos_items: torch.Tensor,
    k: int,
    pyg: ModuleType | None,
    recbole: Any,
) -> dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    """Each method as a function returning ``(users, negatives)`` of equal shape."""
    ours = UniformSampler(index, num_negatives=k, generator=0)
    ours_unchecked = UniformSampler(index, num_negatives=k, generator=0, validate=False)
    batch = users.numel()
    rows_users = users[:, None].expand(batch, k)
    methods = {
        "ours": lambda: (rows_users, ours.sample(users)),
        "ours, validate=False": lambda: (rows_users, ours_unchecked.sample(users)),
    }
    if recbole is not None:
        users_rb, pos_rb = users.numpy() + 1, pos_items.numpy() + 1

        def recbole_batch() -> tuple[torch.Tensor, torch.Tensor]:
            negatives = recbole.sample_by_user_ids(users_rb, pos_rb, k)
            return rows_users, negatives.view(k, batch).T - 1

        methods["RecBole sample_by_user_ids"] = recbole_batch
    if pyg is not None:
        num_items = index.num_items
        batch_edges = torch.stack([users, pos_items]).repeat(1, k)

        def pyg_negative_sampling() -> tuple[torch.Tensor, torch.Tensor]:
            edges = pyg_negative_edges(pyg, index, users, k)
            return users[edges[0]], edges[1]

        def pyg_structured_batch() -> tuple[torch.Tensor, torch.Tensor]:
            _, _, negatives = pyg.structured_negative_sampling(batch_edges, num_nodes=num_items)
            return rows_users, negatives.view(k, batch).T

        methods["PyG negative_sampling"] = pyg_negative_sampling
        methods["PyG structured (batch)"] = pyg_structured_batch
    return methods


def epoch_methods(
    index: PositiveIndex, pyg: ModuleType
) -> dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    """One negative for every training pair; negatives ``>= num_items`` are not items."""
    users, items = training_pairs(index)
    ours = UniformSampler(index, generator=0)
    ours_unchecked = UniformSampler(index, generator=0, validate=False)
    num_users, num_items = index.num_users, index.num_items
    item_ids = torch.stack([users, items])
    homogeneous = torch.stack([users, items + num_users])

    def structured_homogeneous() -> tuple[torch.Tensor, torch.Tensor]:
        _, _, nodes = pyg.structured_negative_sampling(homogeneous, num_nodes=num_users + num_items)
        # user nodes are not items: map them past the catalogue so they count as such
        return users, torch.where(nodes >= num_users, nodes - num_users, nodes + num_items)

    return {
        "ours": lambda: (users, ours.sample(users).squeeze(1)),
        "ours, validate=False": lambda: (users, ours_unchecked.sample(users).squeeze(1)),
        "PyG structured (item ids)": lambda: (
            users,
            pyg.structured_negative_sampling(item_ids, num_nodes=num_items)[2],
        ),
        "PyG structured (homogeneous)": structured_homogeneous,
    }


def exactness(
    index: PositiveIndex, users: torch.Tensor, negatives: torch.Tensor
) -> tuple[int, int, int]:
    """``(known positives, not items, total)`` among the negatives."""
    items = negatives < index.num_items
    hits = index.contains(users[items], negatives[items])
    return int(hits.sum()), int((~items).sum()), negatives.numel()


def keep_last(
    fns: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]],
) -> tuple[dict[str, Callable[[], object]], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Wrap ``fns`` so that each keeps its last output, to check what was timed."""
    last: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def wrap(name: str, fn: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> Callable[[], None]:
        def call() -> None:
            last[name] = fn()

        return call

    return {name: wrap(name, fn) for name, fn in fns.items()}, last


def print_rows(
    title: str,
    ms: dict[str, float],
    checks: Mapping[str, Sequence[int]],
    summary: dict[str, list[float]],
    *,
    not_items: bool = False,
) -> None:
    """One table block; appends each method's speed-up over ours to ``summary``."""
    print(title)
    header = f"  {'method':<30} {'ms':>9} {'/ ours':>7} {'/ ours nv':>9} {'positives':>10}"
    print(header + (f" {'not items':>10}" if not_items else ""))
    for name, value in ms.items():
        hits, others, total = checks[name]
        line = (
            f"  {name:<30} {value:>9.2f} {value / ms['ours']:>6.1f}x"
            f" {value / ms['ours, validate=False']:>8.1f}x {hits / total:>10.4%}"
        )
        print(line + (f" {others / total:>10.2%}" if not_items else ""))
        summary.setdefault(name, []).append(value / ms["ours"])


def print_goal(summary: dict[str, list[float]], positives: dict[str, int]) -> None:
    """The goal check: ours at least 5x faster than each peer, and never a positive."""
    print(f"\ngoal: ours (validate=True) at least {GOAL:g}x faster than each peer, no positive")
    if not any(not name.startswith("ours") for name in summary):
        print(f"  no peer library installed, nothing to compare: {INSTALL}")
    for name, ratios in summary.items():
        if name.startswith("ours"):
            continue
        verdict = "met" if min(ratios) >= GOAL else "NOT met"
        exact = "exact" if positives[name] == 0 else f"returned {positives[name]} positives"
        print(f"  vs {name:<30} {min(ratios):>5.1f}x to {max(ratios):>5.1f}x: {verdict} ({exact})")
    ours = positives["ours"] + positives["ours, validate=False"]
    print(f"  ours returned {ours} known positives: {'met' if ours == 0 else 'NOT met'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--num-negatives", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument(
        "--check-batches", type=int, default=10, help="fresh batches checked for positives"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--no-epoch", action="store_true", help="skip the whole-epoch table")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    pyg = import_peer("torch_geometric.utils", "PyTorch Geometric")
    recbole_module = import_peer("recbole.sampler", "RecBole")
    index, source = load_index(args.data)
    recbole = recbole_sampler(recbole_module, index) if recbole_module is not None else None
    all_users, all_items = training_pairs(index)
    versions = [f"numpy {np.__version__}"]
    if pyg is not None:
        versions.append(f"torch_geometric {__import__('torch_geometric').__version__}")
    if recbole_module is not None:
        versions.append(f"recbole {__import__('recbole').__version__}")
    print(f"index: {source}: {index}")
    print(f"machine: {machine()}; {', '.join(versions)}")
    print(
        f"training rows drawn from the {all_users.numel():,} training pairs; median of "
        f"{args.rounds} interleaved rounds; positives: share of the negatives of "
        f"{args.check_batches} fresh batches that are known positives\n"
    )

    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 (RecBole draws from NumPy's global state)
    gen = torch.Generator().manual_seed(0)
    summary: dict[str, list[float]] = {}
    positives: dict[str, int] = {}

    def draw_rows(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(0, all_users.numel(), (batch,), generator=gen)
        return all_users[rows], all_items[rows]

    print("per batch of B training rows, k negatives per row (ms per batch)")
    for batch in args.batch_sizes:
        for k in args.num_negatives:
            users, pos_items = draw_rows(batch)
            fns = batch_methods(index, users, pos_items, k, pyg, recbole)
            fast = max(1, 20_000 // (batch * k))
            repeats = {name: 1 if name in SLOW else fast for name in fns}
            seconds = time_side_by_side(fns, repeats, rounds=args.rounds)
            found = {name: [0, 0, 0] for name in fns}
            for _ in range(args.check_batches):
                users, pos_items = draw_rows(batch)
                for name, fn in batch_methods(index, users, pos_items, k, pyg, recbole).items():
                    for i, count in enumerate(exactness(index, *fn())):
                        found[name][i] += count
            for name, (hits, _, _) in found.items():
                positives[name] = positives.get(name, 0) + hits
            ms = {name: 1e3 * t for name, t in seconds.items()}
            print_rows(f"B={batch}, k={k}", ms, found, summary)
            if pyg is not None:
                rows = pyg_negative_edges(pyg, index, draw_rows(batch)[0], k)[0]
                per_row = torch.bincount(rows, minlength=batch)
                print(
                    f"  (PyG negative_sampling, one more batch: {rows.numel()} of {batch * k} "
                    f"negatives returned; {int((per_row == 0).sum())} of {batch} rows got none, "
                    f"one row got {int(per_row.max())})"
                )

    if pyg is not None and not args.no_epoch:
        print(f"\none negative for each of the {all_users.numel():,} training pairs (ms per epoch)")
        fns, last = keep_last(epoch_methods(index, pyg))
        seconds = time_side_by_side(fns, dict.fromkeys(fns, 1), rounds=min(args.rounds, 3))
        checks = {name: exactness(index, *output) for name, output in last.items()}
        for name, (hits, _, _) in checks.items():
            positives[name] = positives.get(name, 0) + hits
        ms = {name: 1e3 * t for name, t in seconds.items()}
        print_rows(
            "k=1 (positives: of the timed epoch's negatives)", ms, checks, summary, not_items=True
        )

    print_goal(summary, positives)


if __name__ == "__main__":
    main()
