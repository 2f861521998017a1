"""A sampled-softmax training step over shared candidates against a BPR step with hard negatives.

Usage::

    python benchmarks/bench_softmax.py --data data/gowalla      # the LightGCN split's train.txt
    python benchmarks/bench_softmax.py                          # generated index of Gowalla's shape
    python benchmarks/bench_softmax.py --threads 1              # steadier on a loaded machine

Both steps train ``MFModel(dim=64)`` with ``torch.optim.Adam`` (dense
gradients) on batches of (user, positive item) rows drawn from the training
pairs, with ``validate=False`` on samplers and model, as a hot loop runs them:

* **softmax**: B=2048 rows, ``SharedNegativeSampler(K=1024)`` (uniform
  candidates shared by the batch, exact mask of known positives),
  ``model(users[:, None], items[None, :])`` (one matrix product),
  ``SampledSoftmaxLoss(temperature=0.1)`` with ``log_q = log(K q)``, cosine
  similarity;
* **bpr-hard**: B=2048 rows, ``HardNegativeSampler(M=10, 2 hard + 2 random)``,
  ``BPRLoss``, dot product.

It prints the median time of each step, interleaved round by round, their
ratio (goal: softmax at most 2x the BPR step), and the mask's share of the
softmax step (goal: at most 25%), the mask timed on its own on the same batches.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, time_side_by_side
from bench_step import training_batches

from negsample import (
    BPRLoss,
    HardNegativeSampler,
    MFModel,
    PositiveIndex,
    SampledSoftmaxLoss,
    SharedNegativeSampler,
)

BATCH, K, DIM, TEMPERATURE = 2048, 1024, 64, 0.1


def softmax_step(
    index: PositiveIndex, batches: list[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[Callable[[], None], Callable[[], None]]:
    torch.manual_seed(0)
    model = MFModel(index.num_users, index.num_items, DIM, similarity="cosine", validate=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = SharedNegativeSampler(index, K, generator=0, validate=False)
    loss_fn = SampledSoftmaxLoss(TEMPERATURE)
    log_k = math.log(K)
    state = {"i": 0}

    def step() -> None:
        users, pos_items = batches[state["i"] % len(batches)]
        state["i"] += 1
        negatives = sampler.sample(users)
        loss = loss_fn(
            model(users, pos_items),
            model(users[:, None], negatives.items[None, :]),
            log_q=negatives.log_prob + log_k,
            mask=negatives.mask,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def mask_only() -> None:
        users, _ = batches[state["i"] % len(batches)]
        state["i"] += 1
        sampler.sample(users)

    return step, mask_only


def bpr_step(
    index: PositiveIndex, batches: list[tuple[torch.Tensor, torch.Tensor]]
) -> Callable[[], None]:
    torch.manual_seed(0)
    model = MFModel(index.num_users, index.num_items, DIM, validate=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = HardNegativeSampler(index, 10, 2, 2, generator=0, validate=False)
    loss_fn = BPRLoss()
    state = {"i": 0}

    def step() -> None:
        users, pos_items = batches[state["i"] % len(batches)]
        state["i"] += 1
        negatives = sampler.sample(users, model)
        loss = loss_fn(model(users, pos_items), model(users[:, None], negatives))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder with the LightGCN split's train.txt")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    index, source = load_index(args.data)
    batches = training_batches(index, BATCH, 16)
    softmax, mask_only = softmax_step(index, batches)
    times = time_side_by_side(
        {
            "softmax step": softmax,
            "bpr-hard step": bpr_step(index, batches),
            "shared sample + mask": mask_only,
        },
        {"softmax step": 5, "bpr-hard step": 5, "shared sample + mask": 5},
        rounds=args.rounds,
    )
    print(f"{source}; {machine()}")
    print(
        f"B={BATCH}, softmax: K={K} shared uniform candidates, T={TEMPERATURE}, cosine; bpr-hard: M=10, 2+2"
    )
    for name, seconds in times.items():
        print(f"  {name:<22} {seconds * 1e3:8.2f} ms")
    ratio = times["softmax step"] / times["bpr-hard step"]
    share = times["shared sample + mask"] / times["softmax step"]
    print(f"softmax / bpr-hard step: {ratio:.2f}x (goal <= 2x)")
    print(f"sample + mask / softmax step: {share:.1%} (goal <= 25%)")


if __name__ == "__main__":
    main()
