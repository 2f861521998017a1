"""The vectorized hard sampler under ``torch.compile`` (inductor) against eager, side by side.

Usage::

    python benchmarks/bench_compile.py --data ../shared/data/gowalla
    python benchmarks/bench_compile.py        # generated index of Gowalla's shape

B=4096, M=10 candidates, 2 hard + 2 random, ``MFModel(dim=64, validate=False)``
as the scorer, ``validate=False`` (the setting for a hot loop, and the one that
compiles without graph breaks from validation). Three ways to compile, each
timed against its eager counterpart after warm-up (median of interleaved rounds):

* ``torch.compile(sampler.sample)`` on a seeded sampler, what a user would write.
  The seeded ``torch.randint(..., generator=...)`` draws cannot be traced, so
  they run eagerly (graph breaks), and so does the CPU's filtered uniform draw
  (``torch.nonzero``: data-dependent shapes); the rest is compiled.
* ``torch.compile(hard_negatives)`` on given draws: the deterministic part
  alone (candidate draw, scoring, selection, gather), with the same break at the
  filtered draw.
* the same with ``fullgraph=True`` on the path every device but the CPU takes
  (every draw searched, fixed shapes; forced here by emptying
  ``negsample.candidates._COMPACTING_DEVICES``), eager against compiled: one
  graph.

Also prints the compile time of each and how many rows the compiled version
returns identically to eager on the same draws (the compiled scorer may sum the
64 products in another order, so a near-tie can resolve differently).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, time_side_by_side

import negsample.candidates
from negsample import HardNegativeSampler, MFModel
from negsample.samplers import HardDraws, hard_negatives

M, HARD, RANDOM, DIM = 10, 2, 2, 64


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    index, source = load_index(args.data)
    batch = args.batch_size
    torch.manual_seed(0)
    model = MFModel(index.num_users, index.num_items, dim=DIM, validate=False)
    gen = torch.Generator().manual_seed(1)
    users = torch.randint(0, index.num_users, (batch,), generator=gen)

    def select(users: torch.Tensor, draws: HardDraws) -> torch.Tensor:
        return hard_negatives(
            index, users, model, draws, num_hard=HARD, num_random=RANDOM, validate=False
        )

    def searching_every_draw(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            negsample.candidates._COMPACTING_DEVICES = ()
            try:
                return fn()
            finally:
                negsample.candidates._COMPACTING_DEVICES = compacting

        return run

    def select_fixed(users: torch.Tensor, draws: HardDraws) -> torch.Tensor:
        return hard_negatives(
            index, users, model, draws, num_hard=HARD, num_random=RANDOM, validate=False
        )

    compacting = negsample.candidates._COMPACTING_DEVICES
    eager_sampler = HardNegativeSampler(index, M, HARD, RANDOM, generator=0, validate=False)
    traced_sampler = HardNegativeSampler(index, M, HARD, RANDOM, generator=0, validate=False)
    draw_sampler = HardNegativeSampler(index, M, HARD, RANDOM, generator=2, validate=False)
    torch._dynamo.reset()
    compiled_sample = torch.compile(traced_sampler.sample, dynamic=False)
    compiled_select = torch.compile(select, dynamic=False)
    compiled_fixed = torch.compile(select_fixed, fullgraph=True, dynamic=False)

    compile_s = {}
    start = time.perf_counter()
    compiled_rows = compiled_sample(users, model)
    compile_s["sample"] = time.perf_counter() - start
    draws = draw_sampler.draw(batch)
    start = time.perf_counter()
    compiled_select(users, draws)
    compile_s["hard_negatives"] = time.perf_counter() - start
    start = time.perf_counter()
    searching_every_draw(lambda: compiled_fixed(users, draws))()
    compile_s["fixed"] = time.perf_counter() - start

    # Same draws: the two seeded samplers advance in lockstep for these calls.
    same = [torch.equal(compiled_rows, eager_sampler.sample(users, model))]
    for _ in range(4):
        same.append(torch.equal(compiled_sample(users, model), eager_sampler.sample(users, model)))
    rows_equal = rows_equal_fixed = 0
    for _ in range(5):
        fixed = draw_sampler.draw(batch)
        rows_equal += int((compiled_select(users, fixed) == select(users, fixed)).all(1).sum())
        on_fixed = searching_every_draw(lambda d=fixed: compiled_fixed(users, d))()
        rows_equal_fixed += int((on_fixed == select(users, fixed)).all(1).sum())

    fns = {
        "sample eager": lambda: eager_sampler.sample(users, model),
        "sample compiled": lambda: compiled_sample(users, model),
        "hard_negatives eager": lambda: select(users, draws),
        "hard_negatives compiled": lambda: compiled_select(users, draws),
        "fixed eager": searching_every_draw(lambda: select_fixed(users, draws)),
        "fixed compiled": searching_every_draw(lambda: compiled_fixed(users, draws)),
    }
    ms = {
        name: 1e3 * t
        for name, t in time_side_by_side(
            fns, repeats=dict.fromkeys(fns, 5), rounds=args.rounds
        ).items()
    }

    print(f"index: {source}: {index}")
    print(f"machine: {machine()}")
    print(
        f"B={batch}, M={M}, {HARD} hard + {RANDOM} random, MFModel(dim={DIM}, validate=False), "
        f"validate=False, inductor; median of {args.rounds} interleaved rounds\n"
    )
    print(f"{'':>32} {'eager ms':>9} {'compiled ms':>12} {'compiled/eager':>15} {'compile s':>10}")
    for label, key in (
        ("sampler.sample (seeded)", "sample"),
        ("hard_negatives (given draws)", "hard_negatives"),
        ("every draw searched, fullgraph", "fixed"),
    ):
        eager, compiled = ms[f"{key} eager"], ms[f"{key} compiled"]
        print(
            f"{label:>32} {eager:>9.2f} {compiled:>12.2f} {compiled / eager:>14.2f}x"
            f" {compile_s[key]:>10.1f}"
        )
    print(
        f"\nsame negatives as eager on the same draws: sampler.sample {sum(same)}/{len(same)} "
        f"batches identical; hard_negatives {rows_equal}/{5 * batch} rows identical; "
        f"every draw searched {rows_equal_fixed}/{5 * batch} rows identical"
    )


if __name__ == "__main__":
    main()
