"""Shared and in-batch negatives: :class:`~negsample.SharedNegativeSampler` and its mask kernels.

The same ``K`` candidates for every row of a batch (drawn from the whole
catalogue, or the batch's own positives for in-batch negatives), returned as
:class:`SharedNegatives` with the exact ``(B, K)`` mask of known positives.
The mask's reference and vectorized implementations sit side by side:

* ``_shared_mask_reference``: each row's positives as a Python set, each
  candidate looked up in it; the oracle.
* ``_shared_mask``: batched, with fixed shapes (each row padded to
  ``max_degree``, the covered slots marked by a running sum), except on the
  CPU, where ``_shared_mask_compacting`` expands only the hits.

The generator, random state and user checks come from ``_base``; the catalogue
draws (uniform, or Walker's alias table for popularity) from
:mod:`negsample.candidates`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from negsample import _hits
from negsample import candidates as _candidates_module
from negsample._checks import as_index_tensor, check_ids_in_range, check_int
from negsample._random import draw_bits
from negsample.candidates import UniformCandidates
from negsample.index import PositiveIndex
from negsample.samplers._base import Backend, _BaseSampler
from negsample.typing import IdsLike


@dataclass(frozen=True)
class SharedNegatives:
    """Negatives shared by every row of a batch, with the exact mask of known positives.

    What :meth:`negsample.SharedNegativeSampler.sample` and
    :meth:`negsample.SharedNegativeSampler.in_batch` return. Score them all at once with
    ``model(users[:, None], negatives.items[None, :])`` (a ``(B, K)`` matrix)
    and pass ``mask`` and ``log_prob`` to
    :class:`~negsample.SampledSoftmaxLoss`. Nothing here synchronises with the
    host until you read a value.

    Attributes:
        items: ``(K,)`` ``int64`` candidate items, the same for every row
            (repeats possible).
        mask: ``(B, K)`` bool, ``True`` exactly where ``items[k]`` is a known
            positive of row ``b``'s user (every copy of a repeated id): the
            negatives a loss must drop.
        log_prob: ``(K,)`` log-probability of one draw giving ``items[k]``
            (``log q``), in torch's default float dtype. For ``K`` i.i.d. draws,
            ``log_prob + log(K)`` is the ``log_q`` that makes a sampled
            softmax's sum an unbiased estimate of the full normaliser.

    Example:
        >>> index = PositiveIndex.from_dict({0: [1], 1: [2, 3]}, num_items=4)
        >>> sampler = SharedNegativeSampler(index, num_negatives=3, generator=0)
        >>> negatives = sampler.sample(torch.tensor([0, 1]))
        >>> negatives.items.shape, negatives.mask.shape, negatives.log_prob.shape
        (torch.Size([3]), torch.Size([2, 3]), torch.Size([3]))
        >>> torch.equal(negatives.mask[1], (negatives.items == 2) | (negatives.items == 3))
        True
    """

    items: torch.Tensor
    mask: torch.Tensor
    log_prob: torch.Tensor

    def __repr__(self) -> str:
        return (
            f"SharedNegatives(items={tuple(self.items.shape)}, mask={tuple(self.mask.shape)}, "
            f"log_prob={tuple(self.log_prob.shape)})"
        )


class SharedNegativeSampler(_BaseSampler):
    """Candidates shared by every row of a batch, for softmax losses over many negatives.

    ``sample(users)`` draws ``num_negatives`` (``K``) items i.i.d. from the whole
    catalogue (uniform, or proportional to ``popularity ** alpha``), the same
    ``K`` for every row, and returns them with a ``(B, K)`` mask that is
    ``True`` exactly where a candidate is a known positive of the row's user.
    Scoring is then one ``(B, d) x (d, K)`` matrix product instead of a gather
    of ``B x K`` item rows, so ``K`` can be in the thousands.

    Unlike the per-row samplers, the candidates are not restricted to each
    user's complement: a known positive can be drawn, and the mask says where,
    so that the loss drops it. A user with every item as a positive gets a row
    that is all mask (a finite loss of 0 with
    :class:`~negsample.SampledSoftmaxLoss`), not an error.

    The mask costs ``O(sum of the batch users' degrees * log K)`` for the
    searches (each row's positives are searched in the ``K`` sorted
    candidates, never the ``B x K`` pairs in the index) plus ``O(B x K)`` to
    lay it out. On the CPU the rows' positives are gathered exactly; on other
    devices each row is padded to the index's ``max_degree``, which keeps the
    shapes fixed (no host synchronisation with ``validate=False``).

    :meth:`in_batch` builds the same kind of negatives from the batch's own
    positive items (in-batch negatives), masked in the same exact way.

    Args:
        index: The users' known positives (also where popularity is counted).
        num_negatives: ``K``, the candidates per call, ``>= 1``.
        candidates: ``"uniform"`` (``q(i) = 1 / num_items``) or
            ``"popularity"`` (``q(i) = w_i / sum_j w_j`` with
            ``w_i = popularity(i) ** alpha``; an item nobody interacted with is
            never drawn when ``alpha > 0``).
        alpha: The popularity exponent in ``[0, 1]`` (default 0.75), popularity only.
        backend: ``"vectorized"`` (batched, no loop over rows) or
            ``"reference"`` (a per-row loop over Python sets building the mask;
            the oracle). Both return identical tensors for the same generator state.
        generator: ``None`` (torch's default generator), an int seed, or a
            ``torch.Generator``.
        validate: Check user (and, for :meth:`in_batch` and :meth:`mask`, item)
            ids at every call, which reads values back from the device; set
            ``False`` in a hot loop once the data is known good.

    Raises:
        TypeError: If ``index`` is not a :class:`~negsample.PositiveIndex` or an
            option has the wrong type.
        ValueError: For ``num_negatives < 1``, an unknown ``candidates`` or
            ``backend``, or an ``alpha`` outside ``[0, 1]`` (or given for
            uniform candidates).

    Example:
        >>> from negsample import MFModel, SampledSoftmaxLoss
        >>> index = PositiveIndex.from_dict({0: [1, 2], 1: [0]}, num_items=50)
        >>> model = MFModel(index.num_users, index.num_items, dim=8, similarity="cosine")
        >>> sampler = SharedNegativeSampler(index, num_negatives=16, generator=0)
        >>> users, pos_items = torch.tensor([0, 1]), torch.tensor([1, 0])
        >>> negatives = sampler.sample(users)
        >>> neg_scores = model(users[:, None], negatives.items[None, :])
        >>> neg_scores.shape
        torch.Size([2, 16])
        >>> log_q = negatives.log_prob + math.log(16)  # log(K q): the logQ correction
        >>> loss = SampledSoftmaxLoss(temperature=0.1)(
        ...     model(users, pos_items), neg_scores, log_q=log_q, mask=negatives.mask
        ... )
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(
        self,
        index: PositiveIndex,
        num_negatives: int,
        *,
        candidates: Literal["uniform", "popularity"] = "uniform",
        alpha: float | None = None,
        backend: Backend = "vectorized",
        generator: torch.Generator | int | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__(
            index,
            candidates=candidates,
            alpha=alpha,
            backend=backend,
            generator=generator,
            validate=validate,
        )
        self.num_negatives = check_int("num_negatives", num_negatives, minimum=1)
        if not isinstance(self.candidates, UniformCandidates) and not bool(
            (self.candidates.weights > 0).any()
        ):
            raise ValueError(
                f"candidates='popularity' with alpha={self.candidates.alpha} gives every item "
                f"weight 0 (the index has no interactions): nothing can be drawn; "
                f"use candidates='uniform'"
            )

    def __repr__(self) -> str:
        return (
            f"SharedNegativeSampler(num_negatives={self.num_negatives}, "
            f"{self._candidates_repr()}backend={self.backend!r}, validate={self.validate})"
        )

    def _invalid(self, users: torch.Tensor, upper: int) -> torch.Tensor:
        """Only out-of-range ids: a user without non-positives just gets a fully masked row."""
        return (users < 0) | (users >= upper)

    def check_samplable(self, users: IdsLike | None = None) -> None:
        """Check user ids only: shared candidates can be drawn for every user.

        A user whose positives cover the catalogue gets a row that is all mask
        (loss 0 in :class:`~negsample.SampledSoftmaxLoss`), not an error, so
        this only checks that the ids are in range.

        Args:
            users: Integer user ids on any device; ``None`` checks nothing more.

        Raises:
            ValueError: For ids out of range.
            TypeError: For ids that are not integers.
        """
        if users is not None:
            users_t = as_index_tensor("users", users, device=self.index.device)
            check_ids_in_range("users", users_t, self.index.num_users, "user")

    def draw(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw the ``(num_negatives,)`` random bits of one call (see :meth:`items_from_bits`)."""
        device = torch.device(device)
        return draw_bits(self._generator_for(device), (self.num_negatives,), device)

    def items_from_bits(self, bits: torch.Tensor) -> torch.Tensor:
        """The candidates that the bits of :meth:`draw` give, ``int64``, the shape of ``bits``.

        Uniform: ``bits % num_items``. Popularity: Walker's alias table over the
        catalogue (a column from the uniform ``U = bits / 2**62``, kept or
        replaced by its alias by the fraction within the column), the same
        first stage as :class:`~negsample.candidates.PopularityCandidates`.
        """
        if isinstance(self.candidates, UniformCandidates):
            return bits % self.index.num_items
        return self.candidates._catalogue_draw(bits)[0]

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        """``log q(item)`` of one catalogue draw, in torch's default float dtype."""
        num_items = self.index.num_items
        if isinstance(self.candidates, UniformCandidates):
            return torch.full(
                items.shape,
                -math.log(num_items),
                dtype=torch.get_default_dtype(),
                device=items.device,
            )
        weights = self.candidates._weights
        log_weights = torch.log(weights.index_select(0, items.reshape(-1)))
        # The last cumulative weight is W, the catalogue's total: no sum per call.
        log_total = torch.log(self.candidates._cumulative[-1])
        return (log_weights - log_total).view(items.shape).to(torch.get_default_dtype())

    def sample(self, users: IdsLike) -> SharedNegatives:
        """Draw ``num_negatives`` shared candidates and mask each row's known positives.

        Args:
            users: 1-D integer tensor of ``B`` user ids (on the index's device).

        Returns:
            :class:`~negsample.samplers.SharedNegatives` with ``items`` ``(K,)``, ``mask`` ``(B, K)``
            and ``log_prob`` ``(K,)``.

        Raises:
            TypeError: If ``users`` does not hold integer ids.
            ValueError: If ``users`` is not 1-D or is on another device than the
                index, or (with ``validate``) holds an out-of-range id.
        """
        users_t = self._check_users(users)
        items = self.items_from_bits(self.draw(users_t.device))
        return SharedNegatives(items, self._mask(users_t, items), self.log_prob(items))

    def mask(self, users: IdsLike, items: IdsLike) -> torch.Tensor:
        """``(B, K)`` bool: ``True`` where ``items[k]`` is a known positive of ``users[b]``.

        The exact mask for any items scored by every row, e.g. candidates you
        drew yourself.

        Args:
            users: 1-D integer tensor of ``B`` user ids.
            items: 1-D integer tensor of ``K`` item ids, repeats allowed.

        Returns:
            A ``(B, K)`` bool tensor on the index's device.

        Raises:
            TypeError: If ``users`` or ``items`` does not hold integer ids.
            ValueError: For wrong shapes or devices, or (with ``validate``) ids out of range.

        Example:
            >>> index = PositiveIndex.from_dict({0: [1], 1: [0, 2]}, num_items=3)
            >>> sampler = SharedNegativeSampler(index, 1)
            >>> sampler.mask(torch.tensor([0, 1]), torch.tensor([2, 1, 2, 0])).tolist()
            [[False, True, False, False], [True, False, True, True]]
        """
        users_t = self._check_users(users)
        items_t = self._check_items("items", items)
        return self._mask(users_t, items_t)

    def in_batch(self, users: IdsLike, pos_items: IdsLike) -> SharedNegatives:
        """In-batch negatives: every row's positive item as a negative for every row.

        ``items`` is ``pos_items`` itself; ``mask[b, j]`` is ``True`` exactly
        where ``pos_items[j]`` is a known positive of ``users[b]`` (so the
        diagonal, and every other row's item that ``users[b]`` also has, not
        only copies of the same id); ``log_prob`` is ``log(popularity / nnz)``,
        the probability that a training pair drawn uniformly at random has
        that item, which is how the items of a batch of uniformly shuffled
        training pairs are drawn.

        Args:
            users: 1-D integer tensor of the batch's ``B`` user ids.
            pos_items: 1-D integer tensor of the ``B`` positive items.

        Returns:
            :class:`~negsample.samplers.SharedNegatives` with ``items`` ``(B,)``, ``mask`` ``(B, B)``
            and ``log_prob`` ``(B,)``. Concatenate it with :meth:`sample`'s along
            the candidates to use both kinds (see the docs for the correction).

        Raises:
            TypeError: If an argument does not hold integer ids.
            ValueError: For wrong shapes or devices, differing lengths, or (with
                ``validate``) ids out of range.

        Example:
            >>> index = PositiveIndex.from_dict({0: [1, 2], 1: [2]}, num_items=3)
            >>> sampler = SharedNegativeSampler(index, 1)
            >>> sampler.in_batch(torch.tensor([0, 1]), torch.tensor([1, 2])).mask.tolist()
            [[True, True], [False, True]]
        """
        users_t = self._check_users(users)
        items_t = self._check_items("pos_items", pos_items)
        if items_t.numel() != users_t.numel():
            raise ValueError(
                f"pos_items must have one item per user: got {items_t.numel()} items for "
                f"{users_t.numel()} users"
            )
        return SharedNegatives(
            items_t, self._mask(users_t, items_t), self._in_batch_log_prob(items_t)
        )

    def in_batch_log_prob(self, items: IdsLike) -> torch.Tensor:
        """``log(popularity / num_interactions)`` per item: its share of the training pairs.

        The ``log q`` of :meth:`in_batch`'s items, for any items (e.g. to
        correct a mixture of shared and in-batch candidates, see the docs
        page "Softmax losses with many negatives"). ``-inf`` for an item with
        no interactions. In torch's default float dtype. The counts are kept
        for the items with interactions only, so their memory grows with the
        index, not with the catalogue.

        Args:
            items: Integer item ids of any shape, on the index's device.

        Returns:
            A float tensor of the shape of ``items``.

        Raises:
            TypeError: If ``items`` does not hold integer ids.
            ValueError: If ``items`` is on another device than the index, or
                (with ``validate``) holds an out-of-range id.

        Example:
            >>> index = PositiveIndex.from_pairs([0, 1, 1], [2, 2, 0], num_items=3)
            >>> SharedNegativeSampler(index, 1).in_batch_log_prob(torch.tensor([2, 0])).exp()
            tensor([0.6667, 0.3333])
        """
        items_t = as_index_tensor("items", items)
        if items_t.device != self.index.device:
            raise ValueError(
                f"items are on {items_t.device} but the index is on {self.index.device}"
            )
        if self.validate:
            check_ids_in_range("items", items_t, self.index.num_items, "item")
        return self._in_batch_log_prob(items_t.long())

    def _in_batch_log_prob(self, items: torch.Tensor) -> torch.Tensor:
        """Unchecked :meth:`in_batch_log_prob` of ``int64`` ids in range."""
        popular = self.index._derived.get("item_counts")
        if popular is None or popular[0].device != self.index.device:
            # Not a table over the catalogue: for 2**31 - 1 items that is 16 GiB, even for an
            # index with three interactions.
            seen, counts = torch.unique(self.index.indices.long(), return_counts=True)
            popular = (seen, counts.to(torch.float64))
            self.index._derived["item_counts"] = popular
        seen, counts = popular
        flat = items.reshape(-1)
        if seen.numel() == 0:
            count = torch.zeros(flat.shape, dtype=torch.float64, device=flat.device)
        else:
            slot = torch.searchsorted(seen, flat).clamp_(max=seen.numel() - 1)
            count = torch.where(
                seen.index_select(0, slot) == flat, counts.index_select(0, slot), 0.0
            )
        total = max(self.index.num_interactions, 1)
        return (torch.log(count) - math.log(total)).view(items.shape).to(torch.get_default_dtype())

    def _check_items(self, name: str, items: IdsLike) -> torch.Tensor:
        items_t = as_index_tensor(name, items)
        if items_t.ndim != 1:
            raise ValueError(
                f"{name} must be a 1-D tensor of item ids, got shape {tuple(items_t.shape)}"
            )
        if items_t.device != self.index.device:
            raise ValueError(
                f"{name} are on {items_t.device} but the index is on {self.index.device}"
            )
        if self.validate:
            check_ids_in_range(name, items_t, self.index.num_items, "item")
        return items_t.long()

    def _mask(
        self, users: torch.Tensor, items: torch.Tensor, width: int | None = None
    ) -> torch.Tensor:
        """The ``(B, K)`` mask, or ``(B, width)`` with the columns past ``K`` all ``False``."""
        if self.backend == "reference":
            mask = _shared_mask_reference(self.index, users, items)
            if width is None or width == mask.shape[1]:
                return mask
            padding = mask.new_zeros((mask.shape[0], width - mask.shape[1]))
            return torch.cat([mask, padding], dim=1)
        return _shared_mask(self.index, users, items, width)


def _shared_mask_reference(
    index: PositiveIndex, users: torch.Tensor, items: torch.Tensor
) -> torch.Tensor:
    """The oracle: for each row, each candidate looked up in the user's positives as a set."""
    candidates = items.tolist()
    rows = []
    for user in users.tolist():
        known = set(index.positives(user).tolist())
        rows.append([item in known for item in candidates])
    return torch.tensor(rows, dtype=torch.bool, device=items.device).view(
        users.numel(), items.numel()
    )


def _shared_mask(
    index: PositiveIndex, users: torch.Tensor, items: torch.Tensor, width: int | None = None
) -> torch.Tensor:
    """The mask of :meth:`SharedNegativeSampler.mask`, batched.

    With ``width``, the mask has ``width >= K`` columns, those past ``K`` all
    ``False`` (room for candidates of another kind, without a concatenation).

    Sort the ``K`` items once and search each of the rows' positives in them:
    the positive ``p`` of row ``b`` covers the sorted slots ``[lo, hi)`` that
    hold ``p`` (all its copies), and the sort's permutation maps those slots
    back to the candidates' columns. On a compacting device (the CPU) only the
    hits are expanded and set; elsewhere every row is padded to
    ``max_degree`` and the slots are marked ``+1`` at ``lo`` and ``-1`` at
    ``hi``, so that a running sum along the row is ``> 0`` exactly on covered
    slots (a row's positives are distinct, so the ranges never overlap).
    """
    batch, k = users.numel(), items.numel()
    device = items.device
    width = k if width is None else width
    # With no items the CPU path's clamp(max=k - 1) would index the empty sort at -1.
    if index.num_interactions == 0 or batch == 0 or k == 0:
        return torch.zeros((batch, width), dtype=torch.bool, device=device)
    sorted_items, order = torch.sort(items)
    starts = index.indptr.index_select(0, users).long()
    ends = index.indptr.index_select(0, users + 1).long()
    if device.type in _candidates_module._COMPACTING_DEVICES:
        return _shared_mask_compacting(index, starts, ends, sorted_items, order, width)
    # Fixed shapes: each row padded to max_degree; padding covers an empty range.
    steps = torch.arange(max(index.max_degree, 1), device=device)
    positions = starts[:, None] + steps
    inside = positions < ends[:, None]
    positives = index._items_at(positions.clamp(max=index.num_interactions - 1))
    low = torch.searchsorted(sorted_items, positives)
    high = torch.where(inside, torch.searchsorted(sorted_items, positives, right=True), low)
    marks = torch.zeros(batch * (k + 1), dtype=torch.int32, device=device)
    row_base = torch.arange(batch, device=device)[:, None] * (k + 1)
    ones = torch.ones(low.shape, dtype=torch.int32, device=device)
    marks.scatter_add_(0, (row_base + low).reshape(-1), ones.reshape(-1))
    marks.scatter_add_(0, (row_base + high).reshape(-1), -ones.reshape(-1))
    covered = marks.view(batch, k + 1)[:, :k].cumsum(dim=1) > 0
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(k, device=device)
    mask = torch.gather(covered, 1, inverse.expand(batch, k))
    if width == k:
        return mask
    return torch.cat([mask, mask.new_zeros((batch, width - k))], dim=1)


# The CPU mask looks the rows' positives up in tables over the catalogue (4 bytes per item
# zeroed, 8 more written only where an item is a candidate) when the catalogue has at
# most this many items, or at most this many per positive looked up; else it searches.
_TABLE_ITEMS, _TABLE_ITEMS_PER_POSITIVE = 2**20, 4


def _shared_mask_compacting(
    index: PositiveIndex,
    starts: torch.Tensor,
    ends: torch.Tensor,
    sorted_items: torch.Tensor,
    order: torch.Tensor,
    width: int,
) -> torch.Tensor:
    """:func:`_shared_mask` with data-dependent shapes: only the hits are expanded."""
    batch, k = starts.numel(), sorted_items.numel()
    device = sorted_items.device
    counts = ends - starts
    rows = torch.repeat_interleave(torch.arange(batch, device=device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    positions = torch.arange(rows.numel(), device=device) + (starts - offsets).index_select(0, rows)
    positives = index._items_at(positions)
    if index.num_items <= max(_TABLE_ITEMS, _TABLE_ITEMS_PER_POSITIVE * positives.numel()):
        # Tables over the catalogue: each item's number of copies among the candidates
        # and the first sorted slot holding it. A lookup says which positives are
        # candidates at all (about 2% of them on Gowalla) and where: no search.
        first_of_run = torch.ones(k, dtype=torch.bool, device=device)
        first_of_run[1:] = sorted_items[1:] != sorted_items[:-1]
        run_starts = first_of_run.nonzero()[:, 0]
        run_items = sorted_items.index_select(0, run_starts)
        run_lengths = torch.diff(run_starts, append=run_starts.new_tensor([k]))
        copies_of = torch.zeros(index.num_items, dtype=torch.int32, device=device)
        copies_of[run_items] = run_lengths.to(torch.int32)
        first_slot = torch.empty(index.num_items, dtype=torch.int64, device=device)
        first_slot[run_items] = run_starts
        copies = copies_of.index_select(0, positives)
        hit = (copies > 0).nonzero()[:, 0]
        rows, positives = rows.index_select(0, hit), positives.index_select(0, hit)
        copies = copies.index_select(0, hit).long()
        low = first_slot.index_select(0, positives)
    else:
        low = torch.searchsorted(sorted_items, positives)
        hit = sorted_items.index_select(0, low.clamp(max=k - 1)) == positives
        rows, low, positives = rows[hit], low[hit], positives[hit]
        copies = torch.searchsorted(sorted_items, positives, right=True) - low
    first = torch.cumsum(copies, 0) - copies
    slots = torch.repeat_interleave(low - first, copies) + torch.arange(
        int(copies.sum()), device=device
    )
    mask = torch.zeros((batch, width), dtype=torch.bool, device=device)
    hit_rows, hit_columns = torch.repeat_interleave(rows, copies), order.index_select(0, slots)
    mask[hit_rows, hit_columns] = True
    # The rows are nondecreasing (rows in order, each repeated): the fused softmax loss
    # sets these entries alone instead of reading the whole mask.
    _hits.attach(mask, hit_rows, hit_columns)
    return mask
