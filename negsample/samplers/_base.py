"""What every sampler shares: the generator, the random state and the checks of the users.

:class:`_BaseSampler` holds the index and its candidate distribution, the
``backend`` switch, one generator stream per device (with ``state_dict`` and
``load_state_dict`` to checkpoint it) and the validation of the users at the
public boundary. :class:`NegativeSample` is what the per-row samplers return
with ``return_info=True``; :data:`Scorer` is the scorer contract.

The neighbours build on it: ``_hard`` (:class:`~negsample.HardNegativeSampler`),
``_uniform`` (:class:`~negsample.UniformSampler`) and ``_shared``
(:class:`~negsample.SharedNegativeSampler`). The candidate distributions are in
:mod:`negsample.candidates`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from typing_extensions import Self

from negsample._checks import _short, as_index_tensor, check_ids_in_range, make_generator
from negsample._random import resolve_generator
from negsample.candidates import CandidateSource, UniformCandidates, make_candidates
from negsample.index import NO_NEGATIVE, PositiveIndex
from negsample.typing import IdsLike

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``scorer(users, items) -> scores``, elementwise over same-shape integer tensors."""

Backend = Literal["reference", "vectorized"]
_BACKENDS = ("reference", "vectorized")


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
        >>> from negsample import HardNegativeSampler
        >>> index = PositiveIndex.from_dict({0: [0]}, num_items=4)
        >>> sampler = HardNegativeSampler(index, 3, num_hard=1, num_random=1, generator=0)
        >>> def scorer(users, items):
        ...     return items.float()
        >>> info = sampler.sample(torch.tensor([0, 0]), scorer, return_info=True)
        >>> info.items.shape, info.is_hard[0].tolist()
        (torch.Size([2, 2]), [True, False])
        >>> # one uniform draw of the three non-positives: log(1/3)
        >>> torch.allclose(info.log_prob, -torch.log(torch.tensor(3.0)))
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
            >>> from negsample import UniformSampler
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
            >>> from negsample import UniformSampler
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
