"""The :class:`Interactions` container: pairs with internal ids and the maps to raw ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from negsample._checks import _short, as_index_tensor
from negsample.index import PositiveIndex


@dataclass(frozen=True, eq=False, repr=False)
class Interactions:
    """``(user, item)`` pairs with contiguous internal ids plus the maps back to raw ids.

    Pairs keep the order of the file (a user's items in the order listed), and
    may repeat; :meth:`to_index` collapses duplicates. ``user_ids[u]`` is the
    raw id of internal user ``u`` (likewise ``item_ids``); :meth:`user_lookup`
    and :meth:`item_lookup` give the inverse, raw id to internal id.

    Args:
        users: ``int64`` internal user id of each pair.
        items: ``int64`` internal item id of each pair, same length as ``users``.
        user_ids: Raw id of each internal user (distinct values).
        item_ids: Raw id of each internal item (distinct values).

    Example:
        >>> data = Interactions(
        ...     users=np.array([0, 0, 1]),
        ...     items=np.array([1, 0, 1]),
        ...     user_ids=np.array(["alice", "bob"], dtype=object),
        ...     item_ids=np.array([10, 20]),
        ... )
        >>> data
        Interactions(num_users=2, num_items=2, num_pairs=3)
        >>> data.user_lookup()["bob"], data.item_ids[data.items].tolist()
        (1, [20, 10, 20])
        >>> data.to_index().positives(0).tolist()
        [0, 1]
    """

    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    user_ids: npt.NDArray[Any]
    item_ids: npt.NDArray[Any]

    def __post_init__(self) -> None:
        for name in ("user_ids", "item_ids"):
            ids = getattr(self, name)
            if not isinstance(ids, np.ndarray) or ids.ndim != 1:
                raise TypeError(f"{name} must be a 1-D NumPy array, got {_short(ids)}")
            if len(_lookup(ids)) != ids.size:
                raise ValueError(f"{name} must hold distinct raw ids, got {_short(ids)}")
        for name, upper in (("users", self.user_ids.size), ("items", self.item_ids.size)):
            ids = as_index_tensor(name, getattr(self, name)).numpy().astype(np.int64)
            if ids.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {ids.shape}")
            if ids.size and (ids.min() < 0 or ids.max() >= upper):
                bad = ids[(ids < 0) | (ids >= upper)][0]
                raise ValueError(f"{name} must be internal ids in [0, {upper}), got {bad}")
            object.__setattr__(self, name, ids)
        if self.users.size != self.items.size:
            raise ValueError(
                f"users and items must have the same length, got {self.users.size} and {self.items.size}"
            )

    @property
    def num_users(self) -> int:
        """Number of users, ``len(user_ids)``, including users without pairs."""
        return int(self.user_ids.size)

    @property
    def num_items(self) -> int:
        """Number of items, ``len(item_ids)``."""
        return int(self.item_ids.size)

    @property
    def num_pairs(self) -> int:
        """Number of pairs, duplicates included."""
        return int(self.users.size)

    def __repr__(self) -> str:
        return (
            f"Interactions(num_users={self.num_users}, num_items={self.num_items}, "
            f"num_pairs={self.num_pairs})"
        )

    def to_index(self) -> PositiveIndex:
        """The pairs as a :class:`~negsample.PositiveIndex` over all users and items.

        Example:
            >>> users, items = np.array([1, 1]), np.array([2, 2])
            >>> data = Interactions(users, items, np.arange(3), np.arange(4))
            >>> data.to_index()
            PositiveIndex(num_users=3, num_items=4, num_interactions=1, device=cpu)
        """
        return PositiveIndex.from_pairs(self.users, self.items, self.num_users, self.num_items)

    def user_lookup(self) -> dict[Any, int]:
        """A new dict from raw user id to internal user id (integer raw ids as ``int``).

        Example:
            >>> data = Interactions(np.array([0]), np.array([0]), np.array([7]), np.array([3]))
            >>> data.user_lookup()
            {7: 0}
        """
        return _lookup(self.user_ids)

    def item_lookup(self) -> dict[Any, int]:
        """A new dict from raw item id to internal item id (integer raw ids as ``int``).

        Example:
            >>> data = Interactions(np.array([0]), np.array([0]), np.array([7]), np.array([3]))
            >>> data.item_lookup()
            {3: 0}
        """
        return _lookup(self.item_ids)


def _lookup(ids: npt.NDArray[Any]) -> dict[Any, int]:
    return {raw: internal for internal, raw in enumerate(ids.tolist())}
