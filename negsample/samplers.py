"""Negative samplers: the per-row reference and the vectorized implementation side by side.

Every sampler splits randomness from logic. ``sample`` first draws raw random
bits (:class:`HardDraws`) from the sampler's generator, then hands them to one
of two deterministic functions of those bits:

* ``_hard_reference`` / ``_uniform_reference``: a Python loop over rows that
  reads like the sampling contract; the oracle.
* ``_hard_vectorized`` / ``_uniform_vectorized``: batched tensor code with no
  loop over rows and no host synchronisation; the fast path, on any device.

Given the same bits the two return identical tensors, which the test suite
checks on generated batches; a seeded sampler therefore returns the same
negatives whichever ``backend`` it uses.

The contract, for a row with user ``u`` and complement ``C_u`` (items that are
not known positives of ``u``):

1. draw ``num_candidates`` candidates uniformly from ``C_u``, with replacement;
2. score them with ``scorer(users, items)`` under ``torch.no_grad()``;
3. the hard part: the ``num_hard`` highest-scoring candidates, highest first,
   ties to the lower candidate slot;
4. the random part: ``num_random`` slots drawn uniformly without replacement
   from the slots the hard part did not take;
5. output the hard items, then the random items.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
from typing_extensions import Self

from negsample._checks import _short, as_index_tensor, check_ids_in_range, check_int, make_generator
from negsample._random import draw_bits, resolve_generator
from negsample.index import PositiveIndex

__all__ = ["HardDraws", "HardNegativeSampler", "Scorer", "UniformSampler", "hard_negatives"]

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``scorer(users, items) -> scores``, elementwise over same-shape integer tensors."""

Backend = Literal["reference", "vectorized"]
_BACKENDS = ("reference", "vectorized")
_TAKEN = torch.iinfo(torch.int64).max


class HardDraws(NamedTuple):
    """The random bits one call of :meth:`~negsample.HardNegativeSampler.sample` consumes.

    Attributes:
        candidate_bits: ``(B, num_candidates)`` ints in ``[0, 2**62)``; slot ``j``
            of row ``b`` becomes the ``candidate_bits[b, j] % n_u``-th non-positive.
        slot_keys: ``(B, num_candidates)`` ints in ``[0, 2**62)``; the random part
            takes the non-hard slots with the smallest keys (ties to the lower slot),
            a uniformly random ordered subset.
    """

    candidate_bits: torch.Tensor
    slot_keys: torch.Tensor


class _BaseSampler:
    """Index, backend, generator and validation handling shared by the samplers."""

    def __init__(
        self,
        index: PositiveIndex,
        *,
        backend: Backend,
        generator: torch.Generator | int | None,
        validate: bool,
    ) -> None:
        if not isinstance(index, PositiveIndex):
            raise TypeError(f"index must be a PositiveIndex, got {type(index).__name__}")
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {_short(backend)}")
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be a bool, got {_short(validate)}")
        self.index = index
        self.backend: Backend = backend
        self.validate = validate
        self._generator_arg = make_generator("generator", generator)
        self._generators: dict[torch.device, torch.Generator] = {}

    def to(self, device: torch.device | str) -> Self:
        """Move the sampler's index to ``device`` (in place) and return the sampler."""
        self.index = self.index.to(device)
        return self

    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        """The generator for ``device``: one stream per device for an int seed."""
        if not isinstance(self._generator_arg, int):
            return resolve_generator(self._generator_arg, device)
        if device not in self._generators:
            gen = resolve_generator(self._generator_arg, device)
            assert gen is not None
            self._generators[device] = gen
        return self._generators[device]

    def state_dict(self) -> dict[str, Any]:
        """The random state of the sampler, to checkpoint with the model.

        Holds the state of each generator the sampler owns or was given, so that
        a run resumed with :meth:`load_state_dict` draws the same negatives as
        an uninterrupted one. With ``generator=None`` the sampler draws from
        torch's default generator, which is not part of this state: save
        ``torch.get_rng_state()`` yourself in that case.

        Example:
            >>> index = PositiveIndex.from_dict({0: [1]}, num_items=50)
            >>> sampler = UniformSampler(index, 3, generator=0)
            >>> _ = sampler.sample(torch.tensor([0]))
            >>> state = sampler.state_dict()
            >>> ahead = sampler.sample(torch.tensor([0]))
            >>> resumed = UniformSampler(index, 3, generator=0)
            >>> resumed.load_state_dict(state)
            >>> torch.equal(resumed.sample(torch.tensor([0])), ahead)
            True
        """
        if isinstance(self._generator_arg, torch.Generator):
            states = {str(self._generator_arg.device): self._generator_arg.get_state()}
        else:
            states = {str(device): gen.get_state() for device, gen in self._generators.items()}
        return {"generator_states": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the random state saved by :meth:`state_dict`.

        Raises:
            ValueError: If the sampler draws from torch's default generator, or
                the state is not one that :meth:`state_dict` returns.
        """
        states = state_dict.get("generator_states") if isinstance(state_dict, dict) else None
        if not isinstance(states, dict):
            raise ValueError(
                f"state_dict must be what state_dict() returns, a dict with 'generator_states', "
                f"got {_short(state_dict)}"
            )
        if self._generator_arg is None:
            raise ValueError(
                "this sampler draws from torch's default generator (generator=None), which it "
                "does not own; restore it with torch.set_rng_state, or pass generator=seed"
            )
        for device_name, gen_state in states.items():
            device = torch.device(device_name)
            if isinstance(self._generator_arg, torch.Generator):
                if device.type != self._generator_arg.device.type:
                    raise ValueError(
                        f"state_dict holds a generator state for {device}, but this sampler's "
                        f"generator is on {self._generator_arg.device}"
                    )
                self._generator_arg.set_state(gen_state)
            else:
                gen = self._generator_for(device)
                assert gen is not None
                gen.set_state(gen_state)

    def _check_users(self, users: Any) -> torch.Tensor:
        users_t = as_index_tensor("users", users)
        if users_t.ndim != 1:
            raise ValueError(
                f"users must be a 1-D tensor of user ids, got shape {tuple(users_t.shape)}"
            )
        if users_t.device != self.index.device:
            raise ValueError(
                f"users are on {users_t.device} but the index is on {self.index.device}; "
                f"call sampler.to({str(users_t.device)!r}) once before sampling"
            )
        users_t = users_t.long()
        if self.validate:
            check_ids_in_range("users", users_t, self.index.num_users, "user")
            self.index.check_samplable(users_t)
        return users_t


class HardNegativeSampler(_BaseSampler):
    """Hard negatives: the top-scored of uniform candidates, plus random ones.

    Each call draws ``num_candidates`` items uniformly (with replacement) from
    every user's non-positives, scores them with the caller's model, and returns
    the ``num_hard`` best-scored followed by ``num_random`` others drawn without
    replacement from the remaining candidates. A known positive is never returned.

    Args:
        index: The users' known positives.
        num_candidates: Candidates drawn per row (``M``).
        num_hard: Highest-scored candidates kept per row.
        num_random: Further candidates kept at random per row.
        backend: ``"vectorized"`` (batched, any device, no host synchronisation
            when ``validate=False``) or ``"reference"`` (a per-row Python loop that
            reads like the contract; slow, for checking).
        generator: ``None`` for torch's default generator, an int seed (one
            stream per device, seeded with it), or a ``torch.Generator`` on the
            device the users will be on.
        validate: Check values at every call: user ids in range, every user has a
            negative, scores free of NaN. These read values back to the host (a
            GPU synchronisation); pass ``False`` in a hot loop once the data is
            known good. Shape, dtype and device checks always run.
        max_scores_per_call: The vectorized backend calls the scorer on whole
            rows of candidates, at most this many candidates per call (at least
            one row), so the scorer's own temporaries stay bounded however large
            the batch. The default, ``2**20``, is 1M candidates per call.

    Example:
        >>> index = PositiveIndex.from_dict({0: [0, 1], 1: [2]}, num_items=6)
        >>> sampler = HardNegativeSampler(index, num_candidates=4, num_hard=1, num_random=1, generator=0)
        >>> def scorer(users, items):  # prefers high item ids
        ...     return items.float()
        >>> negatives = sampler.sample(torch.tensor([0, 1, 1]), scorer)
        >>> negatives.shape, negatives.dtype
        (torch.Size([3, 2]), torch.int64)
        >>> bool(index.contains(torch.tensor([[0], [1], [1]]), negatives).any())
        False
    """

    def __init__(
        self,
        index: PositiveIndex,
        num_candidates: int = 10,
        num_hard: int = 2,
        num_random: int = 2,
        *,
        backend: Backend = "vectorized",
        generator: torch.Generator | int | None = None,
        validate: bool = True,
        max_scores_per_call: int = 2**20,
    ) -> None:
        super().__init__(index, backend=backend, generator=generator, validate=validate)
        self.max_scores_per_call = check_int("max_scores_per_call", max_scores_per_call, minimum=1)
        self.num_candidates = check_int("num_candidates", num_candidates, minimum=1)
        self.num_hard = check_int("num_hard", num_hard, minimum=0)
        self.num_random = check_int("num_random", num_random, minimum=0)
        total = self.num_hard + self.num_random
        if not 1 <= total <= self.num_candidates:
            raise ValueError(
                f"num_hard + num_random must be between 1 and num_candidates={self.num_candidates}, "
                f"got {self.num_hard} + {self.num_random} = {total}"
            )

    @property
    def num_negatives(self) -> int:
        """Negatives returned per row, ``num_hard + num_random``."""
        return self.num_hard + self.num_random

    def __repr__(self) -> str:
        return (
            f"HardNegativeSampler(num_candidates={self.num_candidates}, num_hard={self.num_hard}, "
            f"num_random={self.num_random}, backend={self.backend!r}, validate={self.validate})"
        )

    def draw(self, batch_size: int, device: torch.device | str = "cpu") -> HardDraws:
        """Draw the random bits for a batch, advancing the sampler's generator.

        :meth:`sample` calls this; it is public so that the two backends can be
        fed identical draws (see :func:`~negsample.samplers.hard_negatives`).
        """
        device = torch.device(device)
        gen = self._generator_for(device)
        shape = (check_int("batch_size", batch_size, minimum=0), self.num_candidates)
        candidate_bits = draw_bits(gen, shape, device)
        slot_keys = draw_bits(gen, shape, device)
        return HardDraws(candidate_bits, slot_keys)

    def sample(self, users: Any, scorer: Scorer) -> torch.Tensor:
        """Hard negatives for each user in the batch.

        Args:
            users: 1-D integer tensor of user ids (on the index's device).
            scorer: ``scorer(users, items) -> scores`` over same-shape integer
                tensors; called under ``torch.no_grad()`` on ``(B, num_candidates)``
                tensors (``reference``: on ``(num_candidates,)`` per row).

        Returns:
            ``int64`` tensor of shape ``(B, num_hard + num_random)`` on the users'
            device: the hard items (highest score first), then the random ones.

        Raises:
            EmptyComplementError: If a user has every item as a positive.
            ValueError: For out-of-range ids, or scores of the wrong shape, dtype
                or device, or containing NaN.
            TypeError: For non-integer users or a scorer that is not callable.
        """
        if not callable(scorer):
            raise TypeError(
                f"scorer must be callable as scorer(users, items), got {type(scorer).__name__}"
            )
        users_t = self._check_users(users)
        draws = self.draw(users_t.numel(), users_t.device)
        return hard_negatives(
            self.index,
            users_t,
            scorer,
            draws,
            num_hard=self.num_hard,
            num_random=self.num_random,
            backend=self.backend,
            validate=self.validate,
            max_scores_per_call=self.max_scores_per_call,
        )


class UniformSampler(_BaseSampler):
    """Exact uniform negatives: each draw uniform over the user's non-positives.

    The baseline to compare hard negatives against. Draws are with replacement
    and independent; a known positive is never returned.

    Args:
        index: The users' known positives.
        num_negatives: Negatives per row.
        backend: ``"vectorized"`` or ``"reference"``, as in :class:`HardNegativeSampler`.
        generator: ``None``, an int seed or a ``torch.Generator``.
        validate: Check ids and that each user has a negative (synchronises).

    Example:
        >>> index = PositiveIndex.from_dict({0: [1, 2, 3]}, num_items=5)
        >>> sampler = UniformSampler(index, num_negatives=4, generator=0)
        >>> sorted(set(sampler.sample(torch.tensor([0])).flatten().tolist())) in ([0], [4], [0, 4])
        True
    """

    def __init__(
        self,
        index: PositiveIndex,
        num_negatives: int = 1,
        *,
        backend: Backend = "vectorized",
        generator: torch.Generator | int | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__(index, backend=backend, generator=generator, validate=validate)
        self.num_negatives = check_int("num_negatives", num_negatives, minimum=1)

    def __repr__(self) -> str:
        return (
            f"UniformSampler(num_negatives={self.num_negatives}, backend={self.backend!r}, "
            f"validate={self.validate})"
        )

    def draw(self, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw the ``(batch_size, num_negatives)`` random bits for a batch."""
        device = torch.device(device)
        shape = (check_int("batch_size", batch_size, minimum=0), self.num_negatives)
        return draw_bits(self._generator_for(device), shape, device)

    def sample(self, users: Any, scorer: Scorer | None = None) -> torch.Tensor:
        """Uniform negatives for each user in the batch.

        Args:
            users: 1-D integer tensor of user ids (on the index's device).
            scorer: Ignored; accepted so the samplers are interchangeable in a loop.

        Returns:
            ``int64`` tensor of shape ``(B, num_negatives)`` on the users' device.
        """
        users_t = self._check_users(users)
        bits = self.draw(users_t.numel(), users_t.device)
        if self.backend == "reference":
            return _uniform_reference(self.index, users_t, bits)
        return _uniform_vectorized(self.index, users_t, bits)


# ---------------------------------------------------------------------- the two implementations


def hard_negatives(
    index: PositiveIndex,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    *,
    num_hard: int,
    num_random: int,
    backend: Backend = "vectorized",
    validate: bool = True,
    max_scores_per_call: int = 2**20,
) -> torch.Tensor:
    """Apply the hard-negative contract to given random draws (no randomness of its own).

    ``users`` must be a 1-D ``int64`` tensor of valid ids whose users all have a
    negative, on the index's device; ``draws`` must have ``B`` rows.
    :meth:`~negsample.HardNegativeSampler.sample` checks all that, then calls this. With
    equal inputs both backends return identical tensors.

    Example:
        >>> index = PositiveIndex.from_dict({0: [1]}, num_items=4)
        >>> draws = HardDraws(torch.tensor([[0, 1, 2]]), torch.tensor([[5, 3, 4]]))
        >>> def scorer(users, items):
        ...     return -items.float()
        >>> hard_negatives(index, torch.tensor([0]), scorer, draws, num_hard=1, num_random=1).tolist()
        [[0, 2]]
    """
    if users.numel() == 0:
        return torch.empty((0, num_hard + num_random), dtype=torch.int64, device=users.device)
    if backend == "reference":
        return _hard_reference(index, users, scorer, draws, num_hard, num_random, validate)
    return _hard_vectorized(
        index, users, scorer, draws, num_hard, num_random, validate, max_scores_per_call
    )


def _score(
    scorer: Scorer, users: torch.Tensor, items: torch.Tensor, validate: bool
) -> torch.Tensor:
    """Call the scorer without gradients and check what it returns."""
    with torch.no_grad():
        scores = scorer(users, items)
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scorer must return a tensor, got {type(scores).__name__}")
    if scores.shape != items.shape:
        raise ValueError(
            f"scorer(users, items) must return one score per item, shape {tuple(items.shape)}, "
            f"got shape {tuple(scores.shape)}"
        )
    if not scores.is_floating_point():
        raise ValueError(f"scorer must return floating-point scores, got dtype {scores.dtype}")
    if scores.device != items.device:
        raise ValueError(f"scorer returned scores on {scores.device} for items on {items.device}")
    if validate:
        nan = torch.isnan(scores)
        if bool(nan.any()):
            where = tuple(nan.nonzero()[0].tolist())
            raise ValueError(
                f"scorer returned NaN (e.g. for user {int(users[where])}, item {int(items[where])}); "
                f"{int(nan.sum())} NaN scores in total"
            )
    return scores


def _hard_reference(
    index: PositiveIndex,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    num_hard: int,
    num_random: int,
    validate: bool,
) -> torch.Tensor:
    """One row at a time, step by step as the contract is written."""
    num_candidates = draws.candidate_bits.shape[1]
    slots = range(num_candidates)
    rows = []
    for user, candidate_bits, slot_keys in zip(
        users.tolist(), draws.candidate_bits.tolist(), draws.slot_keys.tolist(), strict=True
    ):
        # 1. candidates uniform over the complement: the r-th non-positive is r + #{i : p_i - i <= r}
        positives = index.positives(user).tolist()
        q = [p - i for i, p in enumerate(positives)]
        n = index.num_items - len(positives)
        candidates = [r + bisect_right(q, r) for r in (bits % n for bits in candidate_bits)]
        # 2. score them
        items = torch.tensor(candidates, device=users.device)
        scores = _score(scorer, torch.full_like(items, user), items, validate).tolist()
        # 3. hard part: highest score first, ties to the lower slot
        hard = sorted(slots, key=lambda s: (-scores[s], s))[:num_hard]
        # 4. random part: uniform without replacement over the other slots
        others = [s for s in slots if s not in hard]
        random_part = sorted(others, key=lambda s: (slot_keys[s], s))[:num_random]
        # 5. hard, then random
        rows.append([candidates[s] for s in hard + random_part])
    return torch.tensor(rows, dtype=torch.int64, device=users.device)


def _hard_vectorized(
    index: PositiveIndex,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    num_hard: int,
    num_random: int,
    validate: bool,
    max_scores_per_call: int = 2**20,
) -> torch.Tensor:
    """The whole batch at once; no loop over rows, no host synchronisation."""
    batch, num_candidates = draws.candidate_bits.shape
    users_bm = users[:, None].expand(batch, num_candidates)
    candidates = index._draw_complement(users, draws.candidate_bits)
    rows = max(1, max_scores_per_call // num_candidates)
    if batch <= rows:
        scores = _score(scorer, users_bm, candidates, validate)
    else:
        # Chunk sizes come from shapes only, so chunking needs no synchronisation.
        scores = torch.cat(
            [
                _score(scorer, u, c, validate)
                for u, c in zip(
                    torch.split(users_bm, rows), torch.split(candidates, rows), strict=True
                )
            ]
        )
    # A stable descending sort keeps tied candidates in slot order.
    hard = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :num_hard]
    if num_random:
        keys = draws.slot_keys.scatter(1, hard, _TAKEN)
        random_part = torch.sort(keys, dim=1, stable=True).indices[:, :num_random]
        chosen = torch.cat([hard, random_part], dim=1)
    else:
        chosen = hard
    return candidates.gather(1, chosen)


def _uniform_reference(
    index: PositiveIndex, users: torch.Tensor, bits: torch.Tensor
) -> torch.Tensor:
    """One row at a time: the ``bits % n``-th non-positive, ``r + #{i : p_i - i <= r}``."""
    rows = []
    for user, row_bits in zip(users.tolist(), bits.tolist(), strict=True):
        positives = index.positives(user).tolist()
        q = [p - i for i, p in enumerate(positives)]
        n = index.num_items - len(positives)
        rows.append([r + bisect_right(q, r) for r in (b % n for b in row_bits)])
    return torch.tensor(rows, dtype=torch.int64, device=users.device).reshape(bits.shape)


def _uniform_vectorized(
    index: PositiveIndex, users: torch.Tensor, bits: torch.Tensor
) -> torch.Tensor:
    """The whole batch with one ``searchsorted``."""
    return index._draw_complement(users, bits)
