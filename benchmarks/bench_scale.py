"""PositiveIndex at scale: build time, peak memory, bytes per interaction, sampling speed.

Usage::

    python benchmarks/bench_scale.py     # 1M users, 1M items, 100M interactions (~3 GB of RAM)
    python benchmarks/bench_scale.py --users 100000 --items 100000 --interactions 10000000

Generates skewed interactions as ``int64`` (user, item) pairs: lognormal user
degrees (sigma 1), Zipf-like item popularity (the item of popularity rank ``k``
drawn with probability about ``k ** -0.8``, ranks mapped to ids by a random
permutation), pairs in random order, duplicates kept (``from_pairs`` collapses
them). Then, in this process (a fresh one when run from the command line):

* builds ``PositiveIndex.from_pairs`` and times it;
* measures the build's peak resident memory above what the process held just
  before it (Linux: ``VmRSS`` before, ``VmHWM`` after resetting it through
  ``/proc/self/clear_refs``), and compares it with the final ``index.nbytes``;
* builds the uniform candidates' pair filter (see ``docs/algorithm.rst``) and
  reports its time and size;
* times ``UniformSampler`` (10 negatives per row) and ``HardNegativeSampler``
  (M=10 candidates, 2 hard + 2 random, ``MFModel(dim=64)`` scorer) at B=4096,
  with ``validate`` on and off, next to the approximate vectorized recipe
  (``randint`` over all items, no exclusion of positives), median of 5
  interleaved rounds, for each ``--threads`` count (``--threads 2 1``: torch's
  two threads, then one; on a shared machine whose cores are busy, two threads
  make every parallel operation wait for a time slice and the timings swing).

Goals (issue 7): at most 8 bytes per interaction plus O(num_users); built in
under 60 s on a 2-core machine; peak memory during the build under 3x the final
index.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, time_side_by_side
from bench_recipes import approximate_recipe

from negsample import HardNegativeSampler, MFModel, PositiveIndex, UniformSampler
from negsample.candidates import UniformCandidates

B, M, HARD, RANDOM = 4096, 10, 2, 2
POPULARITY_EXPONENT = 0.8
GENERATION_CHUNK = 2**22


def generate(
    num_users: int, num_items: int, num_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``num_pairs`` skewed int64 (user, item) pairs, in random order, duplicates possible."""
    rng = np.random.default_rng(seed)
    weight = rng.lognormal(mean=0.0, sigma=1.0, size=num_users)
    degree = np.floor(weight / weight.sum() * num_pairs).astype(np.int64)
    short = num_pairs - int(degree.sum())
    degree[rng.choice(num_users, size=short, replace=False)] += 1
    np.minimum(degree, num_items, out=degree)
    users = np.repeat(np.arange(num_users, dtype=np.int64), degree)
    rng.shuffle(users)
    # Inverse transform: P(rank < x) = (x / num_items) ** (1 - exponent).
    power = 1.0 / (1.0 - POPULARITY_EXPONENT)
    item_of_rank = rng.permutation(num_items).astype(np.int64)
    items = np.empty(users.size, dtype=np.int64)
    for start in range(0, users.size, GENERATION_CHUNK):
        stop = min(start + GENERATION_CHUNK, users.size)
        rank = (num_items * rng.random(stop - start) ** power).astype(np.int64)
        items[start:stop] = item_of_rank[np.minimum(rank, num_items - 1)]
    return users, items


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or -1 off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def reset_peak() -> bool:
    """Reset ``VmHWM`` to the current ``VmRSS`` (Linux >= 4.0); whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def check(met: bool) -> str:
    return "met" if met else "NOT MET"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--interactions", type=int, default=100_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[torch.get_num_threads()],
        help="torch thread counts to time the samplers with (default: torch's own)",
    )
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")

    start = time.perf_counter()
    users, items = generate(args.users, args.items, args.interactions, args.seed)
    generation_s = time.perf_counter() - start
    input_mib = (users.nbytes + items.nbytes) / 2**20
    print(
        f"generated {users.size:,} int64 pairs ({args.users:,} users x {args.items:,} items, "
        f"seed {args.seed}) in {generation_s:.1f} s; the input arrays hold {input_mib:,.0f} MiB"
    )

    gc.collect()
    rss_before = status_kib("VmRSS")
    peak_reset = reset_peak()
    start = time.perf_counter()
    index = PositiveIndex.from_pairs(users, items, args.users, args.items)
    build_s = time.perf_counter() - start
    peak_kib = status_kib("VmHWM") - rss_before
    held_kib = status_kib("VmRSS") - rss_before
    del users, items
    gc.collect()

    nnz = index.num_interactions
    nbytes = index.nbytes
    indptr_bytes = index.indptr.numel() * index.indptr.element_size()
    per_interaction = (nbytes - indptr_bytes) / nnz
    peak_ratio = peak_kib * 1024 / nbytes
    key = "flat row-offset keys" if index._flat else "q for the in-row search"
    print(f"built {index} in {build_s:.1f} s")
    print(
        f"  {args.interactions - nnz:,} duplicated pairs dropped; max degree {index.max_degree:,}"
    )
    print(
        f"  index: {nbytes / 2**20:,.1f} MiB = {nbytes / nnz:.3f} B per interaction overall; "
        f"{per_interaction:.3f} B per interaction (item ids {index.indices.dtype}, "
        f"{key} {index._table.dtype}) + {indptr_bytes / index.num_users:.3f} B per user "
        f"(indptr {index.indptr.dtype})"
    )
    if peak_reset and peak_kib >= 0:
        print(
            f"  build peak: {peak_kib / 1024:,.0f} MiB above the {rss_before / 1024:,.0f} MiB "
            f"resident before it (inputs included there) = {peak_ratio:.2f}x the final index; "
            f"{held_kib / 1024:,.0f} MiB still held after it"
        )
    else:
        print("  build peak: not measured (needs Linux /proc/self/status and clear_refs)")

    print("\ngoals:")
    met = check(per_interaction <= 8)
    print(f"  <= 8 B per interaction + O(num_users): {per_interaction:.3f} B: {met}")
    print(f"  build < 60 s: {build_s:.1f} s: {check(build_s < 60)}")
    if peak_reset and peak_kib >= 0:
        small = " (a small index: allocator granularity dominates)" if nbytes < 2**26 else ""
        print(f"  build peak < 3x the index: {peak_ratio:.2f}x: {check(peak_ratio < 3)}{small}")

    start = time.perf_counter()
    filter_bytes = UniformCandidates(index).nbytes  # builds the index's pair filter once
    filter_s = time.perf_counter() - start
    print(
        f"\nuniform candidates' pair filter (built once per index, on top of it): "
        f"{filter_s:.1f} s, {filter_bytes / 2**20:,.1f} MiB = {filter_bytes / nnz:.2f} B per interaction"
    )

    torch.manual_seed(0)
    model = MFModel(index.num_users, index.num_items, dim=64)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, index.num_users, (B,), generator=gen)
    fns = {}
    negatives_per_call = {}
    for validate in (True, False):
        uniform = UniformSampler(index, M, generator=0, validate=validate)
        hard = HardNegativeSampler(index, M, HARD, RANDOM, generator=0, validate=validate)
        name = f"UniformSampler, {M} per row, validate={validate}"
        fns[name] = lambda s=uniform: s.sample(batch)
        negatives_per_call[name] = B * M
        name = f"HardNegativeSampler, M={M}, 2+2, validate={validate}"
        fns[name] = lambda s=hard: s.sample(batch, model)
        negatives_per_call[name] = B * (HARD + RANDOM)
    approx = f"approximate recipe, M={M}, 2+2 (may return positives)"
    fns[approx] = lambda: approximate_recipe(batch, model, index.num_items, gen)
    negatives_per_call[approx] = B * (HARD + RANDOM)
    for threads in args.threads:
        torch.set_num_threads(threads)
        seconds = time_side_by_side(fns, repeats=dict.fromkeys(fns, 5))
        print(
            f"\nsampling, B={B} uniformly drawn users, {threads} torch thread(s), "
            f"median of 5 interleaved rounds:"
        )
        print(f"  {'':58} {'ms/batch':>9} {'negatives/s':>12}")
        for name, secs in seconds.items():
            rate = negatives_per_call[name] / secs
            print(f"  {name:58} {1e3 * secs:>9.2f} {rate:>12,.0f}")
        ratio = seconds[f"HardNegativeSampler, M={M}, 2+2, validate=False"] / seconds[approx]
        print(f"  HardNegativeSampler(validate=False) / approximate recipe: {ratio:.2f}x")


if __name__ == "__main__":
    main()
