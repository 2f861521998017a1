"""The loaders: pickled mappings, the competition CSV, the LightGCN layout, pair files."""

from __future__ import annotations

import csv
import math
import numbers
import os
import pickle
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from negsample._checks import _short
from negsample.data._common import _CSV_HEADER, PathLike, Unknown
from negsample.data._ids import _build, _Records
from negsample.data._interactions import Interactions

_FORMATS = ("pickle", "csv", "lightgcn", "pairs")
_SUFFIX_FORMATS = {".pkl": "pickle", ".pickle": "pickle", ".csv": "csv", ".txt": "lightgcn"}


def _check_common(like: Any, unknown: Any) -> None:
    if like is not None and not isinstance(like, Interactions):
        raise TypeError(f"like must be None or an Interactions, got {type(like).__name__}")
    if unknown not in ("error", "drop"):
        raise ValueError(f"unknown must be 'error' or 'drop', got {_short(unknown)}")


def _read_lines(path: PathLike) -> tuple[str, list[str]]:
    """The file's name for messages and its lines (universal newlines, BOM dropped)."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name}: not a UTF-8 text file ({err})") from err
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return name, lines


def _line_error(path: str, lineno: int, line: str, problem: str) -> ValueError:
    return ValueError(f"{path}, line {lineno}: {problem}: {_short(line)}")


def load_pickle(
    path: PathLike, *, like: Interactions | None = None, unknown: Unknown = "error"
) -> Interactions:
    """Load a pickled ``{user: iterable of items}`` mapping, e.g. a ``defaultdict(set)``.

    .. warning::
        Unpickling runs arbitrary code chosen by whoever wrote the file. Load
        only files you trust; prefer a text format for data from elsewhere.

    Keys and items are kept as Python objects (see the module's id policy); a
    key with an empty collection is a user without pairs.

    Args:
        path: The pickle file.
        like: Reuse this object's id maps instead of building new ones.
        unknown: With ``like``, what to do with an id it does not know:
            ``"error"`` (raise) or ``"drop"`` (drop its pairs and warn).

    Returns:
        The pairs, in the mapping's iteration order.

    Raises:
        ValueError: If the file is not a pickle, or (``unknown="error"``) an id
            is not in ``like``.
        TypeError: If it does not hold a mapping of user to iterable of items.

    Example:
        >>> import pathlib, pickle, tempfile
        >>> from collections import defaultdict
        >>> train = defaultdict(set, {0: {2, 1}, 1: {0}})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp, "train.pkl")
        ...     _ = path.write_bytes(pickle.dumps(train))
        ...     data = load_pickle(path)
        >>> data.num_users, data.num_items, data.to_index().positives(0).tolist()
        (2, 3, [1, 2])
    """
    _check_common(like, unknown)
    name = os.fspath(path)
    with open(name, "rb") as file:
        try:
            mapping = pickle.load(file)
        except (pickle.UnpicklingError, EOFError) as err:
            raise ValueError(f"{name}: not a valid pickle file ({err})") from err
    if not isinstance(mapping, Mapping):
        raise TypeError(
            f"{name} must hold a mapping of user -> items, got {type(mapping).__name__}"
        )
    users: list[Any] = []
    items: list[Any] = []
    counts: list[int] = []
    for user, values in mapping.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(
                f"{name}: the items of user {_short(user)} must be an iterable of item ids, "
                f"got {_short(values)}"
            )
        before = len(items)
        items.extend(values)
        users.append(user)
        counts.append(len(items) - before)
    return _build(_Records(name, users, items, counts, None), like, unknown, text=False)


def load_competition_csv(
    path: PathLike,
    *,
    like: Interactions | None = None,
    unknown: Unknown = "error",
    string_ids: bool = False,
) -> Interactions:
    r"""Load the competition CSV: header ``UserId,ItemId``, then ``user,item item ...`` rows.

    One row per user: the user id, a comma, and a space-separated (possibly
    empty) list of item ids. Either field may be in double quotes, read as CSV
    reads them (``"5","30 10"`` is user ``5``). This is the format
    :func:`write_submission` writes. A user on several rows gets the items of
    all of them, with a ``UserWarning`` that counts the users and the extra rows.

    The competition's ids are integers: an id that is not (say ``12a`` among
    integer ids) raises ``ValueError`` naming the file, the line and the id,
    where the other loaders read the whole column as strings with a warning.
    ``string_ids=True`` reads every id as a string instead (sorted as strings,
    written back unchanged by :func:`write_submission`).

    Args:
        path: The CSV file.
        like: Reuse this object's id maps instead of building new ones.
        unknown: With ``like``, what to do with an id it does not know:
            ``"error"`` (raise) or ``"drop"`` (drop its pairs and warn).
        string_ids: Read every user and item id as a string.

    Returns:
        The pairs, in file order.

    Raises:
        ValueError: On a bad header, a row that is not valid CSV (a stray
            quote), has no comma or several outside quotes, an empty user id, an
            id holding a comma or quote, a non-integer id among integer ids
            (unless ``string_ids``), or (``unknown="error"``) an id not in
            ``like``.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp, "sub.csv")
        ...     _ = path.write_text("UserId,ItemId\n5,30 10\n9,\n")
        ...     data = load_competition_csv(path)
        >>> data.user_ids.tolist(), data.item_ids.tolist(), data.items.tolist()
        ([5, 9], [10, 30], [1, 0])
    """
    _check_common(like, unknown)
    if not isinstance(string_ids, (bool, np.bool_)):
        raise TypeError(f"string_ids must be a bool, got {_short(string_ids)}")
    name, lines = _read_lines(path)
    header = next(csv.reader(lines[:1]), None)
    if header != _CSV_HEADER.split(","):
        raise _line_error(
            name, 1, lines[0] if lines else "", f"the header must be exactly {_CSV_HEADER!r}"
        )
    users: list[str] = []
    items: list[str] = []
    counts: list[int] = []
    numbers_: list[int] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        # Fields as CSV reads them: either may be quoted ("5","30 10"), and a quote is not
        # part of an id.
        try:
            fields = next(csv.reader([line.strip()], skipinitialspace=True, strict=True))
        except csv.Error as err:
            raise _line_error(name, lineno, line, f"not a valid CSV row ({err})") from None
        if len(fields) == 1:
            raise _line_error(
                name, lineno, line, "expected 'user,item item ...' but found no comma"
            )
        if len(fields) > 2:
            raise _line_error(name, lineno, line, "expected one comma per row, found several")
        user, row = fields[0].strip(), fields[1].split()
        if not user or len(user.split()) != 1:
            raise _line_error(name, lineno, line, "the user id must be one non-empty token")
        if any("," in token or '"' in token for token in (user, *row)):
            # Only a quoted field can hold them, and write_submission could not write them back.
            raise _line_error(name, lineno, line, "an id must not hold a comma or a quote")
        users.append(user)
        items.extend(row)
        counts.append(len(row))
        numbers_.append(lineno)
    _warn_repeated_users(name, users, numbers_)
    records = _Records(
        name, users, items, counts, numbers_, mixed="strings" if string_ids else "error"
    )
    return _build(records, like, unknown, text=True)


def _warn_repeated_users(path: str, users: list[str], lines: list[int]) -> None:
    """Warn, with the counts, when some users are on several rows (their items are merged)."""
    seen: set[str] = set()
    repeated: dict[str, int] = {}  # user -> its extra rows
    first_repeat = 0
    for user, lineno in zip(users, lines, strict=True):
        if user in seen:
            repeated[user] = repeated.get(user, 0) + 1
            first_repeat = first_repeat or lineno
        seen.add(user)
    if repeated:
        user = next(iter(repeated))
        warnings.warn(
            f"{path}: {len(repeated)} user ids are on more than one row "
            f"({sum(repeated.values())} extra rows, the first at line {first_repeat}, user "
            f"{user!r}); the items of each user's rows are merged",
            UserWarning,
            stacklevel=3,
        )


def load_lightgcn(
    path: PathLike, *, like: Interactions | None = None, unknown: Unknown = "error"
) -> Interactions:
    r"""Load the LightGCN layout: one line per user, ``user item item ...``.

    Fields are separated by any whitespace; a line holding only a user id is a
    user without items, and blank lines are skipped. This is the layout of the
    LightGCN splits of Gowalla, Yelp2018 and Amazon-Book.

    Args:
        path: The text file.
        like: Reuse this object's id maps instead of building new ones, e.g. the
            training file's when loading ``test.txt``.
        unknown: With ``like``, what to do with an id it does not know:
            ``"error"`` (raise) or ``"drop"`` (drop its pairs and warn).

    Returns:
        The pairs, in file order.

    Raises:
        ValueError: On a line with a comma (a CSV file?) or (``unknown="error"``)
            an id not in ``like``.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     train = pathlib.Path(tmp, "train.txt")
        ...     _ = train.write_text("0 0 1 2\n1 2\n")
        ...     test = pathlib.Path(tmp, "test.txt")
        ...     _ = test.write_text("1 0\n")
        ...     data = load_lightgcn(train)
        ...     held_out = load_lightgcn(test, like=data)
        >>> data.num_users, data.num_items, data.num_pairs
        (2, 3, 4)
        >>> held_out.to_index().positives(1).tolist()
        [0]
    """
    _check_common(like, unknown)
    name, lines = _read_lines(path)
    users: list[str] = []
    items: list[str] = []
    counts: list[int] = []
    numbers_: list[int] = []
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if "," in line:
            raise _line_error(
                name,
                lineno,
                line,
                "unexpected ',' in a whitespace-separated file (for CSV use "
                "load_competition_csv or load_pairs(delimiter=','))",
            )
        users.append(fields[0])
        items.extend(fields[1:])
        counts.append(len(fields) - 1)
        numbers_.append(lineno)
    return _build(_Records(name, users, items, counts, numbers_), like, unknown, text=True)


def load_pairs(
    path: PathLike,
    *,
    delimiter: str | None = None,
    rating_threshold: float | None = None,
    skip_header: bool = False,
    like: Interactions | None = None,
    unknown: Unknown = "error",
) -> Interactions:
    r"""Load one pair per line: ``user<delim>item[<delim>rating[<delim>...]]``.

    Columns after the item are ignored unless ``rating_threshold`` is given:
    then the third column is parsed as a float and only pairs rated at least the
    threshold are kept (every line must then have a numeric, non-NaN rating).
    Users and items of dropped pairs still get ids. MovieLens ``u.data``
    (``user item rating timestamp``, tab-separated) loads with the default
    delimiter.

    Args:
        path: The text file.
        delimiter: Field separator; ``None`` splits on any run of whitespace.
            With a delimiter, fields are stripped of surrounding whitespace.
        rating_threshold: Keep pairs with ``rating >= rating_threshold``.
        skip_header: Skip the first line.
        like: Reuse this object's id maps instead of building new ones.
        unknown: With ``like``, what to do with an id it does not know:
            ``"error"`` (raise) or ``"drop"`` (drop its pairs and warn).

    Returns:
        The kept pairs, in file order.

    Raises:
        ValueError: On a line with fewer than two fields, an empty field, a
            missing or non-numeric rating (with ``rating_threshold``), or
            (``unknown="error"``) an id not in ``like``.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp, "u.data")
        ...     _ = path.write_text("1\t20\t5\t881250949\n2\t10\t2\t891717742\n")
        ...     data = load_pairs(path, rating_threshold=4)
        >>> data.user_ids.tolist(), data.item_ids.tolist(), data.num_pairs
        ([1, 2], [10, 20], 1)
    """
    _check_common(like, unknown)
    if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
        raise ValueError(f"delimiter must be None or a non-empty str, got {_short(delimiter)}")
    threshold = None if rating_threshold is None else _check_threshold(rating_threshold)
    if not isinstance(skip_header, (bool, np.bool_)):
        raise TypeError(f"skip_header must be a bool, got {_short(skip_header)}")
    name, lines = _read_lines(path)
    users: list[str] = []
    items: list[str] = []
    numbers_: list[int] = []
    keep: list[bool] = []
    for lineno, line in enumerate(lines, start=1):
        if (skip_header and lineno == 1) or not line.strip():
            continue
        if delimiter is None:
            fields = line.split()
        else:
            fields = [field.strip() for field in line.split(delimiter)]
        if len(fields) < 2:
            raise _line_error(name, lineno, line, "expected at least two fields, user and item")
        if not fields[0] or not fields[1]:
            raise _line_error(name, lineno, line, "empty user or item field")
        if threshold is not None:
            keep.append(_rating(name, lineno, line, fields) >= threshold)
        users.append(fields[0])
        items.append(fields[1])
        numbers_.append(lineno)
    records = _Records(name, users, items, [1] * len(users), numbers_)
    if threshold is not None:
        records.keep = np.array(keep, dtype=bool).reshape(-1)
    return _build(records, like, unknown, text=True)


def _check_threshold(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"rating_threshold must be None or a float, got {_short(value)}")
    threshold = float(value)
    if not math.isfinite(threshold):
        raise ValueError(f"rating_threshold must be finite, got {threshold}")
    return threshold


def _rating(path: str, lineno: int, line: str, fields: list[str]) -> float:
    if len(fields) < 3 or not fields[2]:
        raise _line_error(path, lineno, line, "rating_threshold is set but the line has no rating")
    try:
        rating = float(fields[2])
    except ValueError:
        rating = math.nan
    if math.isnan(rating):
        raise _line_error(path, lineno, line, f"the rating {fields[2]!r} is not a number")
    return rating


def load(path: PathLike, format: str = "auto", **kwargs: Any) -> Interactions:
    r"""Load ``path`` with the loader for ``format``, passing on ``kwargs``.

    ``format`` is ``"pickle"`` (:func:`load_pickle`), ``"csv"``
    (:func:`load_competition_csv`), ``"lightgcn"`` (:func:`load_lightgcn`),
    ``"pairs"`` (:func:`load_pairs`) or ``"auto"``: by extension, ``.pkl`` and
    ``.pickle`` are pickle, ``.csv`` is csv and ``.txt`` is lightgcn; any other
    extension needs an explicit ``format``.

    Args:
        path: The file.
        format: One of the names above.
        **kwargs: Keyword arguments of the chosen loader.

    Returns:
        What the loader returns.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp, "ratings.tsv")
        ...     _ = path.write_text("a\tx\nb\tx\n")
        ...     data = load(path, "pairs")
        >>> data.user_ids.tolist(), data.item_ids.tolist()
        (['a', 'b'], ['x'])
    """
    if not isinstance(format, str):
        raise TypeError(f"format must be a str, got {_short(format)}")
    chosen = format
    if format == "auto":
        suffix = Path(os.fspath(path)).suffix.lower()
        if suffix not in _SUFFIX_FORMATS:
            raise ValueError(
                f"format='auto' cannot tell the format of {os.fspath(path)!r} from its "
                f"extension {suffix!r} (known: {sorted(_SUFFIX_FORMATS)}); pass format= one of "
                f"{list(_FORMATS)}"
            )
        chosen = _SUFFIX_FORMATS[suffix]
    loaders = {
        "pickle": load_pickle,
        "csv": load_competition_csv,
        "lightgcn": load_lightgcn,
        "pairs": load_pairs,
    }
    if chosen not in loaders:
        raise ValueError(f"format must be 'auto' or one of {list(_FORMATS)}, got {format!r}")
    loader: Any = loaders[chosen]
    result: Interactions = loader(path, **kwargs)
    return result
