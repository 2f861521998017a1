"""Our sampler against the usual hard-negative recipes, side by side in one run.

Usage::

    python benchmarks/bench_recipes.py --data ../shared/data/gowalla
    python benchmarks/bench_recipes.py        # generated index of Gowalla's shape

Four ways to get 2 hard + 2 random negatives from M=10 candidates per row, all
scored by the same ``MFModel(dim=64)``:

(a) the per-sample loop of the common homework recipe: for each row,
    ``random.randrange`` candidates with a rejection check against the user's
    positive set, score, ``topk``, ``random.sample`` of the rest;
(b) the approximate vectorized recipe: ``torch.randint`` over all items (no
    positive exclusion), ``topk``, random picks that may repeat the hard ones;
(c) ``HardNegativeSampler(backend="reference")``;
(d) ``HardNegativeSampler(backend="vectorized")``.

``--no-validate`` runs our samplers and the shared model with
``validate=False``, the setting the docs recommend for a hot loop. Prints the
time per batch of each, the ratios that matter (d vs b: the price
of exactness; d vs a: the speed-up over the loop), and how often (b) returns a
known positive. Goals: d within 1.3x of b, and at least 100x faster than a.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, time_side_by_side

from negsample import HardNegativeSampler, MFModel, PositiveIndex

M, HARD, RANDOM = 10, 2, 2


def homework_loop(
    users: torch.Tensor,
    model: MFModel,
    positives: list[set[int]],
    num_items: int,
    rng: random.Random,
) -> torch.Tensor:
    """(a) The per-sample recipe: a Python loop with a rejection check per candidate."""
    rows = []
    with torch.no_grad():
        for user in users.tolist():
            seen = positives[user]
            candidates: list[int] = []
            while len(candidates) < M:
                item = rng.randrange(num_items)
                if item not in seen:
                    candidates.append(item)
            scores = model(torch.full((M,), user), torch.tensor(candidates))
            hard = torch.topk(scores, HARD).indices.tolist()
            rest = [c for j, c in enumerate(candidates) if j not in hard]
            rows.append([candidates[j] for j in hard] + rng.sample(rest, RANDOM))
    return torch.tensor(rows)


def approximate_recipe(
    users: torch.Tensor, model: MFModel, num_items: int, gen: torch.Generator
) -> torch.Tensor:
    """(b) The vectorized recipe: no exclusion of positives; random picks may repeat hard ones."""
    with torch.no_grad():
        batch = users.numel()
        candidates = torch.randint(0, num_items, (batch, M), generator=gen)
        scores = model(users[:, None].expand(batch, M), candidates)
        hard = candidates.gather(1, torch.topk(scores, HARD, dim=1).indices)
        rand = candidates.gather(1, torch.randint(0, M, (batch, RANDOM), generator=gen))
        return torch.cat([hard, rand], dim=1)


def positive_rate(index: PositiveIndex, model: MFModel, batches: int = 50) -> float:
    """Share of negatives from (b) that are known positives, over many training batches."""
    gen = torch.Generator().manual_seed(1)
    users_all = torch.repeat_interleave(
        torch.arange(index.num_users), (index.indptr[1:] - index.indptr[:-1]).long()
    )
    hits = total = 0
    for _ in range(batches):
        users = users_all[torch.randint(0, users_all.numel(), (4096,), generator=gen)]
        negatives = approximate_recipe(users, model, index.num_items, gen)
        hits += int(index.contains(users[:, None], negatives).sum())
        total += negatives.numel()
    return hits / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument(
        "--no-validate",
        action="store_true",
        help="the hot-loop setting: validate=False for our samplers and for the shared MFModel",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    validate = not args.no_validate

    index, source = load_index(args.data)
    torch.manual_seed(0)
    model = MFModel(index.num_users, index.num_items, dim=64, validate=validate)
    positives = [set(index.positives(u).tolist()) for u in range(index.num_users)]
    print(f"index: {source}: {index}")
    print(f"machine: {machine()}")
    print(
        f"M={M} candidates, {HARD} hard + {RANDOM} random, MFModel(dim=64) scorer; "
        f"validate={validate} (samplers and model); median of 5 rounds\n"
    )
    print(
        f"{'B':>6} {'(a) loop ms':>12} {'(b) approx ms':>14} {'(c) ref ms':>11} {'(d) ours ms':>12}"
        f" {'d/b':>6} {'a/d':>6}"
    )
    rng = random.Random(0)
    gen = torch.Generator().manual_seed(0)
    for batch in args.batch_sizes:
        users = torch.randint(0, index.num_users, (batch,), generator=gen)
        reference = HardNegativeSampler(
            index, M, HARD, RANDOM, backend="reference", generator=0, validate=validate
        )
        vectorized = HardNegativeSampler(index, M, HARD, RANDOM, generator=0, validate=validate)
        fns = {
            "a": lambda u=users: homework_loop(u, model, positives, index.num_items, rng),
            "b": lambda u=users: approximate_recipe(u, model, index.num_items, gen),
            "c": lambda u=users, s=reference: s.sample(u, model),
            "d": lambda u=users, s=vectorized: s.sample(u, model),
        }
        fast = max(1, 20_000 // batch)
        seconds = time_side_by_side(fns, repeats={"a": 1, "b": fast, "c": 1, "d": fast})
        ms = {name: 1e3 * t for name, t in seconds.items()}
        print(
            f"{batch:>6} {ms['a']:>12.1f} {ms['b']:>14.2f} {ms['c']:>11.1f} {ms['d']:>12.2f}"
            f" {ms['d'] / ms['b']:>5.2f}x {ms['a'] / ms['d']:>5.0f}x"
        )
    rate = positive_rate(index, model)
    print(
        f"\n(b) returned a known positive for {rate:.4%} of its negatives "
        f"(50 batches of 4096 training rows); (a), (c) and (d) never do."
    )


if __name__ == "__main__":
    main()
