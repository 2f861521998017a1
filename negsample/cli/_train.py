"""The training loop of one run: batches, steps, validation, early stopping, the time budget."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch

from negsample import MFModel, PositiveIndex
from negsample.cli._data import Data
from negsample.cli._recipes import (
    RunConfig,
    learning_rate,
    make_model,
    make_optimizer,
    make_step,
)
from negsample.metrics import evaluate

T = TypeVar("T")


def progress(iterable: Iterable[T], total: int, desc: str, enabled: bool) -> Iterator[T]:
    """A tqdm progress bar when tqdm is installed and wanted, else the bare iterable."""
    if enabled:
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]
        except ImportError:
            pass
        else:
            yield from tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)
            return
    yield from iterable


class TrainingError(Exception):
    """A run that failed once training had started: one line for the user, exit status 1."""


def out_of_memory(err: BaseException) -> str | None:
    """What ran out if ``err`` is an allocation failure (CPU or GPU), else None."""
    text = " ".join(str(err).split())
    if isinstance(err, torch.OutOfMemoryError):
        return "GPU memory" if "CUDA" in text else "memory"
    if isinstance(err, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text
    ):
        return "memory"
    return None


def diverged(model: MFModel, loss: float) -> str | None:
    """Why a run cannot go on: a non-finite loss or non-finite weights; None if neither."""
    if not math.isfinite(loss):
        return f"its training loss is {loss}"
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return "its weights are not finite"
    return None


@dataclass
class Run:
    """A trained model and what happened on the way."""

    config: RunConfig
    model: MFModel
    history: list[dict[str, float]]  # per epoch: loss, seconds, validation and test metrics
    best_epoch: int  # the epoch whose weights the model holds: the best on validation, or the last


def train(
    config: RunConfig,
    data: Data,
    *,
    index: PositiveIndex,
    epochs: int,
    validate: bool,
    test_curve: bool,
    log: Callable[[str], None] = print,
) -> Run:
    """Train one model on ``index`` for at most ``epochs`` epochs.

    With ``validate``, evaluate on the validation split, stop early with
    ``config.patience`` and restore the best epoch's weights. With
    ``test_curve``, evaluate on the test file every ``config.eval_every``
    epochs (never to choose).
    """
    name = config.name
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    index_d = index.to(device)
    model = make_model(config, index, device)
    optimizer = make_optimizer(model, config)
    step, description = make_step(config, model, index_d)
    log(f"[{name:>7}] {description}")
    valid_d = data.valid.to(device) if validate and data.valid is not None else None
    full_d = data.full.to(device)
    test_d = data.test.to(device) if test_curve and data.test is not None else None
    ks = config.ks
    monitor = f"recall@{ks[0]}"
    every = config.eval_every or 1
    users_all, items_all = (t.to(device) for t in index.pairs())
    order_gen = torch.Generator(device=device).manual_seed(config.seed)
    num_batches = math.ceil(users_all.numel() / config.batch_size)
    history: list[dict[str, float]] = []
    best_score, best_epoch = -math.inf, 0
    best_state: dict[str, torch.Tensor] | None = None
    spent = 0.0
    budget = config.time_budget
    out_of_time = False
    step_no = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(users_all.numel(), generator=order_gen, device=device)
        total = torch.zeros((), device=device)
        seen = 0  # pairs trained on this epoch (fewer when the time budget cuts it)
        batches = progress(
            torch.split(order, config.batch_size), num_batches, f"{name} {epoch}", config.progress
        )
        for batch in batches:
            if config.lr_schedule != "constant":
                rate = learning_rate(config, step_no, num_batches)
                for group in optimizer.param_groups:
                    group["lr"] = rate
            step_no += 1
            loss = step(users_all[batch], items_all[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += loss.detach() * batch.numel()
            seen += batch.numel()
            if budget is not None and spent + time.perf_counter() - start > budget:
                out_of_time = True
                break
        seconds = time.perf_counter() - start
        spent += seconds
        row: dict[str, float] = {
            "epoch": epoch,
            "loss": float(total) / max(seen, 1),
            "seconds": seconds,
        }
        reason = diverged(model, row["loss"])
        if reason is not None:
            # Metrics, a plot or a submission from these weights would be noise.
            raise TrainingError(
                f"the {name} run diverged in epoch {epoch}: {reason} (a smaller --lr may help); "
                f"nothing was written"
            )
        stop = out_of_time
        if valid_d is not None and (epoch % every == 0 or epoch == epochs or out_of_time):
            row.update(evaluate(model, index_d, valid_d, ks=ks))
            if row[monitor] > best_score:
                best_score, best_epoch = row[monitor], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif config.patience and epoch - best_epoch >= config.patience:
                stop = True
        if test_d is not None and epoch % every == 0:
            test_metrics = evaluate(model, full_d, test_d, ks=ks)
            row.update({f"test {k}": v for k, v in test_metrics.items()})
        history.append(row)
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if "@" in k)
        log(f"[{name:>7}] epoch {epoch:3d}  loss {row['loss']:.4f}  {seconds:6.1f} s  {metrics}")
        if out_of_time:
            log(f"[{name:>7}] time budget of {budget:g} s spent in epoch {epoch}")
        if stop:
            break
    if best_state is None:
        return Run(config, model, history, len(history))
    if not out_of_time and len(history) < epochs:
        log(
            f"[{name:>7}] stopped early: validation {monitor} has not improved for "
            f"{len(history) - best_epoch} epochs"
        )
    model.load_state_dict(best_state)
    log(
        f"[{name:>7}] restored the weights of epoch {best_epoch}, chosen on the validation split "
        f"({monitor} {best_score:.4f})"
    )
    return Run(config, model, history, best_epoch)
