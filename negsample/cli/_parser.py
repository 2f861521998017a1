"""The command line: argparse subcommands, and the checked settings built from the arguments."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import torch

import negsample
from negsample.cli._command import TrainSettings
from negsample.cli._data import DataOptions
from negsample.cli._output import OutputError, check_output, plot_format, same_file
from negsample.cli._recipes import (
    LOSSES,
    PSL_ACTIVATIONS,
    SCHEDULES,
    SELECTIONS,
    SOFTMAX_NEG_WEIGHT,
    RunConfig,
    recipe,
)

PROG = "negsample"
FORMATS = ("auto", "lightgcn", "csv", "pickle", "pairs")
# Most epochs per run: on a data file, and on the built-in data, where the three runs of
# the demo then take about a minute of one core (docs/benchmarks: the built-in demo dataset):
# the softmax recipe, about 8x a BPR epoch there, passes them in half the epochs.
FILE_EPOCHS, BUILTIN_EPOCHS, BUILTIN_SOFTMAX_EPOCHS = 100, 20, 10

TRAIN_DESCRIPTION = """\
Train MF (the softmax recipe; --loss bpr: BPR), best epoch on validation.
"""

TRAIN_EPILOG = """\
example: negsample train --data train.csv --submission submission.csv
"""


class UsageError(Exception):
    """Bad usage: one line for the user, exit status 2."""


# The namespace attribute that lists the options given on the command line (their dests), so
# that an option given where it does nothing is refused even when its value is the default.
GIVEN = "_given"


def _record(namespace: argparse.Namespace, dest: str) -> None:
    given: set[str] = getattr(namespace, GIVEN, set())
    given.add(dest)
    setattr(namespace, GIVEN, given)


class _Store(argparse.Action):
    """``store`` that records that the option was given."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        _record(namespace, self.dest)


class _Flag(argparse.Action):
    """``store_true`` (``const=False``: ``store_false``) that records that the option was given."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        const: bool = True,
        default: bool | None = False,
        required: bool = False,
        help: str | None = None,
    ) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            const=const,
            default=default,
            required=required,
            help=help,
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, self.const)
        _record(namespace, self.dest)


class _BooleanOption(argparse.BooleanOptionalAction):
    """``--x/--no-x`` that records that the option was given."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        super().__call__(parser, namespace, values, option_string)
        _record(namespace, self.dest)


class ArgumentParser(argparse.ArgumentParser):
    """Raises :class:`UsageError` instead of printing the usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Append each option's default to its help, unless ``None``/``False`` (the help says)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default is not None and default is not False and default is not argparse.SUPPRESS:
            shown = " ".join(map(str, default)) if isinstance(default, list) else "%(default)s"
            text += f" (default: {shown})"
        return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


# torch seeds its generators with an unsigned 64-bit integer.
_SEED_MAX = 2**64 - 1


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= _SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**64 - 1], got {value}")
    return value


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _threads(text: str) -> int:
    value = _positive_int(text)
    cpus = _available_cpus()
    if value > cpus:
        # More threads than cores only slows torch down (see the tutorial, "Threads"); far
        # more crash it.
        raise argparse.ArgumentTypeError(
            f"must be at most the {cpus} CPUs this process may use, got {value}"
        )
    return value


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.register("action", None, _Store)
    parser.register("action", "store", _Store)
    parser.register("action", "store_true", _Flag)
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, metavar="FILE", help="training file (default: built-in)")
    data.add_argument(
        "--format",
        default="auto",
        choices=FORMATS,
        metavar="FMT",
        help="auto, lightgcn, csv, pickle, pairs",
    )
    data.add_argument("--test", type=Path, metavar="FILE", help="test file, same format and ids")
    data.add_argument("--delimiter", metavar="STR", help="pairs: column delimiter (whitespace)")
    data.add_argument(
        "--rating-threshold", type=float, metavar="R", help="pairs: keep ratings >= R (all)"
    )
    data.add_argument(
        "--string-ids", action="store_true", help="csv: read ids as strings, not integers"
    )
    data.add_argument(
        "--valid-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="held out of each user's pairs; 0: none",
    )
    data.add_argument(
        "--split-seed", type=_non_negative_int, default=0, metavar="N", help="split/data seed"
    )
    train = parser.add_argument_group("training")
    train.add_argument(
        "--sampler",
        choices=["hard", "uniform", "both"],
        metavar="NAME",
        help="hard, uniform, both (default: hard; built-in: 3 runs)",
    )
    train.add_argument("--loss", choices=LOSSES, metavar="NAME", help="softmax, bpr, bce (softmax)")
    train.add_argument("--dim", type=_positive_int, default=64, metavar="N", help="embedding size")
    train.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help=f"most epochs ({FILE_EPOCHS}; built-in: {BUILTIN_EPOCHS}, "
        f"softmax {BUILTIN_SOFTMAX_EPOCHS})",
    )
    train.add_argument(
        "--patience",
        type=_non_negative_int,
        default=10,
        metavar="N",
        help="stop after N flat epochs; 0: never",
    )
    train.add_argument(
        "--batch-size", type=_positive_int, default=2048, metavar="N", help="pairs per step"
    )
    train.add_argument("--lr", type=float, metavar="X", help="Adam lr (bpr 5e-3, softmax 1e-3)")
    train.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        metavar="NAME",
        help="constant, cosine, step (bpr constant, softmax step)",
    )
    train.add_argument("--reg", type=float, metavar="X", help="L2 weight (bpr 2e-2, softmax 0)")
    train.add_argument(
        "--similarity",
        choices=["dot", "cosine"],
        metavar="NAME",
        help="dot, cosine (bpr dot, softmax cosine)",
    )
    train.add_argument(
        "--init-std", type=float, metavar="X", help="initial std (dot 0.1, cosine 1e-2)"
    )
    train.add_argument(
        "--num-negatives",
        type=_positive_int,
        default=1024,
        metavar="K",
        help="softmax: shared candidates",
    )
    # On by default for the softmax loss: --in-batch is kept for commands written before.
    train.add_argument("--in-batch", action=_Flag, default=None, help=argparse.SUPPRESS)
    train.add_argument(
        "--no-in-batch",
        dest="in_batch",
        action=_Flag,
        const=False,
        default=None,
        help="softmax: not the batch's positives",
    )
    train.add_argument(
        "--neg-weight",
        type=float,
        metavar="X",
        help="softmax: negatives' weight (1.22 or 1: chosen)",
    )
    train.add_argument(
        "--include-positive",
        action=_BooleanOption,
        help="softmax: positive in the normaliser (no with 1.22)",
    )
    train.add_argument(
        "--user-dropout",
        type=float,
        metavar="P",
        help="softmax: dropout on the user vectors (0)",
    )
    train.add_argument(
        "--slatk", type=_positive_int, metavar="K", help="softmax: SL@K weight, top K (off)"
    )
    train.add_argument(
        "--psl",
        choices=PSL_ACTIVATIONS,
        metavar="ACT",
        help="softmax: PSL via tanh, atan, relu, exp (off)",
    )
    train.add_argument(
        "--user-temperature",
        action="store_true",
        help="softmax: negatives' temperature per user (off)",
    )
    train.add_argument(
        "--num-candidates",
        type=_positive_int,
        metavar="M",
        help="hard: candidates per row (bpr 10, softmax 64)",
    )
    train.add_argument(
        "--num-hard",
        type=_non_negative_int,
        metavar="N",
        help="hard: top-scored kept (bpr 2, softmax 4)",
    )
    train.add_argument(
        "--num-random",
        type=_non_negative_int,
        default=2,
        metavar="N",
        help="hard: random candidates kept",
    )
    train.add_argument(
        "--candidates",
        default="uniform",
        choices=["uniform", "popularity"],
        metavar="NAME",
        help="uniform, popularity",
    )
    train.add_argument("--alpha", type=float, metavar="X", help="popularity exponent (0.75)")
    train.add_argument(
        "--selection",
        choices=SELECTIONS,
        metavar="NAME",
        help="hard part: topk, dns_mn, ahns, softmax (bpr) (topk)",
    )
    train.add_argument("--top-n", type=_positive_int, metavar="N", help="dns_mn: among the top N")
    train.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help="softmax loss (0.1 or 0.2: chosen), selection 1",
    )
    train.add_argument("--device", default="cpu", metavar="DEV", help="cpu, cuda, cuda:1, ...")
    train.add_argument(
        "--threads",
        type=_threads,
        default=1,
        metavar="N",
        help="CPU threads (see the docs)",
    )
    train.add_argument("--seed", type=_seed, default=0, metavar="N", help="training seed")
    train.add_argument("--time-budget", type=float, metavar="S", help="training seconds per run")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--ks", type=_positive_int, nargs="+", default=[20, 50], metavar="K", help="cut-offs"
    )
    out.add_argument(
        "--eval-every", type=_positive_int, metavar="N", help="evaluate every N epochs (1)"
    )
    out.add_argument(
        "--submission", type=Path, metavar="FILE", help="write the top 50 per user as CSV"
    )
    out.add_argument("--plot", type=Path, metavar="FILE", help="save the curves (.png, .pdf, ...)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def build_parser() -> ArgumentParser:
    """The ``negsample`` parser and its subcommands."""
    parser = ArgumentParser(
        prog=PROG,
        description="Exact hard negative sampling for recommenders: the reference command.",
        epilog="Run 'negsample train --help' for the options of training.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {negsample.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    train = commands.add_parser(
        "train",
        help="train and evaluate matrix factorisation (the main job)",
        usage="%(prog)s [options]",
        description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
        formatter_class=HelpFormatter,
    )
    _add_train_options(train)
    return parser


# The training runs in float32: a value it cannot hold is as bad as an infinite one.
_FLOAT32 = torch.finfo(torch.float32)


def _check_number(
    option: str,
    value: float | None,
    *,
    low: float | None = None,
    low_open: bool = False,
    high: float | None = None,
    high_open: bool = False,
    float32: bool = True,
) -> None:
    """Raise :class:`UsageError` unless ``value`` (if given) is finite and in the range."""
    if value is None:
        return
    if low is not None and high is not None:
        wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        wanted = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        wanted = "a finite number"
    bad = not math.isfinite(value)
    bad = bad or (low is not None and (value <= low if low_open else value < low))
    bad = bad or (high is not None and (value >= high if high_open else value > high))
    if bad:
        raise UsageError(f"{option} must be {wanted}, got {value}")
    if float32 and value != 0 and not _FLOAT32.tiny <= abs(value) <= _FLOAT32.max:
        raise UsageError(
            f"{option} must be {wanted} that float32, the training's precision, can hold "
            f"({_FLOAT32.tiny:.1e} to {_FLOAT32.max:.1e}), got {value}"
        )


def _check_values(args: argparse.Namespace) -> None:
    """Every option's value on its own: ranges, finiteness, repeats, the device."""
    _check_number("--lr", args.lr, low=0, low_open=True)
    _check_number("--reg", args.reg, low=0)
    _check_number("--init-std", args.init_std, low=0, low_open=True)
    _check_number("--temperature", args.temperature, low=0, low_open=True)
    _check_number("--neg-weight", args.neg_weight, low=0, low_open=True)
    _check_number("--alpha", args.alpha, low=0, high=1)
    _check_number("--user-dropout", args.user_dropout, low=0, high=1, high_open=True)
    _check_number("--valid-fraction", args.valid_fraction, low=0, high=1, high_open=True)
    _check_number("--time-budget", args.time_budget, low=0, low_open=True, float32=False)
    _check_number("--rating-threshold", args.rating_threshold, float32=False)
    if len(set(args.ks)) != len(args.ks):
        raise UsageError(f"--ks must not repeat a cut-off, got {' '.join(map(str, args.ks))}")
    if args.delimiter is not None and args.delimiter == "":
        raise UsageError("--delimiter must not be empty (leave it out to split on whitespace)")
    _check_device(args.device)


def _check_device(text: str) -> None:
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise UsageError(f"argument --device: {err}") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index):
        raise UsageError(f"argument --device: expected cpu, cuda or cuda:N, got {text!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"argument --device {text}: this torch has no CUDA device")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(
                f"argument --device {text}: there is no such device (this machine has "
                f"{count} CUDA device{'s' if count > 1 else ''}: cuda:0 to cuda:{count - 1})"
            )


def _softmax(run: RunConfig) -> bool:
    return run.loss == "softmax"


def _pairwise(run: RunConfig) -> bool:
    return run.loss != "softmax"


# Options of a run: the runs each one changes, and the words that say which. One given
# where it changes none of the runs is refused rather than silently ignored.
_RUN_OPTIONS: dict[str, tuple[Callable[[RunConfig], bool], str]] = {
    "reg": (_pairwise, "--loss bpr/bce (the softmax run has no L2 penalty)"),
    "num_negatives": (_softmax, "--loss softmax"),
    "in_batch": (_softmax, "--loss softmax"),
    "neg_weight": (_softmax, "--loss softmax"),
    "include_positive": (_softmax, "--loss softmax"),
    "user_dropout": (_softmax, "--loss softmax"),
    "user_temperature": (_softmax, "--loss softmax"),
    "slatk": (_softmax, "--loss softmax"),
    "psl": (_softmax, "--loss softmax"),
    "temperature": (
        lambda run: _softmax(run) or (run.sampler == "hard" and run.selection == "softmax"),
        "--loss softmax or --selection softmax",
    ),
    "num_candidates": (lambda run: run.sampler == "hard", "--sampler hard"),
    "num_hard": (
        lambda run: run.sampler == "hard" or _pairwise(run),
        "--sampler hard, or --loss bpr/bce",
    ),
    "num_random": (
        _pairwise,
        "--loss bpr/bce (the softmax run's hard negatives are the --num-hard top-scored of "
        "--num-candidates)",
    ),
    "selection": (lambda run: run.sampler == "hard", "--sampler hard"),
    "top_n": (lambda run: run.selection == "dns_mn", "--selection dns_mn"),
    "alpha": (lambda run: run.candidates == "popularity", "--candidates popularity"),
}

_FILE_OPTIONS = ("format", "delimiter", "rating_threshold", "string_ids")


def _check_options_apply(args: argparse.Namespace, given: set[str], runs: list[RunConfig]) -> None:
    """Refuse an option given where it does nothing."""

    def option(dest: str) -> str:
        flag = "--" + dest.replace("_", "-")
        # --no-in-batch and --no-include-positive store False in their option's dest.
        return flag.replace("--", "--no-", 1) if getattr(args, dest, None) is False else flag

    if args.data is not None and args.test is not None and same_file(args.data, args.test):
        # Its pairs would all be training pairs, which rankings leave out: nothing to hit.
        raise UsageError(f"--test {args.test} is the file of --data {args.data}")
    if args.data is None:
        if args.test is not None:
            raise UsageError("--test needs --data (the built-in data has no test file)")
        for dest in _FILE_OPTIONS:
            if dest in given:
                raise UsageError(f"{option(dest)} applies to a file: it needs --data")
    validation = args.valid_fraction > 0
    if "split_seed" in given and args.data is not None and not validation:
        raise UsageError(
            "--split-seed seeds the validation split, and there is none (--valid-fraction 0)"
        )
    if "patience" in given and not validation:
        raise UsageError("--patience applies with a validation split (--valid-fraction > 0)")
    for dest in ("ks", "eval_every"):
        if dest in given and not validation and args.test is None:
            raise UsageError(
                f"{option(dest)} applies to evaluation: a validation split or --test "
                f"(here --valid-fraction 0 and no --test)"
            )
    for dest, (applies, where) in _RUN_OPTIONS.items():
        if dest in given and not any(applies(run) for run in runs):
            raise UsageError(f"{option(dest)} applies to {where}")
    selects = any(
        _pairwise(run) and run.sampler == "hard" and run.selection == "softmax" for run in runs
    )
    if "selection" in given and args.selection == "softmax" and not selects:
        raise UsageError(
            "--selection softmax applies to --loss bpr/bce (the softmax run's hard part: "
            "topk, dns_mn or ahns)"
        )
    if args.slatk is not None and args.user_temperature:
        raise UsageError("--slatk and --user-temperature both reweight the loss: choose one")
    if args.psl is not None:
        for dest in ("slatk", "user_temperature", "neg_weight", "include_positive"):
            if dest in given:
                raise UsageError(
                    f"{option(dest)} applies to the sampled softmax, not to PSL (--psl)"
                )
    if args.selection == "dns_mn" and args.top_n is None:
        raise UsageError("--selection dns_mn needs --top-n N (draw among the top N candidates)")
    if "temperature" in given and selects and any(_softmax(run) for run in runs):
        # The built-in comparison with --selection softmax: the softmax run's loss and the
        # hard BPR run's selection would both take it.
        raise UsageError(
            "--temperature would set both the softmax run's loss temperature and the hard "
            "run's --selection softmax temperature: choose the runs with --loss"
        )


def _check_sizes(runs: list[RunConfig]) -> None:
    """The negatives per row against the candidates, for the runs they apply to."""
    for run in runs:
        hard, rand, candidates = run.num_hard, run.num_random, run.num_candidates
        if _pairwise(run):
            if run.sampler == "hard" and not 1 <= hard + rand <= candidates:
                raise UsageError(
                    f"--num-hard + --num-random must be between 1 and --num-candidates "
                    f"{candidates}, got {hard} + {rand} = {hard + rand}"
                )
            if run.sampler == "uniform" and hard + rand < 1:
                raise UsageError(
                    "--num-hard + --num-random (the uniform run's negatives per pair) must be "
                    "at least 1, got 0"
                )
        elif run.sampler == "hard" and not 1 <= hard <= candidates:
            raise UsageError(
                f"--num-hard (the softmax run's hard negatives per pair) must be between 1 and "
                f"--num-candidates {candidates}, got {hard}"
            )
        if run.sampler == "hard" and run.top_n is not None:
            low = max(1, hard)
            if not low <= run.top_n <= candidates:
                raise UsageError(
                    f"--top-n must be between max(1, --num-hard) = {low} and --num-candidates "
                    f"{candidates}, got {run.top_n}"
                )


def _check_outputs(args: argparse.Namespace) -> None:
    """Each output writable now and no input or other output file; the plot's format."""
    inputs = [(name, path) for name, path in (("--data", args.data), ("--test", args.test)) if path]
    if args.submission is not None:
        check_output("--submission", args.submission, inputs)
    if args.plot is not None:
        others = inputs + ([("--submission", args.submission)] if args.submission else [])
        check_output("--plot", args.plot, others)
        plot_format("--plot", args.plot)


def train_settings(args: argparse.Namespace) -> TrainSettings:
    """Check the ``train`` arguments and turn them into settings; :class:`UsageError` if bad.

    Every check that needs no data is here: each value, each option against the
    runs it applies to, the output files. Those that need the data are in
    :func:`~negsample.cli._command.prepare`. Both come before any training.
    """
    given: set[str] = getattr(args, GIVEN, set())
    _check_values(args)
    compare = args.data is None and args.sampler is None and args.loss is None
    loss = args.loss or "softmax"
    common: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "dim",
            "epochs",
            "patience",
            "batch_size",
            "num_negatives",
            "num_random",
            "candidates",
            "alpha",
            "top_n",
            "device",
            "seed",
            "time_budget",
            "eval_every",
        )
    }
    if common["epochs"] is None:
        common["epochs"] = FILE_EPOCHS if args.data is not None else BUILTIN_EPOCHS
    common["ks"] = tuple(args.ks)
    common["progress"] = not args.no_progress and _stderr_is_a_terminal()
    tuning: dict[str, Any] = {
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "similarity": args.similarity,
        "init_std": args.init_std,
    }
    if compare:
        runs = [
            _recipe("bpr", "uniform", "uniform", args, tuning, common),
            _recipe("bpr", "hard", "hard", args, tuning, common),
            _recipe("softmax", "hard", "softmax", args, tuning, common),
        ]
    else:
        sampler = args.sampler or ("both" if args.data is None else "hard")
        names = ["hard", "uniform"] if sampler == "both" else [sampler]
        runs = [_recipe(loss, name, name, args, tuning, common) for name in names]
    if args.epochs is None and args.data is None:
        runs = [
            replace(run, epochs=BUILTIN_SOFTMAX_EPOCHS) if run.loss == "softmax" else run
            for run in runs
        ]
    _check_options_apply(args, given, runs)
    _check_sizes(runs)
    if args.plot is not None:
        if args.valid_fraction == 0 and (args.test is None or args.eval_every is None):
            raise UsageError("--plot needs a validation split, or --test with --eval-every")
        epochs = common["epochs"]
        if args.valid_fraction == 0 and args.eval_every > epochs:
            raise UsageError(
                f"--plot would have no point: the test curve is evaluated every --eval-every "
                f"{args.eval_every} epochs, and --epochs is {epochs}"
            )
    try:
        _check_outputs(args)
    except OutputError as err:
        raise UsageError(str(err)) from None
    data = DataOptions(
        path=args.data,
        format=args.format,
        test=args.test,
        delimiter=args.delimiter,
        rating_threshold=args.rating_threshold,
        string_ids=args.string_ids,
        valid_fraction=args.valid_fraction,
        split_seed=args.split_seed,
    )
    return TrainSettings(
        data=data,
        runs=runs,
        compare=compare,
        submission=args.submission,
        plot=args.plot,
        threads=args.threads,
    )


def _recipe(
    loss: str,
    sampler: str,
    name: str,
    args: argparse.Namespace,
    tuning: dict[str, Any],
    common: dict[str, Any],
) -> RunConfig:
    """One run: ``loss``'s defaults, then the options that apply to it."""
    softmax = loss == "softmax"
    # The temperature is the softmax loss's, or else the softmax selection's.
    temperature = args.temperature if softmax or args.selection == "softmax" else None
    selection = args.selection or "topk"
    if softmax and selection == "softmax":
        # The softmax run's hard part: its loss already has a temperature (refused if alone).
        selection = "topk"
    neg_weight = args.neg_weight if softmax else None
    include_positive = args.include_positive if softmax else None
    if softmax and neg_weight is None and include_positive is not None:
        # The positive in the normaliser is the plain softmax; out of it, the bilateral one.
        neg_weight = 1.0 if include_positive else SOFTMAX_NEG_WEIGHT
    # Not given: each form (at each temperature) trains for a few epochs and the best on
    # validation goes on.
    trial = softmax and args.valid_fraction > 0 and args.psl is None
    return recipe(
        loss,
        reg=None if softmax else args.reg,
        temperature=temperature,
        neg_weight=neg_weight,
        include_positive=include_positive,
        choose_softmax=trial and neg_weight is None,
        choose_temperature=trial and temperature is None,
        num_candidates=args.num_candidates,
        num_hard=args.num_hard,
        in_batch=args.in_batch if softmax else None,
        selection=selection,
        user_temperature=args.user_temperature and softmax,
        user_dropout=args.user_dropout if softmax else None,
        slatk=args.slatk if softmax else None,
        psl=args.psl if softmax else None,
        name=name,
        sampler=sampler,
        **tuning,
        **common,
    )


def _stderr_is_a_terminal() -> bool:
    """Whether a progress bar would reach a person (not a log file or a pipe)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False
