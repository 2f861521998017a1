"""The softmax recipe's training step, written with the public API, against its matrix products.

Usage::

    python benchmarks/bench_recipe_step.py --data ../shared/data/gowalla
    python benchmarks/bench_recipe_step.py                 # generated index of Gowalla's shape
    python benchmarks/bench_recipe_step.py --device cuda   # on a GPU

The step is the README's softmax recipe in a user's own loop: B=2048 (user,
positive) rows of the training pairs, ``MFModel(dim=64, similarity="cosine",
validate=False)``, fused ``torch.optim.Adam(lr=1e-3)``, ``SampledSoftmaxLoss(0.1,
neg_weight=1.22, include_positive=False)`` over K=1024 uniform candidates shared
by the batch, the batch's 2048 positives (in-batch negatives, one mixture
``log_q``) and each row's 4 top-scored of 64 uniform candidates
(``HardNegativeSampler(64, 4, 0)``, counted as uniform draws). Written two ways:

* **candidate set**: ``CandidateSampler.sample`` for the candidates, their mask
  and ``log_q``, then ``SampledSoftmaxLoss.from_vectors`` over
  ``model.candidate_vectors`` (the README's loop);
* **by hand**: ``SharedNegativeSampler.sample`` and ``in_batch``, the mixture
  ``log_q`` with ``logaddexp``, ``HardNegativeSampler.sample``, the masks and
  scores concatenated, ``SampledSoftmaxLoss`` over the ``(B, 3076)`` scores
  (the loop the docs showed before the candidate set).

Printed, at each thread count asked for (1 and 2 by default), the median of
interleaved rounds of each step (forward, backward, optimizer step), of each
part timed alone on the same batches, and of the step's dense matrix products:
``(B, d) x (d, C)`` with ``C = 3076`` candidates per row and its two gradient
products, in the step's dtype and on its device. **step / products** is the
figure of merit (goal: at most 2.0): the ratio of the medians, and the
median and range of each round's own ratio (each round times the products
first and the steps seconds later, so a machine whose speed drifts over
minutes moves both alike). ``--keep-freed-memory`` first asks glibc
to keep freed blocks for reuse, as the ``negsample`` command does on CPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, samples_side_by_side
from bench_step import training_batches

from negsample import (
    CandidateSampler,
    HardNegativeSampler,
    MFModel,
    PositiveIndex,
    SampledSoftmaxLoss,
    SharedNegativeSampler,
)

BATCH, K, M, HARD, DIM = 2048, 1024, 64, 4, 64
Batch = tuple[torch.Tensor, torch.Tensor]


def recipe_parts(
    index: PositiveIndex, batches: list[Batch], device: torch.device
) -> dict[str, Callable[[], object]]:
    """Both steps and their parts, as closures over the same model and batches."""
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
    loss_fn = SampledSoftmaxLoss(0.1, neg_weight=1.22, include_positive=False)
    hard = HardNegativeSampler(index, M, HARD, 0, generator=1, validate=False)
    sampler = CandidateSampler(index, K, in_batch=True, hard=hard, generator=0, validate=False)
    shared = SharedNegativeSampler(index, K, generator=0, validate=False)
    by_hand_hard = HardNegativeSampler(index, M, HARD, 0, generator=1, validate=False)
    state = {"i": 0}

    def batch() -> Batch:
        users, pos_items = batches[state["i"] % len(batches)]
        state["i"] += 1
        return users, pos_items

    # ---- the candidate set and the fused loss (the README's loop)

    def candidate_loss(users: torch.Tensor, pos_items: torch.Tensor, cands: Any) -> torch.Tensor:
        vectors = model.candidate_vectors(users, pos_items, cands.items, cands.row_items)
        loss: torch.Tensor = loss_fn.from_vectors(
            *vectors,
            log_q=cands.log_q,
            mask=cands.mask,
        )
        return loss

    def candidates(users: torch.Tensor, pos_items: torch.Tensor) -> object:
        return sampler.sample(users, pos_items, model)

    # ---- by hand: three samplers, logaddexp, concatenated masks and scores

    log_k, log_b = math.log(K), math.log(BATCH)
    log_uniform = log_k - math.log(index.num_items)

    def by_hand(users: torch.Tensor, pos_items: torch.Tensor) -> tuple[torch.Tensor, ...]:
        drawn = shared.sample(users)
        in_batch = shared.in_batch(users, pos_items)
        items = torch.cat([drawn.items, in_batch.items])
        log_q = torch.logaddexp(
            shared.log_prob(items) + log_k, shared.in_batch_log_prob(items) + log_b
        )
        hard_items = by_hand_hard.sample(users, model)
        mask = torch.cat(
            [drawn.mask, in_batch.mask, torch.zeros_like(hard_items, dtype=torch.bool)], dim=1
        )
        log_q = torch.cat([log_q, log_q.new_full((HARD,), log_uniform)])
        return items, hard_items, mask, log_q

    def by_hand_loss(users: torch.Tensor, pos_items: torch.Tensor, cands: Any) -> torch.Tensor:
        items, hard_items, mask, log_q = cands
        neg_scores = torch.cat(
            [model(users[:, None], items[None, :]), model(users[:, None], hard_items)], dim=1
        )
        loss: torch.Tensor = loss_fn(model(users, pos_items), neg_scores, log_q=log_q, mask=mask)
        return loss

    def step_of(
        sample: Callable[[torch.Tensor, torch.Tensor], Any],
        loss_of: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
    ) -> Callable[[], None]:
        def step() -> None:
            users, pos_items = batch()
            loss = loss_of(users, pos_items, sample(users, pos_items))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    fixed = batch()
    fixed_sets = {"candidates": candidates(*fixed), "by hand": by_hand(*fixed)}

    def forward_of(
        loss_of: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor], kind: str
    ) -> Callable[[], object]:
        def forward() -> object:
            with torch.no_grad():
                return loss_of(fixed[0], fixed[1], fixed_sets[kind])

        return forward

    def backward_of(
        loss_of: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor], kind: str
    ) -> Callable[[], None]:
        def backward() -> None:
            loss = loss_of(fixed[0], fixed[1], fixed_sets[kind])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()

        return backward

    def adam() -> None:
        optimizer.step()

    return {
        "step: candidate set + fused loss": step_of(candidates, candidate_loss),
        "step: by hand + scores": step_of(by_hand, by_hand_loss),
        "  candidate set (sample)": lambda: candidates(*batch()),
        "    of which the hard sampler": lambda: hard.sample(batch()[0], model),
        "  fused loss, no grad": forward_of(candidate_loss, "candidates"),
        "  fused loss + backward": backward_of(candidate_loss, "candidates"),
        "  by hand: shared draw + mask": lambda: shared.sample(batch()[0]),
        "  by hand: in-batch items + mask": lambda: shared.in_batch(*batch()),
        "  by hand: all candidates + log_q": lambda: by_hand(*batch()),
        "  by hand: scores + loss, no grad": forward_of(by_hand_loss, "by hand"),
        "  by hand: scores + loss + backward": backward_of(by_hand_loss, "by hand"),
        "  Adam (fused)": adam,
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
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="let glibc keep freed blocks, as the negsample command does on CPU",
    )
    args = parser.parse_args(argv)
    if args.keep_freed_memory:
        from negsample.cli._system import keep_freed_memory

        print(f"glibc keeps freed blocks: {keep_freed_memory()}")
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

        # The products first, then each step right after them: the ratio of a round
        # compares timings taken seconds apart, not minutes (this machine drifts).
        order = ["dense products", *(name for name in parts if name != "dense products")]
        fns = {name: synced(parts[name]) for name in order}
        samples = samples_side_by_side(fns, {name: 3 for name in fns}, rounds=args.rounds)
        times = {name: statistics.median(values) for name, values in samples.items()}
        step = times["step: candidate set + fused loss"]
        for name, seconds in times.items():
            print(f"  {name:40s} {seconds * 1e3:8.2f} ms  {seconds / step:6.1%} of the first step")
        for name in ("step: candidate set + fused loss", "step: by hand + scores"):
            ratio = times[name] / times["dense products"]
            per_round = sorted(
                a / b for a, b in zip(samples[name], samples["dense products"], strict=True)
            )
            print(
                f"  {name} / dense products: {ratio:.2f}x (goal: at most 2.0); per round: "
                f"median {statistics.median(per_round):.2f}x, "
                f"from {per_round[0]:.2f}x to {per_round[-1]:.2f}x"
            )


if __name__ == "__main__":
    main()
