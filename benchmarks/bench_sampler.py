"""Reference vs vectorized HardNegativeSampler, side by side in one run.

Usage::

    python benchmarks/bench_sampler.py                              # generated index, Gowalla's shape
    python benchmarks/bench_sampler.py --data ../shared/data/gowalla  # the real train split

Prints negatives per second of each backend and their ratio for each batch
size (M=10 candidates, 2 hard + 2 random, an MF scorer of dimension 64). The
goal is vectorized >= 100x reference at B=4096.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, mf_scorer, time_side_by_side  # noqa: E402

from negsample import HardNegativeSampler  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    index, source = load_index(args.data)
    index = index.to(args.device)
    scorer, _, _ = mf_scorer(index.num_users, index.num_items)
    print(f"index: {source}: {index}")
    print(f"machine: {machine()}")
    print("M=10 candidates, 2 hard + 2 random, MF scorer dim 64, median of 5 interleaved rounds\n")
    print(f"{'B':>6} {'reference neg/s':>16} {'vectorized neg/s':>17} {'ratio':>8}")
    gen = torch.Generator().manual_seed(0)
    for batch in args.batch_sizes:
        users = torch.randint(0, index.num_users, (batch,), generator=gen).to(args.device)
        samplers = {
            backend: HardNegativeSampler(index, 10, 2, 2, backend=backend, generator=0)  # type: ignore[arg-type]
            for backend in ("reference", "vectorized")
        }
        seconds = time_side_by_side(
            {name: (lambda s=s: s.sample(users, scorer)) for name, s in samplers.items()},
            repeats={"reference": 1, "vectorized": max(1, 40_000 // batch)},
        )
        rate = {name: batch * 4 / t for name, t in seconds.items()}
        ratio = seconds["reference"] / seconds["vectorized"]
        print(f"{batch:>6} {rate['reference']:>16,.0f} {rate['vectorized']:>17,.0f} {ratio:>7.0f}x")


if __name__ == "__main__":
    main()
