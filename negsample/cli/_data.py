"""The command's data: the training file (or the built-in data), the validation split, the test file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from negsample import PositiveIndex
from negsample.data import Interactions, holdout_split, load, synthetic_dataset

# MovieLens-100K: u.data and the u1..u5, ua, ub .base/.test splits (user item rating time).
MOVIELENS_100K = re.compile(r"u[1-5ab]?\.(data|base|test)")
COMPETITION_HEADER = "UserId,ItemId"
AUTO_FORMATS = {".txt": "lightgcn", ".csv": "csv", ".pkl": "pickle", ".pickle": "pickle"}


@dataclass(frozen=True)
class DataOptions:
    """Where the pairs come from and how the validation split is carved."""

    path: Path | None = None  # None: the built-in synthetic dataset
    format: str = "auto"
    test: Path | None = None
    delimiter: str | None = None
    rating_threshold: float | None = None
    string_ids: bool = False
    valid_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class Data:
    """The training pairs, the validation split carved from them and the test file."""

    full: PositiveIndex  # every training pair: excluded from test rankings and submissions
    fit: PositiveIndex  # what a validation run trains on: full minus valid
    valid: PositiveIndex | None  # None with valid_fraction 0
    test: PositiveIndex | None
    interactions: Interactions  # raw id maps, for the submission
    description: str
    notes: list[str]  # what the user may want to know about the data (printed)


def _first_line(path: Path) -> str | None:
    """The file's first line without its newline and a BOM; None if it cannot be read."""
    try:
        with open(path, encoding="utf-8-sig") as file:
            return file.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):  # the loader reports these, naming the file
        return None


# A test id absent from the training file, as negsample.data words it for API callers.
_UNKNOWN_ID = re.compile(r"(?P<where>.+): (?P<what>user|item) id (?P<id>.+) is not in like's ")


def _load_test(
    path: Path, options: DataOptions, like: Interactions, notes: list[str]
) -> Interactions:
    """The test file in the training file's id space: an id the training file lacks is an error."""
    try:
        return _load_file(path, options, like, notes)
    except ValueError as err:
        unknown = _UNKNOWN_ID.match(str(err))
        if unknown is None:
            raise
        raise ValueError(
            f"{unknown['where']}: {unknown['what']} id {unknown['id']} is not in the training "
            f"file {options.path} (the test file must use the training file's users and items)"
        ) from None


def _check_pairs(what: str, path: Path, options: DataOptions, interactions: Interactions) -> None:
    """Raise unless the file gave at least one pair."""
    if interactions.num_pairs:
        return
    threshold = options.rating_threshold
    kept = "" if threshold is None else f" rated at least --rating-threshold {threshold:g}"
    raise ValueError(f"{what} {path} has no pairs{kept}")


def _load_file(
    path: Path, options: DataOptions, like: Interactions | None, notes: list[str]
) -> Interactions:
    kwargs: dict[str, Any] = {
        name: value
        for name, value in (
            ("delimiter", options.delimiter),
            ("rating_threshold", options.rating_threshold),
        )
        if value is not None
    }
    fmt = options.format
    if fmt == "auto" and (kwargs or MOVIELENS_100K.fullmatch(path.name)):
        fmt = "pairs"
    if kwargs and fmt != "pairs":
        raise ValueError("--delimiter and --rating-threshold apply to the pairs format")
    if fmt == "pairs" and _first_line(path) == COMPETITION_HEADER:
        header = f"{path}, line 1: {COMPETITION_HEADER!r} is the header of a competition CSV"
        if options.format == "pairs":
            raise ValueError(f"{header}, not a pair: read it with --format csv")
        raise ValueError(
            f"{header}, which has no ratings: --rating-threshold and --delimiter apply to the "
            f"pairs format (user item [rating], one pair per line)"
        )
    if fmt == "auto":
        # negsample.data.load's rule, said in the command's terms.
        fmt = AUTO_FORMATS.get(path.suffix.lower(), "")
        if not fmt:
            raise ValueError(
                f"{path}: --format auto cannot tell the format from the extension "
                f"{path.suffix or '(none)'!r} (.txt, .csv, .pkl, .pickle, or MovieLens u.data): "
                f"pass --format lightgcn, csv, pickle or pairs"
            )
    if options.string_ids:
        if fmt != "csv":
            raise ValueError("--string-ids applies to the csv format")
        kwargs["string_ids"] = True
    if like is None and options.rating_threshold is None and MOVIELENS_100K.fullmatch(path.name):
        notes.append("every rated pair is a positive; --rating-threshold 4 keeps ratings 4 and 5")
    return load(path, fmt, like=like, **kwargs)


def load_data(options: DataOptions) -> Data:
    """Load the data that ``options`` name and carve the validation split.

    Raises:
        ValueError, TypeError, OSError: On a file that is missing or malformed, or
            an empty validation split.
    """
    notes: list[str] = []
    if options.path is None:
        full = synthetic_dataset(seed=options.split_seed)
        described = f"built-in synthetic dataset ({full})"
        # Raw ids are the internal ids.
        interactions = Interactions(
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.arange(full.num_users),
            np.arange(full.num_items),
        )
        test = None
    else:
        interactions = _load_file(options.path, options, None, notes)
        _check_pairs("the training file", options.path, options, interactions)
        full = interactions.to_index()
        described = str(options.path)
        test = None
        if options.test is not None:
            test_pairs = _load_test(options.test, options, interactions, notes)
            _check_pairs("the test file", options.test, options, test_pairs)
            test = test_pairs.to_index()
            described += f" with test file {options.test}"
    if options.valid_fraction == 0:
        return Data(
            full, full, None, test, interactions, f"{described}, no validation split", notes
        )
    fit, valid = holdout_split(full, options.valid_fraction, seed=options.split_seed)
    if valid.num_interactions == 0:
        raise ValueError(
            "the validation split is empty (no user has 2 or more training pairs); "
            "use --valid-fraction 0"
        )
    return Data(
        full,
        fit,
        valid,
        test,
        interactions,
        f"{described}, {options.valid_fraction:.0%} of each user's training pairs held out for "
        f"validation (split seed {options.split_seed})",
        notes,
    )
