"""Hard negatives: :class:`~negsample.HardNegativeSampler`, the per-row reference and the vectorized path.

``sample`` draws the raw random bits of a call (:class:`HardDraws`) from the
sampler's generator and hands them to :func:`hard_negatives`, which applies
one of two deterministic functions of those bits:

* ``_hard_reference``: a Python loop over rows that reads like the sampling
  contract; the oracle.
* ``_hard_vectorized``: batched tensor code with no loop over rows and no host
  synchronisation; the fast path, on any device. Its selection kernels are in
  ``_selection``.

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
   slot, where "best" depends on ``selection``:

   * ``"topk"``: the highest scores (NaN above ``+inf``, ``-0.0`` equal to ``+0.0``,
     the total order of torch's sort).
   * ``"softmax"``: the highest ``score / temperature + g`` for independent
     standard Gumbel noise ``g`` per slot, which draws ``num_hard`` slots without
     replacement with probability proportional to ``exp(score / temperature)``
     (Gumbel-top-k).
   * ``"dns_mn"`` (DNS(M, N)): ``num_hard`` slots drawn uniformly without
     replacement from the ``top_n`` slots that top-k ranks first: the ones with
     the smallest random keys (``HardDraws.selection_bits``, ties to the better
     rank), kept in rank order.
   * ``"ahns"``: the scores closest to the row's target
     ``t = ahns_beta * (s_pos + ahns_alpha) ** (ahns_p + 1)``, where ``s_pos`` is
     ``scorer(user, positive)`` for the row's positive item: the smallest
     ``|score - t|`` first, in ``float64`` (NaN after ``+inf``);

4. the random part: ``num_random`` slots drawn uniformly without replacement
   from the slots the hard part did not take;
5. output the hard items, then the random items.

The generator, random state and user checks come from ``_base``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, overload

import torch

from negsample._checks import _short, as_index_tensor, check_ids_in_range, check_int
from negsample._random import draw_bits
from negsample.candidates import CandidateSource, UniformCandidates
from negsample.index import NO_NEGATIVE, PositiveIndex
from negsample.samplers._base import (
    Backend,
    NegativeSample,
    Scorer,
    _BaseSampler,
    _duplicate_fraction,
)
from negsample.samplers._selection import (
    _ahns_target,
    _gumbel,
    _highest_slots,
    _lowest_slots,
    _smallest_free_slots,
    _smallest_slots,
)
from negsample.typing import IdsLike

Selection = Literal["topk", "softmax", "dns_mn", "ahns"]
_SELECTIONS = ("topk", "softmax", "dns_mn", "ahns")
_WITH_SELECTION_BITS = ("softmax", "dns_mn")

# AHNS's defaults: those of its authors' code (Riwei-HEU/AHNS, utils/parser.py).
_AHNS_ALPHA, _AHNS_BETA, _AHNS_P = 1.0, 0.1, -2


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
            ``selection="softmax"`` and ``"dns_mn"`` (``None`` for ``"topk"`` and
            ``"ahns"``, which draw nothing for the hard part). Softmax: slot ``j``'s
            Gumbel noise is ``-log(-log(u))`` with ``u = ((bits >> 10) + 0.5) / 2**52``.
            DNS(M, N): slot ``j``'s key; of the ``top_n`` best-ranked slots, the hard
            part takes the ``num_hard`` with the smallest keys (ties to the better
            rank), a uniformly random subset.
    """

    candidate_bits: torch.Tensor
    slot_keys: torch.Tensor
    selection_bits: torch.Tensor | None = None


class HardNegativeSampler(_BaseSampler):
    """Hard negatives: the hardest of ``num_candidates`` candidates, plus random ones.

    Each call draws ``num_candidates`` items (with replacement) from every
    user's non-positives, scores them with the caller's model, and returns
    ``num_hard`` hard ones followed by ``num_random`` others drawn without
    replacement from the remaining candidates. A known positive is never returned.
    Which candidates are hard is the ``selection``: the top-scored ones, a
    softmax draw, a uniform draw among the top ``N`` (DNS(M, N)), or the ones
    whose scores are closest to a target set by the positive's score (AHNS).

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
            the temperature goes to 0. ``"dns_mn"``: DNS(M, N) (Shi et al., WWW
            2023): ``num_hard`` candidates drawn uniformly without replacement
            from the ``top_n`` highest-scored ones, kept highest first.
            ``"ahns"``: AHNS (Lai et al., AAAI 2024): the ``num_hard`` candidates
            whose scores are closest to ``ahns_beta * (s_pos + ahns_alpha) **
            (ahns_p + 1)``, closest first, where ``s_pos`` is the score of the
            row's positive; :meth:`sample` then needs ``positives``.
        temperature: For ``selection="softmax"``, a finite number ``> 0``
            (default 1.0); not allowed with the other selections.
        top_n: For ``selection="dns_mn"`` (required there), the ``N`` of
            DNS(M, N): an int from ``max(1, num_hard)`` to ``num_candidates``.
            ``top_n=num_hard`` is the top-k; not allowed with the other selections.
        ahns_alpha: For ``selection="ahns"``, the target's shift, a finite
            number (default 1.0, as in the AHNS authors' code).
        ahns_beta: For ``selection="ahns"``, the target's scale, a finite
            number (default 0.1).
        ahns_p: For ``selection="ahns"``, an int: the target's exponent is
            ``ahns_p + 1`` (default -2, a target of ``ahns_beta / (s_pos + ahns_alpha)``:
            the higher the positive scores above ``-ahns_alpha``, the easier the
            negative).
        backend: ``"vectorized"`` (batched, any device, no host synchronisation
            when ``validate=False``) or ``"reference"`` (a per-row Python loop that
            reads like the contract; slow, for checking).
        generator: ``None`` for torch's default generator, an int seed (one
            stream per device, seeded with it), or a ``torch.Generator`` on the
            device the users will be on.
        validate: Check values at every call: user ids in range, every user has a
            negative, scores free of NaN (and, for AHNS, positive ids in range).
            These read values back to the host (a GPU synchronisation); pass
            ``False`` in a hot loop once the data is known good
            (:meth:`check_samplable` checks it once). Without the check, a user
            with nothing to draw gets a row of :data:`~negsample.NO_NEGATIVE`
            (-1), never a positive. Shape, dtype and device checks always run.
        max_scores_per_call: The vectorized backend calls the scorer on whole
            rows of candidates, at most this many candidates per call (at least
            one row), so the scorer's own temporaries stay bounded however large
            the batch. The default, ``None``, is ``2**13`` on the CPU (the item
            vectors a call gathers stay in the cache: the sampler of 64
            candidates per row was about twice as fast as in one call; an
            :class:`~negsample.MFModel` gathers none there, and is called on up
            to ``2**22``) and ``2**20`` elsewhere. The negatives do not depend on it.

    Example:
        >>> index = PositiveIndex.from_dict({0: [0, 1], 1: [2]}, num_items=6)
        >>> sampler = HardNegativeSampler(
        ...     index, num_candidates=4, num_hard=1, num_random=1, generator=0
        ... )
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
        >>> dns = HardNegativeSampler(index, 8, 1, 0, selection="dns_mn", top_n=3, generator=0)
        >>> dns.sample(torch.tensor([0, 1, 1]), scorer).shape  # one of each row's top 3
        torch.Size([3, 1])
        >>> ahns = HardNegativeSampler(index, 8, 1, 0, selection="ahns", generator=0)
        >>> ahns.ahns_alpha, ahns.ahns_beta, ahns.ahns_p
        (1.0, 0.1, -2)
        >>> users, positives = torch.tensor([0, 1]), torch.tensor([1, 2])  # the batch's pairs
        >>> ahns.sample(users, scorer, positives=positives).shape
        torch.Size([2, 1])
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
        top_n: int | None = None,
        ahns_alpha: float | None = None,
        ahns_beta: float | None = None,
        ahns_p: int | None = None,
        backend: Backend = "vectorized",
        generator: torch.Generator | int | None = None,
        validate: bool = True,
        max_scores_per_call: int | None = None,
    ) -> None:
        super().__init__(
            index,
            candidates=candidates,
            alpha=alpha,
            backend=backend,
            generator=generator,
            validate=validate,
        )
        self.max_scores_per_call = (
            None
            if max_scores_per_call is None
            else check_int("max_scores_per_call", max_scores_per_call, minimum=1)
        )
        self.num_candidates = check_int("num_candidates", num_candidates, minimum=1)
        self.num_hard, self.num_random = _check_sizes(self.num_candidates, num_hard, num_random)
        rule = _hard_rule(
            selection,
            self.num_candidates,
            self.num_hard,
            temperature=temperature,
            top_n=top_n,
            ahns_alpha=ahns_alpha,
            ahns_beta=ahns_beta,
            ahns_p=ahns_p,
        )
        self.selection: Selection = rule.selection
        self.temperature: float | None = rule.temperature
        self.top_n: int | None = rule.top_n
        self.ahns_alpha: float | None = rule.ahns_alpha
        self.ahns_beta: float | None = rule.ahns_beta
        self.ahns_p: int | None = rule.ahns_p

    @property
    def num_negatives(self) -> int:
        """Negatives returned per row, ``num_hard + num_random``."""
        return self.num_hard + self.num_random

    def __repr__(self) -> str:
        if self.selection == "softmax":
            selection = f"selection='softmax', temperature={self.temperature}, "
        elif self.selection == "dns_mn":
            selection = f"selection='dns_mn', top_n={self.top_n}, "
        elif self.selection == "ahns":
            selection = (
                f"selection='ahns', ahns_alpha={self.ahns_alpha}, ahns_beta={self.ahns_beta}, "
                f"ahns_p={self.ahns_p}, "
            )
        else:
            selection = ""
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
            The draws for ``B`` rows of ``num_candidates`` slots each
            (``selection_bits`` for ``selection="softmax"`` and ``"dns_mn"`` only).

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
        if self.selection not in _WITH_SELECTION_BITS:
            return HardDraws(candidate_bits, slot_keys)
        return HardDraws(candidate_bits, slot_keys, draw_bits(gen, shape, device))

    @overload
    def sample(
        self,
        users: IdsLike,
        scorer: Scorer,
        *,
        positives: IdsLike | None = ...,
        return_info: Literal[False] = ...,
    ) -> torch.Tensor: ...

    @overload
    def sample(
        self,
        users: IdsLike,
        scorer: Scorer,
        *,
        positives: IdsLike | None = ...,
        return_info: Literal[True],
    ) -> NegativeSample: ...

    def sample(
        self,
        users: IdsLike,
        scorer: Scorer,
        *,
        positives: IdsLike | None = None,
        return_info: bool = False,
    ) -> torch.Tensor | NegativeSample:
        """Hard negatives for each user in the batch.

        Args:
            users: 1-D integer tensor of user ids (on the index's device).
            scorer: ``scorer(users, items) -> scores`` over same-shape integer
                tensors; called under ``torch.no_grad()`` on ``(B, num_candidates)``
                tensors (``reference``: on ``(num_candidates,)`` per row).
            positives: For ``selection="ahns"`` (required there, refused
                otherwise): each row's positive item, 1-D integer ids of the
                users' length on their device, the items the negatives are
                paired with in the loss. They are scored with ``scorer`` under
                ``torch.no_grad()``, once per row, for the rows' targets.
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
                or device, or containing NaN; for ``positives`` missing with
                ``selection="ahns"``, given with another selection, or not one
                per user.
            TypeError: For non-integer users or positives, or a scorer that is
                not callable.

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
        positives_t = self._check_positives(positives, users_t)
        draws = self.draw(users_t.numel(), users_t.device)
        return hard_negatives(  # type: ignore[call-overload, misc, no-any-return]
            self.index,
            users_t,
            scorer,
            draws,
            num_hard=self.num_hard,
            num_random=self.num_random,
            candidates=self.candidates,
            selection=self.selection,
            temperature=self.temperature,
            top_n=self.top_n,
            positives=positives_t,
            ahns_alpha=self.ahns_alpha,
            ahns_beta=self.ahns_beta,
            ahns_p=self.ahns_p,
            backend=self.backend,
            validate=self.validate,
            max_scores_per_call=self.max_scores_per_call,
            return_info=return_info,
        )

    def _check_positives(
        self, positives: IdsLike | None, users: torch.Tensor
    ) -> torch.Tensor | None:
        """``positives`` as ``int64`` ids, one per user, for AHNS; refused for other selections."""
        if self.selection != "ahns":
            if positives is not None:
                raise ValueError(
                    f"positives only apply to selection='ahns', not selection={self.selection!r}"
                )
            return None
        if positives is None:
            raise ValueError(
                "selection='ahns' needs each row's positive item: "
                "sample(users, scorer, positives=pos_items)"
            )
        positives_t = _check_positive_ids(positives, users)
        if self.validate:
            check_ids_in_range("positives", positives_t, self.index.num_items, "item")
        return positives_t


# Candidates per scorer call on the CPU: their gathered item vectors (2 MiB at dim 64)
# stay in the cache between the gather and the product.
_CPU_SCORES_PER_CALL = 2**13


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


def _check_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite float, got {_short(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite float, got {value}")
    return float(value)


class _HardRule(NamedTuple):
    """The selection of the hard part with its checked parameters (``None``: not this mode's)."""

    selection: Selection
    temperature: float | None = None
    top_n: int | None = None
    ahns_alpha: float | None = None
    ahns_beta: float | None = None
    ahns_p: int | None = None


def _hard_rule(
    selection: Any,
    num_candidates: int,
    num_hard: int,
    *,
    temperature: Any = None,
    top_n: Any = None,
    ahns_alpha: Any = None,
    ahns_beta: Any = None,
    ahns_p: Any = None,
) -> _HardRule:
    """Check ``selection`` and its parameters; refuse those of another selection; fill defaults."""
    if selection not in _SELECTIONS:
        raise ValueError(f"selection must be one of {_SELECTIONS}, got {_short(selection)}")
    owners = {
        "temperature": (temperature, "softmax"),
        "top_n": (top_n, "dns_mn"),
        "ahns_alpha": (ahns_alpha, "ahns"),
        "ahns_beta": (ahns_beta, "ahns"),
        "ahns_p": (ahns_p, "ahns"),
    }
    for name, (value, owner) in owners.items():
        if value is not None and selection != owner:
            raise ValueError(
                f"{name}={_short(value)} only applies to selection={owner!r}, "
                f"not selection={selection!r}"
            )
    if selection == "softmax":
        return _HardRule(
            "softmax", temperature=_check_temperature(1.0 if temperature is None else temperature)
        )
    if selection == "dns_mn":
        if top_n is None:
            raise ValueError(
                "selection='dns_mn' needs top_n, the N of DNS(M, N): the number of "
                "top-scored candidates the hard part draws from"
            )
        top_n = check_int("top_n", top_n)
        low = max(1, num_hard)
        if not low <= top_n <= num_candidates:
            raise ValueError(
                f"top_n must be between max(1, num_hard)={low} and "
                f"num_candidates={num_candidates}, got {top_n}"
            )
        return _HardRule("dns_mn", top_n=top_n)
    if selection == "ahns":
        return _HardRule(
            "ahns",
            ahns_alpha=_check_finite(
                "ahns_alpha", _AHNS_ALPHA if ahns_alpha is None else ahns_alpha
            ),
            ahns_beta=_check_finite("ahns_beta", _AHNS_BETA if ahns_beta is None else ahns_beta),
            ahns_p=check_int("ahns_p", _AHNS_P if ahns_p is None else ahns_p),
        )
    return _HardRule("topk")


def _check_positive_ids(positives: Any, users: torch.Tensor) -> torch.Tensor:
    """``positives`` as ``int64`` ids of the users' shape, on their device (no value check)."""
    device = None if isinstance(positives, torch.Tensor) else users.device
    positives_t = as_index_tensor("positives", positives, device=device)
    if positives_t.shape != users.shape:
        raise ValueError(
            f"positives must hold one item id per user, shape {tuple(users.shape)}, "
            f"got shape {tuple(positives_t.shape)}"
        )
    if positives_t.device != users.device:
        raise ValueError(
            f"positives are on {positives_t.device} but the users are on {users.device}"
        )
    return positives_t.long()


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
    selection: Selection | None = ...,
    temperature: float | None = ...,
    top_n: int | None = ...,
    positives: torch.Tensor | None = ...,
    ahns_alpha: float | None = ...,
    ahns_beta: float | None = ...,
    ahns_p: int | None = ...,
    backend: Backend = ...,
    validate: bool = ...,
    max_scores_per_call: int | None = ...,
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
    selection: Selection | None = ...,
    temperature: float | None = ...,
    top_n: int | None = ...,
    positives: torch.Tensor | None = ...,
    ahns_alpha: float | None = ...,
    ahns_beta: float | None = ...,
    ahns_p: int | None = ...,
    backend: Backend = ...,
    validate: bool = ...,
    max_scores_per_call: int | None = ...,
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
    selection: Selection | None = None,
    temperature: float | None = None,
    top_n: int | None = None,
    positives: torch.Tensor | None = None,
    ahns_alpha: float | None = None,
    ahns_beta: float | None = None,
    ahns_p: int | None = None,
    backend: Backend = "vectorized",
    validate: bool = True,
    max_scores_per_call: int | None = None,
    return_info: bool = False,
) -> torch.Tensor | NegativeSample:
    """Apply the hard-negative contract to given random draws (no randomness of its own).

    ``users`` must be a 1-D ``int64`` tensor of valid ids on the index's device;
    ``draws`` must have ``B`` rows; ``positives``, where given, valid item ids.
    A user with nothing to draw from gets a row of
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
        selection: The hard part's selection, as for the sampler; ``None`` (the
            default) is ``"softmax"`` if a ``temperature`` is given, else ``"topk"``.
            ``"softmax"`` and ``"dns_mn"`` need ``draws.selection_bits``.
        temperature: For ``"softmax"``, a float ``> 0`` (default 1.0).
        top_n: For ``"dns_mn"`` (required), the ``N`` of DNS(M, N).
        positives: For ``"ahns"`` (required), each row's positive item id, a
            1-D integer tensor of the users' shape on their device.
        ahns_alpha: For ``"ahns"``, the target's shift (default 1.0).
        ahns_beta: For ``"ahns"``, the target's scale (default 0.1).
        ahns_p: For ``"ahns"``, the target's exponent minus one (default -2).
        backend: ``"vectorized"`` or ``"reference"``.
        validate: Check the scores for NaN (synchronises).
        max_scores_per_call: Largest number of candidates per scorer call;
            ``None`` chooses by device as :class:`~negsample.HardNegativeSampler` does.
        return_info: Return a :class:`NegativeSample` instead of the items.

    Returns:
        ``(B, num_hard + num_random)`` ``int64`` items, or a :class:`NegativeSample`.

    Raises:
        ValueError: If ``num_hard`` or ``num_random`` is negative, if together
            they are 0 or more than the draws' ``num_candidates``, if the draws'
            shapes do not match ``users``, for a selection's parameter that is
            missing, out of range or given to another selection, or for a NaN
            score with ``validate``.
        TypeError: If ``num_hard``, ``num_random``, ``top_n`` or ``ahns_p`` is
            not an int, or another parameter not a number.

    Example:
        >>> index = PositiveIndex.from_dict({0: [1]}, num_items=4)
        >>> draws = HardDraws(torch.tensor([[0, 2, 3]]), torch.tensor([[5, 3, 4]]))
        >>> def scorer(users, items):
        ...     return -items.float()
        >>> users = torch.tensor([0])
        >>> hard_negatives(index, users, scorer, draws, num_hard=1, num_random=1).tolist()
        [[0, 2]]
        >>> # AHNS: item 3 scores -3, so the target is 4 / (-3 + 0) = -1.33; of the
        >>> # candidates' scores 0, -2 and -3, item 2's -2 is the closest.
        >>> hard_negatives(
        ...     index, users, scorer, draws, num_hard=1, num_random=0, selection="ahns",
        ...     positives=torch.tensor([3]), ahns_alpha=0.0, ahns_beta=4.0, ahns_p=-2,
        ... ).tolist()
        [[2]]
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
    rule = _hard_rule(
        ("softmax" if temperature is not None else "topk") if selection is None else selection,
        bits_shape[1],
        num_hard,
        temperature=temperature,
        top_n=top_n,
        ahns_alpha=ahns_alpha,
        ahns_beta=ahns_beta,
        ahns_p=ahns_p,
    )
    if rule.selection in _WITH_SELECTION_BITS:
        if draws.selection_bits is None:
            raise ValueError(f"selection={rule.selection!r} needs draws.selection_bits")
        if draws.selection_bits.shape != draws.candidate_bits.shape:
            raise ValueError(
                f"draws.selection_bits must have the shape of draws.candidate_bits, "
                f"{tuple(draws.candidate_bits.shape)}, got {tuple(draws.selection_bits.shape)}"
            )
    if rule.selection == "ahns":
        if positives is None:
            raise ValueError("selection='ahns' needs positives, each row's positive item")
        positives = _check_positive_ids(positives, users)
    elif positives is not None:
        raise ValueError(
            f"positives only apply to selection='ahns', not selection={rule.selection!r}"
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
            source,
            users,
            scorer,
            draws,
            num_hard,
            num_random,
            rule,
            positives,
            validate,
            return_info,
        )
    else:
        result = _hard_vectorized(
            source,
            users,
            scorer,
            draws,
            num_hard,
            num_random,
            rule,
            positives,
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


def _best_first(key: float, slot: int) -> tuple[bool, float, int]:
    """Sort key for the hard part: the highest keys first, ties to the lower slot.

    The total order of the vectorized path (torch's sort): NaN above ``+inf``
    and ``-0.0`` equal to ``+0.0``. Python's ``sorted`` would leave NaN wherever
    its comparisons happen to put it.
    """
    if math.isnan(key):
        return (False, 0.0, slot)
    return (True, -key, slot)


def _closest_first(distance: float, slot: int) -> tuple[bool, float, int]:
    """Sort key for AHNS: the smallest distances first, NaN last, ties to the lower slot."""
    if math.isnan(distance):
        return (True, 0.0, slot)
    return (False, distance, slot)


def _reference_hard_slots(
    rule: _HardRule,
    scores: list[float],
    gumbel: list[float],
    keys: list[int],
    target: float,
    num_hard: int,
) -> list[int]:
    """Step 3 of the contract for one row: the hard slots, best first.

    ``gumbel`` is the row's softmax noise, ``keys`` its DNS(M, N) keys, ``target``
    its AHNS target; each is used by its selection only.
    """
    slots = range(len(scores))
    if rule.selection == "topk":
        return sorted(slots, key=lambda s: _best_first(scores[s], s))[:num_hard]
    if rule.selection == "softmax":
        assert rule.temperature is not None
        perturbed = [scores[s] / rule.temperature + gumbel[s] for s in slots]
        return sorted(slots, key=lambda s: _best_first(perturbed[s], s))[:num_hard]
    if rule.selection == "dns_mn":
        # The top_n best slots, ranked as for top-k; of these, num_hard uniformly at random
        # (the smallest keys, ties to the better rank), kept in rank order.
        ranked = sorted(slots, key=lambda s: _best_first(scores[s], s))[: rule.top_n]
        drawn = sorted(range(len(ranked)), key=lambda r: (keys[ranked[r]], r))
        return [ranked[r] for r in sorted(drawn[:num_hard])]
    # AHNS: the scores closest to the row's target.
    distance = [abs(score - target) for score in scores]
    return sorted(slots, key=lambda s: _closest_first(distance[s], s))[:num_hard]


def _hard_reference(
    source: CandidateSource,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    num_hard: int,
    num_random: int,
    rule: _HardRule,
    positives: torch.Tensor | None,
    validate: bool,
    return_info: bool = False,
) -> NegativeSample:
    """One row at a time, step by step as the contract is written."""
    num_candidates = draws.candidate_bits.shape[1]
    slots = range(num_candidates)
    no_draws: list[list[Any]] = [[]] * users.numel()
    # The noise of the whole batch at once, as the vectorized path computes it: torch's
    # log may round differently on one row than on many.
    noise = (
        _gumbel(draws.selection_bits).tolist()
        if rule.selection == "softmax" and draws.selection_bits is not None
        else no_draws
    )
    dns_keys = (
        draws.selection_bits.tolist()
        if rule.selection == "dns_mn" and draws.selection_bits is not None
        else no_draws
    )
    row_positives = positives.tolist() if positives is not None else [None] * users.numel()
    rows, scores_out, log_probs, repeats, drawn = [], [], [], 0, 0
    for user, positive, candidate_bits, slot_keys, gumbel, keys in zip(
        users.tolist(),
        row_positives,
        draws.candidate_bits.tolist(),
        draws.slot_keys.tolist(),
        noise,
        dns_keys,
        strict=True,
    ):
        # 1. candidates from the user's complement
        candidates = source.reference_draw(user, candidate_bits)
        items_drawn = [c for c in candidates if c != NO_NEGATIVE]
        repeats += len(items_drawn) - len(set(items_drawn))
        drawn += len(items_drawn)
        # 2. score them (and, for AHNS, the row's positive, which sets its target)
        items = torch.tensor(candidates, device=users.device)
        score_t = _score(scorer, torch.full_like(items, user), _scorable(items), validate)
        scores = score_t.tolist()
        target = math.nan
        if positive is not None:
            assert rule.ahns_alpha is not None and rule.ahns_beta is not None
            assert rule.ahns_p is not None
            positive_t = torch.tensor([positive], device=users.device)
            positive_score = _score(scorer, torch.full_like(positive_t, user), positive_t, validate)
            # Multiplications and a division only: one row rounds as the whole batch does.
            target = float(
                _ahns_target(positive_score, rule.ahns_alpha, rule.ahns_beta, rule.ahns_p)
            )
        # 3. hard part: best first, as the selection defines it
        hard = _reference_hard_slots(rule, scores, gumbel, keys, target, num_hard)
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


def _score_in_chunks(
    scorer: Scorer,
    users: torch.Tensor,
    items: torch.Tensor,
    validate: bool,
    max_scores_per_call: int,
) -> torch.Tensor:
    """:func:`_score` on whole rows (dim 0), at most ``max_scores_per_call`` items per call.

    Chunk sizes come from shapes only, so chunking needs no synchronisation.
    """
    rows = max(1, max_scores_per_call // math.prod(items.shape[1:]))
    if items.shape[0] <= rows:
        return _score(scorer, users, items, validate)
    return torch.cat(
        [
            _score(scorer, u, i, validate)
            for u, i in zip(torch.split(users, rows), torch.split(items, rows), strict=True)
        ]
    )


def _hard_vectorized(
    source: CandidateSource,
    users: torch.Tensor,
    scorer: Scorer,
    draws: HardDraws,
    num_hard: int,
    num_random: int,
    rule: _HardRule,
    positives: torch.Tensor | None,
    validate: bool,
    max_scores_per_call: int | None = None,
    return_info: bool = False,
) -> NegativeSample:
    """The whole batch at once; no loop over rows, no host synchronisation."""
    batch, num_candidates = draws.candidate_bits.shape
    users_bm = users[:, None].expand(batch, num_candidates)
    candidates = source.draw(users, draws.candidate_bits)
    if max_scores_per_call is None:
        max_scores_per_call = (
            getattr(scorer, "_cpu_scores_per_call", _CPU_SCORES_PER_CALL)
            if users.device.type == "cpu"
            else 2**20
        )
    scores = _score_in_chunks(
        scorer, users_bm, _scorable(candidates), validate, max_scores_per_call
    )
    if rule.selection == "softmax":
        assert draws.selection_bits is not None and rule.temperature is not None
        keys = scores.to(torch.float64) / rule.temperature + _gumbel(draws.selection_bits)
        hard = _highest_slots(keys, num_hard)
    elif rule.selection == "dns_mn":
        assert draws.selection_bits is not None and rule.top_n is not None
        ranked = _highest_slots(scores, rule.top_n)
        drawn = _smallest_slots(draws.selection_bits.gather(1, ranked), num_hard)
        hard = ranked.gather(1, drawn.sort(dim=1).values)
    elif rule.selection == "ahns":
        assert positives is not None and rule.ahns_alpha is not None
        assert rule.ahns_beta is not None and rule.ahns_p is not None
        positive_scores = _score_in_chunks(scorer, users, positives, validate, max_scores_per_call)
        target = _ahns_target(positive_scores, rule.ahns_alpha, rule.ahns_beta, rule.ahns_p)
        hard = _lowest_slots((scores.to(torch.float64) - target[:, None]).abs(), num_hard)
    else:
        hard = _highest_slots(scores, num_hard)
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
