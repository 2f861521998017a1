"""``negsample train``: load the data, train each run, report, plot, write the submission."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from negsample import MFModel
from negsample.cli._data import Data, DataOptions, load_data
from negsample.cli._recipes import RunConfig, make_step, row_sampler
from negsample.cli._report import comparison, plot, summary
from negsample.cli._system import keep_freed_memory, set_threads
from negsample.cli._train import Run, train
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

    Everything a user can get wrong fails here, before any training.

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
        # The samplers and losses check their settings when they are built.
        make_step(config, MFModel(1, 1, 1), data.fit.to(config.device))
        # Once here, so that the steps can sample with validate=False.
        trained = [data.fit] if settings.submission is None else [data.fit, data.full]
        for index in trained:
            sampler = row_sampler(config, index)
            if sampler is not None:
                sampler.check_samplable(torch.unique(index.pairs()[0]))
    return data


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
    if settings.plot is not None:
        plot(settings.plot, runs, ks[0])
        log(f"plot written to {settings.plot}")
    if settings.submission is not None:
        chosen = runs[0]
        if validate and len(runs) > 1:
            monitor = f"recall@{ks[0]}"
            chosen = max(runs, key=lambda run: run.history[run.best_epoch - 1][monitor])
        make_submission(settings.submission, data, chosen, log)


def make_submission(path: Path, data: Data, run: Run, log: Callable[[str], None]) -> None:
    """The submission from a model trained on all the training pairs."""
    model = run.model
    name = run.config.name
    if data.valid is not None:
        log(
            f"\n[{name:>7}] retraining on all {data.full.num_interactions} training pairs for "
            f"{run.best_epoch} epochs (chosen on the validation split) for the submission"
        )
        model = train(
            run.config,
            data,
            index=data.full,
            epochs=run.best_epoch,
            validate=False,
            test_curve=False,
            log=log,
        ).model
    device = torch.device(run.config.device)
    users = torch.arange(data.full.num_users, device=device)
    k = min(SUBMISSION_SIZE, data.full.num_items)
    top = model.recommend(users, k, exclude=data.full.to(device))
    write_submission(path, users.cpu(), top.cpu(), data.interactions)
    log(f"submission ({run.config.label} run, top {k}) written to {path}")
