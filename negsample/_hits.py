"""Where a boolean mask is ``True``, recorded on the mask by the code that built it.

A candidate set's mask of known positives is ``True`` at a few entries of a
large ``(B, K)`` tensor, and the code that builds it knows them. Recorded on
the mask, they let the fused softmax loss set those entries alone instead of
passing over the whole mask. The record holds the mask's version counter: any
in-place change of the mask (through it or a view) makes it stale, and the loss
then reads the mask itself.
"""

from __future__ import annotations

import torch

_ATTRIBUTE = "_negsample_hits"


def attach(mask: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> None:
    """Record that ``mask`` (2-D) is ``True`` exactly at ``(rows, columns)``, rows nondecreasing."""
    try:
        version = mask._version
    except RuntimeError:  # an inference-mode tensor keeps no version counter
        return
    setattr(mask, _ATTRIBUTE, (rows, columns, version))


def known(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(rows, columns)`` of ``mask``'s ``True`` entries if recorded and still current."""
    entry = getattr(mask, _ATTRIBUTE, None)
    if entry is None:
        return None
    rows, columns, version = entry
    try:
        if mask._version != version:
            return None
    except RuntimeError:
        return None
    return rows, columns
