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

1. draw ``num_candidates`` candidates from ``C_u``, with replacement, from the
   candidate distribution ``q_u`` (uniform, or by popularity: see
   :mod:`negsample.candidates`);
2. score them with ``scorer(users, items)`` under ``torch.no_grad()``;
3. the hard part: ``num_hard`` candidate slots, best first, ties to the lower
   slot. ``selection="topk"``: the highest scores. ``selection="softmax"``: the
   highest ``score / temperature + g`` for independent standard Gumbel noise
   ``g`` per slot, which draws ``num_hard`` slots without replacement with
   probability proportional to ``exp(score / temperature)`` (Gumbel-top-k);
4. the random part: ``num_random`` slots drawn uniformly without replacement
   from the slots the hard part did not take;
5. output the hard items, then the random items.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, overload

import torch
from typing_extensions import Self

from negsample import candidates as _candidates_module
from negsample._checks import _short, as_index_tensor, check_ids_in_range, check_int, make_generator
from negsample._random import draw_bits, resolve_generator
from negsample.candidates import CandidateSource, UniformCandidates, make_candidates
from negsample.index import NO_NEGATIVE, PositiveIndex
from negsample.typing import IdsLike

__all__ = [
    "HardDraws",
    "HardNegativeSampler",
    "NegativeSample",
    "Scorer",
    "SharedNegativeSampler",
    "SharedNegatives",
    "UniformSampler",
    "hard_negatives",
]

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``scorer(users, items) -> scores``, elementwise over same-shape integer tensors."""

Backend = Literal["reference", "vectorized"]
_BACKENDS = ("reference", "vectorized")
Selection = Literal["topk", "softmax"]
_SELECTIONS = ("topk", "softmax")
_TAKEN = torch.iinfo(torch.int64).max
_TAKEN_LOW = torch.iinfo(torch.int64).min


class HardDraws(NamedTuple):
    """The random bits one call of :meth:`~negsample.HardNegativeSampler.sample` consumes.

    Attributes:
        candidate_bits: ``(B, num_candidates)`` ints in ``[0, 2**62)``; slot ``j``
            of row ``b`` becomes the candidate that the candidate source's ``draw``
            makes of ``candidate_bits[b, j]`` (uniform: item ``bits % num_items``
            unless it is a positive, else the ``(bits // num_items) % n_u``-th
            non-positive; see :class:`~negsample.candidates.UniformCandidates`).
        slot_keys: ``(B, num_candidates)`` ints in ``[0, 2**62)``; the random part
            takes the non-hard slots with the smallest keys (ties to the lower slot),
            a uniformly random ordered subset.
        selection_bits: ``(B, num_candidates)`` ints in ``[0, 2**62)`` for
            ``selection="softmax"`` (``None`` for top-k): slot ``j``'s Gumbel noise
            is ``-log(-log(u))`` with ``u = ((bits >> 10) + 0.5) / 2**52``.
    """

    candidate_bits: torch.Tensor
    slot_keys: torch.Tensor
    selection_bits: torch.Tensor | None = None


@dataclass(frozen=True)
class NegativeSample:
    """Negatives with what a loss correction or a log needs to know about them.

    What ``sample(..., return_info=True)`` returns. All tensors stay on the
    users' device; nothing here synchronises with the host until you read a
    value (``float(info.duplicate_fraction)``).

    Attributes:
        items: ``(B, K)`` ``int64`` negatives, exactly what ``sample`` returns.
        log_prob: ``(B, K)`` log-probability that one draw from the candidate
            distribution gives this item, ``log q_u(item)`` (``-log |C_u|`` for
            uniform candidates): the ``log Q`` of a sampled-softmax / logQ
            correction. In torch's default float dtype. NaN where ``items`` is
            :data:`~negsample.NO_NEGATIVE` (unvalidated sampling only).
        is_hard: ``(B, K)`` bool, ``True`` where the negative came from the hard
            part, ``False`` for the random part.
        scores: ``(B, K)`` the scorer's scores of the negatives (computed under
            ``no_grad`` during sampling), or ``None`` for a sampler that does not score;
            NaN where ``items`` is :data:`~negsample.NO_NEGATIVE`.
        duplicate_fraction: 0-dim float tensor, the fraction of this call's
            candidates that repeat an earlier candidate of the same row, over
            the candidates that are items (:data:`~negsample.NO_NEGATIVE`
            slots left out).

    Example:
        >>> index = PositiveIndex.from_dict({0: [0]}, num_items=4)
        >>> sampler = HardNegativeSampler(index, 3, num_hard=1, num_random=1, generator=0)
        >>> info = sampler.sample(torch.tensor([0, 0]), lambda u, i: i.float(), return_info=True)
        >>> info.items.shape, info.is_hard[0].tolist()
        (torch.Size([2, 2]), [True, False])
        >>> torch.allclose(info.log_prob, -torch.log(torch.tensor(3.0)))  # three non-positives
        True
    """

    items: torch.Tensor
    log_prob: torch.Tensor
    is_hard: torch.Tensor
    scores: torch.Tensor | None
    duplicate_fraction: torch.Tensor

    @property
    def hard_score_mean(self) -> torch.Tensor:
        """Mean score of the hard negatives (0-dim; NaN without scores or hard part).

        :data:`~negsample.NO_NEGATIVE` slots are left out, as they hold no score.
        """
        return self._mean_score(self.is_hard)

    @property
    def random_score_mean(self) -> torch.Tensor:
        """Mean score of the random negatives (0-dim; NaN without scores or random part).

        :data:`~negsample.NO_NEGATIVE` slots are left out, as they hold no score.
        """
        return self._mean_score(~self.is_hard)

    def _mean_score(self, mask: torch.Tensor) -> torch.Tensor:
        if self.scores is None:
            return torch.tensor(math.nan, device=self.items.device)
        # A NaN score of a slot without a negative would make the whole mean NaN.
        mask = mask & (self.items != NO_NEGATIVE)
        total = torch.where(mask, self.scores.to(torch.float64), 0.0).sum()
        return (total / mask.sum()).to(self.scores.dtype)


class _BaseSampler:
    """Index, backend, generator and validation handling shared by the samplers."""

    def __init__(
        self,
        index: PositiveIndex,
        *,
        candidates: Literal["uniform", "popularity"],
        alpha: float | None,
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
        self.candidates: CandidateSource = make_candidates(index, candidates, alpha)
        self.backend: Backend = backend
        self.validate = validate
        self._generator_arg = make_generator("generator", generator)
        self._generators: dict[torch.device, torch.Generator] = {}

    def to(self, device: torch.device | str) -> Self:
        """Move the sampler's index to ``device`` (in place) and return the sampler."""
        self.candidates = self.candidates.to(device)
        self.index = self.candidates.index
        return self

    def _candidates_repr(self) -> str:
        if isinstance(self.candidates, UniformCandidates):
            return ""
        return f"candidates='popularity', alpha={self.candidates.alpha}, "

    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        """The generator for ``device``: one stream per device for an int seed."""
        _check_sampling_device(device)
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
        an uninterrupted one. For an int seed it also holds the seed, which
        starts the streams of devices not drawn on yet (every device, before the
        first ``sample``). With ``generator=None`` the sampler draws from
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
        if isinstance(self._generator_arg, int):
            return {"generator_states": states, "seed": self._generator_arg}
        return {"generator_states": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the random state saved by :meth:`state_dict`.

        A saved seed replaces the sampler's own (for a ``torch.Generator``, it
        seeds the generator when the state holds no generator state), so the
        sampler continues the saved stream whatever seed it was made with.

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
        seed = state_dict.get("seed")
        if seed is not None and not isinstance(make_generator("state_dict['seed']", seed), int):
            raise TypeError(f"state_dict['seed'] must be an int seed, got {_short(seed)}")
        if self._generator_arg is None:
            raise ValueError(
                "this sampler draws from torch's default generator (generator=None), which it "
                "does not own; restore it with torch.set_rng_state, or pass generator=seed"
            )
        if seed is not None and isinstance(self._generator_arg, int):
            # Streams already started from this sampler's own seed would not be the saved ones.
            self._generator_arg = int(seed)
            self._generators = {}
        elif seed is not None and isinstance(self._generator_arg, torch.Generator) and not states:
            self._generator_arg.manual_seed(int(seed))
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

    def check_samplable(self, users: IdsLike | None = None) -> None:
        """Raise unless every user in ``users`` can be sampled for, with this sampler's candidates.

        What ``validate=True`` checks at every call, as a one-off: run it over
        the training users before sampling with ``validate=False``. A user
        can be sampled for when it has a non-positive item, and, with
        ``candidates="popularity"`` and ``alpha > 0``, a non-positive of
        non-zero weight (an item nobody interacted with weighs 0). Reads values
        back to the host.

        Args:
            users: Integer user ids on any device; ``None`` (the default) checks
                every user of the index.

        Raises:
            EmptyComplementError: Naming the users that cannot be sampled for.
            ValueError: For ids out of range.
            TypeError: For ids that are not integers.

        Example:
            >>> index = PositiveIndex.from_dict({0: [0, 1], 1: [0, 1]}, num_items=3)
            >>> UniformSampler(index).check_samplable()  # item 2 is left for both users
            >>> # Nobody interacted with item 2: by popularity it weighs 0.
            >>> UniformSampler(index, candidates="popularity").check_samplable([1])
            Traceback (most recent call last):
            ...
            negsample.errors.EmptyComplementError: user 1 has no non-positive item of non-zero weight ...
        """
        if users is None:
            users_t = torch.arange(self.index.num_users, device=self.index.device)
        else:
            users_t = as_index_tensor("users", users, device=self.index.device).long()
        check_ids_in_range("users", users_t, self.index.num_users, "user")
        self.candidates.check(users_t.reshape(-1))

    def _check_users(self, users: IdsLike) -> torch.Tensor:
        users_t = as_index_tensor("users", users)
        if users_t.ndim != 1:
            raise ValueError(
                f"users must be a 1-D tensor of user ids, got shape {tuple(users_t.shape)}"
            )
        _check_sampling_device(users_t.device)
        if users_t.device != self.index.device:
            raise ValueError(
                f"users are on {users_t.device} but the index is on {self.index.device}; "
                f"call sampler.to({str(users_t.device)!r}) once before sampling"
            )
        users_t = users_t.long()
        if self.validate and users_t.numel():
            upper = self.index.num_users
            # One read-back for both checks; the checks then name what is wrong.
            if upper == 0 or bool(self._invalid(users_t, upper).any()):
                check_ids_in_range("users", users_t, upper, "user")
                self.candidates.check(users_t)
        return users_t

    def _invalid(self, users: torch.Tensor, upper: int) -> torch.Tensor:
        """Per user: out of range, or nothing to draw from (for ``upper >= 1`` users)."""
        out_of_range = (users < 0) | (users >= upper)
        return out_of_range | self.candidates._empty(users.clamp(0, upper - 1))


def _check_sampling_device(device: torch.device) -> None:
    """Raise for a device a sampler cannot draw on: ``meta`` tensors hold no values."""
    if device.type == "meta":
        raise ValueError(
            f"a sampler cannot draw on device {str(device)!r}: meta tensors hold no values; "
            f"use a device with memory, such as 'cpu' or 'cuda'"
        )


class HardNegativeSampler(_BaseSampler):
    """Hard negatives: the top-scored of ``num_candidates`` candidates, plus random ones.

    Each call draws ``num_candidates`` items (with replacement) from every
    user's non-positives, scores them with the caller's model, and returns
    ``num_hard`` hard ones followed by ``num_random`` others drawn without
    replacement from the remaining candidates. A known positive is never returned.

    Args:
        index: The users' known positives.
        num_candidates: Candidates drawn per row (``M``).
        num_hard: Hard candidates kept per row.
        num_random: Further candidates kept at random per row.
        candidates: Where candidates come from. ``"uniform"``: uniformly over
            the user's non-positives. ``"popularity"``: proportionally to
            ``popularity ** alpha`` over them (see
            :class:`~negsample.candidates.PopularityCandidates`).
        alpha: The popularity exponent in ``[0, 1]`` for
            ``candidates="popularity"`` (default 0.75); not allowed with uniform
            candidates.
        selection: How the hard part is chosen. ``"topk"``: the ``num_hard``
            highest scores, highest first. ``"softmax"``: ``num_hard`` candidates
            drawn without replacement with probability proportional to
            ``exp(score / temperature)`` (Gumbel-top-k); it tends to the top-k as
            the temperature goes to 0.
        temperature: For ``selection="softmax"``, a finite number ``> 0``
            (default 1.0); not allowed with top-k.
        backend: ``"vectorized"`` (batched, any device, no host synchronisation
            when ``validate=False``) or ``"reference"`` (a per-row Python loop that
            reads like the contract; slow, for checking).
        generator: ``None`` for torch's default generator, an int seed (one
            stream per device, seeded with it), or a ``torch.Generator`` on the
            device the users will be on.
        validate: Check values at every call: user ids in range, every user has a
            negative, scores free of NaN. These read values back to the host (a
            GPU synchronisation); pass ``False`` in a hot loop once the data is
            known good (:meth:`check_samplable` checks it once). Without the
            check, a user with nothing to draw gets a row of
            :data:`~negsample.NO_NEGATIVE` (-1), never a positive. Shape, dtype
            and device checks always run.
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
        >>> softer = HardNegativeSampler(
        ...     index, 4, 1, 1, candidates="popularity", selection="softmax", temperature=0.5
        ... )
        >>> softer.candidates, softer.selection, softer.temperature
        (PopularityCandidates(alpha=0.75), 'softmax', 0.5)
    """

    def __init__(
        self,
        index: PositiveIndex,
        num_candidates: int = 10,
        num_hard: int = 2,
        num_random: int = 2,
        *,
        candidates: Literal["uniform", "popularity"] = "uniform",
        alpha: float | None = None,
        selection: Selection = "topk",
        temperature: float | None = None,
        backend: Backend = "vectorized",
        generator: torch.Generator | int | None = None,
        validate: bool = True,
        max_scores_per_call: int = 2**20,
    ) -> None:
        super().__init__(
            index,
            candidates=candidates,
            alpha=alpha,
            backend=backend,
            generator=generator,
            validate=validate,
        )
        self.max_scores_per_call = check_int("max_scores_per_call", max_scores_per_call, minimum=1)
        self.num_candidates = check_int("num_candidates", num_candidates, minimum=1)
        self.num_hard, self.num_random = _check_sizes(self.num_candidates, num_hard, num_random)
        if selection not in _SELECTIONS:
            raise ValueError(f"selection must be one of {_SELECTIONS}, got {_short(selection)}")
        self.selection: Selection = selection
        if selection == "topk":
            if temperature is not None:
                raise ValueError(
                    f"temperature={_short(temperature)} only applies to selection='softmax'"
                )
            self.temperature: float | None = None
        else:
            self.temperature = _check_temperature(1.0 if temperature is None else temperature)

    @property
    def num_negatives(self) -> int:
        """Negatives returned per row, ``num_hard + num_random``."""
        return self.num_hard + self.num_random

    def __repr__(self) -> str:
        selection = (
            f"selection='softmax', temperature={self.temperature}, "
            if self.selection == "softmax"
            else ""
        )
        return (
            f"HardNegativeSampler(num_candidates={self.num_candidates}, num_hard={self.num_hard}, "
            f"num_random={self.num_random}, {self._candidates_repr()}{selection}"
            f"backend={self.backend!r}, validate={self.validate})"
        )

    def draw(self, batch_size: int, device: torch.device | str = "cpu") -> HardDraws:
        """Draw the random bits for a batch, advancing the sampler's generator.

        :meth:`sample` calls this; it is public so that the two backends can be
        fed identical draws (see :func:`~negsample.samplers.hard_negatives`).

        Args:
            batch_size: Rows in the batch (``B``), ``>= 0``.
            device: Device of the batch's users; the bits are drawn there, from
                the sampler's generator for that device.

        Returns:
            The draws for ``B`` rows of ``num_candidates`` slots each.

        Example:
            >>> index = PositiveIndex.from_dict({0: [1]}, num_items=10)
            >>> sampler = HardNegativeSampler(index, num_candidates=5, generator=0)
            >>> sampler.draw(3).candidate_bits.shape
            torch.Size([3, 5])
        """
        device = torch.device(device)
        gen = self._generator_for(device)
        shape = (check_int("batch_size", batch_size, minimum=0), self.num_candidates)
        candidate_bits = draw_bits(gen, shape, device)
        slot_keys = draw_bits(gen, shape, device)
        if self.selection == "topk":
            return HardDraws(candidate_bits, slot_keys)
        return HardDraws(candidate_bits, slot_keys, draw_bits(gen, shape, device))

    @overload
    def sample(
        self, users: IdsLike, scorer: Scorer, *, return_info: Literal[False] = ...
    ) -> torch.Tensor: ...

    @overload
    def sample(
        self, users: IdsLike, scorer: Scorer, *, return_info: Literal[True]
    ) -> NegativeSample: ...

    def sample(
        self, users: IdsLike, scorer: Scorer, *, return_info: bool = False
    ) -> torch.Tensor | NegativeSample:
        """Hard negatives for each user in the batch.

        Args:
            users: 1-D integer tensor of user ids (on the index's device).
            scorer: ``scorer(users, items) -> scores`` over same-shape integer
                tensors; called under ``torch.no_grad()`` on ``(B, num_candidates)``
                tensors (``reference``: on ``(num_candidates,)`` per row).
            return_info: Return a :class:`~negsample.samplers.NegativeSample`
                (negatives with their log-probabilities, hard/random flags,
                scores and diagnostics) instead of the bare tensor.

        Returns:
            ``int64`` tensor of shape ``(B, num_hard + num_random)`` on the users'
            device: the hard items (best first), then the random ones; or a
            :class:`~negsample.samplers.NegativeSample` holding it.

        Raises:
            EmptyComplementError: If a user has no negative to draw (with
                ``validate``; without, its row is :data:`~negsample.NO_NEGATIVE`).
            ValueError: For out-of-range ids, or scores of the wrong shape, dtype
                or device, or containing NaN.
            TypeError: For non-integer users or a scorer that is not callable.

        Example:
            >>> index = PositiveIndex.from_dict({0: [0, 1], 1: [2]}, num_items=6)
            >>> sampler = HardNegativeSampler(index, 4, num_hard=1, num_random=1, generator=0)
            >>> def scorer(users, items):  # prefers high item ids
            ...     return items.float()
            >>> users = torch.tensor([0, 1, 1])
            >>> negatives = sampler.sample(users, scorer)
            >>> negatives.shape
            torch.Size([3, 2])
            >>> bool((negatives[:, 0] >= negatives[:, 1]).all())  # the hard one scores highest
            True
            >>> bool(index.contains(users[:, None], negatives).any())
            False
            >>> info = sampler.sample(users, scorer, return_info=True)
            >>> info.is_hard
            tensor([[ True, False],
                    [ True, False],
                    [ True, False]])
        """
        if not callable(scorer):
            raise TypeError(
                f"scorer must be callable as scorer(users, items), got {type(scorer).__name__}"
            )
        users_t = self._check_users(users)
        draws = self.draw(users_t.numel(), users_t.device)
        return hard_negatives(  # type: ignore[call-overload, no-any-return]
            self.index,
            users_t,
            scorer,
            draws,
            num_hard=self.num_hard,
            num_random=self.num_random,
            candidates=self.candidates,
            temperature=self.temperature,
            backend=self.backend,
            validate=self.validate,
            max_scores_per_call=self.max_scores_per_call,
            return_info=return_info,
        )


class UniformSampler(_BaseSampler):
    """Negatives drawn independently from each user's non-positives, no scoring.

    The baseline to compare hard negatives against. Draws are with replacement
    and independent, uniform (``candidates="uniform"``) or proportional to
    ``popularity ** alpha`` (``candidates="popularity"``); a known positive is
    never returned.

    Args:
        index: The users' known positives.
        num_negatives: Negatives per row.
        candidates: ``"uniform"`` or ``"popularity"``, as in :class:`HardNegativeSampler`.
        alpha: The popularity exponent in ``[0, 1]`` (default 0.75), popularity only.
        backend: ``"vectorized"`` or ``"reference"``, as in :class:`HardNegativeSampler`.
        generator: ``None``, an int seed or a ``torch.Generator``.
        validate: Check ids and that each user has a negative (synchronises);
            without, as in :class:`HardNegativeSampler`.

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

    def __repr__(self) -> str:
        return (
            f"UniformSampler(num_negatives={self.num_negatives}, {self._candidates_repr()}"
            f"backend={self.backend!r}, validate={self.validate})"
        )

    def draw(self, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw the ``(batch_size, num_negatives)`` random bits for a batch.

        :meth:`sample` calls this, advancing the sampler's generator.

        Args:
            batch_size: Rows in the batch (``B``), ``>= 0``.
            device: Device of the batch's users; the bits are drawn there, from
                the sampler's generator for that device.

        Returns:
            ``int64`` tensor of shape ``(batch_size, num_negatives)``: random bits
            that the candidate distribution maps to items.
        """
        device = torch.device(device)
        shape = (check_int("batch_size", batch_size, minimum=0), self.num_negatives)
        return draw_bits(self._generator_for(device), shape, device)

    @overload
    def sample(
        self, users: IdsLike, scorer: Scorer | None = ..., *, return_info: Literal[False] = ...
    ) -> torch.Tensor: ...

    @overload
    def sample(
        self, users: IdsLike, scorer: Scorer | None = ..., *, return_info: Literal[True]
    ) -> NegativeSample: ...

    def sample(
        self, users: IdsLike, scorer: Scorer | None = None, *, return_info: bool = False
    ) -> torch.Tensor | NegativeSample:
        """Negatives for each user in the batch.

        Args:
            users: 1-D integer tensor of user ids (on the index's device).
            scorer: Ignored; accepted so the samplers are interchangeable in a loop.
            return_info: Return a :class:`~negsample.samplers.NegativeSample`
                (with ``log_prob``; ``scores`` is ``None``) instead of the tensor.

        Returns:
            ``int64`` tensor of shape ``(B, num_negatives)`` on the users' device,
            or a :class:`~negsample.samplers.NegativeSample` holding it.

        Raises:
            EmptyComplementError: If a user has no negative to draw.
            ValueError: For out-of-range ids or users on another device than the
                index.
            TypeError: For non-integer users.

        Example:
            >>> index = PositiveIndex.from_dict({0: [1, 2, 3]}, num_items=5)
            >>> sampler = UniformSampler(index, num_negatives=3, generator=0)
            >>> negatives = sampler.sample(torch.tensor([0, 0]))
            >>> negatives.shape
            torch.Size([2, 3])
            >>> bool(index.contains(torch.tensor([[0], [0]]), negatives).any())
            False
            >>> sampler.sample([0], return_info=True).log_prob  # uniform over 2 items
            tensor([[-0.6931, -0.6931, -0.6931]])
        """
        users_t = self._check_users(users)
        bits = self.draw(users_t.numel(), users_t.device)
        if self.backend == "reference":
            items, log_prob = _uniform_reference(self.candidates, users_t, bits, return_info)
        else:
            items = self.candidates.draw(users_t, bits)
            log_prob = self.candidates.log_prob(users_t, items) if return_info else None
        if log_prob is None:
            return items
        return NegativeSample(
            items=items,
            log_prob=log_prob.to(torch.get_default_dtype()),
            is_hard=torch.zeros_like(items, dtype=torch.bool),
            scores=None,
            duplicate_fraction=_duplicate_fraction(items),
        )


def _check_sizes(num_candidates: int, num_hard: Any, num_random: Any) -> tuple[int, int]:
    """``num_hard`` and ``num_random`` as ints: each ``>= 0``, together 1 to ``num_candidates``."""
    num_hard = check_int("num_hard", num_hard, minimum=0)
    num_random = check_int("num_random", num_random, minimum=0)
    total = num_hard + num_random
    if not 1 <= total <= num_candidates:
        raise ValueError(
            f"num_hard + num_random must be between 1 and num_candidates={num_candidates}, "
            f"got {num_hard} + {num_random} = {total}"
        )
    return num_hard, num_random


def _check_temperature(temperature: Any) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a float > 0, got {_short(temperature)}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite float > 0, got {temperature}")
    return float(temperature)


def _duplicate_fraction(items: torch.Tensor) -> torch.Tensor:
    """Fraction of items equal to an earlier item of their row (0-dim, default float dtype).

    :data:`~negsample.NO_NEGATIVE` entries are no items: a row of them is not
    ``M - 1`` repeats, and they are left out of the count too.
    """
    if items.numel() == 0:
        return torch.zeros((), device=items.device)
    ordered = items.sort(dim=1).values
    repeats = ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != NO_NEGATIVE)).sum()
    count = (items != NO_NEGATIVE).sum().clamp(min=1)
    return repeats.to(torch.get_default_dtype()) / count


# ---------------------------------------------------------------------- the two implementations


@overload
def hard_negatives(
    index: PositiveIndex,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    *,
    num_hard: int,
    num_random: int,
    candidates: CandidateSource | None = ...,
    temperature: float | None = ...,
    backend: Backend = ...,
    validate: bool = ...,
    max_scores_per_call: int = ...,
    return_info: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def hard_negatives(
    index: PositiveIndex,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    *,
    num_hard: int,
    num_random: int,
    candidates: CandidateSource | None = ...,
    temperature: float | None = ...,
    backend: Backend = ...,
    validate: bool = ...,
    max_scores_per_call: int = ...,
    return_info: Literal[True],
) -> NegativeSample: ...


def hard_negatives(
    index: PositiveIndex,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    *,
    num_hard: int,
    num_random: int,
    candidates: CandidateSource | None = None,
    temperature: float | None = None,
    backend: Backend = "vectorized",
    validate: bool = True,
    max_scores_per_call: int = 2**20,
    return_info: bool = False,
) -> torch.Tensor | NegativeSample:
    """Apply the hard-negative contract to given random draws (no randomness of its own).

    ``users`` must be a 1-D ``int64`` tensor of valid ids on the index's device;
    ``draws`` must have ``B`` rows. A user with nothing to draw from gets a row of
    :data:`~negsample.NO_NEGATIVE` (and NaN ``log_prob`` and ``scores``).
    :meth:`~negsample.HardNegativeSampler.sample` checks the ids (and, with
    ``validate``, that every user has a negative), then calls this. With equal
    inputs both backends return identical negatives.

    Args:
        index: The users' known positives.
        users: 1-D ``int64`` user ids, one per row.
        scorer: ``scorer(users, items) -> scores``, as for the sampler.
        draws: The random bits of the call, ``B`` rows.
        num_hard: Hard candidates kept per row.
        num_random: Random candidates kept per row.
        candidates: The candidate distribution over ``index`` (default uniform).
        temperature: ``None`` for the top-k hard part; a float ``> 0`` for the
            softmax (Gumbel-top-k) one, which needs ``draws.selection_bits``.
        backend: ``"vectorized"`` or ``"reference"``.
        validate: Check the scores for NaN (synchronises).
        max_scores_per_call: Largest number of candidates per scorer call.
        return_info: Return a :class:`NegativeSample` instead of the items.

    Returns:
        ``(B, num_hard + num_random)`` ``int64`` items, or a :class:`NegativeSample`.

    Raises:
        ValueError: If ``num_hard`` or ``num_random`` is negative, if together
            they are 0 or more than the draws' ``num_candidates``, if the draws'
            shapes do not match ``users``, or for a NaN score with ``validate``.
        TypeError: If ``num_hard`` or ``num_random`` is not an int.

    Example:
        >>> index = PositiveIndex.from_dict({0: [1]}, num_items=4)
        >>> draws = HardDraws(torch.tensor([[0, 2, 3]]), torch.tensor([[5, 3, 4]]))
        >>> def scorer(users, items):
        ...     return -items.float()
        >>> hard_negatives(index, torch.tensor([0]), scorer, draws, num_hard=1, num_random=1).tolist()
        [[0, 2]]
    """
    source = UniformCandidates(index) if candidates is None else candidates
    if source.index is not index:
        raise ValueError("candidates must be built on the same index that is passed")
    bits_shape = tuple(draws.candidate_bits.shape)
    if len(bits_shape) != 2 or bits_shape[0] != users.numel() or bits_shape[1] < 1:
        raise ValueError(
            f"draws.candidate_bits must have shape (len(users), num_candidates) = "
            f"({users.numel()}, M) with M >= 1, got {bits_shape}"
        )
    if tuple(draws.slot_keys.shape) != bits_shape:
        raise ValueError(
            f"draws.slot_keys must have the shape of draws.candidate_bits, {bits_shape}, "
            f"got {tuple(draws.slot_keys.shape)}"
        )
    num_hard, num_random = _check_sizes(bits_shape[1], num_hard, num_random)
    if temperature is not None:
        temperature = _check_temperature(temperature)
        if draws.selection_bits is None:
            raise ValueError("softmax selection (temperature set) needs draws.selection_bits")
        if draws.selection_bits.shape != draws.candidate_bits.shape:
            raise ValueError(
                f"draws.selection_bits must have the shape of draws.candidate_bits, "
                f"{tuple(draws.candidate_bits.shape)}, got {tuple(draws.selection_bits.shape)}"
            )
    width = num_hard + num_random
    if users.numel() == 0:
        empty = torch.empty((0, width), dtype=torch.int64, device=users.device)
        if not return_info:
            return empty
        return NegativeSample(
            items=empty,
            log_prob=torch.empty((0, width), device=users.device),
            is_hard=torch.empty((0, width), dtype=torch.bool, device=users.device),
            scores=torch.empty((0, width), device=users.device),
            duplicate_fraction=torch.zeros((), device=users.device),
        )
    if backend == "reference":
        result = _hard_reference(
            source, users, scorer, draws, num_hard, num_random, temperature, validate, return_info
        )
    else:
        result = _hard_vectorized(
            source,
            users,
            scorer,
            draws,
            num_hard,
            num_random,
            temperature,
            validate,
            max_scores_per_call,
            return_info,
        )
    return result if return_info else result.items


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


def _scorable(candidates: torch.Tensor) -> torch.Tensor:
    """The candidates with :data:`~negsample.NO_NEGATIVE` made item 0, for the scorer.

    The scorer's contract is valid item ids (an embedding lookup of -1 fails, on
    a GPU with a device-side assert); a row of a user without negatives is
    returned as ``NO_NEGATIVE`` whatever its scores are.
    """
    return candidates.clamp(min=0)


def _no_score_for_no_negative(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """NaN where ``items`` is :data:`~negsample.NO_NEGATIVE`: no item was scored there."""
    return torch.where(items >= 0, scores, math.nan)


def _gumbel(bits: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise (``float64``) from draws in ``[0, 2**62)``: ``-log(-log(u))``."""
    unit = ((bits >> 10).to(torch.float64) + 0.5) * 2.0**-52  # in (0, 1), never 0 or 1
    return -torch.log(-torch.log(unit))


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
    keys = slot_keys.scatter(1, taken, _TAKEN)
    if k > _ARGMIN_ROUNDS_MAX:
        return torch.sort(keys, dim=1, stable=True).indices[:, :k]
    return _rounds(keys, k, torch.argmin, _TAKEN)


def _best_first(key: float, slot: int) -> tuple[bool, float, int]:
    """Sort key for the hard part: the highest keys first, ties to the lower slot.

    The total order of the vectorized path (torch's sort): NaN above ``+inf``
    and ``-0.0`` equal to ``+0.0``. Python's ``sorted`` would leave NaN wherever
    its comparisons happen to put it.
    """
    if math.isnan(key):
        return (False, 0.0, slot)
    return (True, -key, slot)


def _hard_reference(
    source: CandidateSource,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    num_hard: int,
    num_random: int,
    temperature: float | None,
    validate: bool,
    return_info: bool = False,
) -> NegativeSample:
    """One row at a time, step by step as the contract is written."""
    num_candidates = draws.candidate_bits.shape[1]
    slots = range(num_candidates)
    noise = (
        _gumbel(draws.selection_bits).tolist()
        if temperature is not None and draws.selection_bits is not None
        else [[0.0] * num_candidates] * users.numel()
    )
    rows, scores_out, log_probs, repeats, drawn = [], [], [], 0, 0
    for user, candidate_bits, slot_keys, gumbel in zip(
        users.tolist(),
        draws.candidate_bits.tolist(),
        draws.slot_keys.tolist(),
        noise,
        strict=True,
    ):
        # 1. candidates from the user's complement
        candidates = source.reference_draw(user, candidate_bits)
        items_drawn = [c for c in candidates if c != NO_NEGATIVE]
        repeats += len(items_drawn) - len(set(items_drawn))
        drawn += len(items_drawn)
        # 2. score them
        items = torch.tensor(candidates, device=users.device)
        score_t = _score(scorer, torch.full_like(items, user), _scorable(items), validate)
        scores = score_t.tolist()
        # 3. hard part: best first, ties to the lower slot
        if temperature is None:
            keys = scores
        else:
            keys = [scores[s] / temperature + gumbel[s] for s in slots]
        hard = sorted(slots, key=lambda s: _best_first(keys[s], s))[:num_hard]
        # 4. random part: uniform without replacement over the other slots
        others = [s for s in slots if s not in hard]
        random_part = sorted(others, key=lambda s: (slot_keys[s], s))[:num_random]
        # 5. hard, then random
        chosen = hard + random_part
        rows.append([candidates[s] for s in chosen])
        scores_out.append(_no_score_for_no_negative(score_t[chosen], items[chosen]))
        if return_info:
            log_probs.append(source.reference_log_prob(user, rows[-1]))
    device = users.device
    width = num_hard + num_random
    items_t = torch.tensor(rows, dtype=torch.int64, device=device).reshape(-1, width)
    return NegativeSample(
        items=items_t,
        log_prob=(
            torch.tensor(log_probs, device=device).reshape(-1, width)
            if return_info
            else torch.empty(0)
        ),
        is_hard=(torch.arange(width, device=device) < num_hard).expand(items_t.shape),
        scores=torch.stack(scores_out) if scores_out else None,
        duplicate_fraction=torch.tensor(repeats / max(1, drawn)),
    )


def _hard_vectorized(
    source: CandidateSource,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    num_hard: int,
    num_random: int,
    temperature: float | None,
    validate: bool,
    max_scores_per_call: int = 2**20,
    return_info: bool = False,
) -> NegativeSample:
    """The whole batch at once; no loop over rows, no host synchronisation."""
    batch, num_candidates = draws.candidate_bits.shape
    users_bm = users[:, None].expand(batch, num_candidates)
    candidates = source.draw(users, draws.candidate_bits)
    scorable = _scorable(candidates)
    rows = max(1, max_scores_per_call // num_candidates)
    if batch <= rows:
        scores = _score(scorer, users_bm, scorable, validate)
    else:
        # Chunk sizes come from shapes only, so chunking needs no synchronisation.
        scores = torch.cat(
            [
                _score(scorer, u, c, validate)
                for u, c in zip(
                    torch.split(users_bm, rows), torch.split(scorable, rows), strict=True
                )
            ]
        )
    if temperature is None:
        keys = scores
    else:
        assert draws.selection_bits is not None
        keys = scores.to(torch.float64) / temperature + _gumbel(draws.selection_bits)
    hard = _highest_slots(keys, num_hard)
    if num_random:
        chosen = torch.cat([hard, _smallest_free_slots(draws.slot_keys, hard, num_random)], dim=1)
    else:
        chosen = hard
    items = candidates.gather(1, chosen)
    if not return_info:
        empty = torch.empty(0)
        return NegativeSample(items, empty, empty, None, empty)
    width = num_hard + num_random
    return NegativeSample(
        items=items,
        log_prob=source.log_prob(users, items).to(torch.get_default_dtype()),
        is_hard=(torch.arange(width, device=items.device) < num_hard).expand(items.shape),
        scores=_no_score_for_no_negative(scores.gather(1, chosen), items),
        duplicate_fraction=_duplicate_fraction(candidates),
    )


def _uniform_reference(
    source: CandidateSource, users: torch.Tensor, bits: torch.Tensor, return_info: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One row at a time: each row's draws (and their log-probabilities)."""
    rows, log_probs = [], []
    for user, row_bits in zip(users.tolist(), bits.tolist(), strict=True):
        rows.append(source.reference_draw(user, row_bits))
        if return_info:
            log_probs.append(source.reference_log_prob(user, rows[-1]))
    device = users.device
    items = torch.tensor(rows, dtype=torch.int64, device=device).reshape(bits.shape)
    if not return_info:
        return items, None
    return items, torch.tensor(log_probs, dtype=torch.float64, device=device).reshape(bits.shape)


# ---------------------------------------------------------------------- shared candidates


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

    def _mask(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.backend == "reference":
            return _shared_mask_reference(self.index, users, items)
        return _shared_mask(self.index, users, items)


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


def _shared_mask(index: PositiveIndex, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """The mask of :meth:`SharedNegativeSampler.mask`, batched.

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
    # With no items the CPU path's clamp(max=k - 1) would index the empty sort at -1.
    if index.num_interactions == 0 or batch == 0 or k == 0:
        return torch.zeros((batch, k), dtype=torch.bool, device=device)
    sorted_items, order = torch.sort(items)
    starts = index.indptr.index_select(0, users).long()
    ends = index.indptr.index_select(0, users + 1).long()
    if device.type in _candidates_module._COMPACTING_DEVICES:
        return _shared_mask_compacting(index, starts, ends, sorted_items, order)
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
    return torch.gather(covered, 1, inverse.expand(batch, k))


def _shared_mask_compacting(
    index: PositiveIndex,
    starts: torch.Tensor,
    ends: torch.Tensor,
    sorted_items: torch.Tensor,
    order: torch.Tensor,
) -> torch.Tensor:
    """:func:`_shared_mask` with data-dependent shapes: only the hits are expanded."""
    batch, k = starts.numel(), sorted_items.numel()
    device = sorted_items.device
    counts = ends - starts
    rows = torch.repeat_interleave(torch.arange(batch, device=device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    positions = torch.arange(rows.numel(), device=device) + (starts - offsets).index_select(0, rows)
    positives = index._items_at(positions)
    low = torch.searchsorted(sorted_items, positives)
    hit = sorted_items.index_select(0, low.clamp(max=k - 1)) == positives
    rows, low, positives = rows[hit], low[hit], positives[hit]
    copies = torch.searchsorted(sorted_items, positives, right=True) - low
    first = torch.cumsum(copies, 0) - copies
    slots = torch.repeat_interleave(low - first, copies) + torch.arange(
        int(copies.sum()), device=device
    )
    mask = torch.zeros((batch, k), dtype=torch.bool, device=device)
    mask[torch.repeat_interleave(rows, copies), order.index_select(0, slots)] = True
    return mask
