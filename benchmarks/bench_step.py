"""The hard sampler's share of a training step, and how it splits into draw, score and select.

Usage::

    python benchmarks/bench_step.py --data ../shared/data/gowalla
    python benchmarks/bench_step.py        # generated index of Gowalla's shape
    python benchmarks/bench_step.py --data ../shared/data/gowalla --compile --threads 1

One training step of matrix factorisation with BPR, as a user's loop runs it:
a batch of B=4096 (user, positive item) rows from the training pairs,
``MFModel(dim=64)``, ``torch.optim.Adam`` (dense gradients), ``BPRLoss`` over
``(B, 4)`` negatives from ``HardNegativeSampler(M=10, 2 hard + 2 random)``::

    negatives = sampler.sample(users, model)
    loss = loss_fn(model(users, pos_items), model(users[:, None], negatives))
    optimizer.zero_grad(); loss.backward(); optimizer.step()

timed with ``validate=False`` (sampler and model) and with ``validate=True``, and
with the approximate recipe (``randint`` over all items, score, ``topk``, random
picks) in place of the sampler, for reference. The sampler is also timed on its
own and in its three stages, called as the vectorized backend calls them:

* draw: the generator's random bits and the candidates from each user's complement
  (``sampler.draw`` + ``sampler.candidates.draw``, i.e. ``index._draw_complement``);
* score: the scorer on the ``(B, M)`` candidates under ``no_grad`` (``_score``);
* select: the two stable sorts (hard part, random part) and the gather.

The staged version is checked to return exactly what ``sampler.sample`` returns on
the same draws. Goals (issue 7): draw + select at most a third of the scoring
time (scoring is work the approximate recipe does too), and the whole sampler at
most 25% of the step on CPU. Median of interleaved rounds.

``--compile`` adds a row for ``torch.compile(sampler.sample)`` (inductor,
``validate=False``) in the same step (a minute or so of compiling). Inductor
fuses the complement draw into the scoring kernel, so that row has no split;
its ``(sampler - score) / score`` uses the eager scoring time.
``--threads`` sets ``torch.set_num_threads``: on a shared, loaded machine one
thread gives steadier ratios than two.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index, machine, time_side_by_side
from bench_recipes import approximate_recipe

from negsample import BPRLoss, HardNegativeSampler, MFModel, PositiveIndex
from negsample.samplers import HardDraws
from negsample.samplers._hard import _score
from negsample.samplers._selection import _TAKEN

M, HARD, RANDOM, DIM = 10, 2, 2, 64

Sampler = Callable[[torch.Tensor], torch.Tensor]


def training_batches(
    index: PositiveIndex, batch: int, count: int, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of ``batch`` (user, positive item) rows drawn from the training pairs."""
    users = torch.repeat_interleave(
        torch.arange(index.num_users), (index.indptr[1:] - index.indptr[:-1]).long()
    )
    items = index.indices.long()
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.randint(0, users.numel(), (batch,), generator=gen) for _ in range(count)]
    return [(users[r], items[r]) for r in rows]


class Step:
    """One MF + BPR training step with dense Adam; ``negatives`` is the sampler under test."""

    def __init__(self, model: MFModel, negatives: Sampler) -> None:
        self.model = model
        self.negatives = negatives
        self.loss_fn = BPRLoss()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def __call__(self, users: torch.Tensor, pos_items: torch.Tensor) -> None:
        neg_items = self.negatives(users)
        pos_scores = self.model(users, pos_items)
        neg_scores = self.model(users[:, None], neg_items)
        loss = self.loss_fn(pos_scores, neg_scores)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


# ---------------------------------------------------------------------- the sampler's three stages


def stage_draw(sampler: HardNegativeSampler, users: torch.Tensor) -> tuple[HardDraws, torch.Tensor]:
    """Random bits for the batch, and the candidates they pick from each user's complement."""
    draws = sampler.draw(users.numel(), users.device)
    return draws, sampler.candidates.draw(users, draws.candidate_bits)


def stage_score(
    model: MFModel, users: torch.Tensor, candidates: torch.Tensor, validate: bool
) -> torch.Tensor:
    """The scorer on the ``(B, M)`` candidates, under ``no_grad``, with the sampler's checks."""
    return _score(model, users[:, None].expand_as(candidates), candidates, validate)


def stage_select(scores: torch.Tensor, draws: HardDraws, candidates: torch.Tensor) -> torch.Tensor:
    """Top-k hard part (stable sort), random part (stable sort of the slot keys), gather."""
    hard = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :HARD]
    slot_keys = draws.slot_keys.scatter(1, hard, _TAKEN)
    random_part = torch.sort(slot_keys, dim=1, stable=True).indices[:, :RANDOM]
    return candidates.gather(1, torch.cat([hard, random_part], dim=1))


def staged_sample(
    sampler: HardNegativeSampler, users: torch.Tensor, model: MFModel
) -> torch.Tensor:
    """``sampler.sample`` rebuilt from the three stages (users assumed valid)."""
    draws, candidates = stage_draw(sampler, users)
    scores = stage_score(model, users, candidates, sampler.validate)
    return stage_select(scores, draws, candidates)


def check_staged(index: PositiveIndex, model: MFModel, users: torch.Tensor) -> None:
    """The staged version returns exactly what ``sampler.sample`` does on the same draws."""
    for validate in (False, True):
        ours = HardNegativeSampler(index, M, HARD, RANDOM, generator=7, validate=validate)
        staged = HardNegativeSampler(index, M, HARD, RANDOM, generator=7, validate=validate)
        for _ in range(3):
            expected = ours.sample(users, model)
            if not torch.equal(staged_sample(staged, users, model), expected):
                raise AssertionError(
                    f"staged pieces differ from sampler.sample (validate={validate})"
                )


# ---------------------------------------------------------------------- main


class Row(NamedTuple):
    """Which timed functions make up one line of the table."""

    label: str
    step: str
    sampler: str
    draw: str
    score: str
    select: str


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile(sampler.sample) (inductor, validate=False) in the step",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    index, source = load_index(args.data)
    batch = args.batch_size
    torch.manual_seed(0)
    base = MFModel(index.num_users, index.num_items, dim=DIM)
    batches = training_batches(index, batch, count=8)
    users0 = batches[0][0]
    check_staged(index, base, users0)

    def fresh_model(validate: bool) -> MFModel:
        model = copy.deepcopy(base)
        model.validate = validate
        return model

    gen = torch.Generator().manual_seed(1)
    samplers: dict[str, Sampler] = {}
    models: dict[str, MFModel] = {}
    for validate in (False, True):
        name = f"validate={validate}"
        models[name] = fresh_model(validate)
        sampler = HardNegativeSampler(index, M, HARD, RANDOM, generator=0, validate=validate)
        samplers[name] = lambda u, s=sampler, m=models[name]: s.sample(u, m)
    models["approximate"] = fresh_model(False)
    samplers["approximate"] = lambda u, m=models["approximate"]: approximate_recipe(
        u, m, index.num_items, gen
    )

    stage_sampler = HardNegativeSampler(index, M, HARD, RANDOM, generator=3, validate=False)
    draws0, candidates0 = stage_draw(stage_sampler, users0)
    scores0 = stage_score(models["validate=False"], users0, candidates0, False)
    stages: dict[str, Callable[[], object]] = {
        "draw": lambda: stage_draw(stage_sampler, users0),
        "select": lambda: stage_select(scores0, draws0, candidates0),
    }
    for validate in (False, True):
        stages[f"score validate={validate}"] = lambda v=validate: stage_score(
            models[f"validate={v}"], users0, candidates0, v
        )
    rows = [
        Row(name, f"step {name}", f"sampler {name}", "draw", f"score {name}", "select")
        for name in ("validate=False", "validate=True")
    ]

    compile_note = ""
    if args.compile:
        models["compiled"] = fresh_model(False)
        compiled = HardNegativeSampler(index, M, HARD, RANDOM, generator=0, validate=False)
        compiled_sample = torch.compile(compiled.sample, dynamic=False)
        samplers["compiled"] = lambda u: compiled_sample(u, models["compiled"])
        start = time.perf_counter()
        twin = HardNegativeSampler(index, M, HARD, RANDOM, generator=0, validate=False)
        for users, _ in batches[:3]:
            if not torch.equal(samplers["compiled"](users), twin.sample(users, models["compiled"])):
                raise AssertionError("torch.compile(sampler.sample) differs from eager")
        rows.append(
            Row("compiled", "step compiled", "sampler compiled", "", "score validate=False", "")
        )
        compile_note = (
            f"compiled: torch.compile(sampler.sample), validate=False, inductor (the seeded "
            f"draws run eagerly: graph breaks); compiling took {time.perf_counter() - start:.0f} s; "
            f"same negatives as eager. Inductor fuses the complement draw with the scoring, so "
            f"its stages are not timed apart: (sampler - score) / score uses the eager score.\n"
        )

    steps = {name: Step(models[name], fn) for name, fn in samplers.items()}
    cursor = [0]

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        cursor[0] = (cursor[0] + 1) % len(batches)
        return batches[cursor[0]]

    fns: dict[str, Callable[[], object]] = {}
    for name, step in steps.items():
        fns[f"step {name}"] = lambda st=step: st(*next_batch())
        fns[f"sampler {name}"] = lambda fn=samplers[name]: fn(next_batch()[0])
    fns.update(stages)
    # Adam's update alone (on the gradients the last step left): what dominates the step.
    fns["adam"] = steps["validate=False"].optimizer.step
    steps["validate=False"](*batches[0])
    # Short rounds, many of them: the machine is shared, and a burst of load then hits
    # one round of every function rather than all rounds of one.
    repeats = {name: (1 if name.startswith("step") else 3) for name in fns}
    ms = {
        name: 1e3 * t
        for name, t in time_side_by_side(fns, repeats=repeats, rounds=args.rounds).items()
    }

    print(f"index: {source}: {index}")
    print(f"machine: {machine()}")
    print(
        f"B={batch}, M={M}, {HARD} hard + {RANDOM} random, MFModel(dim={DIM}), dense Adam, "
        f"BPRLoss over (B, {HARD + RANDOM}); median of {args.rounds} interleaved rounds"
    )
    print("staged draw/score/select reproduce sampler.sample exactly on the same draws: yes")
    print(compile_note)
    print(
        f"{'sampler':>15} {'step ms':>8} {'sampler ms':>11} {'share':>6} {'draw ms':>8}"
        f" {'score ms':>9} {'select ms':>10} {'other ms':>9} {'(d+s)/score':>12}"
        f" {'(sampler-score)/score':>22}"
    )
    for row in rows:
        step, sample, score = ms[row.step], ms[row.sampler], ms[row.score]
        rest = (sample - score) / score
        if row.draw:
            draw, select = ms[row.draw], ms[row.select]
            split = (
                f"{draw:>8.2f} {score:>9.2f} {select:>10.2f} {sample - draw - score - select:>9.2f}"
                f" {(draw + select) / score:>12.2f}"
            )
        else:
            split = f"{'-':>8} {score:>9.2f} {'-':>10} {'-':>9} {'-':>12}"
        print(
            f"{row.label:>15} {step:>8.2f} {sample:>11.2f} {sample / step:>6.1%} {split}"
            f" {rest:>22.2f}"
        )
    step, sample = ms["step approximate"], ms["sampler approximate"]
    score = ms["score validate=False"]
    print(
        f"{'approximate':>15} {step:>8.2f} {sample:>11.2f} {sample / step:>6.1%}"
        f" {'':>51} {(sample - score) / score:>22.2f}"
    )
    print(
        "\nother = sampler - draw - score - select: the sampler's own checks and glue "
        "(a difference of medians, so noisy)"
    )
    step, score = ms["step validate=False"], ms["score validate=False"]
    print(
        f"of the validate=False step: dense Adam's update alone {ms['adam']:.2f} ms "
        f"({ms['adam'] / step:.1%}), scoring the B x M candidates {score / step:.1%}"
    )
    print("\ngoals (issue 7):")
    for row in rows:
        share = ms[row.sampler] / ms[row.step]
        if row.draw:
            ratio = (ms[row.draw] + ms[row.select]) / ms[row.score]
            first = f"draw + select <= 1/3 of score: {verdict(ratio <= 1 / 3)} ({ratio:.2f})"
        else:
            ratio = (ms[row.sampler] - ms[row.score]) / ms[row.score]
            first = f"sampler - score <= 1/3 of score: {verdict(ratio <= 1 / 3)} ({ratio:.2f})"
        print(
            f"  {row.label:>15}: {first}; sampler <= 25% of step: {verdict(share <= 0.25)} "
            f"({share:.1%})"
        )


if __name__ == "__main__":
    main()
