"""The command line: argparse subcommands, and the checked settings built from the arguments."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch

import negsample
from negsample.cli._command import TrainSettings
from negsample.cli._data import DataOptions
from negsample.cli._recipes import LOSSES, SCHEDULES, SOFTMAX_NEG_WEIGHT, RunConfig, recipe

PROG = "negsample"
FORMATS = ("auto", "lightgcn", "csv", "pickle", "pairs")
# Most epochs per run: on a data file, and on the built-in data, where the three runs of
# the demo then take under a minute of one core (docs/benchmarks: the built-in demo dataset).
FILE_EPOCHS, BUILTIN_EPOCHS = 100, 20

TRAIN_DESCRIPTION = """\
Train matrix factorisation with hard or uniform negatives and report
Recall/NDCG/MAP. Without --data: three 20-epoch runs on the built-in data
(uniform BPR, hard BPR, the softmax recipe), compared at the end. The epoch
is chosen on a validation split carved from the training pairs, never on --test.
"""

TRAIN_EPILOG = """\
example: negsample train --data train.csv --submission submission.csv
"""


class UsageError(Exception):
    """Bad usage: one line for the user, exit status 2."""


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


def _add_train_options(parser: argparse.ArgumentParser) -> None:
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
    train.add_argument("--loss", choices=LOSSES, metavar="NAME", help="bpr, bce, softmax (bpr)")
    train.add_argument("--dim", type=_positive_int, default=64, metavar="N", help="embedding size")
    train.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help=f"most epochs per run ({FILE_EPOCHS}; built-in data: {BUILTIN_EPOCHS})",
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
        "--init-std", type=float, metavar="X", help="initial std (dot 0.1, cosine 1e-4)"
    )
    train.add_argument(
        "--num-negatives",
        type=_positive_int,
        default=1024,
        metavar="K",
        help="softmax: shared candidates",
    )
    train.add_argument("--in-batch", action="store_true", help="softmax: add the batch's positives")
    train.add_argument(
        "--neg-weight",
        type=float,
        metavar="X",
        help=f"softmax: weight of the negatives' log-sum-exp ({SOFTMAX_NEG_WEIGHT})",
    )
    train.add_argument(
        "--include-positive",
        action=argparse.BooleanOptionalAction,
        help="softmax: the positive in the normaliser (no)",
    )
    train.add_argument(
        "--user-dropout",
        type=float,
        metavar="P",
        help="softmax: dropout on the user vectors (0)",
    )
    train.add_argument(
        "--user-temperature",
        action="store_true",
        help="softmax: negatives' temperature per user (off)",
    )
    train.add_argument(
        "--num-candidates", type=int, default=10, metavar="M", help="hard: candidates per row"
    )
    train.add_argument("--num-hard", type=int, default=2, metavar="N", help="hard: top-scored kept")
    train.add_argument(
        "--num-random", type=int, default=2, metavar="N", help="hard: random candidates kept"
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
        default="topk",
        choices=["topk", "softmax"],
        metavar="NAME",
        help="hard part: topk, softmax",
    )
    train.add_argument(
        "--temperature", type=float, metavar="T", help="softmax loss 0.1, selection 1"
    )
    train.add_argument("--device", default="cpu", metavar="DEV", help="cpu, cuda, cuda:1, ...")
    train.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="CPU threads (see the docs)",
    )
    train.add_argument(
        "--seed", type=_non_negative_int, default=0, metavar="N", help="training seed"
    )
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
    out.add_argument("--plot", type=Path, metavar="FILE", help="save a PNG of the curves")
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


def _check_output(option: str, path: Path | None) -> None:
    if path is not None and not path.resolve().parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {path.parent} does not exist")


def _check_device(text: str) -> None:
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise UsageError(f"argument --device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"argument --device {text}: this torch has no CUDA device")


def train_settings(args: argparse.Namespace) -> TrainSettings:
    """Check the ``train`` arguments and turn them into settings; :class:`UsageError` if bad."""
    compare = args.data is None and args.sampler is None and args.loss is None
    loss = args.loss or "bpr"
    losses = {"bpr", "softmax"} if compare else {loss}
    if args.alpha is not None and args.candidates != "popularity":
        raise UsageError("--alpha applies to --candidates popularity")
    if "softmax" in losses:
        if args.selection == "softmax":
            raise UsageError("--selection softmax and --loss softmax share --temperature: use one")
    if losses == {"softmax"} and args.reg:
        raise UsageError("--reg applies to --loss bpr/bce (the softmax run has no L2 penalty)")
    if "softmax" not in losses:
        if args.temperature is not None and args.selection != "softmax":
            raise UsageError("--temperature applies to --loss softmax or --selection softmax")
        if args.in_batch:
            raise UsageError("--in-batch applies to --loss softmax")
        if args.neg_weight is not None:
            raise UsageError("--neg-weight applies to --loss softmax")
        if args.include_positive is not None:
            raise UsageError("--include-positive applies to --loss softmax")
        if args.user_dropout is not None:
            raise UsageError("--user-dropout applies to --loss softmax")
        if args.user_temperature:
            raise UsageError("--user-temperature applies to --loss softmax")
    if args.neg_weight is not None and not (math.isfinite(args.neg_weight) and args.neg_weight > 0):
        raise UsageError(f"--neg-weight must be a finite number > 0, got {args.neg_weight}")
    if args.user_dropout is not None and not 0.0 <= args.user_dropout < 1.0:
        raise UsageError(f"--user-dropout must be in [0, 1), got {args.user_dropout}")
    if not 0.0 <= args.valid_fraction < 1.0:
        raise UsageError(f"--valid-fraction must be in [0, 1), got {args.valid_fraction}")
    if args.data is None and args.test is not None:
        raise UsageError("--test needs --data (the built-in data has no test file)")
    if args.time_budget is not None and not args.time_budget > 0:
        raise UsageError(f"--time-budget must be > 0 seconds, got {args.time_budget}")
    if (
        args.plot is not None
        and args.valid_fraction == 0
        and (args.test is None or args.eval_every is None)
    ):
        raise UsageError("--plot needs a validation split, or --test with --eval-every")
    _check_output("--submission", args.submission)
    _check_output("--plot", args.plot)
    _check_device(args.device)
    common: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "dim",
            "epochs",
            "patience",
            "batch_size",
            "num_negatives",
            "in_batch",
            "num_candidates",
            "num_hard",
            "num_random",
            "candidates",
            "alpha",
            "selection",
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
            _recipe("softmax", "uniform", "softmax", args, tuning, common),
        ]
    else:
        sampler = args.sampler or ("both" if args.data is None else "hard")
        names = ["hard", "uniform"] if sampler == "both" else [sampler]
        runs = [_recipe(loss, name, name, args, tuning, common) for name in names]
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
    return recipe(
        loss,
        reg=None if softmax else args.reg,
        temperature=temperature,
        neg_weight=args.neg_weight if softmax else None,
        include_positive=args.include_positive if softmax else None,
        user_temperature=args.user_temperature and softmax,
        user_dropout=args.user_dropout if softmax else None,
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
