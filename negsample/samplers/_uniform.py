"""Uniform (or popularity) negatives without scoring: :class:`~negsample.UniformSampler`.

The baseline to compare hard negatives against. Its vectorized path is the
candidate distribution's own ``draw`` (:mod:`negsample.candidates`);
``_uniform_reference`` below draws one row at a time with the distribution's
per-row ``reference_draw``, and the two give identical tensors on the same bits.

The generator, random state and user checks come from ``_base``; the hard
sampler, which draws its candidates the same way and then scores them, is in
``_hard``.
"""

from __future__ import annotations

from typing import Literal, overload

import torch

from negsample._checks import check_int
from negsample._random import draw_bits
from negsample.candidates import CandidateSource
from negsample.index import PositiveIndex
from negsample.samplers._base import (
    Backend,
    NegativeSample,
    Scorer,
    _BaseSampler,
    _duplicate_fraction,
)
from negsample.typing import IdsLike


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
        >>> drawn = sampler.sample(torch.tensor([0]))
        >>> sorted(set(drawn.flatten().tolist())) in ([0], [4], [0, 4])
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
