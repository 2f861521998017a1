"""The vectorized selection kernels of the hard part: best slots, free slots, Gumbel noise.

:func:`_highest_slots` takes the hard part (the highest keys, ties to the lower
slot), :func:`_smallest_free_slots` the random part (the smallest slot keys
among the slots the hard part left), each what a stable sort gives, in less
time; :func:`_smallest_slots` orders random keys (the draw among the top ``N``
of ``selection="dns_mn"``) and :func:`_lowest_slots` distances (the closest
candidates of ``selection="ahns"``). :func:`_gumbel` turns random bits into
the noise of ``selection="softmax"``, :func:`_ahns_target` positive scores into
the targets of ``selection="ahns"``; the per-row reference calls these two as
well, so that both paths compute the same numbers. ``tests/test_selection.py``
checks the kernels against torch's stable sort.

Their one caller is the vectorized path in ``_hard``, beside the per-row
reference that states the same order in plain Python (``_best_first``).
"""

from __future__ import annotations

from typing import Any

import torch

_TAKEN = torch.iinfo(torch.int64).max
_TAKEN_LOW = torch.iinfo(torch.int64).min


def _gumbel(bits: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise (``float64``) from draws in ``[0, 2**62)``: ``-log(-log(u))``."""
    unit = ((bits >> 10).to(torch.float64) + 0.5) * 2.0**-52  # in (0, 1), never 0 or 1
    return -torch.log(-torch.log(unit))


def _ahns_target(positive_scores: torch.Tensor, alpha: float, beta: float, p: int) -> torch.Tensor:
    """AHNS's target score ``beta * (positive_score + alpha) ** (p + 1)`` in ``float64``.

    The integer power is taken by repeated squaring, from multiplications and
    (for ``p + 1 < 0``) one division, each correctly rounded on every device
    and for any number of elements: the per-row reference, which calls this on
    one row, gets the numbers the batch gets (``torch.pow`` may take another
    code path for one element than for many, and differ in the last bit).
    ``(s + alpha) == 0`` with ``p + 1 < 0`` gives an infinite target, as ``pow`` does.
    """
    base = positive_scores.to(torch.float64) + alpha
    exponent = p + 1
    power = torch.ones_like(base)
    factor, left = base, abs(exponent)
    while left:
        if left & 1:
            power = power * factor
        left >>= 1
        if left:
            factor = factor * factor
    if exponent < 0:
        power = 1.0 / power
    return beta * power


_PACKABLE_SCORES = (torch.float32, torch.float16, torch.bfloat16)
_ARGMIN_ROUNDS_MAX = 4


def _highest_slots(keys: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` slots of each row with the highest keys, highest first, ties to the lower slot.

    What a stable descending sort gives. For ``float32`` (and half) scores the
    keys are made distinct (:func:`_unique_score_keys`) and ``k`` rounds of
    ``argmax`` (a ``topk`` for larger ``k``) take a third of the sort's time.
    """
    if k == 0:
        return torch.empty((keys.shape[0], 0), dtype=torch.int64, device=keys.device)
    if keys.dtype not in _PACKABLE_SCORES:
        return torch.sort(keys, dim=1, descending=True, stable=True).indices[:, :k]
    unique = _unique_score_keys(keys)
    if k > _ARGMIN_ROUNDS_MAX:
        return torch.topk(unique, k, dim=1).indices
    return _rounds(unique, k, torch.argmax, _TAKEN_LOW)


def _rounds(keys: torch.Tensor, k: int, pick: Any, taken: int) -> torch.Tensor:
    """``k`` rounds of ``pick`` (``argmax`` / ``argmin``: the first slot among equal keys).

    Each picked slot's key (in ``keys``, which is written into) is then set to
    ``taken``, which no other key equals.
    """
    picks = []
    for round_ in range(k):
        chosen = pick(keys, dim=1, keepdim=True)
        picks.append(chosen)
        if round_ + 1 < k:
            keys.scatter_(1, chosen, taken)
    return torch.cat(picks, dim=1)


def _unique_score_keys(scores: torch.Tensor) -> torch.Tensor:
    """``int64`` keys in the order of ``(score, -slot)``, all distinct within a row.

    A float32 score's bits, read as an ``int32`` with the magnitude bits of
    negative numbers flipped, are ordered like the floats. ``-0.0`` is first
    made ``+0.0`` (the floats compare equal) and every NaN ranks above ``+inf``,
    as in torch's sort. The slot goes in the low bits, reversed so that the
    lower slot wins a tie.
    """
    values = scores.to(torch.float32) + 0.0  # exact for half types; -0.0 + 0.0 is +0.0
    bits = values.view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    ordered = torch.where(torch.isnan(values), torch.iinfo(torch.int32).max, ordered)
    width = (scores.shape[1] - 1).bit_length()
    tie_break = (1 << width) - 1 - torch.arange(scores.shape[1], device=scores.device)
    return (ordered.to(torch.int64) << width) | tie_break


def _smallest_free_slots(slot_keys: torch.Tensor, taken: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` slots not in ``taken`` with the smallest keys, smallest first, ties to the lower slot.

    What a stable ascending sort gives. For small ``k``, ``k`` rounds of
    ``argmin`` (which returns the first of equal minima) are cheaper than the
    sort. The keys are below ``_TAKEN`` (draws are below ``2**62``).
    """
    if k == 0:
        return torch.empty((slot_keys.shape[0], 0), dtype=torch.int64, device=slot_keys.device)
    return _smallest_slots(slot_keys.scatter(1, taken, _TAKEN), k)


def _smallest_slots(keys: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` slots with the smallest ``int64`` keys, smallest first, ties to the lower slot.

    What a stable ascending sort gives; ``keys`` (below ``_TAKEN``, except for
    slots that must come last) is written into, so pass a tensor of your own.
    """
    if k == 0:
        return torch.empty((keys.shape[0], 0), dtype=torch.int64, device=keys.device)
    if k > _ARGMIN_ROUNDS_MAX:
        return torch.sort(keys, dim=1, stable=True).indices[:, :k]
    return _rounds(keys, k, torch.argmin, _TAKEN)


def _lowest_slots(keys: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` slots with the lowest float keys, lowest first, ties to the lower slot.

    A stable ascending sort: NaN ranks after ``+inf`` (``argmin`` would take a
    NaN first, hence no rounds here).
    """
    return torch.sort(keys, dim=1, stable=True).indices[:, :k]
