"""Argument checks shared by the public entry points.

Every check raises ``TypeError`` for a value of the wrong kind and ``ValueError``
for a value of the right kind but out of range, and the message names the
argument, shows the value and says what was expected. Checks that need to read
tensor values (and so synchronise with a GPU) are kept apart from the ones that
only look at shapes, dtypes and Python values, so callers can skip the former.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

_INTEGER_DTYPES = frozenset(
    {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32}
)
# Integer dtypes torch has no comparison kernels for ("lt_cpu" not implemented for 'UInt16').
_UNCOMPARABLE_DTYPES = frozenset({torch.uint16, torch.uint32})


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_short(value)} ({type(value).__name__})")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def is_integer_dtype(dtype: torch.dtype) -> bool:
    """Whether ``dtype`` is a torch integer dtype (bool excluded)."""
    return dtype in _INTEGER_DTYPES


def as_index_tensor(name: str, value: Any, *, device: torch.device | None = None) -> torch.Tensor:
    """Convert a tensor, NumPy array or sequence of ints to an integer tensor.

    Tensors keep their device (unless ``device`` is given) and their dtype; other
    inputs become ``int64`` CPU tensors. Floating, complex and boolean inputs are a
    ``TypeError``: ids are never silently rounded.
    """
    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu":
            raise TypeError(
                f"{name} must hold integer ids, got a NumPy array of dtype {value.dtype}"
            )
        _check_fits_int64(name, value)
        tensor = torch.from_numpy(np.ascontiguousarray(value).astype(np.int64, copy=False))
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name} must be a tensor, array or sequence of ints, got {_short(value)}"
            ) from err
        if array.size == 0:
            array = array.astype(np.int64)
        if array.dtype.kind not in "iu":
            raise TypeError(
                f"{name} must hold integer ids, got {_short(value)} (which converts to dtype {array.dtype})"
            )
        _check_fits_int64(name, array)
        tensor = torch.from_numpy(array.astype(np.int64))
    if not is_integer_dtype(tensor.dtype):
        raise TypeError(f"{name} must hold integer ids, got a tensor of dtype {tensor.dtype}")
    if device is not None:
        tensor = tensor.to(device)
    return tensor


def _check_fits_int64(name: str, array: np.ndarray) -> None:
    """Raise ``ValueError`` for ``uint64`` ids of ``2**63`` or more, which ``int64`` would wrap.

    Without this the conversion turns them negative, and the range check
    reports a negative id the caller never passed.
    """
    if array.dtype == np.uint64 and array.size:
        too_large = array[array > np.uint64(2**63 - 1)]
        if too_large.size:
            raise ValueError(
                f"{name} must be ids below 2**63 (they are used as int64), got {int(too_large[0])}"
            )


def check_ids_in_range(name: str, ids: torch.Tensor, upper: int, what: str) -> None:
    """Raise ``ValueError`` unless every id is in ``[0, upper)`` (reads values: synchronises).

    Ids of any integer dtype are checked against any ``upper``: a bound the
    dtype cannot hold is not compared in that dtype (where it would wrap), and
    ``uint16`` / ``uint32`` ids, which torch cannot compare, are widened first.
    """
    if ids.numel() == 0:
        return
    if ids.dtype in _UNCOMPARABLE_DTYPES:
        ids = ids.long()
    info = torch.iinfo(ids.dtype)
    can_be_negative, can_reach_upper = info.min < 0, info.max >= upper
    if not (can_be_negative or can_reach_upper):
        return
    if can_be_negative and can_reach_upper:
        bad = (ids < 0) | (ids >= upper)
    elif can_be_negative:
        bad = ids < 0
    else:
        bad = ids >= upper
    if bool(bad.any()):
        first = ids[bad][0].item()
        count = int(bad.sum())
        raise ValueError(
            f"{name} must be {what} ids in [0, {upper}), got {first}"
            + (f" (and {count - 1} more out of range)" if count > 1 else "")
        )


def make_generator(name: str, value: Any) -> torch.Generator | int | None:
    """Validate a ``generator`` argument: ``None``, an int seed or a ``torch.Generator``."""
    if value is None or isinstance(value, torch.Generator):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be None, an int seed or a torch.Generator, got {_short(value)} "
            f"({type(value).__name__})"
        )
    seed = int(value)
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"{name} seed must fit in 64 bits, got {seed}")
    return seed
