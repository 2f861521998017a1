"""Known positives per user, held as CSR, with exact draws from each complement.

The complement trick: for a user with sorted positives ``p_0 < ... < p_{k-1}``
the ``r``-th non-positive item (``0 <= r < num_items - k``) is
``r + #{i : p_i - i <= r}``. :class:`PositiveIndex` precomputes ``q_i = p_i - i``
for every row and stores it once, offset by ``user * num_items`` so that one
``torch.searchsorted`` over the flat array serves a whole batch of users.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from negsample._checks import (
    _short,
    as_index_tensor,
    check_ids_in_range,
    check_int,
    make_generator,
)
from negsample._random import draw_bits, resolve_generator
from negsample.errors import EmptyComplementError

__all__ = ["PositiveIndex"]

_INT32_MAX = 2**31 - 1


def _smallest_signed_dtype(max_value: int) -> torch.dtype:
    """Smallest signed torch integer dtype that holds ``0..max_value``."""
    for dtype in (torch.int8, torch.int16, torch.int32):
        if max_value <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _lower_bound(
    sorted_flat: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    value: torch.Tensor,
    steps: int,
    *,
    right: bool = False,
) -> torch.Tensor:
    """First position in ``[lo, hi)`` whose value is ``>= value`` (``> value`` if ``right``).

    Elementwise over ``lo``, ``hi`` and ``value`` (``hi`` when there is none). A
    branch-free binary search run for a fixed number of ``steps`` (enough for the
    longest row: ``steps >= (hi - lo).bit_length()``), so it needs no host
    synchronisation.
    """
    last = sorted_flat.numel() - 1
    lo = lo.clone()
    hi = hi.clone()
    for _ in range(steps):
        active = lo < hi
        mid = (lo + hi) // 2
        probe = sorted_flat[mid.clamp(min=0, max=last)]
        below = probe <= value if right else probe < value
        go_right = active & below
        lo = torch.where(go_right, mid + 1, lo)
        hi = torch.where(active & ~go_right, mid, hi)
    return lo


class PositiveIndex:
    """Each user's known positive items, as CSR, with exact complement sampling.

    Row ``u`` holds user ``u``'s positives, sorted and de-duplicated. Item ids are
    stored in the smallest signed integer dtype that fits ``num_items`` and row
    pointers in ``int32`` where the number of interactions allows. Users with no
    row in the input simply have no positives.

    Build one with :meth:`from_dict`, :meth:`from_pairs` or :meth:`from_scipy`, or
    directly from CSR arrays.

    Args:
        indptr: Row pointers, ``num_users + 1`` non-decreasing ints starting at 0.
        indices: Item ids, each row's slice strictly increasing.
        num_items: Size of the catalogue; every id must be below it.

    Example:
        >>> index = PositiveIndex.from_dict({0: {1, 3}, 2: [0]}, num_items=5)
        >>> index
        PositiveIndex(num_users=3, num_items=5, num_interactions=3, device=cpu)
        >>> index.contains(torch.tensor([0, 0, 1]), torch.tensor([1, 2, 1])).tolist()
        [True, False, False]
        >>> index.complement_items(torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2])).tolist()
        [0, 2, 4]
    """

    def __init__(self, indptr: Any, indices: Any, num_items: int) -> None:
        num_items = check_int("num_items", num_items, minimum=1)
        indptr_t = as_index_tensor("indptr", indptr).to("cpu", torch.int64)
        indices_t = as_index_tensor("indices", indices).to("cpu", torch.int64)
        if indptr_t.ndim != 1 or indptr_t.numel() == 0:
            raise ValueError(
                f"indptr must be a non-empty 1-D array, got shape {tuple(indptr_t.shape)}"
            )
        if indices_t.ndim != 1:
            raise ValueError(f"indices must be a 1-D array, got shape {tuple(indices_t.shape)}")
        if int(indptr_t[0]) != 0 or int(indptr_t[-1]) != indices_t.numel():
            raise ValueError(
                f"indptr must start at 0 and end at len(indices)={indices_t.numel()}, "
                f"got {int(indptr_t[0])} and {int(indptr_t[-1])}"
            )
        if bool((indptr_t[1:] < indptr_t[:-1]).any()):
            raise ValueError("indptr must be non-decreasing")
        check_ids_in_range("indices", indices_t, num_items, "item")
        users = torch.repeat_interleave(
            torch.arange(indptr_t.numel() - 1), indptr_t[1:] - indptr_t[:-1]
        )
        same_row = users[1:] == users[:-1]
        if bool((same_row & (indices_t[1:] <= indices_t[:-1])).any()):
            raise ValueError(
                "indices must be strictly increasing within each row (sorted, no duplicates)"
            )
        self._init_trusted(indptr_t.numpy(), indices_t.numpy(), num_items)

    def _init_trusted(self, indptr: np.ndarray, indices: np.ndarray, num_items: int) -> None:
        """Fill the fields from valid int64 CSR arrays (sorted unique rows)."""
        num_users = indptr.size - 1
        nnz = indices.size
        degrees = np.diff(indptr)
        self._num_items = num_items
        self._max_degree = int(degrees.max()) if num_users else 0
        self._search_steps = self._max_degree.bit_length()
        indptr_dtype = torch.int32 if nnz <= _INT32_MAX else torch.int64
        self._indptr = torch.from_numpy(np.ascontiguousarray(indptr)).to(indptr_dtype)
        self._indices = torch.from_numpy(np.ascontiguousarray(indices)).to(
            _smallest_signed_dtype(num_items - 1)
        )
        # q_i = p_i - i within a row, offset by user * num_items so rows never overlap.
        row_of = np.repeat(np.arange(num_users, dtype=np.int64), degrees)
        local = np.arange(nnz, dtype=np.int64) - indptr[:-1].astype(np.int64)[row_of]
        keys = row_of * num_items + (indices - local)
        self._keys = torch.from_numpy(keys).to(
            _smallest_signed_dtype(max(num_users * num_items - 1, 0))
        )

    @classmethod
    def _from_arrays(cls, indptr: np.ndarray, indices: np.ndarray, num_items: int) -> PositiveIndex:
        index = cls.__new__(cls)
        index._init_trusted(indptr, indices, num_items)
        return index

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_pairs(
        cls,
        users: Any,
        items: Any,
        num_users: int | None = None,
        num_items: int | None = None,
    ) -> PositiveIndex:
        """Build an index from parallel arrays of user and item ids.

        Duplicated pairs count once. ``num_users`` and ``num_items`` default to one
        more than the largest id present.

        Args:
            users: User ids (list, NumPy array or tensor of ints).
            items: Item ids, same length as ``users``.
            num_users: Number of users; ids must be below it.
            num_items: Number of items; ids must be below it.

        Returns:
            The index.

        Raises:
            TypeError: If ids are not integers.
            ValueError: If lengths differ, ids are negative, or a given size is too small.

        Example:
            >>> index = PositiveIndex.from_pairs([0, 0, 1, 0], [2, 1, 2, 2], num_items=4)
            >>> index.num_users, index.num_items, index.num_interactions
            (2, 4, 3)
        """
        users_t = as_index_tensor("users", users).to("cpu", torch.int64)
        items_t = as_index_tensor("items", items).to("cpu", torch.int64)
        if users_t.ndim != 1 or items_t.ndim != 1:
            raise ValueError(
                f"users and items must be 1-D, got shapes {tuple(users_t.shape)} and {tuple(items_t.shape)}"
            )
        if users_t.numel() != items_t.numel():
            raise ValueError(
                f"users and items must have the same length, got {users_t.numel()} and {items_t.numel()}"
            )
        return cls._from_numpy_pairs(users_t.numpy(), items_t.numpy(), num_users, num_items)

    @classmethod
    def _from_numpy_pairs(
        cls, users: np.ndarray, items: np.ndarray, num_users: int | None, num_items: int | None
    ) -> PositiveIndex:
        num_users = _resolve_size("num_users", num_users, users, "user")
        num_items = _resolve_size("num_items", num_items, items, "item")
        if num_items < 1:
            raise ValueError(
                "num_items must be >= 1; pass num_items= when there are no interactions"
            )
        if num_users * num_items < 2**63:
            # sort + neighbour mask: several times faster than np.unique here.
            flat = np.sort(users * num_items + items)
            keep = np.ones(flat.size, dtype=bool)
            keep[1:] = flat[1:] != flat[:-1]
            users, items = np.divmod(flat[keep], num_items)
        else:
            order = np.lexsort((items, users))
            users, items = users[order], items[order]
            keep = np.ones(users.size, dtype=bool)
            keep[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
            users, items = users[keep], items[keep]
        indptr = np.zeros(num_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=num_users), out=indptr[1:])
        return cls._from_arrays(indptr, items, num_items)

    @classmethod
    def from_dict(
        cls,
        mapping: Mapping[Any, Iterable[Any]],
        num_users: int | None = None,
        num_items: int | None = None,
    ) -> PositiveIndex:
        """Build an index from ``{user: iterable of items}``, e.g. a ``defaultdict(set)``.

        Users missing from the mapping (ids below ``num_users``) have no positives.

        Args:
            mapping: User id to that user's positive item ids.
            num_users: Number of users; defaults to one more than the largest key.
            num_items: Number of items; defaults to one more than the largest item.

        Returns:
            The index.

        Raises:
            TypeError: If the mapping, a key or an item is not of the expected type.
            ValueError: If an id is negative or a given size is too small.

        Example:
            >>> from collections import defaultdict
            >>> train = defaultdict(set)
            >>> train[0].update({4, 2})
            >>> train[3].add(1)
            >>> index = PositiveIndex.from_dict(train)
            >>> index.num_users, index.num_items, index.degree(torch.arange(4)).tolist()
            (4, 5, [2, 0, 0, 1])
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(
                f"mapping must be a Mapping of user -> items, got {type(mapping).__name__}"
            )
        user_parts: list[np.ndarray] = []
        item_parts: list[np.ndarray] = []
        for key, items in mapping.items():
            user = check_int(f"mapping key {_short(key)}", key, minimum=0)
            if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
                raise TypeError(
                    f"mapping[{user}] must be an iterable of int item ids, got {_short(items)}"
                )
            array = np.asarray(list(items))
            if array.size == 0:
                continue
            if array.ndim != 1 or array.dtype.kind not in "iu":
                raise TypeError(f"mapping[{user}] must hold int item ids, got {_short(items)}")
            if array.min() < 0:
                raise ValueError(f"mapping[{user}] holds a negative item id {int(array.min())}")
            item_parts.append(array.astype(np.int64))
            user_parts.append(np.full(array.size, user, dtype=np.int64))
        if num_users is None and mapping:
            num_users = max(check_int("mapping key", key) for key in mapping) + 1
        users = np.concatenate(user_parts) if user_parts else np.zeros(0, dtype=np.int64)
        items_all = np.concatenate(item_parts) if item_parts else np.zeros(0, dtype=np.int64)
        return cls._from_numpy_pairs(users, items_all, num_users, num_items)

    @classmethod
    def from_scipy(cls, matrix: Any) -> PositiveIndex:
        """Build an index from a SciPy sparse matrix or array of shape ``(num_users, num_items)``.

        Every stored entry with a non-zero value is a positive; explicitly stored
        zeros are not.

        Args:
            matrix: Any ``scipy.sparse`` matrix or array.

        Returns:
            The index.

        Example:
            >>> import scipy.sparse as sp
            >>> m = sp.coo_matrix(([1, 1, 0], ([0, 1, 1], [2, 0, 1])), shape=(2, 3))
            >>> PositiveIndex.from_scipy(m).positives(1).tolist()
            [0]
        """
        import scipy.sparse as sp

        if not sp.issparse(matrix):
            raise TypeError(
                f"matrix must be a scipy.sparse matrix or array, got {type(matrix).__name__}"
            )
        num_items = int(matrix.shape[1])
        if num_items < 1:
            raise ValueError(
                f"matrix must have at least one column (item), got shape {matrix.shape}"
            )
        csr = sp.csr_matrix(matrix, copy=True)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        csr.sort_indices()
        return cls._from_arrays(
            csr.indptr.astype(np.int64), csr.indices.astype(np.int64), num_items
        )

    # ------------------------------------------------------------------ properties

    @property
    def num_users(self) -> int:
        """Number of users (rows), including users without positives."""
        return self._indptr.numel() - 1

    @property
    def num_items(self) -> int:
        """Size of the item catalogue."""
        return self._num_items

    @property
    def num_interactions(self) -> int:
        """Number of distinct (user, item) positives."""
        return self._indices.numel()

    @property
    def max_degree(self) -> int:
        """Largest number of positives of any user."""
        return self._max_degree

    @property
    def indptr(self) -> torch.Tensor:
        """CSR row pointers, shape ``(num_users + 1,)``."""
        return self._indptr

    @property
    def indices(self) -> torch.Tensor:
        """CSR item ids, sorted within each row, in the smallest dtype that fits."""
        return self._indices

    @property
    def device(self) -> torch.device:
        """Device the index's tensors live on."""
        return self._indices.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's tensors."""
        return sum(t.numel() * t.element_size() for t in (self._indptr, self._indices, self._keys))

    def __repr__(self) -> str:
        return (
            f"PositiveIndex(num_users={self.num_users}, num_items={self.num_items}, "
            f"num_interactions={self.num_interactions}, device={self.device})"
        )

    def to(self, device: torch.device | str) -> PositiveIndex:
        """Return a copy of the index on ``device`` (``self`` if already there).

        Example:
            >>> index = PositiveIndex.from_dict({0: [1]}, num_items=3)
            >>> index.to("cpu") is index
            True
        """
        device = torch.device(device)
        if device == self.device:
            return self
        moved = PositiveIndex.__new__(PositiveIndex)
        moved.__dict__.update(self.__dict__)
        moved._indptr = self._indptr.to(device)
        moved._indices = self._indices.to(device)
        moved._keys = self._keys.to(device)
        return moved

    # ------------------------------------------------------------------ queries

    def _users(self, users: Any, *, validate: bool) -> torch.Tensor:
        tensor = as_index_tensor("users", users)
        if tensor.device != self.device:
            raise ValueError(
                f"users are on {tensor.device} but the index is on {self.device}; "
                f"move one of them (index.to(device))"
            )
        if validate:
            check_ids_in_range("users", tensor, self.num_users, "user")
        return tensor.long()

    def degree(self, users: Any, *, validate: bool = True) -> torch.Tensor:
        """Number of positives of each user (``int64``, same shape as ``users``).

        Example:
            >>> PositiveIndex.from_dict({0: [1, 2]}, num_users=2).degree(torch.tensor([0, 1])).tolist()
            [2, 0]
        """
        users_t = self._users(users, validate=validate)
        return (self._indptr[users_t + 1] - self._indptr[users_t]).long()

    def complement_size(self, users: Any, *, validate: bool = True) -> torch.Tensor:
        """Number of non-positive items of each user: ``num_items - degree(users)``.

        Example:
            >>> PositiveIndex.from_dict({0: [1, 2]}, num_items=4).complement_size(torch.tensor([0])).tolist()
            [2]
        """
        return self._num_items - self.degree(users, validate=validate)

    def positives(self, user: int) -> torch.Tensor:
        """The sorted positive item ids of one user, as an ``int64`` tensor.

        Example:
            >>> PositiveIndex.from_dict({0: {3, 1}}).positives(0).tolist()
            [1, 3]
        """
        user = check_int("user", user, minimum=0)
        if user >= self.num_users:
            raise ValueError(f"user must be a user id in [0, {self.num_users}), got {user}")
        start, end = int(self._indptr[user]), int(self._indptr[user + 1])
        return self._indices[start:end].long()

    def contains(self, users: Any, items: Any, *, validate: bool = True) -> torch.Tensor:
        """Whether each ``(user, item)`` pair is a known positive.

        ``users`` and ``items`` broadcast against each other; the result has the
        broadcast shape. Runs without host synchronisation when ``validate=False``.

        Args:
            users: Integer user ids.
            items: Integer item ids.
            validate: Check that ids are in range (reads values back to the host).

        Returns:
            A boolean tensor of the broadcast shape.

        Example:
            >>> index = PositiveIndex.from_dict({0: [1, 3], 1: [0]})
            >>> index.contains(torch.tensor([[0], [1]]), torch.arange(4)).int().tolist()
            [[0, 1, 0, 1], [1, 0, 0, 0]]
        """
        users_t = self._users(users, validate=validate)
        items_t = as_index_tensor("items", items)
        if items_t.device != self.device:
            raise ValueError(f"items are on {items_t.device} but the index is on {self.device}")
        if validate:
            check_ids_in_range("items", items_t, self._num_items, "item")
        users_t, items_t = torch.broadcast_tensors(users_t, items_t.long())  # type: ignore[no-untyped-call]
        if self.num_interactions == 0:
            return torch.zeros(users_t.shape, dtype=torch.bool, device=self.device)
        start = self._indptr[users_t].long()
        end = self._indptr[users_t + 1].long()
        pos = _lower_bound(self._indices, start, end, items_t, self._search_steps)
        found: torch.Tensor = self._indices[pos.clamp(max=self.num_interactions - 1)] == items_t
        return (pos < end) & found

    def complement_items(self, users: Any, ranks: Any, *, validate: bool = True) -> torch.Tensor:
        """Map ranks to items: the ``ranks``-th (0-based) non-positive item of each user.

        Computes ``r + #{i : p_i - i <= r}`` with one ``searchsorted`` for the whole
        batch. ``users`` and ``ranks`` broadcast; the result is ``int64``.

        Args:
            users: Integer user ids.
            ranks: Integers with ``0 <= rank < complement_size(user)``.
            validate: Check ids and ranks are in range (reads values back to the host).

        Returns:
            Item ids of the broadcast shape, never a positive of the user.

        Example:
            >>> index = PositiveIndex.from_dict({0: [0, 2]}, num_items=5)
            >>> index.complement_items(torch.tensor([0]), torch.tensor([0, 1, 2])).tolist()
            [1, 3, 4]
        """
        users_t = self._users(users, validate=validate)
        ranks_t = as_index_tensor("ranks", ranks).long()
        if ranks_t.device != self.device:
            raise ValueError(f"ranks are on {ranks_t.device} but the index is on {self.device}")
        users_t, ranks_t = torch.broadcast_tensors(users_t, ranks_t)  # type: ignore[no-untyped-call]
        if validate and ranks_t.numel():
            sizes = self._complement_sizes(users_t)
            bad = (ranks_t < 0) | (ranks_t >= sizes)
            if bool(bad.any()):
                where = bad.nonzero()[0].tolist()
                raise ValueError(
                    f"ranks must satisfy 0 <= rank < complement_size(user); got rank "
                    f"{ranks_t[tuple(where)].item()} for user {users_t[tuple(where)].item()} "
                    f"whose complement has {sizes[tuple(where)].item()} items"
                )
        return self._complement_items(users_t, ranks_t)

    def _complement_sizes(self, users: torch.Tensor) -> torch.Tensor:
        """Unchecked :meth:`complement_size` for an ``int64`` tensor of valid ids."""
        return self._num_items - (self._indptr[users + 1] - self._indptr[users]).long()

    def _draw_complement(self, users: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """The ``bits % n_u``-th non-positive of each row's user, for ``(B, k)`` random bits.

        ``users`` is a 1-D ``int64`` tensor of valid ids of samplable users.
        """
        ranks = bits % self._complement_sizes(users)[:, None]
        return self._complement_items(users[:, None].expand_as(bits), ranks)

    def _complement_items(self, users: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
        """Unchecked :meth:`complement_items` on int64 tensors of equal shape."""
        query = (users * self._num_items + ranks).to(self._keys.dtype)
        below = torch.searchsorted(self._keys, query, right=True) - self._indptr[users]
        return ranks + below

    def check_samplable(self, users: torch.Tensor) -> None:
        """Raise :class:`~negsample.EmptyComplementError` if a user has no negatives.

        ``users`` must be an in-range integer tensor on the index's device. Reads
        values back to the host.

        Example:
            >>> index = PositiveIndex.from_dict({0: [0, 1]}, num_items=2, num_users=2)
            >>> index.check_samplable(torch.tensor([1]))
            >>> index.check_samplable(torch.tensor([1, 0]))
            Traceback (most recent call last):
            ...
            negsample.errors.EmptyComplementError: user 0 has every one of the 2 items as a positive, ...
        """
        users_t = users.long()
        full = self._complement_sizes(users_t) <= 0
        if users_t.numel() and bool(full.any()):
            bad = torch.unique(users_t[full])
            raise EmptyComplementError(bad.tolist(), self._num_items)

    def sample(
        self,
        users: Any,
        num_samples: int = 1,
        *,
        generator: torch.Generator | int | None = None,
        validate: bool = True,
    ) -> torch.Tensor:
        """Draw items uniformly, with replacement, from each user's non-positives.

        Exact: every non-positive item of a user has the same probability (up to
        the ``n / 2**62`` modulo bias of drawing from 62 random bits) and a
        positive is never returned, however dense the user. No rejection loop.

        Args:
            users: 1-D integer tensor of user ids, on the index's device.
            num_samples: Draws per user.
            generator: ``None`` (torch's default generator), an int seed or a
                ``torch.Generator`` on the users' device.
            validate: Check ids and that every user has a negative (synchronises).

        Returns:
            ``int64`` tensor of shape ``(len(users), num_samples)``.

        Raises:
            EmptyComplementError: If a user's positives cover the whole catalogue.

        Example:
            >>> index = PositiveIndex.from_dict({0: [0, 1, 2]}, num_items=4)
            >>> index.sample(torch.tensor([0, 0]), 3, generator=0).tolist()
            [[3, 3, 3], [3, 3, 3]]
        """
        num_samples = check_int("num_samples", num_samples, minimum=1)
        users_t = self._users(users, validate=validate)
        if users_t.ndim != 1:
            raise ValueError(f"users must be 1-D, got shape {tuple(users_t.shape)}")
        if validate:
            self.check_samplable(users_t)
        gen = resolve_generator(make_generator("generator", generator), users_t.device)
        bits = draw_bits(gen, (users_t.numel(), num_samples), users_t.device)
        return self._draw_complement(users_t, bits)


def _resolve_size(name: str, given: int | None, ids: np.ndarray, what: str) -> int:
    if ids.size and ids.min() < 0:
        raise ValueError(f"{what} ids must be >= 0, got {int(ids.min())}")
    needed = int(ids.max()) + 1 if ids.size else 0
    if given is None:
        return needed
    size = check_int(name, given, minimum=0)
    if size < needed:
        raise ValueError(
            f"{name}={size} is too small: {what} id {needed - 1} is present (need {name} >= {needed})"
        )
    return size
