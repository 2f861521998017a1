"""Reference vs vectorized HardNegativeSampler, side by side in one run.

Usage::

    python benchmarks/bench_sampler.py                              # generated index, Gowalla's shape
    python benchmarks/bench_sampler.py --data ../shared/data/gowalla  # the real train split

Prints negatives per second of each backend and their ratio for each batch
size (M=10 candidates, 2 hard + 2 random, ``MFModel`` of dimension 64 as the
scorer, default validation on). The
goal is vectorized >= 100x reference at B=4096.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, time_side_by_side

from negsample import HardNegativeSampler, MFModel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    index, source = load_index(args.data)
    index = index.to(args.device)
    torch.manual_seed(0)
    model = MFModel(index.num_users, index.num_items, dim=64, device=args.device)
    user_vectors = model.user_embedding.weight.detach()
    item_vectors = model.item_embedding.weight.detach()

    def plain(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (F.embedding(users, user_vectors) * F.embedding(items, item_vectors)).sum(-1)

    scorers = {"MFModel": model, "function": plain}
    print(f"index: {source}: {index}")
    print(f"machine: {machine()}")
    print("M=10 candidates, 2 hard + 2 random, median of 5 interleaved rounds")
    print(
        "scorers: MFModel(dim=64) with its default id checks; a plain function "
        "(F.embedding gathers, multiply, sum) on the same embeddings\n"
    )
    print(f"{'scorer':>9} {'B':>6} {'reference neg/s':>16} {'vectorized neg/s':>17} {'ratio':>8}")
    gen = torch.Generator().manual_seed(0)
    for batch in args.batch_sizes:
        users = torch.randint(0, index.num_users, (batch,), generator=gen).to(args.device)
        for name, scorer in scorers.items():
            samplers = {
                backend: HardNegativeSampler(index, 10, 2, 2, backend=backend, generator=0)  # type: ignore[arg-type]
                for backend in ("reference", "vectorized")
            }
            seconds = time_side_by_side(
                {b: (lambda s=s, u=users, f=scorer: s.sample(u, f)) for b, s in samplers.items()},
                repeats={"reference": 1, "vectorized": max(1, 40_000 // batch)},
            )
            rate = {b: batch * 4 / t for b, t in seconds.items()}
            ratio = seconds["reference"] / seconds["vectorized"]
            print(
                f"{name:>9} {batch:>6} {rate['reference']:>16,.0f} "
                f"{rate['vectorized']:>17,.0f} {ratio:>7.0f}x"
            )


if __name__ == "__main__":
    main()
