"""Raw ids to internal ids: the id policy of :mod:`negsample.data`, shared by every loader."""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from negsample._checks import _short
from negsample.data._interactions import Interactions, _lookup

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


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
    # A text file whose ids of one kind mix integers and other strings: "warn" (read them all
    # as strings, with a warning), "error" (raise, naming the line), "strings" (every id is a
    # string, even an all-integer column; no warning).
    mixed: str = "warn"

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
    if records.mixed == "strings":
        ints: list[int | None] = [None] * len(distinct)
    else:
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
        if records.mixed == "error":
            raise ValueError(
                f"{_locate(records, codes, first, what)}: {what} id {distinct[first]!r} is not "
                f"an integer, but the file's other {what} ids are (a typo? to read every id "
                f"as a string, pass string_ids=True, or --string-ids to the negsample command)"
            )
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
    strings = records.mixed == "strings"
    values = None if strings else _int_values(raw, text)
    if values is not None and like is None:
        return _int_ids(values)
    if values is not None and like is not None and like.dtype.kind in "iu":
        return _find(like, values), like
    codes, distinct = _factorize(records.path, raw, what)
    if like is None:
        new, ids = _assign_ids(records, codes, distinct, what, text)
    else:
        new, ids = _like_codes(distinct, like, text and not strings), like
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
