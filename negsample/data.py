"""Reading interaction files, splitting them, and a planted synthetic dataset.

Every loader returns :class:`Interactions`: ``(user, item)`` pairs with contiguous
internal ids ``0..n-1`` plus the arrays that map internal ids back to the raw
ids of the file. :meth:`Interactions.to_index` turns them into a
:class:`~negsample.PositiveIndex`.

Formats (:func:`load` dispatches on ``format``):

========== ===================================== =================================
format     layout                                loader
========== ===================================== =================================
pickle     ``{user: iterable of items}``         :func:`load_pickle`
csv        ``UserId,ItemId`` then ``u,i i i``    :func:`load_competition_csv`
lightgcn   ``u i i i`` (one line per user)       :func:`load_lightgcn`
pairs      ``u i [rating ...]`` (one per line)   :func:`load_pairs`
========== ===================================== =================================

Id policy (the same for every loader):

* Raw ids from text files are strings. A string is an integer id when it is the
  canonical decimal form of an ``int64`` (``"7"``, ``"-3"``; not ``"07"`` or
  ``"+7"``). Pickled ids are the Python objects themselves.
* Users and items are mapped separately. If the ids are all non-negative
  integers forming exactly ``0..n-1`` they are kept (``user_ids`` is then
  ``arange(n)``). Otherwise they are renumbered ``0..n-1`` in sorted order of
  the raw ids: numeric order when all are integers (``user_ids`` is ``int64``),
  else the objects' own order, e.g. string order (``user_ids`` is an ``object``
  array). A text file that mixes integer and non-integer ids of one kind gets a
  warning, since its ids are then all sorted as strings.
* Every id in the file gets an internal id, even where none of its pairs is
  kept (a user with an empty item list, pairs below a rating threshold).
* ``like=`` reuses the id maps of another :class:`Interactions` (say, the
  training file) so that a second file shares its id space. An id that is not
  in ``like``'s maps raises ``ValueError`` naming the file, line and id, unless
  ``unknown="drop"``: its pairs are then dropped and a warning says how many.
  Without ``like`` two files get independent maps: a test file in which some
  item never occurs would be renumbered differently from the training file.

Malformed input raises ``ValueError`` naming the file and the 1-based line
number, and showing the line. Blank lines are skipped; nothing else is.
"""

from __future__ import annotations

import math
import numbers
import os
import pickle
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from negsample._checks import _short, as_index_tensor, check_int
from negsample.index import PositiveIndex

__all__ = [
    "Interactions",
    "holdout_split",
    "load",
    "load_competition_csv",
    "load_lightgcn",
    "load_pairs",
    "load_pickle",
    "synthetic_dataset",
    "write_submission",
]

PathLike: TypeAlias = str | os.PathLike[str]
Unknown: TypeAlias = Literal["error", "drop"]

_CSV_HEADER = "UserId,ItemId"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FORMATS = ("pickle", "csv", "lightgcn", "pairs")
_SUFFIX_FORMATS = {".pkl": "pickle", ".pickle": "pickle", ".csv": "csv", ".txt": "lightgcn"}
# Scores held at once by ``synthetic_dataset``: bounds memory at large sizes.
_SYNTHETIC_CHUNK_SCORES = 2**22


# ---------------------------------------------------------------------- Interactions


@dataclass(frozen=True, eq=False, repr=False)
class Interactions:
    """``(user, item)`` pairs with contiguous internal ids plus the maps back to raw ids.

    Pairs keep the order of the file (a user's items in the order listed), and
    may repeat; :meth:`to_index` collapses duplicates. ``user_ids[u]`` is the
    raw id of internal user ``u`` (likewise ``item_ids``); :meth:`user_lookup`
    and :meth:`item_lookup` give the inverse, raw id to internal id.

    Args:
        users: ``int64`` internal user id of each pair.
        items: ``int64`` internal item id of each pair, same length as ``users``.
        user_ids: Raw id of each internal user (distinct values).
        item_ids: Raw id of each internal item (distinct values).

    Example:
        >>> data = Interactions(
        ...     users=np.array([0, 0, 1]),
        ...     items=np.array([1, 0, 1]),
        ...     user_ids=np.array(["alice", "bob"], dtype=object),
        ...     item_ids=np.array([10, 20]),
        ... )
        >>> data
        Interactions(num_users=2, num_items=2, num_pairs=3)
        >>> data.user_lookup()["bob"], data.item_ids[data.items].tolist()
        (1, [20, 10, 20])
        >>> data.to_index().positives(0).tolist()
        [0, 1]
    """

    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    user_ids: npt.NDArray[Any]
    item_ids: npt.NDArray[Any]

    def __post_init__(self) -> None:
        for name in ("user_ids", "item_ids"):
            ids = getattr(self, name)
            if not isinstance(ids, np.ndarray) or ids.ndim != 1:
                raise TypeError(f"{name} must be a 1-D NumPy array, got {_short(ids)}")
            if len(_lookup(ids)) != ids.size:
                raise ValueError(f"{name} must hold distinct raw ids, got {_short(ids)}")
        for name, upper in (("users", self.user_ids.size), ("items", self.item_ids.size)):
            ids = as_index_tensor(name, getattr(self, name)).numpy().astype(np.int64)
            if ids.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {ids.shape}")
            if ids.size and (ids.min() < 0 or ids.max() >= upper):
                bad = ids[(ids < 0) | (ids >= upper)][0]
                raise ValueError(f"{name} must be internal ids in [0, {upper}), got {bad}")
            object.__setattr__(self, name, ids)
        if self.users.size != self.items.size:
            raise ValueError(
                f"users and items must have the same length, got {self.users.size} and {self.items.size}"
            )

    @property
    def num_users(self) -> int:
        """Number of users, ``len(user_ids)``, including users without pairs."""
        return int(self.user_ids.size)

    @property
    def num_items(self) -> int:
        """Number of items, ``len(item_ids)``."""
        return int(self.item_ids.size)

    @property
    def num_pairs(self) -> int:
        """Number of pairs, duplicates included."""
        return int(self.users.size)

    def __repr__(self) -> str:
        return (
            f"Interactions(num_users={self.num_users}, num_items={self.num_items}, "
            f"num_pairs={self.num_pairs})"
        )

    def to_index(self) -> PositiveIndex:
        """The pairs as a :class:`~negsample.PositiveIndex` over all users and items.

        Example:
            >>> data = Interactions(np.array([1, 1]), np.array([2, 2]), np.arange(3), np.arange(4))
            >>> data.to_index()
            PositiveIndex(num_users=3, num_items=4, num_interactions=1, device=cpu)
        """
        return PositiveIndex.from_pairs(self.users, self.items, self.num_users, self.num_items)

    def user_lookup(self) -> dict[Any, int]:
        """A new dict from raw user id to internal user id (integer raw ids as ``int``).

        Example:
            >>> Interactions(np.array([0]), np.array([0]), np.array([7]), np.array([3])).user_lookup()
            {7: 0}
        """
        return _lookup(self.user_ids)

    def item_lookup(self) -> dict[Any, int]:
        """A new dict from raw item id to internal item id (integer raw ids as ``int``).

        Example:
            >>> Interactions(np.array([0]), np.array([0]), np.array([7]), np.array([3])).item_lookup()
            {3: 0}
        """
        return _lookup(self.item_ids)


def _lookup(ids: npt.NDArray[Any]) -> dict[Any, int]:
    return {raw: internal for internal, raw in enumerate(ids.tolist())}


# ---------------------------------------------------------------------- id encoding


@dataclass
class _Records:
    """Raw records parsed from one file, before ids are encoded.

    A record is a line (or a pickled mapping entry): one user and its items.
    """

    path: str
    users: list[Any]  # one raw user id per record
    items: list[Any]  # raw item ids of all records, concatenated
    counts: list[int]  # items per record
    lines: list[int] | None  # 1-based line of each record; None for a pickle
    keep: npt.NDArray[np.bool_] | None = None  # per item: kept (rating threshold)

    def where(self, record: int) -> str:
        if self.lines is None:
            return f"{self.path}, entry of user {_short(self.users[record])}"
        return f"{self.path}, line {self.lines[record]}"


def _canonical_int(token: str) -> int | None:
    """``int(token)`` if ``token`` is the canonical decimal form of an int64, else None."""
    digits = token[1:] if token.startswith("-") else token
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        return None
    value = int(token)
    if str(value) != token or not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return value


def _object_int(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        return None
    number = int(value)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _factorize(path: str, raw: list[Any], what: str) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """Codes in order of first appearance, and the distinct raw ids in that order."""
    seen: dict[Any, int] = {}
    try:
        codes = np.fromiter(
            (seen.setdefault(value, len(seen)) for value in raw), dtype=np.int64, count=len(raw)
        )
    except TypeError as err:
        raise TypeError(f"{path}: {what} ids must be hashable ({err})") from err
    return codes, list(seen)


def _array_of_objects(values: list[Any]) -> npt.NDArray[Any]:
    array = np.empty(len(values), dtype=object)
    for position, value in enumerate(values):  # element-wise: tuples must stay scalars
        array[position] = value
    return array


def _assign_ids(
    records: _Records,
    codes: npt.NDArray[np.int64],
    distinct: list[Any],
    what: str,
    text: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """New internal id of each distinct raw id, and the raw id of each internal id."""
    convert = _canonical_int if text else _object_int
    ints = [convert(value) for value in distinct]
    count = len(distinct)
    if all(value is not None for value in ints):
        values = np.array(ints, dtype=np.int64)
        if count == 0 or (values.min() == 0 and values.max() == count - 1):
            return values, np.arange(count, dtype=np.int64)
        order = np.argsort(values, kind="stable")
        new = np.empty(count, dtype=np.int64)
        new[order] = np.arange(count)
        return new, values[order]
    if text and any(value is not None for value in ints):
        first = next(i for i, value in enumerate(ints) if value is None)
        warnings.warn(
            f"{_locate(records, codes, first, what)}: {what} id {distinct[first]!r} is not an "
            f"integer, so all {what} ids of the file are treated as strings and sorted as such",
            stacklevel=5,
        )
    try:
        positions = sorted(range(count), key=distinct.__getitem__)
    except TypeError as err:
        kinds = sorted({type(value).__name__ for value in distinct})
        raise ValueError(
            f"{records.path}: {what} ids must be all integers or mutually comparable, "
            f"got types {kinds} ({err})"
        ) from err
    new = np.empty(count, dtype=np.int64)
    new[positions] = np.arange(count)
    return new, _array_of_objects([distinct[p] for p in positions])


def _locate(records: _Records, codes: npt.NDArray[np.int64], code: int, what: str) -> str:
    """Where the first occurrence of distinct id ``code`` (of ``what``) is."""
    position = int(np.argmax(codes == code))
    if what == "item":
        position = int(np.searchsorted(np.cumsum(records.counts), position, side="right"))
    return records.where(position)


def _like_codes(
    distinct: list[Any], like_ids: npt.NDArray[Any], text: bool
) -> npt.NDArray[np.int64]:
    """Internal id in ``like`` of each distinct raw id, ``-1`` where absent."""
    lookup = _lookup(like_ids)
    if text and like_ids.dtype.kind in "iu":
        keys: list[Any] = [_canonical_int(token) for token in distinct]
    else:
        keys = distinct
    return np.array([lookup.get(key, -1) for key in keys], dtype=np.int64).reshape(-1)


def _encode(
    records: _Records, what: str, raw: list[Any], like: npt.NDArray[Any] | None, text: bool
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Internal id of each raw id (``-1`` where ``like`` lacks it) and the id map."""
    values = _int_values(raw, text)
    if values is not None and like is None:
        return _int_ids(values)
    if values is not None and like is not None and like.dtype.kind in "iu":
        return _find(like, values), like
    codes, distinct = _factorize(records.path, raw, what)
    if like is None:
        new, ids = _assign_ids(records, codes, distinct, what, text)
    else:
        new, ids = _like_codes(distinct, like, text), like
    return new[codes], ids


_POWERS_OF_TEN = np.array([10**k for k in range(20)], dtype=np.uint64)


def _int_values(raw: list[Any], text: bool) -> npt.NDArray[np.int64] | None:
    """``raw`` as int64 if every id is an integer id (see the id policy), else None.

    The vectorized path of the common case; anything unusual returns None and
    goes through the per-id path, which gives the same answer.
    """
    if not text:
        try:
            array = np.asarray(raw)
        except (OverflowError, ValueError, TypeError):
            return None
        if array.ndim != 1 or array.dtype.kind not in "iu" or array.size != len(raw):
            return None
        if array.dtype.kind == "u" and array.size and array.max() > _INT64_MAX:
            return None
        return array.astype(np.int64)
    if not "".join(raw).isascii():
        return None
    try:
        values = np.array([int(token) for token in raw], dtype=np.int64).reshape(-1)
    except (OverflowError, ValueError):
        return None
    # int() also accepts "+7", "07", "1_0" and " 7"; over ASCII each of those is longer than
    # the canonical str(value), so equal total lengths mean every token is canonical.
    negative = values < 0
    magnitude = np.where(
        negative, (-(values + 1)).astype(np.uint64) + np.uint64(1), values.astype(np.uint64)
    )
    digits = np.maximum(np.searchsorted(_POWERS_OF_TEN, magnitude, side="right"), 1)
    if int(digits.sum()) + int(negative.sum()) != sum(map(len, raw)):
        return None
    return values


def _int_ids(values: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Identity ids if ``values`` cover exactly ``0..n-1``, else ranks in numeric order."""
    if values.size == 0:
        return values, np.arange(0, dtype=np.int64)
    low, high = int(values.min()), int(values.max())
    if low == 0 and high < values.size and np.bincount(values, minlength=high + 1).all():
        return values, np.arange(high + 1, dtype=np.int64)
    ordered = np.sort(values)  # np.unique is slow on large int arrays in NumPy 2.4
    distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    return np.searchsorted(distinct, values).astype(np.int64), distinct


def _find(ids: npt.NDArray[Any], values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Position of each value in the distinct integer ``ids``, ``-1`` where absent."""
    if ids.size == 0:
        return np.full(values.size, -1, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ordered = ids[order].astype(np.int64)
    slot = np.minimum(np.searchsorted(ordered, values), ids.size - 1)
    return np.where(ordered[slot] == values, order[slot], -1).astype(np.int64)


def _build(
    records: _Records, like: Interactions | None, unknown: str, *, text: bool
) -> Interactions:
    user_codes, user_ids = _encode(
        records, "user", records.users, None if like is None else like.user_ids, text
    )
    item_codes, item_ids = _encode(
        records, "item", records.items, None if like is None else like.item_ids, text
    )
    counts = np.array(records.counts, dtype=np.int64).reshape(-1)
    pair_users = np.repeat(user_codes, counts)
    keep = np.ones(item_codes.size, dtype=bool) if records.keep is None else records.keep
    if like is not None:
        known = (pair_users >= 0) & (item_codes >= 0)
        if unknown == "error":
            _raise_unknown(records, user_codes, item_codes, counts)
        dropped = int((keep & ~known).sum())
        if dropped:
            warnings.warn(
                f"{records.path}: dropped {dropped} of {int(keep.sum())} pairs whose user or "
                f"item id is not in like's id maps",
                stacklevel=3,
            )
        keep = keep & known
    return Interactions(pair_users[keep], item_codes[keep], user_ids, item_ids)


def _raise_unknown(
    records: _Records,
    user_codes: npt.NDArray[np.int64],
    item_codes: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
) -> None:
    """Raise for the first record holding an id unknown to ``like``, if any."""
    bad_records = user_codes < 0
    item_record = np.repeat(np.arange(counts.size), counts)
    bad_records[item_record[item_codes < 0]] = True
    if not bad_records.any():
        return
    record = int(np.argmax(bad_records))
    if user_codes[record] < 0:
        what, raw = "user", records.users[record]
    else:
        start = int(counts[:record].sum())
        offset = int(np.argmax(item_codes[start : start + counts[record]] < 0))
        what, raw = "item", records.items[start + offset]
    raise ValueError(
        f"{records.where(record)}: {what} id {raw!r} is not in like's {what} ids "
        f"(pass unknown='drop' to drop such pairs with a warning)"
    )


# ---------------------------------------------------------------------- loaders


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
    path: PathLike, *, like: Interactions | None = None, unknown: Unknown = "error"
) -> Interactions:
    r"""Load the competition CSV: header ``UserId,ItemId``, then ``user,item item ...`` rows.

    One row per user: the user id, a comma, and a space-separated (possibly
    empty) list of item ids, optionally in double quotes. A user on several rows
    gets all of their items. This is the format :func:`write_submission` writes.

    Args:
        path: The CSV file.
        like: Reuse this object's id maps instead of building new ones.
        unknown: With ``like``, what to do with an id it does not know:
            ``"error"`` (raise) or ``"drop"`` (drop its pairs and warn).

    Returns:
        The pairs, in file order.

    Raises:
        ValueError: On a bad header, a row without a comma or with several, an
            empty user id, or (``unknown="error"``) an id not in ``like``.

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
    name, lines = _read_lines(path)
    if not lines or lines[0] != _CSV_HEADER:
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
        user, comma, rest = line.partition(",")
        if not comma:
            raise _line_error(
                name, lineno, line, "expected 'user,item item ...' but found no comma"
            )
        if "," in rest:
            raise _line_error(name, lineno, line, "expected one comma per row, found several")
        user = user.strip()
        if not user or len(user.split()) != 1:
            raise _line_error(name, lineno, line, "the user id must be one non-empty token")
        rest = rest.strip()
        if len(rest) >= 2 and rest[0] == rest[-1] == '"':
            rest = rest[1:-1]
        row = rest.split()
        users.append(user)
        items.extend(row)
        counts.append(len(row))
        numbers_.append(lineno)
    return _build(_Records(name, users, items, counts, numbers_), like, unknown, text=True)


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


# ---------------------------------------------------------------------- writing


def write_submission(
    path: PathLike, users: Any, recommendations: Any, interactions: Interactions
) -> None:
    """Write recommendations as the competition CSV, with raw ids.

    Header ``UserId,ItemId``, then one row per user in the order of ``users``:
    ``raw_user,raw_item raw_item ...``. Internal ids are mapped back through
    ``interactions``' id maps; ``-1`` entries (the padding of
    :meth:`MFModel.recommend <negsample.MFModel.recommend>`) are skipped.
    :func:`load_competition_csv` with ``like=interactions`` reads the lists back.

    Args:
        path: The file to write (overwritten).
        users: 1-D internal user ids (tensor, array or list), each at most once.
        recommendations: Internal item ids of shape ``(len(users), k)``, ``-1``
            for padding.
        interactions: Whose ``user_ids`` and ``item_ids`` give the raw ids.

    Raises:
        TypeError: If ids are not integers or ``interactions`` is not an
            :class:`Interactions`.
        ValueError: On shape mismatches, out-of-range or repeated users, or a
            raw id whose text holds a comma, quote or whitespace.

    Example:
        >>> import pathlib, tempfile, torch
        >>> data = Interactions(np.array([0]), np.array([0]), np.array([7, 8]), np.array([3, 4, 5]))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp, "submission.csv")
        ...     write_submission(path, torch.tensor([1, 0]), torch.tensor([[2, 0], [1, -1]]), data)
        ...     print(path.read_text(), end="")
        UserId,ItemId
        8,5 3
        7,4
    """
    if not isinstance(interactions, Interactions):
        raise TypeError(f"interactions must be an Interactions, got {type(interactions).__name__}")
    user_array = as_index_tensor("users", users).cpu().numpy().astype(np.int64)
    recs = as_index_tensor("recommendations", recommendations).cpu().numpy().astype(np.int64)
    if user_array.ndim != 1:
        raise ValueError(f"users must be 1-D, got shape {user_array.shape}")
    if recs.ndim != 2 or recs.shape[0] != user_array.size:
        raise ValueError(
            f"recommendations must have shape (len(users), k) = ({user_array.size}, k), "
            f"got {recs.shape}"
        )
    _check_range("users", user_array, 0, interactions.num_users)
    _check_range("recommendations", recs, -1, interactions.num_items)
    ordered = np.sort(user_array)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        raise ValueError(f"users must not repeat, got user {int(repeated[0])} more than once")
    user_text = _id_texts("user", interactions.user_ids, user_array)
    item_text = _id_texts("item", interactions.item_ids, recs[recs >= 0])
    rows = [_CSV_HEADER]
    offset = 0
    for row, user in zip(recs, user_text, strict=True):
        width = int((row >= 0).sum())
        rows.append(f"{user},{' '.join(item_text[offset : offset + width])}")
        offset += width
    with open(os.fspath(path), "w", encoding="utf-8", newline="\n") as file:
        file.write("\n".join(rows) + "\n")


def _check_range(name: str, ids: npt.NDArray[np.int64], low: int, high: int) -> None:
    bad = (ids < low) | (ids >= high)
    if bad.any():
        raise ValueError(f"{name} must be ids in [{low}, {high}), got {int(ids[bad][0])}")


def _id_texts(what: str, raw_ids: npt.NDArray[Any], internal: npt.NDArray[np.int64]) -> list[str]:
    texts: list[str] = [str(raw) for raw in raw_ids[internal].tolist()]
    if raw_ids.dtype.kind not in "iu":
        for text in texts:
            if text.split() != [text] or "," in text or '"' in text:
                raise ValueError(
                    f"{what} id {text!r} cannot be written to the CSV: it is empty or holds a "
                    f"comma, quote or whitespace"
                )
    return texts


# ---------------------------------------------------------------------- splitting


def holdout_split(
    index: PositiveIndex, fraction: float = 0.2, *, seed: int = 0
) -> tuple[PositiveIndex, PositiveIndex]:
    """Hold out a random share of each user's positives for validation.

    A user with ``k >= 2`` positives gives ``round(fraction * k)`` of them
    (halves rounded up), but at least 1 when ``fraction > 0`` and at most
    ``k - 1``, chosen uniformly at random without replacement. A user with one
    positive keeps it in training. Both outputs have the input's ``num_users``
    and ``num_items`` and live on its device. Deterministic given ``seed``
    (``numpy.random.default_rng(seed)``; no global state).

    Args:
        index: The positives to split.
        fraction: Share of each user's positives to hold out, in ``[0, 1)``.
        seed: Seed of the split, an int ``>= 0``.

    Returns:
        ``(train, valid)``: disjoint per user, their union is ``index``.

    Raises:
        TypeError: If ``index`` is not a :class:`~negsample.PositiveIndex`.
        ValueError: If ``fraction`` is outside ``[0, 1)`` or ``seed`` is negative.

    Example:
        >>> import torch
        >>> index = PositiveIndex.from_dict({0: range(10), 1: [4]}, num_items=10)
        >>> train, valid = holdout_split(index, 0.2, seed=0)
        >>> train.degree(torch.tensor([0, 1])).tolist(), valid.degree(torch.tensor([0, 1])).tolist()
        ([8, 1], [2, 0])
    """
    if not isinstance(index, PositiveIndex):
        raise TypeError(f"index must be a PositiveIndex, got {type(index).__name__}")
    share = _check_float("fraction", fraction, positive=False)
    if share >= 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {share}")
    seed = check_int("seed", seed, minimum=0)
    indptr = index.indptr.cpu().numpy().astype(np.int64)
    items = index.indices.cpu().numpy().astype(np.int64)
    degrees = np.diff(indptr)
    held = np.floor(share * degrees + 0.5).astype(np.int64)
    if share > 0:
        held = np.maximum(held, 1)
    held = np.where(degrees >= 2, np.minimum(held, degrees - 1), 0)
    row_of = np.repeat(np.arange(degrees.size, dtype=np.int64), degrees)
    # A uniformly random order within each row (distinct random keys, sorted by row first):
    # its first ``held`` entries are held out.
    keys = np.random.default_rng(seed).permutation(items.size)
    if degrees.size * max(items.size, 1) < 2**63:
        order = np.argsort(row_of * items.size + keys, kind="stable")
    else:
        order = np.lexsort((keys, row_of))
    rank = np.empty(items.size, dtype=np.int64)
    rank[order] = np.arange(items.size) - indptr[row_of[order]]
    valid = rank < held[row_of]
    train_index = _csr_index(row_of[~valid], items[~valid], index.num_users, index.num_items)
    valid_index = _csr_index(row_of[valid], items[valid], index.num_users, index.num_items)
    return train_index.to(index.device), valid_index.to(index.device)


def _csr_index(
    rows: npt.NDArray[np.int64], items: npt.NDArray[np.int64], num_users: int, num_items: int
) -> PositiveIndex:
    """An index from pairs already sorted by row, then item, without duplicates."""
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_users), out=indptr[1:])
    return PositiveIndex(indptr, items, num_items)


# ---------------------------------------------------------------------- synthetic data


def synthetic_dataset(
    num_users: int = 2000,
    num_items: int = 1000,
    *,
    dim: int = 8,
    interactions_per_user: int = 20,
    popularity_alpha: float = 1.0,
    temperature: float = 0.2,
    seed: int = 0,
) -> PositiveIndex:
    """Positives with a planted low-rank structure and Zipf-like item popularity.

    User and item factors ``u, v`` are drawn ``N(0, I_dim)``; item popularity
    ranks ``r_i`` are a random permutation of ``0..num_items-1``. User ``u``'s
    positives are drawn without replacement with probability proportional to::

        exp(<u, v_i> / (sqrt(dim) * temperature)) * (1 + r_i) ** -popularity_alpha

    so a low ``temperature`` makes the taste structure sharp (the default makes
    it clearly learnable by matrix factorisation, well beyond popularity) and
    ``popularity_alpha = 0`` turns the popularity skew off. The number of
    positives per user is log-normal with mean about ``interactions_per_user``
    (sigma 0.5), clipped to ``[2, num_items - 1]``. Deterministic given
    ``seed`` (``numpy.random.default_rng(seed)``; no global state). The
    planted factors are not returned.

    Args:
        num_users: Number of users.
        num_items: Number of items, at least 3.
        dim: Rank of the planted factors.
        interactions_per_user: Mean positives per user, in ``[2, num_items - 1]``.
        popularity_alpha: Zipf exponent of the popularity, ``>= 0``.
        temperature: Sharpness of the taste structure, ``> 0``.
        seed: Seed, an int ``>= 0``.

    Returns:
        The positives as a :class:`~negsample.PositiveIndex` of shape
        ``(num_users, num_items)``; every user has at least 2.

    Example:
        >>> import torch
        >>> index = synthetic_dataset(100, 50, interactions_per_user=5, seed=1)
        >>> index.num_users, index.num_items, int(index.degree(torch.arange(100)).min()) >= 2
        (100, 50, True)
    """
    num_users = check_int("num_users", num_users, minimum=1)
    num_items = check_int("num_items", num_items, minimum=3)
    dim = check_int("dim", dim, minimum=1)
    mean_degree = check_int("interactions_per_user", interactions_per_user, minimum=2)
    if mean_degree > num_items - 1:
        raise ValueError(
            f"interactions_per_user must be <= num_items - 1 = {num_items - 1}, got {mean_degree}"
        )
    alpha = _check_float("popularity_alpha", popularity_alpha, positive=False)
    temp = _check_float("temperature", temperature, positive=True)
    seed = check_int("seed", seed, minimum=0)

    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((num_users, dim))
    item_factors = rng.standard_normal((num_items, dim)) / (math.sqrt(dim) * temp)
    log_popularity = -alpha * np.log1p(rng.permutation(num_items))
    sigma = 0.5
    sizes = rng.lognormal(math.log(mean_degree) - sigma**2 / 2, sigma, num_users)
    degrees = np.clip(np.rint(sizes), 2, num_items - 1).astype(np.int64)

    item_parts: list[npt.NDArray[np.int64]] = []
    chunk = max(1, _SYNTHETIC_CHUNK_SCORES // num_items)
    for start in range(0, num_users, chunk):
        stop = min(start + chunk, num_users)
        logits = user_factors[start:stop] @ item_factors.T + log_popularity
        # Gumbel-top-k: the k largest of logits + Gumbel noise are a draw of k items
        # without replacement with probabilities proportional to exp(logits).
        keys = logits + rng.gumbel(size=logits.shape)
        width = int(degrees[start:stop].max())
        top = np.argpartition(-keys, width - 1, axis=1)[:, :width]
        top_order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, top_order, axis=1)
        taken = np.arange(width) < degrees[start:stop, None]
        item_parts.append(top[taken].astype(np.int64))
    users = np.repeat(np.arange(num_users, dtype=np.int64), degrees)
    flat = np.sort(users * num_items + np.concatenate(item_parts))
    rows, items = np.divmod(flat, num_items)
    return _csr_index(rows, items, num_users, num_items)


def _check_float(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {_short(value)} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite float {bound}, got {number}")
    return number
