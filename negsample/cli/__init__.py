"""The ``negsample`` command: a reference application over the public API.

``negsample train`` (or ``python -m negsample train``) trains matrix
factorisation with hard or uniform negatives on the built-in synthetic data or
on a file, chooses the epoch on a validation split, and reports, plots or
writes a competition submission. It uses public names of the library only.
Its recipes (:func:`recipe`, :func:`make_step`, :func:`make_optimizer`) are
public too, for training loops of your own such as ``examples/train_ddp.py``.

Exit status: 0 on success; 2 for bad usage or bad data, refused before any
training (one line ``negsample: error: ...`` on stderr; ``--debug`` shows the
traceback); 1 for a run that fails once training has started (its loss or
weights turn non-finite, memory runs out, an output cannot be written: one
line too, and no output is left half-written); 130 when interrupted. A bug
shows its traceback (status 1).

The modules: ``_parser`` (arguments to checked settings), ``_data`` (files,
built-in data, validation split), ``_recipes`` (per-run settings, the step of
each loss, the optimizer), ``_train`` (the loop of one run), ``_report``
(tables, plot), ``_command`` (the ``train`` subcommand), ``_system`` (threads,
allocator).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from negsample.cli._command import prepare, run_train
from negsample.cli._parser import PROG, UsageError, build_parser, train_settings
from negsample.cli._recipes import LOSSES, RunConfig, make_optimizer, make_step, recipe
from negsample.cli._train import TrainingError, out_of_memory

__all__ = ["LOSSES", "RunConfig", "main", "make_optimizer", "make_step", "recipe"]

USAGE_STATUS = 2
RUN_STATUS = 1


def _error(message: str, status: int = USAGE_STATUS) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def _describe(err: BaseException) -> str:
    """One line for a data error; an OSError as 'file: reason'."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Example:
        >>> main(["train", "--epochs", "0"])
        2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        return _error(str(err))
    except SystemExit as exit:  # --help, --version
        return exit.code if isinstance(exit.code, int) else 0
    if args.command is None:
        parser.print_usage(sys.stderr)
        return _error("choose a command: train")
    debug = bool(args.debug)
    try:
        return _train(args, debug)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace, debug: bool) -> int:
    """``negsample train``: user errors as one line and status 2, bugs as tracebacks."""
    try:
        settings = train_settings(args)
        data = prepare(settings)
    except UsageError as err:
        return _error(str(err))
    except (ValueError, TypeError, OSError) as err:
        if debug:
            raise
        return _error(_describe(err))
    try:
        run_train(settings, data)
    except (TrainingError, OSError, RuntimeError) as err:
        # OSError: writing the plot or the submission (checked before training: a full disk).
        what = out_of_memory(err)
        if debug or not (isinstance(err, (TrainingError, OSError)) or what):
            raise
        message = f"out of {what} in training" if what else _describe(err)
        return _error(message, RUN_STATUS)
    return 0
