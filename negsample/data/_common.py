"""Type aliases and small helpers shared by the :mod:`negsample.data` modules."""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from negsample._checks import _short
from negsample.index import PositiveIndex

PathLike: TypeAlias = str | os.PathLike[str]
Unknown: TypeAlias = Literal["error", "drop"]

_CSV_HEADER = "UserId,ItemId"


def _csr_index(
    rows: npt.NDArray[np.int64], items: npt.NDArray[np.int64], num_users: int, num_items: int
) -> PositiveIndex:
    """An index from pairs already sorted by row, then item, without duplicates."""
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_users), out=indptr[1:])
    return PositiveIndex(indptr, items, num_items)


def _check_float(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {_short(value)} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite float {bound}, got {number}")
    return number
