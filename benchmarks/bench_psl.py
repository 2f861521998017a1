"""PSL's training step fused over vectors against PSL over a score matrix, and the softmax's.

Usage::

    python benchmarks/bench_psl.py --data ../shared/data/gowalla
    python benchmarks/bench_psl.py                 # generated index of Gowalla's shape
    python benchmarks/bench_psl.py --device cuda   # on a GPU

The step of ``negsample train --psl tanh`` in a user's own loop: B=2048
training pairs, ``MFModel(dim=64, similarity="cosine", validate=False)``, fused
``torch.optim.Adam(lr=1e-3)``, a ``CandidateSampler`` with K=1024 uniform
shared candidates, the batch's positives (in-batch) and each row's 4
top-scored of 64, then ``PairwiseSoftmaxLoss(0.05, "tanh", score_scale=2,
include_positive=False)`` computed two ways:

* **fused**: ``PairwiseSoftmaxLoss.from_vectors`` over ``model.candidate_vectors``
  (no score matrix; the backward is three matrix products);
* **scores**: ``loss_fn(model(users, pos_items), cands.scores(model, users), ...)``,
  the ``(B, C)`` scores and the loss through autograd.

Beside them the softmax recipe's step (``SampledSoftmaxLoss(0.1,
neg_weight=1.22, include_positive=False).from_vectors``) and the step's three
dense matrix products. Printed, at each thread count: the median of
interleaved rounds of each (sample, loss, backward, Adam step) and the ratios
**scores / fused** and **fused / softmax step**, both measured side by side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, samples_side_by_side
from bench_recipe_step import BATCH, DIM, HARD, Batch, K, M, matrix_products
from bench_step import training_batches

from negsample import (
    CandidateSampler,
    HardNegativeSampler,
    MFModel,
    PairwiseSoftmaxLoss,
    PositiveIndex,
    SampledSoftmaxLoss,
)


def steps(
    index: PositiveIndex, batches: list[Batch], device: torch.device
) -> dict[str, Callable[[], object]]:
    """The three steps, as closures over one model, sampler and cycle of batches."""
    torch.manual_seed(0)
    model = MFModel(
        index.num_users,
        index.num_items,
        DIM,
        similarity="cosine",
        init_std=1e-2,
        validate=False,
        device=device,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    psl = PairwiseSoftmaxLoss(0.05, "tanh", score_scale=2.0, include_positive=False)
    softmax = SampledSoftmaxLoss(0.1, neg_weight=1.22, include_positive=False)
    hard = HardNegativeSampler(index, M, HARD, 0, generator=1, validate=False)
    sampler = CandidateSampler(index, K, in_batch=True, hard=hard, generator=0, validate=False)
    state = {"i": 0}

    def step_of(
        by_vectors: bool, loss_fn: PairwiseSoftmaxLoss | SampledSoftmaxLoss
    ) -> Callable[[], None]:
        def step() -> None:
            users, pos_items = batches[state["i"] % len(batches)]
            state["i"] += 1
            cands = sampler.sample(users, pos_items, model)
            if by_vectors:
                vectors = model.candidate_vectors(users, pos_items, cands.items, cands.row_items)
                loss = loss_fn.from_vectors(*vectors, log_q=cands.log_q, mask=cands.mask)
            else:
                scores = cands.scores(model, users)
                loss = loss_fn(model(users, pos_items), scores, log_q=cands.log_q, mask=cands.mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    return {
        "PSL step, fused over vectors": step_of(True, psl),
        "PSL step, over the score matrix": step_of(False, psl),
        "softmax recipe's step (fused)": step_of(True, softmax),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    index, what = load_index(args.data)
    index = index.to(device)
    batches = [
        (u.to(device), i.to(device)) for u, i in training_batches(index.to("cpu"), BATCH, 16)
    ]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"{what}; B={BATCH}, K={K} shared + in-batch + {HARD} hard of {M}, dim {DIM}")
    for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        print(f"\n{machine()}, device {device}")
        parts = steps(index, batches, device)
        parts["dense products"] = matrix_products(K + BATCH + HARD, device, torch.float32)

        def synced(fn: Callable[[], object]) -> Callable[[], None]:
            def call() -> None:
                fn()
                sync()

            return call

        fns = {name: synced(fn) for name, fn in parts.items()}
        samples = samples_side_by_side(fns, {name: 3 for name in fns}, rounds=args.rounds)
        times = {name: statistics.median(values) for name, values in samples.items()}
        for name, seconds in times.items():
            print(f"  {name:34s} {seconds * 1e3:8.2f} ms")
        fused, plain = "PSL step, fused over vectors", "PSL step, over the score matrix"
        softmax = "softmax recipe's step (fused)"
        for top, bottom in ((plain, fused), (fused, softmax), (fused, "dense products")):
            per_round = sorted(a / b for a, b in zip(samples[top], samples[bottom], strict=True))
            print(
                f"  {top} / {bottom}: {times[top] / times[bottom]:.2f}x "
                f"(per round: median {statistics.median(per_round):.2f}x, "
                f"{per_round[0]:.2f}x to {per_round[-1]:.2f}x)"
            )


if __name__ == "__main__":
    main()
