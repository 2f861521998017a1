"""The built-in synthetic dataset against Gowalla: statistics, and optionally the demo's recipes.

Prints scale-free statistics of the user degrees and item popularities of
``synthetic_dataset()`` (its defaults, or the ``--set`` overrides) beside those
of a LightGCN-format training file (Gowalla's ``train.txt``)::

    OMP_NUM_THREADS=1 python benchmarks/demo_dataset.py --gowalla data/gowalla/train.txt

``--recipes`` also runs the main job's three recipes on the built-in dataset
(uniform BPR, hard BPR, the softmax recipe) for each of ``--seeds`` and
prints validation Recall@20 / NDCG@20 at the chosen epoch and the wall time::

    OMP_NUM_THREADS=1 python benchmarks/demo_dataset.py --recipes --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/demo_dataset.py --recipes --seeds 0 1 2 --vary seed

``--vary split-seed`` (the default) changes the dataset and its validation
split with the seed; ``--vary seed`` keeps both (split seed 0, what the demo
shows) and changes the training seed (initial weights, batches, negatives).
The recipes run ``negsample train`` as a user would, so they measure the
defaults of ``synthetic_dataset`` and of the command as installed; ``--set``
changes only the statistics printed here.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from negsample import PositiveIndex
from negsample.data import load_lightgcn, synthetic_dataset

RECIPES = {
    "uniform BPR": ["--loss", "bpr", "--sampler", "uniform"],
    "hard BPR": ["--loss", "bpr", "--sampler", "hard"],
    # The recipe of a data file (the default), as the demo's third run trains it.
    "softmax": ["--loss", "softmax", "--sampler", "hard"],
}


def gini(counts: npt.NDArray[np.int64]) -> float:
    """Gini coefficient of non-negative counts (0: all equal, towards 1: one holds all)."""
    x = np.sort(counts.astype(np.float64))
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def rank_slope(counts: npt.NDArray[np.int64]) -> float:
    """Slope of log count against log rank over the ranks 10..n/2 (the body of the curve)."""
    x = np.sort(counts)[::-1].astype(np.float64)
    ranks = np.arange(1, x.size + 1)
    body = slice(9, x.size // 2)
    keep = x[body] > 0
    return float(np.polyfit(np.log(ranks[body][keep]), np.log(x[body][keep]), 1)[0])


def statistics(index: PositiveIndex) -> dict[str, float]:
    """Size, density and the shape of the user-degree and item-popularity distributions."""
    degrees = np.diff(index.indptr.long().numpy())
    popularity = np.bincount(index.indices.long().numpy(), minlength=index.num_items)
    top = np.sort(popularity)[::-1]
    stats: dict[str, float] = {
        "users": index.num_users,
        "items": index.num_items,
        "pairs": index.num_interactions,
        "density": index.num_interactions / (index.num_users * index.num_items),
        "mean user degree": float(degrees.mean()),
    }
    for q in (0.1, 0.5, 0.9, 0.99):
        stats[f"user degree q{q:g} / median"] = float(np.quantile(degrees, q) / np.median(degrees))
    stats["user degree cv"] = float(degrees.std() / degrees.mean())
    stats["user degree gini"] = gini(degrees)
    stats["mean item popularity"] = float(popularity.mean())
    for q in (0.1, 0.5, 0.9, 0.99):
        stats[f"item pop q{q:g} / mean"] = float(np.quantile(popularity, q) / popularity.mean())
    stats["item pop cv"] = float(popularity.std() / popularity.mean())
    stats["item pop gini"] = gini(popularity)
    stats["top 10% items' share"] = float(top[: max(1, index.num_items // 10)].sum() / top.sum())
    stats["items with < 5 pairs"] = float((popularity < 5).mean())
    stats["rank-frequency slope"] = rank_slope(popularity)
    return stats


def print_table(columns: dict[str, dict[str, float]]) -> None:
    names = list(columns)
    print(f"{'statistic':<28}" + "".join(f"{name:>14}" for name in names))
    for key in columns[names[0]]:
        cells = []
        for name in names:
            value = columns[name][key]
            cells.append(f"{value:>14,.0f}" if value >= 100 else f"{value:>14.4g}")
        print(f"{key:<28}" + "".join(cells))


def parse_value(text: str) -> int | float:
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_recipes(seeds: list[int], vary: str) -> None:
    """The demo's three runs per split seed: validation Recall/NDCG@20, wall and CPU time.

    With one thread the CPU time is what the run would take on an idle core; the
    wall time also counts the waits for a core on a machine shared with other jobs.
    """
    print(
        f"\n{'recipe':<12} {'seed':>4} {'epochs':>6} {'chosen':>6} "
        f"{'recall@20':>10} {'ndcg@20':>10} {'wall s':>7} {'cpu s':>7}"
    )
    for seed in seeds:
        for name, options in RECIPES.items():
            command = [
                sys.executable,
                "-m",
                "negsample",
                "train",
                *options,
                f"--{vary}",
                str(seed),
                "--no-progress",
            ]
            cpu = child_cpu_seconds()
            start = time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            wall = time.perf_counter() - start
            cpu = child_cpu_seconds() - cpu
            row = re.search(
                r"^\s*(?:hard|uniform)\s+(\d+)\s+(\d+)\s+[\d.]+\s+([\d.]+)\s+([\d.]+)",
                out[out.index("validation metrics") :],
                flags=re.MULTILINE,
            )
            assert row is not None, out
            epochs, chosen, recall, ndcg = row.groups()
            print(
                f"{name:<12} {seed:>4} {epochs:>6} {chosen:>6} {float(recall):>10.4f} "
                f"{float(ndcg):>10.4f} {wall:>7.1f} {cpu:>7.1f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gowalla", type=Path, help="a LightGCN-format train.txt to compare with")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="synthetic_dataset arguments for the statistics, e.g. noise_fraction=0.3",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--recipes", action="store_true", help="also run the three recipes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    parser.add_argument(
        "--vary",
        choices=("split-seed", "seed"),
        default="split-seed",
        help="which seed --seeds sets: the data and split's, or the training's",
    )
    args = parser.parse_args()
    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    start = time.perf_counter()
    synthetic = synthetic_dataset(seed=args.seed, **overrides)
    seconds = time.perf_counter() - start
    columns = {"synthetic": statistics(synthetic)}
    if args.gowalla is not None:
        columns["gowalla"] = statistics(load_lightgcn(args.gowalla).to_index())
    print(f"synthetic_dataset(seed={args.seed}, {overrides}) took {seconds:.2f} s")
    print_table(columns)
    if args.recipes:
        run_recipes(args.seeds, args.vary)


if __name__ == "__main__":
    main()
