"""Top-k ranking with exclusions and exact tie order, shared by recommend and evaluate."""

from __future__ import annotations

import math

import torch

from negsample.index import PositiveIndex


def check_no_nan(scores: torch.Tensor, users: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` naming a user and item if ``(B, num_items)`` scores hold NaN.

    Reads values back to the host.
    """
    if not may_hold_nan(scores):
        return
    nan = torch.isnan(scores)
    if bool(nan.any()):
        row, item = nan.nonzero()[0].tolist()
        raise ValueError(
            f"{what} NaN (e.g. for user {int(users[row])}, item {item}); "
            f"{int(nan.sum())} NaN scores in this batch"
        )


def may_hold_nan(scores: torch.Tensor) -> bool:
    """``False`` only if ``scores`` holds no NaN; reads one value back to the host.

    A NaN makes the sum NaN, so a sum that is not NaN proves there is none. The
    sum can be NaN without one (``inf - inf``): callers then look element-wise.
    That is several times cheaper than ``isnan(scores).any()`` on a CPU.
    """
    return math.isnan(float(scores.sum()))


def top_k_items(
    scores: torch.Tensor,
    k: int,
    *,
    exclude: PositiveIndex | None = None,
    users: torch.Tensor | None = None,
    overwrite: bool = False,
) -> torch.Tensor:
    """The ``k`` best items of each row of ``scores``, ``-1`` where a row runs out.

    Rank by (tier, score, lower item id), highest first. Tier 2: ordinary
    scores; 1: NaN; 0: the row user's positives in ``exclude``, which are never
    returned (their slots become ``-1``). ``users`` gives each row's user id
    when ``exclude`` is set. Inputs are trusted: ``1 <= k <= num_items``.
    With ``overwrite`` the excluded scores may be overwritten in ``scores``
    (a caller's own temporary) instead of a copy.
    """
    num_items = scores.shape[1]
    # Excluded and NaN scores are set to -inf so that top-k on the scores alone
    # finds the k-th best value (on a copy: the caller's scores stay as they are).
    nan = torch.isnan(scores) if may_hold_nan(scores) else None
    if nan is not None:
        masked = scores.masked_fill(nan, -math.inf)
    elif exclude is not None:
        masked = scores if overwrite else scores.clone()
    else:
        masked = scores
    if exclude is not None:
        assert users is not None
        rows, items = excluded_pairs(exclude, users)
        masked[rows, items] = -math.inf
    # One extra value tells whether a tie straddles the k-th place.
    top_values, top_indices = _top_values(masked, min(k + 1, num_items))
    threshold = top_values[:, k - 1 : k]
    # Fast path: no tie across the k-th place and a finite k-th value, so top-k
    # picked the right set and only the order within ties needs fixing. Other
    # rows take the exact path.
    slow_rows = torch.isinf(threshold[:, 0])
    if k < num_items:
        slow_rows |= top_values[:, k] == threshold[:, 0]
    slow = slow_rows.nonzero()[:, 0]
    ranked = _order_by_score_then_id(masked, top_indices[:, :k])
    if slow.numel():
        if nan is None:
            tier = torch.full((slow.numel(), num_items), 2, dtype=torch.int8, device=scores.device)
        else:
            tier = torch.where(nan[slow], 1, 2).to(torch.int8)
        if exclude is not None:
            assert users is not None
            tier[excluded_mask(exclude, users[slow])] = 0
        ranked[slow] = _top_k_ties_to_lower_id(masked[slow], tier, threshold[slow], k)
    if exclude is None:
        return ranked
    assert users is not None
    return ranked.masked_fill(exclude.contains(users[:, None], ranked, validate=False), -1)


# The CPU's top-k first keeps, per row, the groups of _GROUPS[0] items (strided: see
# _top_values) whose maxima are the row's largest, or of the next size where a row has
# fewer than _MIN_GROUPS_PER_PICK groups per value picked; top-k then sorts through a few
# hundred scores per row instead of every item's. (Groups of 8: a top-51 of 6,000 items,
# too few groups of 16, about 0.75x the time of a plain top-k.)
_GROUPS, _MIN_GROUPS_PER_PICK = (16, 8), 8


def _top_values(masked: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(masked, count, dim=1)``'s values, and indices of items holding them.

    The values are exactly top-k's. Among items of equal value the indices may
    be others than top-k's; where the ``count``-th value is below the one
    before it, the items of the first ``count - 1`` values are top-k's set.
    (Every item above the smallest kept value is in a kept group: else the
    ``count`` kept groups' maxima would be ``count`` items at least as large.)
    """
    batch, num_items = masked.shape
    size = next((g for g in _GROUPS if num_items // g >= _MIN_GROUPS_PER_PICK * count), None)
    if masked.device.type != "cpu" or not masked.is_contiguous() or size is None:
        top = torch.topk(masked, count, dim=1)
        return top.values, top.indices
    groups = num_items // size
    # Group g holds the items g, g + groups, g + 2 groups, ...: the maxima reduce over
    # the middle dim, a vectorised pass, where consecutive items would not vectorise.
    grouped = masked[:, : groups * size].view(batch, size, groups)
    kept = torch.topk(grouped.amax(dim=1), count, dim=1).indices
    within = torch.arange(0, groups * size, groups, device=masked.device)
    columns = (kept[:, :, None] + within).view(batch, count * size)
    if groups * size < num_items:  # the last, partial group is always kept
        tail = torch.arange(groups * size, num_items, device=masked.device)
        columns = torch.cat([columns, tail.expand(batch, -1)], dim=1)
    top = torch.topk(masked.gather(1, columns), count, dim=1)
    return top.values, columns.gather(1, top.indices)


def _order_by_score_then_id(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Sort each row of ``items`` by score, highest first, ties to the lower item id."""
    items = torch.sort(items, dim=1).values
    order = torch.sort(scores.gather(1, items), dim=1, descending=True, stable=True).indices
    return items.gather(1, order)


def _top_k_ties_to_lower_id(
    masked: torch.Tensor, tier: torch.Tensor, threshold: torch.Tensor, k: int
) -> torch.Tensor:
    """Exact top-k by (tier, score, lower id) for rows with ties at the k-th value."""
    above = masked > threshold
    # Items tied at the threshold fill the remaining slots, higher tier first,
    # then lower item id: rank them by tier, then by position.
    tied = masked == threshold
    needed = k - above.sum(dim=1, keepdim=True)
    tied_rank = torch.zeros_like(masked, dtype=torch.int64)
    ahead = torch.zeros_like(needed)
    for level in (2, 1, 0):
        at_level = tied & (tier == level)
        tied_rank = torch.where(at_level, ahead + at_level.cumsum(dim=1), tied_rank)
        ahead = ahead + at_level.sum(dim=1, keepdim=True)
    take = above | (tied & (tied_rank <= needed))
    items = take.nonzero()[:, 1].view(-1, k)  # row-major: ascending item ids per row
    # Stable sorts from the least to the most significant key.
    order = torch.sort(masked.gather(1, items), dim=1, descending=True, stable=True).indices
    items = items.gather(1, order)
    order = torch.sort(tier.gather(1, items), dim=1, descending=True, stable=True).indices
    return items.gather(1, order)


def excluded_pairs(index: PositiveIndex, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (position in ``users``) and item of every known positive of the batch's users.

    Gathered from the CSR rows of the batch's users without a loop.
    """
    starts = index.indptr[users].long()
    degrees = index.indptr[users + 1].long() - starts
    rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), degrees)
    first_of_row = torch.cumsum(degrees, dim=0) - degrees
    within_row = torch.arange(rows.numel(), device=users.device) - first_of_row[rows]
    return rows, index._items_at(starts[rows] + within_row)


def excluded_mask(index: PositiveIndex, users: torch.Tensor) -> torch.Tensor:
    """``(len(users), num_items)`` booleans: ``True`` at each user's known positives."""
    mask = torch.zeros((users.numel(), index.num_items), dtype=torch.bool, device=users.device)
    mask[excluded_pairs(index, users)] = True
    return mask
