"""A batch's negatives for a softmax loss in one call: :class:`~negsample.CandidateSampler`.

It composes the sources a softmax-family loss draws on, each kept exact:

* ``num_shared`` candidates shared by every row (uniform or by popularity),
  from a :class:`~negsample.SharedNegativeSampler`;
* the batch's own positives (in-batch negatives);
* each row's hard negatives from a :class:`~negsample.HardNegativeSampler`;
* negatives the caller supplies per row (items shown and not clicked).

and returns one :class:`~negsample.samplers.CandidateSet`: the shared columns as ``(K,)`` items
(one matrix product to score), each row's own as ``(B, n)``, the exact mask of
every row's known positives over all ``K + n`` columns, and one ``log_q`` per
column under the conventions the docs page "Softmax losses with many
negatives" states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from negsample import candidates as _candidates_module
from negsample._checks import _short, as_index_tensor, check_ids_in_range, check_int
from negsample.index import PositiveIndex
from negsample.samplers._base import Scorer
from negsample.samplers._hard import HardNegativeSampler
from negsample.samplers._shared import SharedNegativeSampler
from negsample.typing import IdsLike


@dataclass(frozen=True)
class CandidateSet:
    """One batch's negatives for a softmax-family loss, whatever sources fed them.

    What :meth:`negsample.CandidateSampler.sample` returns. Columns ``0..K-1``
    are the shared items (scored by every row: one ``(B, d) x (d, K)``
    product), columns ``K..K+n-1`` each row's own items.

    Attributes:
        items: ``(K,)`` ``int64``: the shared draws, then the batch's positives
            (in-batch negatives): on the CPU each distinct one once, in id order
            (its copies counted in ``log_q``), elsewhere one per row, in batch
            order; ``K`` may be 0.
        row_items: ``(B, n)`` ``int64``: each row's hard negatives, then the
            negatives supplied for it; ``None`` when there are none.
        mask: ``(B, K + n)`` bool, ``True`` exactly where the column's item is a
            known positive of the row's user (every copy, whatever its source).
        log_q: ``(K + n,)`` float (torch's default dtype): what the loss
            subtracts from each column's ``score / T``. Shared and in-batch
            columns: ``log(K_s q_shared(j) + B q_batch(j))``, the correction of
            one mixture of ``K_s`` shared draws and ``B`` in-batch ones, minus
            ``log(c)`` for an in-batch column standing for ``c`` copies of its
            item (0 for every item with ``num_shared="all"``); each hard or
            supplied column:
            ``log(max(K_s, 1) / num_items)``, counted as one uniform draw among
            the shared ones.
        sources: ``(name, number of columns)`` per source, in column order, e.g.
            ``(("shared", 1024), ("in-batch", 2048), ("hard", 4))``.

    Example:
        >>> index = PositiveIndex.from_dict({0: [1, 2], 1: [3]}, num_items=20)
        >>> sampler = CandidateSampler(index, num_shared=4, in_batch=True, generator=0)
        >>> cands = sampler.sample(torch.tensor([0, 1]), torch.tensor([1, 3]))
        >>> cands.items.shape, cands.mask.shape, cands.log_q.shape, cands.row_items
        (torch.Size([6]), torch.Size([2, 6]), torch.Size([6]), None)
        >>> cands.mask[:, 4:].tolist()  # the in-batch columns: items 1 and 3
        [[True, False], [False, True]]
        >>> cands.sources
        (('shared', 4), ('in-batch', 2))
    """

    items: torch.Tensor
    row_items: torch.Tensor | None
    mask: torch.Tensor
    log_q: torch.Tensor
    sources: tuple[tuple[str, int], ...]

    def __repr__(self) -> str:
        rows = None if self.row_items is None else tuple(self.row_items.shape)
        return (
            f"CandidateSet(items={tuple(self.items.shape)}, row_items={rows}, "
            f"mask={tuple(self.mask.shape)}, sources={self.sources})"
        )

    def columns(self, source: str) -> slice:
        """The columns of ``mask`` and ``log_q`` that come from ``source``.

        Raises:
            KeyError: If no columns come from ``source``.
        """
        start = 0
        for name, width in self.sources:
            if name == source:
                return slice(start, start + width)
            start += width
        raise KeyError(f"no source {source!r}; the sources are {[n for n, _ in self.sources]}")

    def scores(self, scorer: Scorer, users: torch.Tensor) -> torch.Tensor:
        """The ``(B, K + n)`` scores of every column, for any scorer.

        ``scorer(users[:, None], items[None, :])`` then
        ``scorer(users[:, None], row_items)``, concatenated. For a model
        without vectors to give; with :class:`~negsample.MFModel`,
        :meth:`negsample.SampledSoftmaxLoss.from_vectors` scores them without
        the concatenation.
        """
        parts = []
        if self.items.numel():
            parts.append(scorer(users[:, None], self.items[None, :]))
        if self.row_items is not None:
            parts.append(scorer(users[:, None], self.row_items))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class CandidateSampler:
    """A batch's negatives for a softmax loss, composed from several sources, in one call.

    ``sample(users, pos_items, scorer)`` returns a :class:`~negsample.samplers.CandidateSet`: the
    shared candidates and the batch's positives as ``(K,)`` items, each row's
    hard (and supplied) negatives as ``(B, n)``, one exact mask of known
    positives over all of them (computed once for the shared and in-batch
    columns: the candidates sorted once, each row's positives searched once)
    and each column's ``log_q``. The softmax recipe of the Gowalla results
    (``negsample train --loss softmax --sampler hard --in-batch
    --num-candidates 64 --num-hard 4``) is ``CandidateSampler(index, 1024,
    in_batch=True, hard=HardNegativeSampler(index, 64, 4, 0))``.

    Args:
        index: The users' known positives.
        num_shared: ``K_s``, candidates shared by every row per call, ``>= 0``;
            or ``"all"``: every item of the catalogue once, in id order, with
            ``log_q`` 0 (the full softmax: nothing sampled, nothing to correct;
            ``K_s`` is then the number of items). For a catalogue no larger than
            the columns a sample would score, it is exact and cheaper.
        in_batch: Add the batch's positives as every row's negatives (not with
            ``num_shared="all"``, which has every item already). On the CPU
            each distinct positive is one column, its number of copies in its
            ``log_q``: the same value of a softmax-family loss as one column per
            copy, in fewer columns (the docs page "Softmax losses", "All
            sources at once").
        hard: A :class:`~negsample.HardNegativeSampler` over the same index
            (its own generator); ``sample`` then needs a ``scorer``.
        candidates: Distribution of the shared candidates, ``"uniform"`` or
            ``"popularity"`` (with ``alpha``), as for
            :class:`~negsample.SharedNegativeSampler`.
        alpha: Popularity exponent, popularity only.
        generator: Seed or ``torch.Generator`` of the shared draws.
        validate: Check ids at every call (reads values back from the device);
            ``False`` in a hot loop once the data is known good.

    Raises:
        TypeError: For an argument of the wrong type.
        ValueError: If no source is chosen, ``num_shared < 0``, ``hard``
            samples another index, or ``num_shared="all"`` is combined with
            ``in_batch`` or popularity candidates.

    Example:
        >>> from negsample import HardNegativeSampler, MFModel
        >>> index = PositiveIndex.from_dict({0: [1, 2], 1: [3], 2: [0]}, num_items=30)
        >>> model = MFModel(3, 30, dim=8, similarity="cosine")
        >>> hard = HardNegativeSampler(index, 6, num_hard=2, num_random=0, generator=1)
        >>> sampler = CandidateSampler(index, 8, in_batch=True, hard=hard, generator=0)
        >>> users, pos_items = torch.tensor([0, 1, 2]), torch.tensor([2, 3, 0])
        >>> cands = sampler.sample(users, pos_items, model)
        >>> cands.items.shape, cands.row_items.shape, cands.mask.shape
        (torch.Size([11]), torch.Size([3, 2]), torch.Size([3, 13]))
        >>> bool(cands.mask[:, 11:].any())  # hard negatives are never known positives
        False
    """

    def __init__(
        self,
        index: PositiveIndex,
        num_shared: int | Literal["all"] = 1024,
        *,
        in_batch: bool = False,
        hard: HardNegativeSampler | None = None,
        candidates: Literal["uniform", "popularity"] = "uniform",
        alpha: float | None = None,
        generator: torch.Generator | int | None = None,
        validate: bool = True,
    ) -> None:
        if not isinstance(index, PositiveIndex):
            raise TypeError(f"index must be a PositiveIndex, got {type(index).__name__}")
        self.all_items = isinstance(num_shared, str) and num_shared == "all"
        if self.all_items:
            self.num_shared = index.num_items
        elif isinstance(num_shared, str):
            raise ValueError(f"num_shared must be an int >= 0 or 'all', got {_short(num_shared)}")
        else:
            self.num_shared = check_int("num_shared", num_shared, minimum=0)
        if not isinstance(in_batch, bool):
            raise TypeError(f"in_batch must be a bool, got {_short(in_batch)}")
        if self.all_items and in_batch:
            raise ValueError(
                "in_batch=True adds nothing to num_shared='all': every item is a candidate already"
            )
        if self.all_items and (candidates != "uniform" or alpha is not None):
            raise ValueError(
                f"num_shared='all' scores every item once: candidates={_short(candidates)} "
                f"and alpha={_short(alpha)} do not apply"
            )
        if hard is not None and not isinstance(hard, HardNegativeSampler):
            raise TypeError(
                f"hard must be None or a HardNegativeSampler, got {type(hard).__name__}"
            )
        if hard is not None and hard.index is not index:
            raise ValueError(
                "hard samples another index: build it over the same PositiveIndex "
                "(its negatives are checked against that index's positives)"
            )
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be a bool, got {_short(validate)}")
        self.in_batch = in_batch
        self.hard = hard
        self.validate = validate
        # The shared sampler also serves the mask and the in-batch log-probabilities; it is
        # built with one candidate when none is drawn (it then never draws).
        self.shared = SharedNegativeSampler(
            index,
            1 if self.all_items else max(self.num_shared, 1),
            candidates=candidates,
            alpha=alpha,
            generator=generator,
            validate=validate,
        )

    @property
    def index(self) -> PositiveIndex:
        """The known positives the masks are exact for."""
        return self.shared.index

    def __repr__(self) -> str:
        parts = ["num_shared='all'" if self.all_items else f"num_shared={self.num_shared}"]
        if self.shared._candidates_repr():
            parts.append(self.shared._candidates_repr().rstrip(", "))
        parts.append(f"in_batch={self.in_batch}")
        if self.hard is not None:
            parts.append(f"hard={self.hard!r}")
        return f"CandidateSampler({', '.join(parts)}, validate={self.validate})"

    def to(self, device: torch.device | str) -> CandidateSampler:
        """Move the samplers' index to ``device`` (in place) and return this sampler."""
        self.shared.to(device)
        if self.hard is not None:
            self.hard.to(device)
        return self

    def sample(
        self,
        users: IdsLike,
        pos_items: IdsLike | None = None,
        scorer: Scorer | None = None,
        *,
        negatives: IdsLike | None = None,
    ) -> CandidateSet:
        """The batch's candidate set.

        Args:
            users: 1-D integer tensor of the ``B`` rows' users.
            pos_items: 1-D integer tensor of the ``B`` positives; needed with
                ``in_batch`` and with a hard sampler of ``selection="ahns"``.
            scorer: ``scorer(users, items) -> scores`` for the hard sampler (called
                under ``no_grad``); needed with ``hard``.
            negatives: ``(B, n)`` integer items supplied per row (e.g. shown and
                not clicked); any that is a known positive of the row's user is
                masked like the other columns.

        Returns:
            A :class:`~negsample.samplers.CandidateSet`.

        Raises:
            TypeError: For ids that are not integer tensors, or a scorer that is
                not callable.
            ValueError: For wrong shapes or devices, a missing ``pos_items`` or
                ``scorer``, no columns at all, or (with ``validate``) ids out of
                range.
        """
        users_t = self.shared._check_users(users)
        batch = users_t.numel()
        device = users_t.device
        parts, sources, log_parts = [], [], []
        copies: torch.Tensor | None = None  # of each in-batch column's item, where merged
        num_items = self.index.num_items
        log_shared = math.log(max(self.num_shared, 1))
        if self.all_items:
            parts.append(torch.arange(num_items, device=device))
            sources.append(("shared", num_items))
        elif self.num_shared:
            parts.append(self.shared.items_from_bits(self.shared.draw(device)))
            sources.append(("shared", self.num_shared))
        if self.in_batch:
            if pos_items is None:
                raise ValueError("in_batch=True needs the batch's pos_items")
            pos_t = self.shared._check_items("pos_items", pos_items)
            if pos_t.numel() != batch:
                raise ValueError(
                    f"pos_items must have one item per user: got {pos_t.numel()} items for "
                    f"{batch} users"
                )
            if device.type in _candidates_module._COMPACTING_DEVICES:
                # Each distinct positive once (a popular item is the positive of many
                # rows): the same loss as one column per copy, in fewer columns. Elsewhere
                # their number would be read back to the host: one column per positive.
                pos_t, copies = torch.unique(pos_t, return_counts=True)
            parts.append(pos_t)
            sources.append(("in-batch", pos_t.numel()))
        items = torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64, device=device)
        if self.all_items:
            # Each item once: K_s q(j) = 1.
            log_parts.append(torch.zeros(num_items, dtype=torch.get_default_dtype(), device=device))
        elif items.numel():
            terms = []
            if self.num_shared:
                terms.append(self.shared.log_prob(items) + log_shared)
            if self.in_batch:
                terms.append(self.shared._in_batch_log_prob(items) + math.log(batch))
            mixture = terms[0] if len(terms) == 1 else torch.logaddexp(*terms)
            if copies is not None:
                # A column standing for c copies: exp(s / T - log_q) counted c times.
                mixture[self.num_shared :] -= copies.to(mixture.dtype).log()
            log_parts.append(mixture)
        row_parts = []
        if self.hard is not None:
            if scorer is None:
                raise ValueError("hard negatives need a scorer: sample(users, pos_items, scorer)")
            if self.hard.selection == "ahns":
                # AHNS sets each row's hardness by its positive's score.
                if pos_items is None:
                    raise ValueError("a hard sampler with selection='ahns' needs the pos_items")
                hard_items = self.hard.sample(users_t, scorer, positives=pos_items)
            else:
                hard_items = self.hard.sample(users_t, scorer)
            row_parts.append(hard_items)
            sources.append(("hard", hard_items.shape[1]))
        supplied = None
        if negatives is not None:
            supplied = self._check_negatives(negatives, batch, device)
            row_parts.append(supplied)
            sources.append(("supplied", supplied.shape[1]))
        row_items = None
        if row_parts:
            row_items = row_parts[0] if len(row_parts) == 1 else torch.cat(row_parts, dim=1)
            # One uniform draw among the shared ones (docs: "Softmax losses").
            log_parts.append(
                torch.full(
                    (row_items.shape[1],),
                    log_shared - math.log(num_items),
                    dtype=torch.get_default_dtype(),
                    device=device,
                )
            )
        width = items.numel() + (0 if row_items is None else row_items.shape[1])
        if width == 0:
            raise ValueError(
                "no candidates: choose num_shared > 0, in_batch=True, hard or pass negatives"
            )
        mask = self.shared._mask(users_t, items, width)
        if supplied is not None:
            own = self.index._is_positive(users_t[:, None].expand_as(supplied), supplied)
            mask[:, width - supplied.shape[1] :] = own
        log_q = log_parts[0] if len(log_parts) == 1 else torch.cat(log_parts)
        return CandidateSet(items, row_items, mask, log_q, tuple(sources))

    def _check_negatives(
        self, negatives: IdsLike, batch: int, device: torch.device
    ) -> torch.Tensor:
        supplied = as_index_tensor("negatives", negatives)
        if supplied.ndim != 2 or supplied.shape[0] != batch:
            raise ValueError(
                f"negatives must have shape (B, n) with B={batch}, "
                f"got shape {tuple(supplied.shape)}"
            )
        if supplied.device != device:
            raise ValueError(f"negatives are on {supplied.device} but the users on {device}")
        if self.validate:
            check_ids_in_range("negatives", supplied, self.index.num_items, "item")
        return supplied.long()
