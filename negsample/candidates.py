"""Candidate distributions over each user's complement: uniform, or by item popularity.

A sampler draws its candidates (the hard sampler's ``num_candidates``, the
uniform sampler's negatives) from one of these distributions. Both are
restricted *exactly* to the user's complement ``C_u`` (the items that are not
known positives of ``u``) and neither uses a rejection loop:

* :class:`UniformCandidates`: ``q_u(i) = 1 / |C_u|``. Random bits ``b`` give
  the item ``x = b mod num_items`` when it is not a positive of ``u``, else the
  ``r``-th non-positive, ``r + #{j : p_j - j <= r}``, for
  ``r = (b // num_items) mod |C_u|``.
* :class:`PopularityCandidates`: ``q_u(i) = w_i / W_u`` with
  ``w_i = popularity(i) ** alpha`` (popularity: the item's number of
  interactions in the index) and ``W_u`` the total weight of ``C_u``. Random
  bits give an item drawn by weight over the whole catalogue (an alias table)
  when it is not a positive of ``u``; else a draw from ``C_u`` itself: the
  complement splits into the gaps between consecutive positives, and a uniform
  ``r`` in ``[0, W_u)`` picks the gap by a binary search over the row's
  cumulative gap weights, then the item inside the gap by a binary search over
  the items' global cumulative weights.

Each class has a batched ``draw`` (no loop over rows, no host synchronisation)
and a per-row ``reference_draw`` written as directly as possible; given the
same bits they agree (exactly for integer weights, that is ``alpha`` 0 or 1;
up to float64 rounding at the boundaries between items otherwise).
"""

from __future__ import annotations

import math
import os
from bisect import bisect_right
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from negsample._checks import _short
from negsample._filter import PairFilter, can_filter
from negsample.errors import EmptyComplementError
from negsample.index import NO_NEGATIVE, PositiveIndex, _count_at_most

__all__ = ["CandidateSource", "PopularityCandidates", "UniformCandidates", "make_candidates"]

_UNIT_53 = 2.0**-53
_COMPACTING_DEVICES = ("cpu",)
"""Devices where uniform draws search only the candidates the filter flags (``nonzero``
gives data-dependent shapes: a host synchronisation on an accelerator)."""


def _gather(flat: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``flat[positions]`` for a 1-D ``flat``; ``index_select`` is several times faster on CPU."""
    return flat.index_select(0, positions.reshape(-1)).view(positions.shape)


def _unit_interval(bits: torch.Tensor) -> torch.Tensor:
    """``float64`` uniforms in ``[0, 1)`` with 53 random bits, from draws in ``[0, 2**62)``."""
    return (bits >> 9).to(torch.float64) * _UNIT_53


def _unit_interval_scalar(bits: int) -> float:
    """:func:`_unit_interval` for one Python int (the same value, exactly)."""
    return (bits >> 9) * _UNIT_53


class UniformCandidates:
    """Uniform over each user's non-positive items: ``q_u(i) = 1 / |C_u|``.

    A draw from random bits ``b`` first tries the item ``x = b mod num_items``,
    uniform over the whole catalogue, and keeps it when it is not a positive of
    the user. Otherwise (probability ``|P_u| / num_items``) it takes the
    ``r``-th non-positive for ``r = (b // num_items) mod |C_u|``. Each
    non-positive then has probability
    ``1 / num_items + (|P_u| / num_items) / |C_u| = 1 / |C_u|``: exact, with a
    fixed amount of work and no rejection loop. The exact membership test and
    the complement search are only needed where a small filter over the
    index's pairs says the item may be a positive, about 4% of draws; on CPU
    only those are searched. The filter (1 to 2 bytes per interaction) is built
    once per CPU index, by the first uniform source over it.

    Args:
        index: The users' known positives.

    Example:
        >>> index = PositiveIndex.from_dict({0: [0, 2]}, num_items=5)
        >>> source = UniformCandidates(index)
        >>> source.draw(torch.tensor([0]), torch.tensor([[1, 3, 4, 0, 5 + 2]])).tolist()
        [[1, 3, 4, 1, 3]]
        >>> log_q = source.log_prob(torch.tensor([0]), torch.tensor([[1]]))
        >>> round(float(log_q), 4)  # log(1/3)
        -1.0986
    """

    name = "uniform"

    def __init__(self, index: PositiveIndex) -> None:
        if not isinstance(index, PositiveIndex):
            raise TypeError(f"index must be a PositiveIndex, got {type(index).__name__}")
        self.index = index
        self._filter = _pair_filter(index)

    def __repr__(self) -> str:
        return "UniformCandidates()"

    @property
    def nbytes(self) -> int:
        """The number of bytes this source holds beyond the index (its membership filter)."""
        return 0 if self._filter is None else self._filter.nbytes

    def to(self, device: torch.device | str) -> UniformCandidates:
        """The same distribution over ``index.to(device)``."""
        device = torch.device(device)
        index = self.index.to(device)
        moves = self._filter is not None and device.type in _COMPACTING_DEVICES
        if moves and "pair_filter" not in index._derived:
            index._derived["pair_filter"] = self._filter.to(device)  # type: ignore[union-attr]
        return UniformCandidates(index)

    def check(self, users: torch.Tensor) -> None:
        """Raise :class:`~negsample.EmptyComplementError` for users with no negative."""
        self.index.check_samplable(users)

    def _empty(self, users: torch.Tensor) -> torch.Tensor:
        """Per valid user id, whether it has nothing to draw from (no host read-back)."""
        return self.index._complement_sizes(users) <= 0

    def draw(self, users: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """One candidate per entry of ``bits`` (``(B, k)``) for each row's user (``users`` 1-D).

        See the class notes. On CPU only the draws that the filter flags are
        searched; elsewhere every draw is, with the same result and no
        data-dependent shapes (so no host synchronisation). A user with no
        non-positive gets :data:`~negsample.NO_NEGATIVE` in every entry.
        """
        num_items = self.index.num_items

        def second_stage(rows: torch.Tensor, take: _Take) -> torch.Tensor:
            return self.index._draw_complement(rows, take(bits) // num_items)

        return _replace_positives(self.index, self._filter, users, bits % num_items, second_stage)

    def log_prob(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``log q_u(i) = -log |C_u|`` (``float64``, shape of ``items``; ``users`` 1-D).

        NaN where ``items`` holds :data:`~negsample.NO_NEGATIVE`.
        """
        sizes = self.index._complement_sizes(users).to(torch.float64)
        return torch.where(items >= 0, (-torch.log(sizes))[:, None], math.nan)

    # The per-row oracle.

    def reference_draw(self, user: int, bits: list[int]) -> list[int]:
        """The draw of :meth:`draw`, one ``b`` at a time, as the class notes describe.

        ``x = b % num_items`` unless it is a positive, else the ``r``-th
        non-positive ``r + #{j : p_j - j <= r}`` for ``r = (b // num_items) % n``;
        :data:`~negsample.NO_NEGATIVE` for a user with ``n = 0``.
        """
        positives = self.index.positives(user).tolist()
        known = set(positives)
        q = [p - j for j, p in enumerate(positives)]
        num_items = self.index.num_items
        n = num_items - len(positives)
        if n == 0:
            return [NO_NEGATIVE] * len(bits)
        drawn = []
        for b in bits:
            item = b % num_items
            if item in known:
                r = (b // num_items) % n
                item = r + bisect_right(q, r)
            drawn.append(item)
        return drawn

    def reference_log_prob(self, user: int, items: list[int]) -> list[float]:
        """``-log(n)`` for each item, ``n`` the user's number of non-positives (NaN for none)."""
        n = self.index.num_items - len(self.index.positives(user))
        return [-math.log(n) if item >= 0 else math.nan for item in items]


def _pair_filter(index: PositiveIndex) -> PairFilter | None:
    """The index's :class:`~negsample._filter.PairFilter`, built once per index.

    ``None`` (every draw searched) on a device that does not compact the flagged
    draws (it would go unused there), for an index without positives, for ids
    beyond the filter's hash, or while ``torch.compile`` traces (the build runs
    NumPy).
    """
    cached: PairFilter | None = index._derived.get("pair_filter")
    if cached is not None or torch.compiler.is_compiling():
        return cached
    if index.device.type not in _COMPACTING_DEVICES:
        return None
    if not (index.num_interactions and can_filter(index.num_users, index.num_items)):
        return None
    built = PairFilter(index.indptr.cpu().numpy().astype(np.int64), index.indices.cpu().numpy())
    built = built.to(index.device)
    index._derived["pair_filter"] = built
    return built


_Take = Callable[[torch.Tensor], torch.Tensor]
"""Selects, from a ``(B, k)`` tensor, the entries a second stage is computed for, as ``(n, k')``."""


def _replace_positives(
    index: PositiveIndex,
    pair_filter: PairFilter | None,
    users: torch.Tensor,
    first: torch.Tensor,
    second: Callable[[torch.Tensor, _Take], torch.Tensor],
) -> torch.Tensor:
    """Each first-stage item that is not a positive of its row's user, else a second-stage item.

    ``first`` is a fresh ``(B, k)`` ``int64`` tensor (it may be written into);
    ``users`` the rows' users. ``second(rows, take)`` returns the second-stage
    items for the entries that ``take`` selects from any ``(B, k)`` tensor, one
    row of the result per user in ``rows``. On a device in
    ``_COMPACTING_DEVICES`` with a filter, only the entries the filter flags are
    tested and only the positives among them are redrawn; elsewhere every entry
    is, with fixed shapes. Both give the same result.
    """
    if pair_filter is not None and first.device.type in _COMPACTING_DEVICES:
        # Traced, the compaction (data-dependent shapes) runs eagerly between two graphs.
        replace = _eager_replace_flagged() if torch.compiler.is_compiling() else _replace_flagged
        flagged: torch.Tensor = replace(index, pair_filter, users, first, second)
        return flagged
    positive = index._is_positive(users[:, None].expand_as(first), first)
    return torch.where(positive, second(users, lambda table: table), first)


_EAGER: list[Callable[..., torch.Tensor]] = []


def _eager_replace_flagged() -> Callable[..., torch.Tensor]:
    """:func:`_replace_flagged` under ``torch.compiler.disable``, made on first use.

    Made only while ``torch.compile`` traces, so that importing negsample does
    not import dynamo (about 2 s).
    """
    if not _EAGER:
        _EAGER.append(torch.compiler.disable(_replace_flagged))  # type: ignore[no-untyped-call]
    return _EAGER[0]


def _replace_flagged(
    index: PositiveIndex,
    pair_filter: PairFilter,
    users: torch.Tensor,
    first: torch.Tensor,
    second: Callable[[torch.Tensor, _Take], torch.Tensor],
) -> torch.Tensor:
    """:func:`_replace_positives`, testing only what the filter says may be a positive.

    Its shapes depend on values (``torch.nonzero``), so ``torch.compile`` runs
    it eagerly, a graph break (an error under ``fullgraph=True``: see the
    tutorial's compile section).
    """
    width = first.shape[1]
    maybe = pair_filter.maybe_contains(users[:, None], first)
    where = torch.nonzero(maybe.view(-1)).view(-1)
    if where.numel() == 0:  # a shape, not a value: no synchronisation
        return first
    flat = first.view(-1)
    flagged_users = users.index_select(0, where // width)
    hit = index._is_positive(flagged_users, flat.index_select(0, where))
    where, flagged_users = where[hit], flagged_users[hit]

    def take(table: torch.Tensor) -> torch.Tensor:
        return table.reshape(-1).index_select(0, where)[:, None]

    redrawn = second(flagged_users, take)
    return flat.index_copy_(0, where, redrawn.view(-1)).view(first.shape)


def _alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's construction) for drawing ``i`` with probability ``w_i / W``.

    Column ``c`` (chosen uniformly) keeps ``c`` with probability ``keep[c]``
    and gives ``alias[c]`` otherwise. An item of weight 0 is never drawn:
    ``keep`` is 0 in its column and no column has it as an alias.
    """
    n = weights.size
    keep = np.zeros(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int64)
    total = float(weights.sum())
    if n == 0 or total <= 0:
        return keep, alias
    scaled = (weights * (n / total)).tolist()
    small = [i for i, v in enumerate(scaled) if v < 1.0]
    large = [i for i, v in enumerate(scaled) if v >= 1.0]
    while small and large:
        short, tall = small.pop(), large.pop()
        keep[short] = scaled[short]
        alias[short] = tall
        scaled[tall] = (scaled[tall] + scaled[short]) - 1.0
        (small if scaled[tall] < 1.0 else large).append(tall)
    for i in small + large:  # what rounding leaves over is (nearly) 1
        keep[i] = 1.0
    weightless = weights <= 0  # only possible among the leftovers through rounding
    keep[weightless] = 0.0
    alias[weightless & (alias == np.arange(n))] = int(np.argmax(weights))
    return keep, alias


def _row_cumsum(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cumulative sums of each run ``values[starts[u] : starts[u] + lengths[u]]``, run by run.

    The runs must cover ``values`` without overlapping. Each run's sums are the
    ones ``np.cumsum`` gives for the run alone, bit for bit. The runs are copied
    out ordered by length, so that the runs of one length form a
    ``(runs, length)`` block summed along its rows: one NumPy call per distinct
    length, of which there are at most ``sqrt(2 * values.size)``.
    """
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    sorted_starts = np.zeros(order.size, dtype=np.int64)
    np.cumsum(sorted_lengths[:-1], out=sorted_starts[1:])
    offset = np.repeat(starts[order] - sorted_starts, sorted_lengths)
    positions = offset + np.arange(offset.size)  # where each copied value came from
    copied = values[positions]
    bounds = np.flatnonzero(np.diff(sorted_lengths)) + 1
    for first, last in zip(np.r_[0, bounds], np.r_[bounds, order.size], strict=True):
        length = int(sorted_lengths[first]) if last > first else 0
        if length:
            block = copied[sorted_starts[first] : sorted_starts[first] + (last - first) * length]
            np.cumsum(block.reshape(-1, length), axis=1, out=block.reshape(-1, length))
    out = np.empty_like(values)
    out[positions] = copied
    return out


_BUILD_BYTES_PER_ITEM = 128
_BUILD_BYTES_PER_INTERACTION = 80
_BUILD_BYTES_PER_USER = 120
"""Peak host memory of :meth:`PopularityCandidates._build`, measured with ``tracemalloc``
(about 125, 60 and 113 bytes), rounded up. Most of the per-item part is the alias
table's construction over Python lists."""


def _physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or ``None`` where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_build_memory(index: PositiveIndex) -> None:
    """Raise ``ValueError`` if building popularity tables for ``index`` cannot fit in memory."""
    needed = (
        _BUILD_BYTES_PER_ITEM * index.num_items
        + _BUILD_BYTES_PER_INTERACTION * index.num_interactions
        + _BUILD_BYTES_PER_USER * index.num_users
    )
    available = _physical_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"candidates='popularity' over an index of num_items={index.num_items}, "
            f"{index.num_interactions} interactions and {index.num_users} users needs about "
            f"{needed / 2**30:.1f} GiB of memory to build its tables, more than this machine's "
            f"{available / 2**30:.1f} GiB; use candidates='uniform', which keeps no per-item tables"
        )


class PopularityCandidates:
    """Proportional to item popularity over each user's non-positives: ``q_u(i) = w_i / W_u``.

    ``w_i = popularity(i) ** alpha``, where ``popularity(i)`` is the number of
    users with item ``i`` as a positive in ``index``, and ``W_u`` is the sum of
    ``w_i`` over the user's non-positive items. ``alpha = 0`` weighs every item
    1 (the uniform distribution); ``alpha = 1`` is proportional to popularity.
    With ``alpha > 0`` an item nobody interacted with has weight 0 and is never
    drawn; a user whose non-positives all have weight 0 cannot be sampled for
    (:meth:`check` raises :class:`~negsample.EmptyComplementError`).

    Exact: no rejection loop, and a known positive or a zero-weight item is
    never returned whatever the rounding. The probabilities are those of the
    float64 weights, up to float64 rounding (a relative error of about
    ``1e-16 * num_items``) and 53-bit uniforms. Each user's cumulative
    weights are summed over that user's row alone, so their error does not
    grow with the number of users.

    Memory: one ``float64`` per interaction (each positive's cumulative gap
    weight) and a copy of the item ids, one ``float64`` per user, five arrays
    per item (weights, cumulative weights, the alias table, the last weighted
    item), and the index's pair filter (shared with uniform candidates).
    Building the tables takes more, on the CPU, at its peak about
    ``128 * num_items + 80 * num_interactions + 120 * num_users`` bytes; an
    index for which that exceeds the machine's memory is refused up front
    (``ValueError``) rather than failing part way (or swapping) after minutes.

    Two stages (see :meth:`draw` and the algorithm page): an item drawn by
    weight over the whole catalogue is kept unless it is a positive of the
    user, which the pair filter rules out for most draws without a search;
    a positive is replaced by an exact draw from the user's complement.

    Args:
        index: The users' known positives (also where popularity is counted).
        alpha: Exponent in ``[0, 1]``.

    Example:
        >>> index = PositiveIndex.from_dict({0: [0], 1: [0, 1], 2: [3]}, num_items=5)
        >>> source = PopularityCandidates(index, alpha=1.0)
        >>> source.weights.tolist()  # item 2 and item 4: nobody's positive, weight 0
        [2.0, 1.0, 0.0, 1.0, 0.0]
        >>> torch.exp(source.log_prob(torch.tensor([0]), torch.tensor([[1, 3]]))).tolist()
        [[0.5, 0.5]]
        >>> bits = torch.arange(0, 2**62, 2**56)[None]  # 64 evenly spread draws
        >>> sorted(set(source.draw(torch.tensor([0]), bits).tolist()[0]))
        [1, 3]
    """

    name = "popularity"

    def __init__(self, index: PositiveIndex, alpha: float = 0.75) -> None:
        if not isinstance(index, PositiveIndex):
            raise TypeError(f"index must be a PositiveIndex, got {type(index).__name__}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise TypeError(f"alpha must be a float in [0, 1], got {_short(alpha)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.index = index
        self.alpha = float(alpha)
        _check_build_memory(index)
        self._build()  # on the CPU, then the tables go where the index lives
        for name in self._TABLES:
            setattr(self, name, getattr(self, name).to(index.device))
        self._filter = _pair_filter(index)

    def _build(self) -> None:
        """Precompute the cumulative weights, on the CPU, once."""
        index = self.index.to("cpu")
        num_items = index.num_items
        indptr = index.indptr.numpy().astype(np.int64)
        items = index.indices.numpy().astype(np.int64)
        popularity = np.bincount(items, minlength=num_items)
        weights = popularity.astype(np.float64) ** self.alpha  # 0 ** 0 == 1: alpha=0 is uniform
        cumulative = np.zeros(num_items + 1, dtype=np.float64)
        np.cumsum(weights, out=cumulative[1:])
        # Row u's complement is deg + 1 gaps: before each positive, and after the last.
        # Gap j of a row spans items [p_{j-1} + 1, p_j); its weight is C[p_j] - C[p_{j-1} + 1].
        num_users = indptr.size - 1
        degrees = np.diff(indptr)
        nnz = items.size
        row_of = np.repeat(np.arange(num_users), degrees)
        first = np.zeros(nnz, dtype=bool)
        first[indptr[:-1][degrees > 0]] = True
        gap_start = np.where(first, 0, np.concatenate(([0], items[:-1] + 1)))
        last_start = np.zeros(num_users, dtype=np.int64)
        has_row = degrees > 0
        last_start[has_row] = items[indptr[1:][has_row] - 1] + 1
        # Interleave each row's deg gap weights with its final gap: row u occupies slots
        # indptr[u] + u ... indptr[u + 1] + u.
        slots = np.empty(nnz + num_users, dtype=np.float64)
        gap_slot = np.arange(nnz) + row_of
        end_slot = indptr[1:] + np.arange(num_users)
        slots[gap_slot] = cumulative[items] - cumulative[gap_start]
        slots[end_slot] = cumulative[num_items] - cumulative[last_start]
        # E_j (weight of the user's non-positives before p_j) and W_u, summed row by row: one
        # running sum over all rows would give each row the rounding error of all earlier
        # rows' mass. Sums of non-negative gaps never decrease along a row, so a gap searched
        # for always has weight > 0.
        running = _row_cumsum(slots, indptr[:-1] + np.arange(num_users), degrees + 1)
        gap_cumulative = running[gap_slot]
        totals = running[end_slot]
        positive = np.where(weights > 0, np.arange(num_items), -1)
        last_weighted = np.maximum.accumulate(positive)  # last item <= i with w > 0, or -1
        self._popularity = torch.from_numpy(popularity)
        self._weights = torch.from_numpy(weights)
        self._cumulative = torch.from_numpy(cumulative)
        self._totals = torch.from_numpy(totals)
        # A one-element pad keeps the batched gathers valid for an index with no interactions.
        self._gap_cumulative = torch.from_numpy(gap_cumulative if nnz else np.zeros(1))
        self._items = torch.from_numpy(items if nnz else np.zeros(1, dtype=np.int64)).to(
            index.indices.dtype
        )
        self._last_weighted = torch.from_numpy(last_weighted).to(index.indices.dtype)
        keep, alias = _alias_table(weights)
        self._alias_keep = torch.from_numpy(keep)
        self._alias = torch.from_numpy(alias).to(index.indices.dtype)
        self._reference_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._reference_alias = (keep.tolist(), alias.tolist())  # the oracle's plain lists

    def __repr__(self) -> str:
        return f"PopularityCandidates(alpha={self.alpha})"

    @property
    def popularity(self) -> torch.Tensor:
        """Interactions per item in the index (``int64``, ``(num_items,)``, on the CPU)."""
        return self._popularity

    @property
    def weights(self) -> torch.Tensor:
        """``popularity ** alpha`` per item (``float64``, ``(num_items,)``)."""
        return self._weights

    @property
    def nbytes(self) -> int:
        """Bytes of the precomputed tables and the index's pair filter (the index not included)."""
        tables: list[torch.Tensor] = [getattr(self, name) for name in self._TABLES]
        pairs = 0 if self._filter is None else self._filter.nbytes
        return pairs + sum(t.numel() * t.element_size() for t in tables)

    _TABLES = (
        "_weights",
        "_cumulative",
        "_totals",
        "_gap_cumulative",
        "_items",
        "_last_weighted",
        "_alias_keep",
        "_alias",
    )

    def to(self, device: torch.device | str) -> PopularityCandidates:
        """The same distribution over ``index.to(device)``, tables moved, not recomputed."""
        moved = PopularityCandidates.__new__(PopularityCandidates)
        moved.__dict__.update(self.__dict__)
        moved.index = self.index.to(device)
        for name in self._TABLES:
            setattr(moved, name, getattr(self, name).to(device))
        moved._filter = _pair_filter(moved.index)  # built on a CPU index, none elsewhere
        return moved

    def _empty(self, users: torch.Tensor) -> torch.Tensor:
        """Per valid user id, whether it has nothing to draw from (no host read-back)."""
        return self._totals.index_select(0, users) <= 0

    def check(self, users: torch.Tensor) -> None:
        """Raise :class:`~negsample.EmptyComplementError` for users with no weighted negative."""
        empty = self._empty(users)
        if users.numel() and bool(empty.any()):
            bad = torch.unique(users[empty])
            raise EmptyComplementError(
                bad.tolist(),
                self.index.num_items,
                reason=(
                    f"has no non-positive item of non-zero weight under "
                    f"candidates='popularity', alpha={self.alpha} (an item no user interacted "
                    f"with weighs 0 when alpha > 0)"
                ),
            )

    def draw(self, users: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """One item per bit, ``P(i) = w_i / W_u`` over each row's complement.

        ``users`` is a 1-D ``int64`` tensor of users that :meth:`check` accepts;
        ``bits`` is ``(B, k)`` draws in ``[0, 2**62)``. Returns ``int64`` items.
        Two stages, as for uniform candidates: a uniform ``U`` draws an item
        ``x`` with probability ``w_x / W`` over the whole catalogue from an
        alias table (column ``c = floor(U * N)``, kept with probability
        ``keep[c]`` by the fraction ``f = U * N - c``, else ``alias[c]``); if
        ``x`` is a positive of the user, ``f`` rescaled to ``[0, 1)`` within the
        branch taken is a fresh uniform for an exact draw from the complement.
        A user with ``W_u = 0`` (no non-positive of positive weight) gets
        :data:`~negsample.NO_NEGATIVE` in every entry, without a check that
        would synchronise.
        """
        first, fraction, keep, kept = self._catalogue_draw(bits)

        def second_stage(rows: torch.Tensor, take: _Take) -> torch.Tensor:
            f, p = take(fraction), take(keep)
            within = torch.where(take(kept), f / p, (f - p) / (1.0 - p))
            return self._draw_from_complement(rows, within)

        items = _replace_positives(self.index, self._filter, users, first, second_stage)
        return torch.where(self._empty(users)[:, None], NO_NEGATIVE, items)

    def _catalogue_draw(
        self, bits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 1 of :meth:`draw`: an item with probability ``w_x / W`` over the catalogue.

        Returns the items (``int64``) and, for the second stage, the fraction
        within each alias column, the column's ``keep`` and whether it was kept.
        """
        num_items = self.index.num_items
        scaled = _unit_interval(bits) * num_items
        column = scaled.long().clamp_(max=num_items - 1)
        fraction = scaled - column
        keep = _gather(self._alias_keep, column)
        kept = fraction < keep
        first = torch.where(kept, column, _gather(self._alias, column).long())
        return first, fraction, keep, kept

    def _draw_from_complement(self, users: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
        """The item at ``unit * W_u`` of each row's complement, ``unit`` ``(B, k)`` in ``[0, 1)``."""
        index = self.index
        totals = self._totals.index_select(0, users)[:, None]
        # r in [0, W_u), kept below W_u whatever the rounding of the product.
        target = torch.minimum(unit * totals, torch.nextafter(totals, 0 * totals))
        start = index.indptr.index_select(0, users).long()[:, None]
        end = index.indptr.index_select(0, users + 1).long()[:, None]
        # The gap: k = #{j : E_j <= r}, counted within the row (position start + k).
        position = start + _count_at_most(
            self._gap_cumulative, start, end, target, index._search_steps
        )
        has_before = position > start
        before = (position - 1).clamp(min=0)
        below = torch.where(has_before, _gather(self._gap_cumulative, before), 0.0)
        low = torch.where(has_before, _gather(self._items, before).long() + 1, 0)
        has_after = position < end
        after = position.clamp(max=self._items.numel() - 1)
        high = torch.where(has_after, _gather(self._items, after).long() - 1, index.num_items - 1)
        # The item: C[i] <= C[low] + (r - E_{k-1}) < C[i + 1], so w_i > 0 and i >= low.
        within = _gather(self._cumulative, low) + (target - below)
        item = torch.searchsorted(self._cumulative, within, right=True) - 1
        # Rounding may carry it past the gap's end: take the gap's last item of positive weight.
        fallback = _gather(self._last_weighted, high.clamp(min=0)).long()
        return torch.where(item > high, fallback, item)

    def log_prob(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``log w_i - log W_u`` (``float64``, shape of ``items``; ``users`` 1-D).

        NaN where ``items`` holds :data:`~negsample.NO_NEGATIVE`.
        """
        log_w = torch.log(self._weights[items.clamp(min=0)])
        return torch.where(items >= 0, log_w - torch.log(self._totals[users])[:, None], math.nan)

    # The per-row oracle.

    def _reference_row(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's complement and its cumulative weights, written out (cached per user)."""
        if user not in self._reference_rows:
            complement = np.setdiff1d(
                np.arange(self.index.num_items), self.index.positives(user).cpu().numpy()
            )
            cumulative = np.cumsum(self._weights.cpu().numpy()[complement])
            self._reference_rows[user] = (complement, cumulative)
        return self._reference_rows[user]

    def reference_draw(self, user: int, bits: list[int]) -> list[int]:
        """The two stages of :meth:`draw`, one ``b`` at a time.

        The alias table over the catalogue, then, for a positive, the inverse
        CDF over the explicit complement list; :data:`~negsample.NO_NEGATIVE`
        for a user whose complement weighs nothing.
        """
        complement, cumulative = self._reference_row(user)
        total = float(cumulative[-1]) if cumulative.size else 0.0
        if total <= 0:
            return [NO_NEGATIVE] * len(bits)
        known = set(self.index.positives(user).tolist())
        keep_of, alias_of = self._reference_alias
        num_items = self.index.num_items
        picks = []
        for b in bits:
            scaled = _unit_interval_scalar(b) * num_items
            column = min(int(scaled), num_items - 1)
            fraction, keep = scaled - column, keep_of[column]
            if fraction < keep:
                item, within = column, fraction / keep
            else:
                item, within = alias_of[column], (fraction - keep) / (1.0 - keep)
            if item in known:
                target = min(within * total, math.nextafter(total, 0.0))
                item = int(complement[np.searchsorted(cumulative, target, side="right")])
            picks.append(item)
        return picks

    def reference_log_prob(self, user: int, items: list[int]) -> list[float]:
        """``log(w_i / W_u)`` from the explicit complement list (NaN for no negative)."""
        _, cumulative = self._reference_row(user)
        weights = self._weights.cpu().numpy()
        return [
            math.log(float(weights[i])) - math.log(float(cumulative[-1])) if i >= 0 else math.nan
            for i in items
        ]


CandidateSource = UniformCandidates | PopularityCandidates
"""Either candidate distribution."""

_CANDIDATES = ("uniform", "popularity")


def make_candidates(
    index: PositiveIndex, candidates: Literal["uniform", "popularity"], alpha: float | None
) -> CandidateSource:
    """Build the distribution a sampler's ``candidates`` / ``alpha`` arguments name.

    Example:
        >>> index = PositiveIndex.from_dict({0: [1]}, num_items=3)
        >>> make_candidates(index, "popularity", None)
        PopularityCandidates(alpha=0.75)
    """
    if candidates not in _CANDIDATES:
        raise ValueError(f"candidates must be one of {_CANDIDATES}, got {_short(candidates)}")
    if candidates == "uniform":
        if alpha is not None:
            raise ValueError(
                f"alpha={_short(alpha)} only applies to candidates='popularity'; "
                f"leave it out for uniform candidates"
            )
        return UniformCandidates(index)
    return PopularityCandidates(index, 0.75 if alpha is None else alpha)
