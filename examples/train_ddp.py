"""Train matrix factorisation with hard negatives on several processes (torch.distributed, DDP).

Launch one process per rank with torchrun; on CPU the ranks talk over gloo::

    torchrun --standalone --nproc_per_node=2 examples/train_ddp.py

Each rank trains on its shard of the training pairs, sharded by user
(``user % world_size == rank``), so its ``PositiveIndex`` holds
only its own users' positives; ``num_users`` and ``num_items`` stay global, so
ids mean the same on every rank. The model is wrapped in
``DistributedDataParallel``, which averages the gradients of every step across
ranks. Each rank samples with its own generator, seeded from ``(seed, rank)``
(see ``rank_seeds``). Rank 0 evaluates the model at the end and prints the
validation metrics.

On real data (``--format``, ``--test`` and the hold-out as in
``examples/train_mf.py``), here the LightGCN split of Gowalla downloaded into
``data/gowalla/`` as the docs' Benchmarks page says::

    torchrun --standalone --nproc_per_node=4 examples/train_ddp.py \\
        --data data/gowalla/train.txt --test data/gowalla/test.txt

``--device cuda`` puts rank ``r`` on GPU ``LOCAL_RANK`` and talks over nccl.
``--dump-negatives DIR`` writes each rank's first-epoch batches and negatives
to ``DIR/rank{r}.pt``. Started without torchrun (``python
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

from negsample import BCELoss, BPRLoss, HardNegativeSampler, MFModel, PositiveIndex
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
        "--valid-fraction", type=float, default=0.2, help="hold-out fraction without --test"
    )
    data.add_argument("--num-users", type=positive_int, default=2000, help="synthetic data")
    data.add_argument("--num-items", type=positive_int, default=1000, help="synthetic data")
    data.add_argument(
        "--interactions-per-user", type=positive_int, default=20, help="synthetic data"
    )
    train = parser.add_argument_group("training")
    train.add_argument("--loss", default="bpr", choices=["bpr", "bce"])
    train.add_argument("--dim", type=positive_int, default=64)
    train.add_argument("--epochs", type=positive_int, default=15)
    train.add_argument(
        "--batch-size", type=positive_int, default=1024, help="pairs per step on each rank"
    )
    train.add_argument("--lr", type=float, default=5e-3)
    train.add_argument("--reg", type=float, default=1e-4, help="weight of the batch L2 penalty")
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


def load_data(args: argparse.Namespace) -> tuple[PositiveIndex, PositiveIndex, str]:
    """The full training index, the validation index and a description, on every rank."""
    if args.data is None:
        full = synthetic_dataset(
            args.num_users,
            args.num_items,
            interactions_per_user=args.interactions_per_user,
            seed=args.seed,
        )
        train, valid = holdout_split(full, args.valid_fraction, seed=args.seed)
        return train, valid, f"built-in synthetic dataset ({full})"
    options: dict[str, Any] = {}
    if args.format == "pairs" or (args.format == "auto" and args.delimiter is not None):
        options = {"delimiter": args.delimiter, "rating_threshold": args.rating_threshold}
    interactions = load(args.data, args.format, **options)
    train = interactions.to_index()
    if args.test is not None:
        test = load(args.test, args.format, like=interactions, **options).to_index()
        return train, test, f"{args.data} with test file {args.test}"
    train, valid = holdout_split(train, args.valid_fraction, seed=args.seed)
    return train, valid, f"{args.data}, {args.valid_fraction:.0%} held out"


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
    # the full training index, to exclude training items at evaluation.
    train, valid, description = load_data(args)
    if rank == 0:
        print(f"data: {description}\ntrain: {train}\nvalid: {valid}\nworld size: {world_size}")
    shard = user_shard(train, rank, world_size)
    if rank != 0:
        del train, valid

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

    # The same initial weights everywhere (DDP also broadcasts rank 0's at wrapping).
    torch.manual_seed(args.seed)
    model = MFModel(shard.num_users, shard.num_items, args.dim, validate=False, device=device)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=args.lr)
    loss_fn = BPRLoss() if args.loss == "bpr" else BCELoss()
    sampler = HardNegativeSampler(
        shard,
        args.num_candidates,
        args.num_hard,
        args.num_random,
        generator=sampler_seed,
        validate=False,
    )
    order_gen = torch.Generator(device=device).manual_seed(order_seed)
    if rank == 0:
        print(f"steps per epoch: {steps} on every rank", flush=True)

    dumped: dict[str, list[torch.Tensor]] = {"users": [], "pos_items": [], "negatives": []}
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(users_all.numel(), generator=order_gen, device=device)
        total = torch.zeros(2, dtype=torch.float64, device=device)
        for batch in order.tensor_split(steps):
            users, pos_items = users_all[batch], items_all[batch]
            # Candidates are scored (under no_grad) by the bare module: a call of the
            # DDP wrapper can be a collective (it broadcasts the module's buffers, if
            # any), and the sampler's number of scorer calls may differ between ranks.
            neg_items = sampler.sample(users, ddp.module)
            # One forward of the wrapper per step scores the positive and the negatives.
            scores = ddp(users.unsqueeze(1), torch.cat([pos_items.unsqueeze(1), neg_items], 1))
            loss = loss_fn(scores[:, 0], scores[:, 1:])
            loss = loss + args.reg * ddp.module.l2_regularization(users, pos_items, neg_items)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total[0] += loss.detach() * batch.numel()
            total[1] += batch.numel()
            if epoch == 1 and args.dump_negatives is not None:
                for key, value in zip(dumped, (users, pos_items, neg_items), strict=True):
                    dumped[key].append(value.cpu())
        dist.all_reduce(total)
        if rank == 0:
            print(
                f"epoch {epoch:3d}  loss {float(total[0] / total[1]):.4f}  "
                f"{time.perf_counter() - start:6.2f} s",
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

    if rank == 0:
        metrics = evaluate(ddp.module, train.to(device), valid.to(device), ks=tuple(args.ks))
        print(
            f"final  epochs {args.epochs}  "
            + "  ".join(f"{name} {value:.4f}" for name, value in metrics.items()),
            flush=True,
        )
    # The other ranks wait here, so that nobody leaves the group while rank 0 evaluates.
    dist.barrier()


if __name__ == "__main__":
    main()
