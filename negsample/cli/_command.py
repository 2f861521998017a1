"""``negsample train``: load the data, train each run, report, plot, write the submission."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from negsample import EmptyComplementError
from negsample.cli._data import Data, DataOptions, load_data
from negsample.cli._output import atomic_path
from negsample.cli._recipes import RunConfig, make_model, make_step, row_sampler
from negsample.cli._report import comparison, plot, summary
from negsample.cli._system import keep_freed_memory, set_threads
from negsample.cli._train import Run, out_of_memory, train
from negsample.data import write_submission
from negsample.metrics import evaluate

SUBMISSION_SIZE = 50


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``negsample train`` was asked to do, checked and with defaults filled in."""

    data: DataOptions
    runs: list[RunConfig]
    compare: bool = False  # print the comparison table of the runs' recipes
    submission: Path | None = None
    plot: Path | None = None
    threads: int = 1


def _log(line: str) -> None:
    print(line, flush=True)


def prepare(settings: TrainSettings, log: Callable[[str], None] = _log) -> Data:
    """Set up the process, load the data and check each run's settings against it.

    Everything a user can get wrong fails here, before any training: the data,
    the settings against it, and one step of each run on a scratch model of the
    real size (what does not fit in memory, or gives a non-finite loss at once).

    Raises:
        ValueError, TypeError, OSError: On bad data or settings.
    """
    set_threads(settings.threads)
    if torch.device(settings.runs[0].device).type == "cpu":
        keep_freed_memory()
    data = load_data(settings.data)
    for note in data.notes:
        log(f"note: {note}")
    for config in settings.runs:
        evaluated = data.valid is not None or data.test is not None
        if evaluated and max(config.ks) > data.full.num_items:
            raise ValueError(
                f"--ks {max(config.ks)} is more than the {data.full.num_items} items of the data"
            )
        # Once here, so that the steps can sample with validate=False.
        trained = [data.fit] if settings.submission is None else [data.fit, data.full]
        for index in trained:
            sampler = row_sampler(config, index)
            if sampler is not None:
                try:
                    sampler.check_samplable(torch.unique(index.pairs()[0]))
                except EmptyComplementError as err:
                    raise ValueError(_name_users(err, data, settings)) from None
        _trial_step(config, data)
    return data


def _name_users(err: EmptyComplementError, data: Data, settings: TrainSettings) -> str:
    """The error of users with nothing to sample, with the ids of the user's file."""
    raw = [str(user) for user in data.interactions.user_ids[err.users].tolist()]
    message = str(err)
    head, tail = f"user {err.users[0]} ", ", so no negative can be drawn for it"
    reason = message[len(head) : message.index(tail)] if tail in message else "has no negative"
    source = "the built-in data" if settings.data.path is None else str(settings.data.path)
    more = f" ({len(raw)} such users: {', '.join(raw[:10])})" if len(raw) > 1 else ""
    return f"{source}: user {raw[0]} {reason}, so no negative can be drawn for it{more}"


def _trial_step(config: RunConfig, data: Data) -> None:
    """One step's loss and gradients of ``config`` on a first batch, with a scratch model.

    The run's own model, samplers and seeds are made afresh when it trains, so
    this changes nothing of its results.
    """
    device = torch.device(config.device)
    index = data.fit.to(device)
    softmax = config.loss == "softmax"
    try:
        model = make_model(config, index, device)
        step, _ = make_step(config, model, index)
        users, items = (t[: config.batch_size] for t in index.pairs())
        loss = step(users.to(device), items.to(device))
        loss.backward()  # type: ignore[no-untyped-call]
    except RuntimeError as err:
        what = out_of_memory(err)
        if what is None:
            raise
        sizes = ["--dim", "--batch-size"]
        sizes += ["--num-negatives"] if softmax else []
        sizes += ["--num-candidates"] if config.sampler == "hard" else []
        raise ValueError(
            f"the {config.name} run does not fit in {what} (try a smaller {', '.join(sizes)})"
        ) from None
    first = float(loss.detach())
    if not math.isfinite(first):
        causes = "--init-std, --temperature or --neg-weight" if softmax else "--init-std"
        raise ValueError(
            f"the {config.name} run's first step gives a loss of {first} (check {causes})"
        )


def run_train(settings: TrainSettings, data: Data, log: Callable[[str], None] = _log) -> None:
    """Train every run of ``settings`` on ``data`` and report; see ``negsample train --help``."""
    log(f"data: {data.description}")
    log(f"train: {data.fit}")
    if data.valid is not None:
        log(f"valid: {data.valid}")
    if data.test is not None:
        log(f"test:  {data.test}")
    validate = data.valid is not None
    runs = [
        train(
            config,
            data,
            index=data.fit,
            epochs=config.epochs,
            validate=validate,
            test_curve=config.eval_every is not None,
            log=log,
        )
        for config in settings.runs
    ]
    ks = settings.runs[0].ks
    if validate:
        best_rows = [run.history[run.best_epoch - 1] for run in runs]
        log(
            "\n"
            + summary(
                f"validation metrics at the epoch chosen on the validation split "
                f"(best recall@{ks[0]}):",
                runs,
                best_rows,
            )
        )
    if data.test is not None:
        device = torch.device(settings.runs[0].device)
        test_rows = [
            evaluate(run.model, data.full.to(device), data.test.to(device), ks=ks) for run in runs
        ]
        when = "the epoch chosen on the validation split" if validate else "the last epoch"
        log("\n" + summary(f"test metrics at {when}:", runs, test_rows))
    if not validate and data.test is None:
        trained = ", ".join(f"{run.config.name} {len(run.history)}" for run in runs)
        log(f"\nno validation split (--valid-fraction 0): epochs trained: {trained}")
    if settings.compare and validate:
        log("\n" + comparison(runs, ks[0]))
    # Train all that is needed before writing anything: a run that fails leaves no output.
    submission = None
    if settings.submission is not None:
        chosen = runs[0]
        if validate and len(runs) > 1:
            monitor = f"recall@{ks[0]}"
            chosen = max(runs, key=lambda run: run.history[run.best_epoch - 1][monitor])
        submission = submission_model(data, chosen, log)
    if settings.plot is not None:
        with atomic_path(settings.plot) as temporary:
            plot(temporary, runs, ks[0], fmt=plot_format(settings.plot))
        log(f"plot written to {settings.plot}")
    if settings.submission is not None and submission is not None:
        submit(settings.submission, data, submission, log)


def plot_format(path: Path) -> str:
    """The format of the plot: the file's extension, else PNG (written to ``path`` as named)."""
    return path.suffix[1:].lower() or "png"


def submission_model(data: Data, run: Run, log: Callable[[str], None]) -> Run:
    """The run whose model makes the submission: retrained on all the training pairs."""
    if data.valid is None:
        return run
    log(
        f"\n[{run.config.name:>7}] retraining on all {data.full.num_interactions} training pairs "
        f"for {run.best_epoch} epochs (chosen on the validation split) for the submission"
    )
    return train(
        run.config,
        data,
        index=data.full,
        epochs=run.best_epoch,
        validate=False,
        test_curve=False,
        log=log,
    )


def submit(path: Path, data: Data, run: Run, log: Callable[[str], None]) -> None:
    """Write the top items of ``run``'s model per user as the competition CSV."""
    device = torch.device(run.config.device)
    users = torch.arange(data.full.num_users, device=device)
    k = min(SUBMISSION_SIZE, data.full.num_items)
    top = run.model.recommend(users, k, exclude=data.full.to(device))
    with atomic_path(path) as temporary:
        write_submission(temporary, users.cpu(), top.cpu(), data.interactions)
    log(f"submission ({run.config.label} run, top {k}) written to {path}")
