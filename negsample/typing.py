"""Types of the public API's arguments, for annotating code that calls it.

:data:`IdsLike` is what every argument of user or item ids accepts.
:class:`Recommender` and :class:`AllItemScorer` are the two kinds of model that
:func:`negsample.metrics.evaluate` ranks with; :class:`~negsample.MFModel` is
both.

Example:
    >>> import numpy as np
    >>> import torch
    >>> from negsample import PositiveIndex
    >>> from negsample.typing import IdsLike
    >>> index = PositiveIndex.from_dict({0: [1, 2], 2: [0]}, num_items=4)
    >>> def active(users: IdsLike) -> int:
    ...     return int((index.degree(users) > 0).sum())
    >>> active(torch.tensor([0, 1, 2])), active(np.array([0, 1])), active([2])
    (2, 1, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

import numpy as np
import torch

if TYPE_CHECKING:
    from negsample.index import PositiveIndex

__all__ = ["AllItemScorer", "IdsLike", "Recommender"]

IdsLike: TypeAlias = torch.Tensor | np.ndarray | Sequence[int] | Sequence[Sequence[int]]
"""Integer ids, as a tensor, a NumPy array or a (nested) sequence of ints.

It stands for ``torch.Tensor | numpy.ndarray | Sequence[int] |
Sequence[Sequence[int]]``. A tensor keeps its device and integer dtype; anything else becomes an ``int64``
CPU tensor, so it suits an index or sampler on the CPU. Floating, complex and
boolean values are a :class:`TypeError`: ids are never rounded. Each function
states the shape it expects (for example ``(B,)`` user ids).
"""


class Recommender(Protocol):
    """A model that ranks items itself, like :meth:`negsample.MFModel.recommend`."""

    def recommend(self, users: torch.Tensor, k: int, *, exclude: PositiveIndex) -> torch.Tensor:
        """The ``k`` best items of each user, never an item of ``exclude``.

        Args:
            users: ``(B,)`` ``int64`` tensor of user ids.
            k: Items per user.
            exclude: Items never to return, each user's training positives.

        Returns:
            ``(B, k)`` integer tensor of item ids, best first, ``-1`` padding
            where a user runs out of items.
        """
        ...


class AllItemScorer(Protocol):
    """A model that scores every item for a user, like :meth:`negsample.MFModel.score_all`."""

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user.

        Args:
            users: ``(B,)`` ``int64`` tensor of user ids.

        Returns:
            ``(B, num_items)`` floating tensor, column ``i`` scoring item ``i``.
        """
        ...
