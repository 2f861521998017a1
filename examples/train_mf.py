"""Train matrix factorisation with hard (or uniform) negatives: the main job.

With no arguments it trains on the built-in synthetic dataset, once with hard
negatives and once with uniform negatives for the same number of epochs, and
prints the validation metrics of both::

    python examples/train_mf.py

On real data (the LightGCN protocol on Gowalla: rank all items but the user's
training items, Recall@20 and NDCG@20 over the test users)::

    python examples/train_mf.py --data ../shared/data/gowalla/train.txt \\
        --test ../shared/data/gowalla/test.txt --epochs 40

Other formats: ``--format csv`` (the course competition's ``UserId,ItemId``
file), ``pickle`` (a pickled ``{user: set(items)}``; trusted files only:
unpickling runs code) and ``pairs`` (one ``user item [rating ...]`` per line,
``--delimiter``, ``--rating-threshold``). Without ``--test`` a per-user
hold-out of ``--valid-fraction`` of the training data is used for validation.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Iterator
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, help="training file (default: built-in synthetic data)")
    data.add_argument(
        "--format", default="auto", choices=["auto", "lightgcn", "csv", "pickle", "pairs"]
    )
    data.add_argument("--test", type=Path, help="test file in the same format and id space")
    data.add_argument("--delimiter", default=None, help="pairs format: column delimiter")
    data.add_argument(
        "--rating-threshold", type=float, default=None, help="pairs format: keep ratings >= this"
    )
    data.add_argument(
        "--valid-fraction", type=float, default=0.2, help="hold-out fraction without --test"
    )
    train = parser.add_argument_group("training")
    train.add_argument(
        "--sampler",
        default=None,
        choices=["hard", "uniform", "both"],
        help="default: both on the synthetic data, hard on a file",
    )
    train.add_argument("--loss", default="bpr", choices=["bpr", "bce"])
    train.add_argument("--dim", type=int, default=64)
    train.add_argument(
        "--epochs", type=int, default=None, help="default: 15 on synthetic data, 40 on a file"
    )
    train.add_argument("--batch-size", type=int, default=2048)
    train.add_argument("--lr", type=float, default=5e-3)
    train.add_argument("--reg", type=float, default=1e-4, help="weight of the batch L2 penalty")
    train.add_argument("--num-candidates", type=int, default=10)
    train.add_argument("--num-hard", type=int, default=2)
    train.add_argument("--num-random", type=int, default=2)
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
    train.add_argument("--temperature", type=float, default=None, help="softmax only (default 1)")
    train.add_argument("--device", default="cpu")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds of training per run; stops early when spent",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--ks", type=int, nargs="+", default=[20, 50])
    out.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs")
    out.add_argument(
        "--submission", type=Path, help="write top-50 per user in the competition CSV format"
    )
    out.add_argument(
        "--plot", type=Path, help="save a PNG of validation metrics per epoch (needs matplotlib)"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def load_data(
    args: argparse.Namespace,
) -> tuple[Interactions | None, PositiveIndex, PositiveIndex, str]:
    """Training interactions (for id maps), train index, validation index, description."""
    if args.data is None:
        full = synthetic_dataset(seed=args.seed)
        train, valid = holdout_split(full, args.valid_fraction, seed=args.seed)
        return (
            None,
            train,
            valid,
            f"built-in synthetic dataset ({full}), {args.valid_fraction:.0%} held out",
        )
    options: dict[str, Any] = {}
    if args.format == "pairs" or (args.format == "auto" and args.delimiter is not None):
        options = {"delimiter": args.delimiter, "rating_threshold": args.rating_threshold}
    interactions = load(args.data, args.format, **options)
    train = interactions.to_index()
    if args.test is not None:
        test = load(args.test, args.format, like=interactions, **options).to_index()
        return interactions, train, test, f"{args.data} with test file {args.test}"
    train, valid = holdout_split(train, args.valid_fraction, seed=args.seed)
    return interactions, train, valid, f"{args.data}, {args.valid_fraction:.0%} held out"


def run(
    name: str, args: argparse.Namespace, train: PositiveIndex, valid: PositiveIndex
) -> tuple[MFModel, list[dict[str, float]]]:
    """Train one model; return it and the per-epoch history."""
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    train_d, valid_d = train.to(device), valid.to(device)
    model = MFModel(train.num_users, train.num_items, args.dim, validate=False, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = BPRLoss() if args.loss == "bpr" else BCELoss()
    sampler: HardNegativeSampler | UniformSampler
    candidates: dict[str, Any] = {"candidates": args.candidates, "alpha": args.alpha}
    if name == "hard":
        sampler = HardNegativeSampler(
            train_d,
            args.num_candidates,
            args.num_hard,
            args.num_random,
            selection=args.selection,
            temperature=args.temperature,
            generator=args.seed,
            validate=False,
            **candidates,
        )
    else:
        sampler = UniformSampler(
            train_d,
            args.num_hard + args.num_random,
            generator=args.seed,
            validate=False,
            **candidates,
        )
    print(f"[{name:>7}] {sampler}")
    users_all = torch.repeat_interleave(
        torch.arange(train.num_users), (train.indptr[1:] - train.indptr[:-1]).long()
    ).to(device)
    items_all = train.indices.long().to(device)
    order_gen = torch.Generator(device=device).manual_seed(args.seed)
    num_batches = math.ceil(users_all.numel() / args.batch_size)
    history: list[dict[str, float]] = []
    spent = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(users_all.numel(), generator=order_gen, device=device)
        total = torch.zeros((), device=device)
        out_of_time = False
        batches = progress(
            order.split(args.batch_size), num_batches, f"{name} {epoch}", not args.no_progress
        )
        for batch in batches:
            users, pos_items = users_all[batch], items_all[batch]
            neg_items = sampler.sample(users, model)
            loss = loss_fn(model(users, pos_items), model(users.unsqueeze(1), neg_items))
            loss = loss + args.reg * model.l2_regularization(users, pos_items, neg_items)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * batch.numel()
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
            "loss": float(total) / users_all.numel(),
            "seconds": seconds,
        }
        if epoch % args.eval_every == 0 or epoch == args.epochs or out_of_time:
            model.eval()
            row.update(evaluate(model, train_d, valid_d, ks=tuple(args.ks)))
            model.train()
        history.append(row)
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if "@" in k)
        print(
            f"[{name:>7}] epoch {epoch:3d}  loss {row['loss']:.4f}  {seconds:6.1f} s  {metrics}",
            flush=True,
        )
        if out_of_time:
            print(f"[{name:>7}] time budget of {args.time_budget:.0f} s spent after {epoch} epochs")
            break
    return model, history


def plot(path: Path, histories: dict[str, list[dict[str, float]]], ks: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"recall@{ks[0]}", f"ndcg@{ks[0]}"]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5))
    for ax, metric in zip(axes, names, strict=True):
        for run_name, history in histories.items():
            points = [(h["epoch"], h[metric]) for h in history if metric in h]
            ax.plot(*zip(*points, strict=True), marker="o", label=f"{run_name} negatives")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.alpha is not None and args.candidates != "popularity":
        sys.exit("--alpha applies to --candidates popularity")
    if args.temperature is not None and args.selection != "softmax":
        sys.exit("--temperature applies to --selection softmax")
    if args.sampler is None:
        args.sampler = "both" if args.data is None else "hard"
    if args.epochs is None:
        args.epochs = 15 if args.data is None else 40
    interactions, train, valid, description = load_data(args)
    print(f"data: {description}")
    print(f"train: {train}\nvalid: {valid}")
    names = ["hard", "uniform"] if args.sampler == "both" else [args.sampler]
    histories = {}
    models = {}
    for name in names:
        models[name], histories[name] = run(name, args, train, valid)
    print("\nvalidation metrics at the last epoch:")
    metric_names = [k for k in histories[names[0]][-1] if "@" in k]
    print(
        f"{'sampler':>8} {'epochs':>6} {'s/epoch':>8} " + " ".join(f"{m:>10}" for m in metric_names)
    )
    for name in names:
        last = histories[name][-1]
        per_epoch = sum(h["seconds"] for h in histories[name]) / len(histories[name])
        print(
            f"{name:>8} {int(last['epoch']):>6} {per_epoch:>8.1f} "
            + " ".join(f"{last[m]:>10.4f}" for m in metric_names)
        )
    if args.plot is not None:
        plot(args.plot, histories, args.ks)
    if args.submission is not None:
        model = models[names[0]]
        users = torch.arange(train.num_users, device=args.device)
        top = model.recommend(users, min(50, train.num_items), exclude=train.to(args.device))
        if interactions is None:  # synthetic data: raw ids are the internal ids
            interactions = Interactions(
                np.zeros(0, dtype=np.int64),
                np.zeros(0, dtype=np.int64),
                np.arange(train.num_users),
                np.arange(train.num_items),
            )
        write_submission(args.submission, users.cpu(), top.cpu(), interactions)
        print(f"submission ({names[0]} negatives) written to {args.submission}")


if __name__ == "__main__":
    main()
