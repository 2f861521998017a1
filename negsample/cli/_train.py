"""The training loop of one run: batches, steps, validation, early stopping, the time budget."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

import torch

from negsample import MFModel, PositiveIndex
from negsample.cli._data import Data
from negsample.cli._recipes import (
    SOFTMAX_FORMS,
    SOFTMAX_NOT_TRIED,
    SOFTMAX_TEMPERATURES,
    TRIAL_EPOCHS,
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


class _Training:
    """One run's training state, advanced epoch by epoch (see :func:`train`)."""

    def __init__(
        self,
        config: RunConfig,
        data: Data,
        *,
        index: PositiveIndex,
        epochs: int,
        validate: bool,
        test_curve: bool,
        log: Callable[[str], None],
    ) -> None:
        self.config, self.epochs, self.log = config, epochs, log
        self.device = device = torch.device(config.device)
        torch.manual_seed(config.seed)
        self.index_d = index.to(device)
        self.model = make_model(config, index, device)
        self.optimizer = make_optimizer(self.model, config)
        self.step, description = make_step(config, self.model, self.index_d)
        log(f"[{config.name:>7}] {description}")
        self.valid_d = data.valid.to(device) if validate and data.valid is not None else None
        self.full_d = data.full.to(device)
        self.test_d = data.test.to(device) if test_curve and data.test is not None else None
        self.monitor = f"recall@{config.ks[0]}"
        self.users_all, self.items_all = (t.to(device) for t in index.pairs())
        self.order_gen = torch.Generator(device=device).manual_seed(config.seed)
        self.num_batches = math.ceil(self.users_all.numel() / config.batch_size)
        self.history: list[dict[str, float]] = []
        self.best_score, self.best_epoch = -math.inf, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.spent = 0.0  # training seconds, counted against config.time_budget
        self.out_of_time = False
        self.stopped = False
        self.step_no = 0

    def run(self, until: int, *, evaluate_last: bool = False) -> None:
        """Train epochs up to ``until`` (at most ``epochs``) unless stopped; evaluate the last."""
        config, name = self.config, self.config.name
        every = config.eval_every or 1
        budget = config.time_budget
        model, optimizer = self.model, self.optimizer
        while not self.stopped and len(self.history) < min(until, self.epochs):
            epoch = len(self.history) + 1
            start = time.perf_counter()
            order = torch.randperm(
                self.users_all.numel(), generator=self.order_gen, device=self.device
            )
            total = torch.zeros((), device=self.device)
            seen = 0  # pairs trained on this epoch (fewer when the time budget cuts it)
            batches = progress(
                torch.split(order, config.batch_size),
                self.num_batches,
                f"{name} {epoch}",
                config.progress,
            )
            for batch in batches:
                if config.lr_schedule != "constant":
                    rate = learning_rate(config, self.step_no, self.num_batches)
                    for group in optimizer.param_groups:
                        group["lr"] = rate
                self.step_no += 1
                loss = self.step(self.users_all[batch], self.items_all[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total += loss.detach() * batch.numel()
                seen += batch.numel()
                if budget is not None and self.spent + time.perf_counter() - start > budget:
                    self.out_of_time = True
                    break
            seconds = time.perf_counter() - start
            self.spent += seconds
            row: dict[str, float] = {
                "epoch": epoch,
                "loss": float(total) / max(seen, 1),
                "seconds": seconds,
            }
            reason = diverged(model, row["loss"])
            if reason is not None:
                # Metrics, a plot or a submission from these weights would be noise.
                raise TrainingError(
                    f"the {name} run diverged in epoch {epoch}: {reason} (a smaller --lr may "
                    f"help); nothing was written"
                )
            self.stopped = self.out_of_time or epoch == self.epochs
            last = self.stopped or (evaluate_last and epoch == until)
            if self.valid_d is not None and (epoch % every == 0 or last):
                row.update(evaluate(model, self.index_d, self.valid_d, ks=config.ks))
                if row[self.monitor] > self.best_score:
                    self.best_score, self.best_epoch = row[self.monitor], epoch
                    self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                elif config.patience and epoch - self.best_epoch >= config.patience:
                    self.stopped = True
            if self.test_d is not None and epoch % every == 0:
                test_metrics = evaluate(model, self.full_d, self.test_d, ks=config.ks)
                row.update({f"test {k}": v for k, v in test_metrics.items()})
            self.history.append(row)
            metrics = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if "@" in k)
            self.log(
                f"[{name:>7}] epoch {epoch:3d}  loss {row['loss']:.4f}  {seconds:6.1f} s  {metrics}"
            )
            if self.out_of_time:
                self.log(f"[{name:>7}] time budget of {budget:g} s spent in epoch {epoch}")

    def result(self) -> Run:
        """The run: the best epoch's weights restored when there is a validation split."""
        name, history = self.config.name, self.history
        if self.best_state is None:
            return Run(self.config, self.model, history, len(history))
        if not self.out_of_time and len(history) < self.epochs:
            self.log(
                f"[{name:>7}] stopped early: validation {self.monitor} has not improved for "
                f"{len(history) - self.best_epoch} epochs"
            )
        self.model.load_state_dict(self.best_state)
        self.log(
            f"[{name:>7}] restored the weights of epoch {self.best_epoch}, chosen on the "
            f"validation split ({self.monitor} {self.best_score:.4f})"
        )
        return Run(self.config, self.model, history, self.best_epoch)


def softmax_trials(config: RunConfig) -> dict[str, tuple[float, bool, float | None]]:
    """The softmax settings a run tries, ``{label: (neg_weight, include_positive, temperature)}``.

    Each form of ``SOFTMAX_FORMS`` with ``config.choose_softmax`` (else the
    config's own), at each of ``SOFTMAX_TEMPERATURES`` with
    ``config.choose_temperature`` (else the config's own), but the pairs of
    ``SOFTMAX_NOT_TRIED`` where both are chosen: one entry when nothing is
    chosen. Labels such as ``"plain/T0.2"``; the first entry wins
    a tie.
    """
    forms = (
        dict(SOFTMAX_FORMS)
        if config.choose_softmax
        else {"given": (config.neg_weight, config.include_positive)}
    )
    temperatures = SOFTMAX_TEMPERATURES if config.choose_temperature else (config.temperature,)
    both = config.choose_softmax and config.choose_temperature
    trials: dict[str, tuple[float, bool, float | None]] = {}
    for temperature in temperatures:
        for form, (neg_weight, include_positive) in forms.items():
            if both and (form, temperature) in SOFTMAX_NOT_TRIED:
                continue
            parts = [form] if config.choose_softmax else []
            if config.choose_temperature:
                parts.append(f"T{temperature:g}")
            trials["/".join(parts)] = (neg_weight, include_positive, temperature)
    return trials


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
    epochs (never to choose). With ``config.choose_softmax`` or
    ``config.choose_temperature`` (and ``validate``), each of the softmax
    settings tried (:func:`softmax_trials`) trains for ``TRIAL_EPOCHS`` epochs
    and the one with the best validation metric goes on; the others' seconds
    count against the run's time budget.
    """

    def start(run_config: RunConfig) -> _Training:
        return _Training(
            run_config,
            data,
            index=index,
            epochs=epochs,
            validate=validate,
            test_curve=test_curve,
            log=log,
        )

    trials = softmax_trials(config)
    if len(trials) < 2 or not (validate and data.valid is not None):
        training = start(replace(config, choose_softmax=False, choose_temperature=False))
        training.run(epochs)
        return training.result()
    runs = {}
    for label, (neg_weight, include_positive, temperature) in trials.items():
        trial = replace(
            config,
            name=f"{config.name}:{label}",
            neg_weight=neg_weight,
            include_positive=include_positive,
            temperature=temperature,
            choose_softmax=False,
            choose_temperature=False,
        )
        runs[label] = start(trial)
        runs[label].run(TRIAL_EPOCHS, evaluate_last=True)
    monitor = f"recall@{config.ks[0]}"
    scores = {label: run.history[-1].get(monitor, -math.inf) for label, run in runs.items()}
    chosen = max(scores, key=lambda label: scores[label])  # a tie keeps the first trial
    winner = runs[chosen]
    epochs_run = len(winner.history)
    # What the labels mean: each form tried, then T if the temperature is.
    legend = [
        f"{form}: weight {w:g}, positive {'in' if p else 'out'}"
        for form, (w, p) in (SOFTMAX_FORMS.items() if config.choose_softmax else ())
    ]
    if config.choose_temperature:
        legend.append("T: temperature")
    log(
        f"[{config.name:>7}] the softmax loss on validation after {epochs_run} epochs: "
        + ", ".join(f"{label} {monitor} {score:.4f}" for label, score in scores.items())
        + f" ({'; '.join(legend)}); going on with {chosen}"
    )
    winner.spent += sum(run.spent for label, run in runs.items() if label != chosen)
    winner.config = replace(winner.config, name=config.name)
    del runs  # the other trials' models and optimizers
    winner.run(epochs)
    return winner.result()
