"""Where a boolean mask is ``True``, recorded by the code that built it.

A candidate set's mask of known positives is ``True`` at a few entries of a
large ``(B, K)`` tensor, and the code that builds it knows them. Recorded, they
let the fused softmax loss set those entries alone instead of passing over the
whole mask. A record is kept for that very tensor object (held weakly: it goes
when the mask does) and holds the mask's version counter, so any in-place
change of the mask (through it or a view) makes it stale; a copy, a view or a
mask built by hand has none. The loss then reads the mask itself.
"""

from __future__ import annotations

import weakref

import torch

_Record = tuple["weakref.ref[torch.Tensor]", torch.Tensor, torch.Tensor, int]
_RECORDS: dict[int, _Record] = {}


def attach(mask: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> None:
    """Record that ``mask`` (2-D) is ``True`` exactly at ``(rows, columns)``, rows nondecreasing."""
    try:
        version = mask._version
    except RuntimeError:  # an inference-mode tensor keeps no version counter
        return
    key = id(mask)

    def forget(_: object) -> None:
        _RECORDS.pop(key, None)

    _RECORDS[key] = (weakref.ref(mask, forget), rows, columns, version)


def known(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(rows, columns)`` of ``mask``'s ``True`` entries if recorded and still current."""
    record = _RECORDS.get(id(mask))
    if record is None:
        return None
    owner, rows, columns, version = record
    if owner() is not mask:
        return None
    try:
        if mask._version != version:
            return None
    except RuntimeError:
        return None
    return rows, columns
