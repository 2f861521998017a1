"""The softmax recipe's training step, written with the public API, against its matrix products.

Usage::

    python benchmarks/bench_recipe_step.py --data ../shared/data/gowalla
    python benchmarks/bench_recipe_step.py                 # generated index of Gowalla's shape
    python benchmarks/bench_recipe_step.py --device cuda   # on a GPU

The step is the README's softmax recipe as a user's own loop writes it:
B=2048 (user, positive) rows of the training pairs, ``MFModel(dim=64,
similarity="cosine", validate=False)``, fused ``torch.optim.Adam(lr=1e-3)``,
K=1024 uniform candidates shared by the batch (``SharedNegativeSampler``) and
the batch's in-batch positives (``in_batch``) under one mixture ``log_q``, and
4 hard negatives of 64 per row (``HardNegativeSampler(64, 4, 0)``) counted as
uniform draws, the masks concatenated, scored by the model (one matrix product
for the shared part) and fed to ``SampledSoftmaxLoss(0.1, neg_weight=1.22,
include_positive=False)``: the loop of the docs page "Softmax losses with many
negatives".

Printed, at each thread count asked for (1 and 2 by default), median of
interleaved rounds:

* the whole step (forward, backward, optimizer step);
* each part, timed alone on the same batches: the shared draw and mask, the
  in-batch set, the hard sampler, the scores, the loss forward, the
  backward, Adam;
* the step's dense matrix products: ``(B, d) x (d, C)`` with ``C`` the
  candidates per row, and its two gradient products, in the dtype and on the
  device of the step. **step / products** is the figure of merit (goal: at
  most 2.0).
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
    HardNegativeSampler,
    MFModel,
    PositiveIndex,
    SampledSoftmaxLoss,
    SharedNegativeSampler,
)

BATCH, K, M, HARD, DIM = 2048, 1024, 64, 4, 64


def recipe_parts(
    index: PositiveIndex, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> dict[str, Callable[[], object]]:
    """The step and each of its parts, as closures over the same model and batches."""
    torch.manual_seed(0)
    model = MFModel(
        index.num_users,
        index.num_items,
        DIM,
        similarity="cosine",
        init_std=1e-4,
        validate=False,
        device=device,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    shared = SharedNegativeSampler(index, K, generator=0, validate=False)
    hard = HardNegativeSampler(index, M, HARD, 0, generator=1, validate=False)
    loss_fn = SampledSoftmaxLoss(0.1, neg_weight=1.22, include_positive=False)
    state = {"i": 0}

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        users, pos_items = batches[state["i"] % len(batches)]
        state["i"] += 1
        return users, pos_items

    log_k, log_b = math.log(K), math.log(BATCH)
    log_uniform = log_k - math.log(index.num_items)

    def negatives(
        users: torch.Tensor, pos_items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        drawn = shared.sample(users)
        in_batch = shared.in_batch(users, pos_items)
        items = torch.cat([drawn.items, in_batch.items])
        log_q = torch.logaddexp(
            shared.log_prob(items) + log_k, shared.in_batch_log_prob(items) + log_b
        )
        hard_items = hard.sample(users, model)
        mask = torch.cat(
            [drawn.mask, in_batch.mask, torch.zeros_like(hard_items, dtype=torch.bool)], dim=1
        )
        log_q = torch.cat([log_q, log_q.new_full((HARD,), log_uniform)])
        return items, hard_items, mask, log_q

    def scored(
        users: torch.Tensor, pos_items: torch.Tensor, cands: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        items, hard_items = cands[0], cands[1]
        neg_scores = torch.cat(
            [model(users[:, None], items[None, :]), model(users[:, None], hard_items)], dim=1
        )
        return model(users, pos_items), neg_scores

    def loss_by_scores(
        users: torch.Tensor, pos_items: torch.Tensor, cands: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        pos_scores, neg_scores = scored(users, pos_items, cands)
        loss: torch.Tensor = loss_fn(pos_scores, neg_scores, log_q=cands[3], mask=cands[2])
        return loss

    def loss_by_vectors(
        users: torch.Tensor, pos_items: torch.Tensor, cands: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        items, hard_items, mask, log_q = cands
        # One lookup of every item the step scores: one embedding gradient, not three.
        vectors = model.item_vectors(torch.cat([pos_items, items, hard_items.reshape(-1)]))
        pos_vectors, item_vectors, hard_vectors = vectors.split(
            [pos_items.numel(), items.numel(), hard_items.numel()]
        )
        user_vectors = model.user_vectors(users)
        loss: torch.Tensor = loss_fn.from_vectors(
            (user_vectors * pos_vectors).sum(dim=1),
            user_vectors,
            item_vectors,
            hard_vectors.view(*hard_items.shape, -1),
            log_q=log_q,
            mask=mask,
        )
        return loss

    def step_of(loss_of: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            users, pos_items = batch()
            loss = loss_of(users, pos_items, negatives(users, pos_items))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    fixed = batch()
    fixed_cands = negatives(*fixed)

    def forward_of(loss_of: Callable[..., torch.Tensor]) -> Callable[[], object]:
        def forward() -> object:
            with torch.no_grad():
                return loss_of(fixed[0], fixed[1], fixed_cands)

        return forward

    def backward_of(loss_of: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def backward() -> None:
            loss = loss_of(fixed[0], fixed[1], fixed_cands)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()

        return backward

    def adam() -> None:
        optimizer.step()

    return {
        "step (scores)": step_of(loss_by_scores),
        "step (vectors)": step_of(loss_by_vectors),
        "shared draw + mask": lambda: shared.sample(batch()[0]),
        "in-batch items + mask": lambda: shared.in_batch(*batch()),
        "hard sampler (64 per row)": lambda: hard.sample(batch()[0], model),
        "candidate set (all three + log_q)": lambda: negatives(*batch()),
        "scores, no grad": lambda: forward_of(lambda u, p, c: scored(u, p, c))(),
        "scores + loss, no grad": forward_of(loss_by_scores),
        "scores + loss + backward": backward_of(loss_by_scores),
        "vectors + loss, no grad": forward_of(loss_by_vectors),
        "vectors + loss + backward": backward_of(loss_by_vectors),
        "Adam (fused)": adam,
    }


def matrix_products(
    num_candidates: int, device: torch.device, dtype: torch.dtype
) -> Callable[[], object]:
    """The step's three dense products: scores, and the two gradients of them."""
    gen = torch.Generator(device=device).manual_seed(0)
    users = torch.randn(BATCH, DIM, generator=gen, device=device, dtype=dtype)
    items = torch.randn(num_candidates, DIM, generator=gen, device=device, dtype=dtype)
    grad = torch.randn(BATCH, num_candidates, generator=gen, device=device, dtype=dtype)

    def products() -> tuple[torch.Tensor, ...]:
        return users @ items.T, grad @ items, grad.T @ users

    return products


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
        parts = recipe_parts(index, batches, device)
        num_candidates = K + BATCH + HARD
        parts["dense products"] = matrix_products(num_candidates, device, torch.float32)

        def synced(fn: Callable[[], object]) -> Callable[[], None]:
            def call() -> None:
                fn()
                sync()

            return call

        fns = {name: synced(fn) for name, fn in parts.items()}
        times = time_side_by_side(fns, {name: 3 for name in fns}, rounds=args.rounds)
        step = times["step (vectors)"]
        for name, seconds in times.items():
            print(f"  {name:36s} {seconds * 1e3:8.2f} ms  {seconds / step:6.1%} of the step")
        for name in ("step (scores)", "step (vectors)"):
            ratio = times[name] / times["dense products"]
            print(f"  {name} / dense products: {ratio:.2f}x (goal: at most 2.0)")


if __name__ == "__main__":
    main()
