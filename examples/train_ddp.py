"""Train matrix factorisation with hard negatives on several processes (torch.distributed, DDP).

Launch one process per rank with torchrun; on CPU the ranks talk over gloo::

    torchrun --standalone --nproc_per_node=2 examples/train_ddp.py

Each rank trains on its shard of the training pairs, sharded by user
(``user % world_size == rank``), so its ``PositiveIndex`` holds
only its own users' positives; ``num_users`` and ``num_items`` stay global, so
ids mean the same on every rank. The model is wrapped in
``DistributedDataParallel``, which averages the gradients of every step across
ranks. Each rank samples with its own generator, seeded from ``(seed, rank)``
(see ``rank_seeds``). The recipes are those of the ``negsample train``
command, built by the same code (``negsample.cli``'s ``recipe``, ``make_step``
and ``make_optimizer``): ``--loss bpr|bce|softmax`` with each loss's default
learning rate and L2 weight (BPR/BCE: Adam 5e-3, L2 2e-2; softmax: Adam 1e-3 over
``--num-negatives`` shared candidates alone, cosine scores at temperature 0.1,
without the in-batch and hard negatives of the command's default recipe); BPR is
this script's default. Rank 0
evaluates on a validation split carved from the training pairs after every
epoch; training stops once validation Recall@K (the first ``--ks``) has not
improved for ``--patience`` epochs, rank 0 restores the best epoch's weights
and prints their validation metrics (and, with ``--test``, their test metrics).

On real data (``--format``, ``--test`` and the hold-out as in
``examples/train_mf.py``), here the LightGCN split of Gowalla downloaded into
``data/gowalla/`` as the docs' Benchmarks page says::

    torchrun --standalone --nproc_per_node=4 examples/train_ddp.py \\
        --data data/gowalla/train.txt --test data/gowalla/test.txt

``--device cuda`` puts rank ``r`` on GPU ``LOCAL_RANK`` and talks over nccl.
``--dump-negatives DIR`` (BPR/BCE) writes each rank's first-epoch batches and
the negatives its loss scored to ``DIR/rank{r}.pt``. Started without torchrun (``python
examples/train_ddp.py``) the script runs as a single rank.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from negsample import MFModel, PositiveIndex
from negsample.cli import LOSSES, make_optimizer, make_step, recipe
from negsample.data import holdout_split, load, synthetic_dataset
from negsample.metrics import evaluate


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {value}")
    return value


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
        "--valid-fraction",
        type=float,
        default=0.2,
        help="share of each user's training pairs held out to choose the epoch",
    )
    data.add_argument("--num-users", type=positive_int, default=2000, help="synthetic data")
    data.add_argument("--num-items", type=positive_int, default=1000, help="synthetic data")
    data.add_argument(
        "--interactions-per-user", type=positive_int, default=20, help="synthetic data"
    )
    train = parser.add_argument_group("training")
    train.add_argument("--loss", default="bpr", choices=LOSSES)
    train.add_argument("--dim", type=positive_int, default=64)
    train.add_argument("--epochs", type=positive_int, default=100, help="most epochs")
    train.add_argument(
        "--patience",
        type=non_negative_int,
        default=10,
        help="stop once validation Recall@K has not improved for this many epochs (0: never)",
    )
    train.add_argument(
        "--batch-size", type=positive_int, default=1024, help="pairs per step on each rank"
    )
    train.add_argument("--lr", type=float, help="Adam learning rate (bpr/bce 5e-3, softmax 1e-3)")
    train.add_argument("--reg", type=float, help="weight of the batch L2 penalty (bpr/bce 2e-2)")
    train.add_argument(
        "--num-negatives", type=positive_int, default=1024, help="softmax: shared candidates"
    )
    train.add_argument(
        "--temperature", type=float, default=None, help="softmax: the loss's temperature (0.1)"
    )
    train.add_argument("--num-candidates", type=positive_int, default=10)
    train.add_argument("--num-hard", type=non_negative_int, default=2)
    train.add_argument("--num-random", type=non_negative_int, default=2)
    train.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    train.add_argument(
        "--backend", default=None, choices=["gloo", "nccl"], help="default: gloo, nccl on cuda"
    )
    train.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of data, model, order and samplers"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--ks", type=positive_int, nargs="+", default=[20, 50])
    out.add_argument(
        "--dump-negatives",
        type=Path,
        metavar="DIR",
        help="write each rank's first-epoch users, positives and negatives to DIR/rank{r}.pt",
    )
    args = parser.parse_args(argv)
    total = args.num_hard + args.num_random
    if not 1 <= total <= args.num_candidates:
        parser.error(
            f"--num-hard + --num-random must be between 1 and --num-candidates="
            f"{args.num_candidates}, got {args.num_hard} + {args.num_random} = {total}"
        )
    if args.loss == "softmax" and args.reg:
        parser.error("--reg applies to --loss bpr/bce (the softmax recipe has no L2 penalty)")
    if args.loss == "softmax" and args.dump_negatives is not None:
        parser.error("--dump-negatives applies to --loss bpr/bce")
    if not 0.0 < args.valid_fraction < 1.0:
        parser.error(f"--valid-fraction must be in (0, 1), got {args.valid_fraction}")
    if args.data is None and not 2 <= args.interactions_per_user < args.num_items:
        parser.error(
            f"--interactions-per-user must be in [2, --num-items - 1 = {args.num_items - 1}], "
            f"got {args.interactions_per_user}"
        )
    if args.backend is None:
        args.backend = "nccl" if args.device == "cuda" else "gloo"
    if args.backend == "nccl" and args.device != "cuda":
        parser.error("--backend nccl needs --device cuda")
    return args


def rank_seeds(seed: int, rank: int) -> tuple[int, int]:
    """The seeds of the sampler and of the batch order on ``rank``, from ``(seed, rank)``.

    ``numpy.random.SeedSequence(seed, spawn_key=(rank,))`` is what
    ``SeedSequence(seed).spawn(world_size)[rank]`` returns, numpy's recipe for
    independent streams in parallel workers: it hashes the pair, so nearby pairs
    give unrelated seeds. ``seed + rank`` would not do: run ``seed=0`` on rank 1
    would replay run ``seed=1`` on rank 0. The seeds are 32-bit words because
    torch's CPU generator (mt19937) keeps only the low 32 bits of a seed, so a
    layout such as ``seed * 2**32 + rank`` would give every seed the same
    streams. Two pairs share a seed with probability ``2**-32``; ``train_rank`` checks
    that the ranks of a run got distinct ones.
    """
    words = np.random.SeedSequence(seed, spawn_key=(rank,)).generate_state(2, dtype=np.uint32)
    return int(words[0]), int(words[1])


def load_data(
    args: argparse.Namespace,
) -> tuple[PositiveIndex, PositiveIndex, PositiveIndex, PositiveIndex | None, str]:
    """The full training index, its fit and validation parts, the test index, a description."""
    test = None
    if args.data is None:
        full = synthetic_dataset(
            args.num_users,
            args.num_items,
            interactions_per_user=args.interactions_per_user,
            seed=args.seed,
        )
        description = f"built-in synthetic dataset ({full})"
    else:
        options: dict[str, Any] = {}
        if args.format == "pairs" or (args.format == "auto" and args.delimiter is not None):
            options = {"delimiter": args.delimiter, "rating_threshold": args.rating_threshold}
        interactions = load(args.data, args.format, **options)
        full = interactions.to_index()
        description = str(args.data)
        if args.test is not None:
            test = load(args.test, args.format, like=interactions, **options).to_index()
            description += f" with test file {args.test}"
    fit, valid = holdout_split(full, args.valid_fraction, seed=args.seed)
    description += f", {args.valid_fraction:.0%} of each user's pairs held out for validation"
    return full, fit, valid, test, description


def user_shard(train: PositiveIndex, rank: int, world_size: int) -> PositiveIndex:
    """The positives of the users with ``user % world_size == rank``, ids kept global.

    The shard has the full ``num_users`` rows (the other users' rows are empty)
    and the full ``num_items``, so a user or item id means the same on every
    rank and the model's embedding tables line up. Its memory is the rank's
    share of the interactions plus the ``num_users + 1`` row pointers.
    """
    users = torch.repeat_interleave(
        torch.arange(train.num_users), (train.indptr[1:] - train.indptr[:-1]).long()
    )
    mine = users % world_size == rank
    return PositiveIndex.from_pairs(
        users[mine], train.indices[mine].long(), train.num_users, train.num_items
    )


def steps_per_epoch(num_pairs: int, batch_size: int, device: torch.device) -> int:
    """The same number of steps on every rank: the least ``ceil(pairs / batch_size)``.

    DDP's backward all-reduces the gradients of every step, so a rank that
    takes one step more than the others waits for them forever. Each rank then
    splits its shuffled pairs into this many batches: every pair is used once
    per epoch, and the ranks with more pairs take slightly larger batches.
    """
    steps = torch.tensor([math.ceil(num_pairs / batch_size)], device=device)
    dist.all_reduce(steps, op=dist.ReduceOp.MIN)
    return int(steps)


def init_distributed(backend: str) -> tuple[int, int, int]:
    """Join the process group; return ``(rank, world_size, local_rank)``."""
    if "RANK" in os.environ:
        dist.init_process_group(backend)
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    # Not under torchrun: a group of one (on a free local port), so that the script also
    # runs as a plain script.
    dist.init_process_group(backend, init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    return 0, 1, 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.backend == "gloo" and not dist.is_gloo_available():
        raise SystemExit("this torch build has no gloo backend; pass --backend nccl --device cuda")
    rank, world_size, local_rank = init_distributed(args.backend)
    try:
        train_rank(args, rank, world_size, local_rank)
    finally:
        dist.destroy_process_group()


def train_rank(args: argparse.Namespace, rank: int, world_size: int, local_rank: int) -> None:
    if args.device == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    # Every rank reads the whole data set here, for simplicity; at scale each rank
    # would read only its users' rows (pre-sharded files), and only rank 0 keeps
    # the full training index, to evaluate.
    full, train, valid, test, description = load_data(args)
    if rank == 0:
        print(f"data: {description}\ntrain: {train}\nvalid: {valid}\nworld size: {world_size}")
    shard = user_shard(train, rank, world_size)
    if rank != 0:
        del full, train, valid, test

    sampler_seed, order_seed = rank_seeds(args.seed, rank)
    all_seeds: list[int | None] = [None] * world_size
    dist.all_gather_object(all_seeds, sampler_seed)
    if len(set(all_seeds)) != world_size:
        raise RuntimeError(
            f"two ranks derived the same sampler seed from --seed {args.seed} "
            f"(seeds {all_seeds}); pick another --seed"
        )

    users_all = torch.repeat_interleave(
        torch.arange(shard.num_users), (shard.indptr[1:] - shard.indptr[:-1]).long()
    )
    items_all = shard.indices.long()
    steps = steps_per_epoch(users_all.numel(), args.batch_size, device)
    if steps == 0:
        raise RuntimeError(
            f"a rank has no training pairs (no user with user % {world_size} == rank has a "
            f"positive); use fewer ranks"
        )
    # Checked once here, so that the hot loop can run with validate=False.
    shard.check_samplable(torch.unique(users_all))
    users_all, items_all, shard = users_all.to(device), items_all.to(device), shard.to(device)
    per_interaction = shard.nbytes / shard.num_interactions
    # One write per line, so that the ranks' lines do not interleave.
    print(
        f"[rank {rank}] users {int(torch.unique(users_all).numel())}  pairs {users_all.numel()}  "
        f"index {shard.nbytes / 2**20:.2f} MiB ({per_interaction:.1f} B/interaction)  "
        f"sampler seed {sampler_seed}\n",
        end="",
        flush=True,
    )

    # The command's recipe for --loss, with this rank's sampler seed.
    config = recipe(
        args.loss,
        lr=args.lr,
        reg=args.reg,
        temperature=args.temperature,
        # BPR/BCE with hard negatives; the softmax recipe over the shared candidates alone.
        sampler="uniform" if args.loss == "softmax" else "hard",
        in_batch=False,
        dim=args.dim,
        batch_size=args.batch_size,
        num_negatives=args.num_negatives,
        num_candidates=args.num_candidates,
        num_hard=args.num_hard,
        num_random=args.num_random,
        seed=sampler_seed,
        device=str(device),
        ks=tuple(args.ks),
    )
    # The same initial weights everywhere (DDP also broadcasts rank 0's at wrapping).
    torch.manual_seed(args.seed)
    model = MFModel(
        shard.num_users,
        shard.num_items,
        config.dim,
        init_std=config.init_std,
        similarity=config.similarity,
        validate=False,
        device=device,
    )
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = make_optimizer(ddp, config)
    dumped: dict[str, list[torch.Tensor]] = {"users": [], "pos_items": [], "negatives": []}
    recording = args.dump_negatives is not None

    def scorer(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # The loss scores through the DDP wrapper, whose backward all-reduces the gradients;
        # the sampler scores its candidates (under no_grad) with the bare module, because a
        # call of the wrapper can be a collective and the number of such calls may differ
        # between ranks. A pairwise step scores each row's positive and its n negatives
        # in one call, (B, 1 + n) items; --dump-negatives records the negatives.
        if recording and users.dim() == 2:
            dumped["negatives"].append(items[:, 1:].cpu())
        return ddp(users, items)

    step, step_description = make_step(config, model, shard, scorer=scorer)
    order_gen = torch.Generator(device=device).manual_seed(order_seed)
    if rank == 0:
        print(f"{step_description}\nsteps per epoch: {steps} on every rank", flush=True)
        valid_d, train_d = valid.to(device), train.to(device)
    monitor = f"recall@{config.ks[0]}"
    best_score, best_epoch, best_state = -math.inf, 0, None
    epoch = 0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(users_all.numel(), generator=order_gen, device=device)
        total = torch.zeros(2, dtype=torch.float64, device=device)
        for batch in order.tensor_split(steps):
            users, pos_items = users_all[batch], items_all[batch]
            recording = epoch == 1 and args.dump_negatives is not None
            loss = step(users, pos_items)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total[0] += loss.detach() * batch.numel()
            total[1] += batch.numel()
            if recording:
                dumped["users"].append(users.cpu())
                dumped["pos_items"].append(pos_items.cpu())
        dist.all_reduce(total)
        stop = torch.zeros(1, device=device)
        if rank == 0:
            metrics = evaluate(model, train_d, valid_d, ks=config.ks)
            if metrics[monitor] > best_score:
                best_score, best_epoch = metrics[monitor], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif args.patience and epoch - best_epoch >= args.patience:
                stop[0] = 1
            print(
                f"epoch {epoch:3d}  loss {float(total[0] / total[1]):.4f}  "
                f"{time.perf_counter() - start:6.2f} s  valid {monitor} {metrics[monitor]:.4f}",
                flush=True,
            )
        if epoch == 1 and args.dump_negatives is not None:
            args.dump_negatives.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "rank": rank,
                    "world_size": world_size,
                    "sampler_seed": sampler_seed,
                    **{key: torch.cat(parts) for key, parts in dumped.items()},
                },
                args.dump_negatives / f"rank{rank}.pt",
            )
        # Rank 0 decides for everyone, so that every rank takes the same number of steps.
        dist.broadcast(stop, src=0)
        if bool(stop):
            break
    check_in_sync(model)

    if rank == 0:
        assert best_state is not None
        model.load_state_dict(best_state)
        metrics = evaluate(model, train_d, valid_d, ks=config.ks)
        print(
            f"final  epochs {epoch}  chosen {best_epoch}  "
            + "  ".join(f"{name} {value:.4f}" for name, value in metrics.items()),
            flush=True,
        )
        if test is not None:
            metrics = evaluate(model, full.to(device), test.to(device), ks=config.ks)
            print(
                "test   " + "  ".join(f"{name} {value:.4f}" for name, value in metrics.items()),
                flush=True,
            )
    # The other ranks wait here, so that nobody leaves the group while rank 0 evaluates.
    dist.barrier()


def check_in_sync(model: torch.nn.Module) -> None:
    """Raise unless every rank holds the same weights (DDP averaged every step's gradients)."""
    for name, tensor in model.state_dict().items():
        low, high = tensor.detach().clone(), tensor.detach().clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RuntimeError(f"the ranks' {name} differ after training")


if __name__ == "__main__":
    main()
