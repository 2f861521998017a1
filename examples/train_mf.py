"""Train matrix factorisation with hard (or uniform) negatives: the main job.

With no arguments it trains on the built-in synthetic dataset, once with hard
negatives and once with uniform negatives, holds out 20% of each user's pairs
as a validation split, stops each run early on validation Recall@20 and prints
the validation metrics of the best epoch of both::

    python examples/train_mf.py

On real data (the LightGCN protocol on Gowalla: rank all items but the user's
training items, Recall@20 and NDCG@20 over the test users)::

    python examples/train_mf.py --data data/gowalla/train.txt \\
        --test data/gowalla/test.txt --ks 20

The epoch is chosen on a validation split carved from the training pairs
(``--valid-fraction`` of each user's pairs, ``--split-seed``), never on the test
file: training stops once validation Recall@K (the first ``--ks``) has not
improved for ``--patience`` epochs, and the weights of the best epoch are
restored; with ``--test``, the test metrics are those of the restored weights.
``--valid-fraction 0`` trains for ``--epochs`` epochs on all the training pairs
without validation. ``--submission`` writes the top 50 items per user, never a
training item, from a model trained on all the training pairs: after a
validation run it is retrained on all of them for the chosen number of epochs.

``--loss softmax`` trains with :class:`~negsample.SampledSoftmaxLoss` over
``--num-negatives`` candidates shared by the batch (``SharedNegativeSampler``,
exact mask of known positives, logQ correction), cosine scores and
``--temperature`` 0.1 by default; ``--in-batch`` adds the batch's positive items
as negatives. There, the "uniform" run uses the shared candidates only and the
"hard" run adds each row's ``--num-hard`` top-scored of ``--num-candidates``
candidates from ``HardNegativeSampler``. The best Gowalla softmax figure in
the README comes from::

    python examples/train_mf.py --data data/gowalla/train.txt \\
        --test data/gowalla/test.txt --loss softmax --sampler uniform --in-batch \\
        --valid-fraction 0 --epochs 400 --time-budget 3300 --eval-every 5 --ks 20

On Linux with glibc the script first asks ``malloc`` to keep freed blocks of
up to 32 MiB for reuse (``keep_freed_memory``): a softmax step frees several
``B x K`` tensors that size, and returning them to the system made every step
pay fresh page faults (about 25% of a CPU step).

Formats: ``--format csv`` (the course competition's ``UserId,ItemId`` file),
``lightgcn`` (``user item item ...``), ``pickle`` (a pickled ``{user:
set(items)}``; trusted files only: unpickling runs code) and ``pairs`` (one
``user item [rating ...]`` per line, ``--delimiter``, ``--rating-threshold``).
``auto`` goes by the file name: ``.csv``, ``.txt``, ``.pkl``/``.pickle``, and
MovieLens-100K's ``u.data`` (and its ``u1.base``/``u1.test`` ... splits) as
pairs; for those, ``--rating-threshold 4`` keeps ratings of 4 and 5 as
positives (the usual implicit-feedback protocol; by default every rated pair is
a positive).
"""

from __future__ import annotations

import argparse
import ctypes
import math
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from negsample import (
    BCELoss,
    BPRLoss,
    HardNegativeSampler,
    MFModel,
    PositiveIndex,
    SampledSoftmaxLoss,
    SharedNegativeSampler,
    UniformSampler,
)
from negsample.data import (
    Interactions,
    holdout_split,
    load,
    synthetic_dataset,
    write_submission,
)
from negsample.metrics import evaluate

T = TypeVar("T")

# step(users, pos_items) -> the batch's scalar loss (regularisation included).
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SUBMISSION_SIZE = 50
# MovieLens-100K: u.data and the u1..u5, ua, ub .base/.test splits (user item rating time).
MOVIELENS_100K = re.compile(r"u[1-5ab]?\.(data|base|test)")


def progress(iterable: Iterable[T], total: int, desc: str, enabled: bool) -> Iterator[T]:
    """A tqdm progress bar when tqdm is installed and wanted, else the bare iterable."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)
            return
    yield from iterable


# ---------------------------------------------------------------------- options


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default, except ``None`` and a flag's ``False`` (the help says)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data", type=Path, metavar="FILE", help="training file (default: built-in synthetic data)"
    )
    data.add_argument(
        "--format",
        default="auto",
        choices=["auto", "lightgcn", "csv", "pickle", "pairs"],
        help="auto: by file name (.txt lightgcn, .csv, .pkl/.pickle, MovieLens u.data pairs)",
    )
    data.add_argument(
        "--test",
        type=Path,
        metavar="FILE",
        help="test file in the same format and id space; its metrics are reported for the "
        "weights chosen on the validation split",
    )
    data.add_argument(
        "--delimiter", default=None, help="pairs format: column delimiter (default: whitespace)"
    )
    data.add_argument(
        "--rating-threshold",
        type=float,
        default=None,
        help="pairs format: keep pairs rated >= this, e.g. 4 for MovieLens (default: keep all)",
    )
    data.add_argument(
        "--valid-fraction",
        type=float,
        default=0.2,
        help="share of each user's training pairs held out to choose the epoch; "
        "0: no validation, train --epochs epochs on all pairs",
    )
    data.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the validation split and of the built-in synthetic data",
    )
    train = parser.add_argument_group("training")
    train.add_argument(
        "--sampler",
        default=None,
        choices=["hard", "uniform", "both"],
        help="default: both on the synthetic data, hard on a file",
    )
    train.add_argument(
        "--loss",
        default="bpr",
        choices=sorted(STEPS),
        help="loss of each positive and its negatives",
    )
    train.add_argument("--dim", type=int, default=64, help="embedding size")
    train.add_argument(
        "--epochs",
        type=int,
        default=100,
        help="most epochs per run (with --valid-fraction 0: the epochs of the run)",
    )
    train.add_argument(
        "--patience",
        type=int,
        default=10,
        help="stop once validation Recall@K has not improved for this many epochs (0: never)",
    )
    train.add_argument("--batch-size", type=int, default=2048, help="training pairs per step")
    train.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam learning rate (default: bpr/bce 5e-3, softmax 1e-3)",
    )
    train.add_argument(
        "--reg",
        type=float,
        default=None,
        help="weight of the batch L2 penalty (default: bpr/bce 2e-2; softmax: none)",
    )
    train.add_argument(
        "--similarity",
        default=None,
        choices=["dot", "cosine"],
        help="MFModel's score (default: bpr/bce dot, softmax cosine)",
    )
    train.add_argument(
        "--init-std",
        type=float,
        default=None,
        help="std of the initial embeddings (default: dot 0.1, cosine 1e-4)",
    )
    train.add_argument(
        "--num-negatives",
        type=int,
        default=1024,
        help="softmax: candidates shared by the batch (SharedNegativeSampler)",
    )
    train.add_argument(
        "--in-batch",
        action="store_true",
        help="softmax: the batch's positive items as negatives too (exact mask, mixture logQ)",
    )
    train.add_argument(
        "--num-candidates", type=int, default=10, help="hard sampler: candidates scored per row"
    )
    train.add_argument(
        "--num-hard", type=int, default=2, help="hard sampler: top-scored candidates kept per row"
    )
    train.add_argument(
        "--num-random",
        type=int,
        default=2,
        help="hard sampler: random candidates per row (the uniform sampler draws "
        "--num-hard + --num-random negatives)",
    )
    train.add_argument(
        "--candidates",
        default="uniform",
        choices=["uniform", "popularity"],
        help="candidate distribution over each user's non-positives (both samplers)",
    )
    train.add_argument(
        "--alpha", type=float, default=None, help="popularity exponent in [0, 1] (default 0.75)"
    )
    train.add_argument(
        "--selection",
        default="topk",
        choices=["topk", "softmax"],
        help="hard part: top-k, or softmax sampling (Gumbel-top-k) at --temperature",
    )
    train.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="--loss softmax: the loss's temperature (default 0.1); --selection softmax: the "
        "selection's (default 1)",
    )
    train.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the model, the batch order and the sampler"
    )
    train.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        default=None,
        help="seconds of training per run; stops early when spent",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--ks", type=int, nargs="+", default=[20, 50], help="cut-offs; the first one chooses"
    )
    out.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="evaluate every N epochs: the validation split (default: every epoch) and, "
        "when given, the --test file for a curve (default: the test file once, at the end)",
    )
    out.add_argument(
        "--submission",
        type=Path,
        metavar="FILE",
        help=f"write the top {SUBMISSION_SIZE} items per user in the competition CSV format",
    )
    out.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="save a PNG of the metrics per epoch (needs matplotlib)",
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.alpha is not None and args.candidates != "popularity":
        parser.error("--alpha applies to --candidates popularity")
    if args.loss == "softmax":
        if args.selection == "softmax":
            parser.error("--selection softmax and --loss softmax share --temperature: use one")
        if args.reg:
            parser.error("--reg applies to --loss bpr/bce (the softmax run has no L2 penalty)")
        if args.num_negatives < 1:
            parser.error(f"--num-negatives must be >= 1, got {args.num_negatives}")
        args.temperature = 0.1 if args.temperature is None else args.temperature
    else:
        if args.temperature is not None and args.selection != "softmax":
            parser.error("--temperature applies to --loss softmax or --selection softmax")
        if args.in_batch:
            parser.error("--in-batch applies to --loss softmax")
    defaults = {"softmax": (1e-3, 0.0, "cosine")}.get(args.loss, (5e-3, 2e-2, "dot"))
    args.lr = defaults[0] if args.lr is None else args.lr
    args.reg = defaults[1] if args.reg is None else args.reg
    args.similarity = defaults[2] if args.similarity is None else args.similarity
    if args.init_std is None:
        args.init_std = 1e-4 if args.similarity == "cosine" else 0.1
    if not 0.0 <= args.valid_fraction < 1.0:
        parser.error(f"--valid-fraction must be in [0, 1), got {args.valid_fraction}")
    for name in ("epochs", "eval_every", "dim", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.patience < 0:
        parser.error(f"--patience must be >= 0, got {args.patience}")
    if args.split_seed < 0:
        parser.error(f"--split-seed must be >= 0, got {args.split_seed}")
    if args.data is None and args.test is not None:
        parser.error("--test needs --data (the built-in data has no test file)")
    if (
        args.plot is not None
        and args.valid_fraction == 0
        and (args.test is None or args.eval_every is None)
    ):
        parser.error("--plot needs a validation split, or --test with --eval-every")
    if args.sampler is None:
        args.sampler = "both" if args.data is None else "hard"
    return args


# ---------------------------------------------------------------------- data


@dataclass
class Data:
    """The training pairs, the validation split carved from them and the test file."""

    full: PositiveIndex  # every training pair: excluded from test rankings and submissions
    fit: PositiveIndex  # what a validation run trains on: full minus valid
    valid: PositiveIndex | None  # None with --valid-fraction 0
    test: PositiveIndex | None
    interactions: Interactions  # raw id maps, for the submission
    description: str


def load_file(path: Path, args: argparse.Namespace, like: Interactions | None) -> Interactions:
    options = {
        name: value
        for name, value in (
            ("delimiter", args.delimiter),
            ("rating_threshold", args.rating_threshold),
        )
        if value is not None
    }
    fmt = args.format
    if fmt == "auto" and (options or MOVIELENS_100K.fullmatch(path.name)):
        fmt = "pairs"
    if options and fmt != "pairs":
        sys.exit("--delimiter and --rating-threshold apply to the pairs format")
    if like is None and args.rating_threshold is None and MOVIELENS_100K.fullmatch(path.name):
        print("note: every rated pair is a positive; --rating-threshold 4 keeps ratings 4 and 5")
    return load(path, fmt, like=like, **options)


def load_data(args: argparse.Namespace) -> Data:
    if args.data is None:
        full = synthetic_dataset(seed=args.split_seed)
        described = f"built-in synthetic dataset ({full})"
        # Raw ids are the internal ids.
        interactions = Interactions(
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.arange(full.num_users),
            np.arange(full.num_items),
        )
        test = None
    else:
        interactions = load_file(args.data, args, None)
        full = interactions.to_index()
        described = str(args.data)
        test = None
        if args.test is not None:
            test = load_file(args.test, args, interactions).to_index()
            described += f" with test file {args.test}"
    if args.valid_fraction == 0:
        return Data(full, full, None, test, interactions, f"{described}, no validation split")
    fit, valid = holdout_split(full, args.valid_fraction, seed=args.split_seed)
    if valid.num_interactions == 0:
        sys.exit(
            "the validation split is empty (no user has 2 or more training pairs); "
            "use --valid-fraction 0"
        )
    return Data(
        full,
        fit,
        valid,
        test,
        interactions,
        f"{described}, {args.valid_fraction:.0%} of each user's training pairs held out for "
        f"validation (split seed {args.split_seed})",
    )


# ---------------------------------------------------------------------- losses


def make_sampler(
    name: str, args: argparse.Namespace, index: PositiveIndex
) -> HardNegativeSampler | UniformSampler:
    """The ``name`` ("hard" or "uniform") sampler over ``index``, seeded with ``--seed``."""
    candidates: dict[str, Any] = {"candidates": args.candidates, "alpha": args.alpha}
    if name == "hard":
        return HardNegativeSampler(
            index,
            args.num_candidates,
            args.num_hard,
            args.num_random,
            selection=args.selection,
            temperature=args.temperature,
            generator=args.seed,
            validate=False,
            **candidates,
        )
    return UniformSampler(
        index, args.num_hard + args.num_random, generator=args.seed, validate=False, **candidates
    )


def pairwise_step(
    args: argparse.Namespace, name: str, model: MFModel, index: PositiveIndex
) -> tuple[Step, str]:
    """BPR or BCE on each positive against its row of sampled negatives."""
    sampler = make_sampler(name, args, index)
    loss_fn = BPRLoss() if args.loss == "bpr" else BCELoss()

    def step(users: torch.Tensor, pos_items: torch.Tensor) -> torch.Tensor:
        neg_items = sampler.sample(users, model)
        loss = loss_fn(model(users, pos_items), model(users.unsqueeze(1), neg_items))
        return loss + args.reg * model.l2_regularization(users, pos_items, neg_items)

    return step, str(sampler)


def softmax_step(
    args: argparse.Namespace, name: str, model: MFModel, index: PositiveIndex
) -> tuple[Step, str]:
    """Sampled softmax over K shared candidates (+ in-batch; + hard negatives for "hard")."""
    k = args.num_negatives
    sampler = SharedNegativeSampler(
        index, k, candidates=args.candidates, alpha=args.alpha, generator=args.seed, validate=False
    )
    loss_fn = SampledSoftmaxLoss(args.temperature)
    hard = None
    if name == "hard":
        hard = HardNegativeSampler(
            index,
            args.num_candidates,
            args.num_hard,
            0,
            generator=args.seed + 1,
            validate=False,
        )
    log_k, log_n = math.log(k), math.log(index.num_items)

    def step(users: torch.Tensor, pos_items: torch.Tensor) -> torch.Tensor:
        shared = sampler.sample(users)
        items, mask = shared.items, shared.mask
        # log(K q): the logQ correction of K i.i.d. draws (docs: "Softmax losses").
        log_q = shared.log_prob + log_k
        if args.in_batch:
            batch = sampler.in_batch(users, pos_items)
            items = torch.cat([items, batch.items])
            mask = torch.cat([mask, batch.mask], dim=1)
            # Both sets are draws from one mixture: the same correction for every candidate.
            log_q = torch.logaddexp(
                sampler.log_prob(items) + log_k,
                sampler.in_batch_log_prob(items) + math.log(users.numel()),
            )
        neg_scores = model(users[:, None], items[None, :])
        if hard is not None:
            hard_items = hard.sample(users, model)
            neg_scores = torch.cat([neg_scores, model(users[:, None], hard_items)], dim=1)
            mask = torch.cat([mask, torch.zeros_like(hard_items, dtype=torch.bool)], dim=1)
            # Counted as uniform draws, like the shared ones: no correction is unbiased for a
            # top-k (see the docs).
            log_q = torch.cat([log_q, log_q.new_full((hard_items.shape[1],), log_k - log_n)])
        return loss_fn(model(users, pos_items), neg_scores, log_q=log_q, mask=mask)

    parts = [str(sampler)] + (["in-batch negatives"] if args.in_batch else [])
    if hard is not None:
        parts.append(f"the {args.num_hard} top-scored of {args.num_candidates} per row")
    return step, f"{loss_fn} over " + " + ".join(parts)


def make_optimizer(model: MFModel, lr: float) -> torch.optim.Optimizer:
    """Adam; the fused implementation where this torch has it for the device (same maths)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


# --loss NAME -> a function (args, sampler name, model, training index on the device) that
# returns the per-batch loss and a description. A new loss is one more entry.
STEPS: dict[str, Callable[[argparse.Namespace, str, MFModel, PositiveIndex], tuple[Step, str]]] = {
    "bpr": pairwise_step,
    "bce": pairwise_step,
    "softmax": softmax_step,
}


def make_step(
    args: argparse.Namespace, name: str, model: MFModel, index: PositiveIndex
) -> tuple[Step, str]:
    """The per-batch loss of ``--loss`` with the ``name`` sampler, and a description."""
    return STEPS[args.loss](args, name, model, index)


# ---------------------------------------------------------------------- training


@dataclass
class Run:
    """A trained model and what happened on the way."""

    model: MFModel
    history: list[dict[str, float]]  # per epoch: loss, seconds, validation and test metrics
    best_epoch: int  # the epoch whose weights the model holds: the best on validation, or the last


def train(
    name: str,
    args: argparse.Namespace,
    data: Data,
    *,
    index: PositiveIndex,
    epochs: int,
    validate: bool,
    test_curve: bool,
) -> Run:
    """Train one model on ``index`` for at most ``epochs`` epochs.

    With ``validate``, evaluate on the validation split, stop early with
    ``--patience`` and restore the best epoch's weights. With ``test_curve``,
    evaluate on the test file every ``--eval-every`` epochs (never to choose).
    """
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    index_d = index.to(device)
    model = MFModel(
        index.num_users,
        index.num_items,
        args.dim,
        init_std=args.init_std,
        similarity=args.similarity,
        validate=False,
        device=device,
    )
    optimizer = make_optimizer(model, args.lr)
    step, description = make_step(args, name, model, index_d)
    print(f"[{name:>7}] {description}")
    valid_d = data.valid.to(device) if validate and data.valid is not None else None
    full_d = data.full.to(device)
    test_d = data.test.to(device) if test_curve and data.test is not None else None
    ks = tuple(args.ks)
    monitor = f"recall@{ks[0]}"
    every = args.eval_every or 1
    users_all = torch.repeat_interleave(
        torch.arange(index.num_users), (index.indptr[1:] - index.indptr[:-1]).long()
    ).to(device)
    items_all = index.indices.long().to(device)
    order_gen = torch.Generator(device=device).manual_seed(args.seed)
    num_batches = math.ceil(users_all.numel() / args.batch_size)
    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state = -math.inf, 0, None
    spent = 0.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(users_all.numel(), generator=order_gen, device=device)
        total = torch.zeros((), device=device)
        seen = 0  # pairs trained on this epoch (fewer when the time budget cuts it)
        out_of_time = False
        batches = progress(
            order.split(args.batch_size), num_batches, f"{name} {epoch}", not args.no_progress
        )
        for batch in batches:
            loss = step(users_all[batch], items_all[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * batch.numel()
            seen += batch.numel()
            if (
                args.time_budget is not None
                and spent + time.perf_counter() - start > args.time_budget
            ):
                out_of_time = True
                break
        seconds = time.perf_counter() - start
        spent += seconds
        row: dict[str, float] = {
            "epoch": epoch,
            "loss": float(total) / max(seen, 1),
            "seconds": seconds,
        }
        stop = out_of_time
        if valid_d is not None and (epoch % every == 0 or epoch == epochs or out_of_time):
            row.update(evaluate(model, index_d, valid_d, ks=ks))
            if row[monitor] > best_score:
                best_score, best_epoch = row[monitor], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif args.patience and epoch - best_epoch >= args.patience:
                stop = True
        if test_d is not None and epoch % every == 0:
            test_metrics = evaluate(model, full_d, test_d, ks=ks)
            row.update({f"test {k}": v for k, v in test_metrics.items()})
        history.append(row)
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if "@" in k)
        print(
            f"[{name:>7}] epoch {epoch:3d}  loss {row['loss']:.4f}  {seconds:6.1f} s  {metrics}",
            flush=True,
        )
        if out_of_time:
            print(f"[{name:>7}] time budget of {args.time_budget:g} s spent in epoch {epoch}")
        if stop:
            break
    if best_state is None:
        return Run(model, history, len(history))
    if not out_of_time and len(history) < epochs:
        print(
            f"[{name:>7}] stopped early: validation {monitor} has not improved for "
            f"{len(history) - best_epoch} epochs"
        )
    model.load_state_dict(best_state)
    print(
        f"[{name:>7}] restored the weights of epoch {best_epoch}, chosen on the validation split "
        f"({monitor} {best_score:.4f})"
    )
    return Run(model, history, best_epoch)


# ---------------------------------------------------------------------- reporting


def summary(
    title: str, names: list[str], runs: dict[str, Run], rows: dict[str, dict[str, float]]
) -> None:
    """A table: per sampler, epochs run, the epoch of the weights, median s/epoch, metrics."""
    metric_names = [k for k in rows[names[0]] if "@" in k]
    print(f"\n{title}")
    print(
        f"{'sampler':>8} {'epochs':>6} {'chosen':>6} {'s/epoch':>8} "
        + " ".join(f"{m:>10}" for m in metric_names)
    )
    for name in names:
        run = runs[name]
        median = statistics.median(h["seconds"] for h in run.history)
        print(
            f"{name:>8} {len(run.history):>6} {run.best_epoch:>6} {median:>8.2f} "
            + " ".join(f"{rows[name][m]:>10.4f}" for m in metric_names)
        )
    print("(s/epoch: median seconds of training per epoch, evaluation not included)")


def plot(path: Path, runs: dict[str, Run], ks: list[int]) -> None:
    """Validation (else test) Recall and NDCG per epoch, a star at each run's chosen epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"recall@{ks[0]}", f"ndcg@{ks[0]}"]
    first = next(iter(runs.values())).history
    prefix, where = ("", "validation") if any(names[0] in h for h in first) else ("test ", "test")
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5))
    for ax, metric in zip(axes, names, strict=True):
        for run_name, run in runs.items():
            key = prefix + metric
            points = [(h["epoch"], h[key]) for h in run.history if key in h]
            (line,) = ax.plot(*zip(*points, strict=True), marker=".", label=f"{run_name} negatives")
            chosen = run.history[run.best_epoch - 1]
            if key in chosen:
                ax.plot(
                    run.best_epoch, chosen[key], marker="*", markersize=14, color=line.get_color()
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{where} {metric}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def keep_freed_memory() -> bool:
    """Let glibc reuse freed blocks of up to 32 MiB instead of unmapping them.

    A softmax step allocates several ``B x K`` float tensors (24 MiB at B=2048,
    K=3072); by default glibc returns such blocks to the system when they are
    freed and the next step pays the page faults of fresh memory again. Keeping
    them made the Gowalla softmax step about 25% faster on CPU. Linux/glibc
    only; returns whether the settings took.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if torch.device(args.device).type == "cpu":
        keep_freed_memory()
    data = load_data(args)
    print(f"data: {data.description}")
    print(f"train: {data.fit}")
    if data.valid is not None:
        print(f"valid: {data.valid}")
    if data.test is not None:
        print(f"test:  {data.test}")
    names = ["hard", "uniform"] if args.sampler == "both" else [args.sampler]
    validate = data.valid is not None
    runs = {
        name: train(
            name,
            args,
            data,
            index=data.fit,
            epochs=args.epochs,
            validate=validate,
            test_curve=args.eval_every is not None,
        )
        for name in names
    }
    if validate:
        best_rows = {name: runs[name].history[runs[name].best_epoch - 1] for name in names}
        summary(
            f"validation metrics at the epoch chosen on the validation split "
            f"(best recall@{args.ks[0]}):",
            names,
            runs,
            best_rows,
        )
    if data.test is not None:
        device = torch.device(args.device)
        test_rows = {
            name: evaluate(
                runs[name].model, data.full.to(device), data.test.to(device), ks=tuple(args.ks)
            )
            for name in names
        }
        when = "the epoch chosen on the validation split" if validate else "the last epoch"
        summary(f"test metrics at {when}:", names, runs, test_rows)
    if not validate and data.test is None:
        trained = ", ".join(f"{name} {len(runs[name].history)}" for name in names)
        print(f"\nno validation split (--valid-fraction 0): epochs trained: {trained}")
    if args.plot is not None:
        plot(args.plot, runs, args.ks)
    if args.submission is not None:
        make_submission(args, data, names[0], runs[names[0]])


def make_submission(args: argparse.Namespace, data: Data, name: str, run: Run) -> None:
    """The submission from a model trained on all the training pairs."""
    model = run.model
    if data.valid is not None:
        print(
            f"\n[{name:>7}] retraining on all {data.full.num_interactions} training pairs for "
            f"{run.best_epoch} epochs (chosen on the validation split) for the submission"
        )
        model = train(
            name,
            args,
            data,
            index=data.full,
            epochs=run.best_epoch,
            validate=False,
            test_curve=False,
        ).model
    device = torch.device(args.device)
    users = torch.arange(data.full.num_users, device=device)
    k = min(SUBMISSION_SIZE, data.full.num_items)
    top = model.recommend(users, k, exclude=data.full.to(device))
    write_submission(args.submission, users.cpu(), top.cpu(), data.interactions)
    print(f"submission ({name} negatives, top {k}) written to {args.submission}")


if __name__ == "__main__":
    main()
