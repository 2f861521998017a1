"""Known positives per user, held as CSR, with exact draws from each complement.

The complement trick: for a user with sorted positives ``p_0 < ... < p_{k-1}``
the ``r``-th non-positive item (``0 <= r < num_items - k``) is
``r + #{i : p_i - i <= r}``. :class:`PositiveIndex` precomputes ``q_i = p_i - i``
for every row and counts ``#{i : q_i <= r}`` for a whole batch without host
synchronisation, in one of two ways:

* while ``num_users * num_items`` fits in ``int32``, it stores the row-offset
  keys ``user * num_items + q_i`` (``int32``), sorted across rows, and one
  ``torch.searchsorted`` serves the batch; the item ids are stored the same way,
  as ``user * num_items + p_i``, so that a membership test is one
  ``searchsorted`` too (``indices`` computes the ids back);
* beyond that the keys would need ``int64``, so it stores ``q_i`` and the item
  ids themselves in the item ids' dtype and runs a fixed-step binary search
  inside each user's row.

Either way an interaction costs at most 8 bytes (item and ``q``, as keys or
as they are) for catalogues below ``2**31`` items. Both give the same items for
the same ranks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

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
from negsample.typing import IdsLike

if TYPE_CHECKING:
    from scipy.sparse import sparray, spmatrix

__all__ = ["NO_NEGATIVE", "PositiveIndex"]

NO_NEGATIVE = -1
"""What an unvalidated draw (``validate=False``) returns for a user with nothing to draw.

Never an item id, so it is never mistaken for a negative; the docs' "Users with
no negatives" section describes the policy.
"""

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_CHUNK = 2**21
"""Elements per block in the build's blockwise passes: bounds their int64 temporaries."""
_FLAT_KEYS_MAX = _INT32_MAX
"""Flat row-offset keys serve complement draws while ``num_users * num_items - 1`` is at
most this, so while they fit in ``int32``. The in-row search runs about 50 elementwise
operations where ``searchsorted`` runs one: single-threaded the two samplers were level
(Gowalla, B=4096, M=10), but with torch's two threads on a 2-core machine kept busy by
other processes every parallel operation waited for a time slice, and the flat keys made
the whole hard-negative sampler 1.6x to 2x faster at B=4096."""


def _smallest_signed_dtype(max_value: int) -> torch.dtype:
    """Smallest signed torch integer dtype that holds ``0..max_value``."""
    for dtype in (torch.int8, torch.int16, torch.int32):
        if max_value <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _numpy_dtype(dtype: torch.dtype) -> np.dtype[Any]:
    return torch.empty(0, dtype=dtype).numpy().dtype


def _count_at_most(
    q: torch.Tensor, start: torch.Tensor, end: torch.Tensor, value: torch.Tensor, steps: int
) -> torch.Tensor:
    """Per element of ``value``, ``#{j in [start, end) : q[j] <= value}``, ``q`` sorted per row.

    ``start`` and ``end`` broadcast against ``value`` and have the dtype the
    positions are computed in; every ``end - start`` is below ``2**steps``, and
    ``end + 2**steps`` fits the dtype. Binary lifting for a fixed number of
    ``steps``, so no host synchronisation: ``pos`` is the last position counted
    so far (``start - 1`` for none), and each step tries to move it ``2**k``
    further, clamped to the row's last position. A clamped move lands on the last
    position and is taken only when the whole row counts, which is then the
    answer; so the clamp gives the result of skipping an out-of-row move, one
    elementwise operation cheaper than a mask. The first step's candidate is the
    same for a whole row, so it is computed at the shape of ``start``; the others
    are five in-place operations at the shape of ``value``.
    """
    before = start - 1
    # An empty row at the very front would probe position -1; any valid position
    # does instead, since an empty row's candidate always equals its position.
    empty = start == end
    before = torch.where(empty, before.clamp(min=0), before)
    last = torch.where(empty, before, end - 1)
    value = value.to(q.dtype)
    if steps == 0:
        return torch.zeros(value.shape, dtype=before.dtype, device=value.device)
    first = torch.minimum(before + (1 << (steps - 1)), last)
    pos = torch.where(q[first] <= value, first, before)
    cand = torch.empty_like(pos)
    probe = torch.empty(value.shape, dtype=q.dtype, device=value.device)
    take = torch.empty(value.shape, dtype=torch.bool, device=value.device)
    for k in reversed(range(steps - 1)):
        torch.add(pos, 1 << k, out=cand)
        torch.minimum(cand, last, out=cand)
        torch.index_select(q, 0, cand.view(-1), out=probe.view(-1))
        torch.le(probe, value, out=take)
        torch.where(take, cand, pos, out=pos)
    return pos - before


class PositiveIndex:
    """Each user's known positive items, as CSR, with exact complement sampling.

    Row ``u`` holds user ``u``'s positives, sorted and de-duplicated. Item ids are
    stored in the smallest signed integer dtype that fits ``num_items``, row
    pointers in ``int32`` where the number of interactions allows, and one search
    key per interaction for complement draws (see the module notes): 8 bytes per
    interaction at most, plus 4 per user, up to ``2**31`` items and interactions.
    Users with no row in the input simply have no positives.

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

    def __init__(self, indptr: IdsLike, indices: IdsLike, num_items: int) -> None:
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
        """Fill the fields from valid CSR arrays (sorted unique rows; int64 ``indptr``).

        ``indices`` may have any integer dtype; it is converted (not copied, when it
        already has the item dtype) and ``q`` is computed block by block, so the
        build makes no int64 temporary the size of the index.
        """
        num_users = indptr.size - 1
        nnz = indices.size
        self._num_items = num_items
        # Structures derived from the index and built on demand (see candidates.py).
        self._derived: dict[str, Any] = {}
        self._max_degree = int(np.diff(indptr).max()) if num_users else 0
        self._search_steps = self._max_degree.bit_length()
        indptr_dtype = np.int32 if nnz <= _INT32_MAX else np.int64
        self._item_dtype = _smallest_signed_dtype(num_items - 1)
        items = np.ascontiguousarray(indices, dtype=_numpy_dtype(self._item_dtype))
        self._indptr = torch.from_numpy(indptr.astype(indptr_dtype))
        # Positions in the in-row search move up to max_degree past a row start.
        fits_int32 = nnz + self._max_degree <= _INT32_MAX
        self._position_dtype = torch.int32 if fits_int32 else torch.int64
        # Per interaction, two entries. If self._flat, the row-offset keys
        # user * num_items + item (``_items``, one searchsorted for membership) and
        # user * num_items + q_i (``_table``, one searchsorted for complement draws);
        # else the item ids and q_i themselves, searched inside each row.
        last_key = max(num_users * num_items - 1, 0)
        self._flat = last_key <= _FLAT_KEYS_MAX
        if self._flat:
            key_dtype = _numpy_dtype(_smallest_signed_dtype(last_key))
            self._table = torch.from_numpy(_row_keys(indptr, items, num_items, key_dtype, True))
            self._items = torch.from_numpy(_row_keys(indptr, items, num_items, key_dtype, False))
        else:
            self._table = torch.from_numpy(_row_keys(indptr, items))
            self._items = torch.from_numpy(items)

    @classmethod
    def _from_arrays(cls, indptr: np.ndarray, indices: np.ndarray, num_items: int) -> PositiveIndex:
        """Build from valid CSR arrays without checking them."""
        index = cls.__new__(cls)
        index._init_trusted(indptr, indices, num_items)
        return index

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_pairs(
        cls,
        users: IdsLike,
        items: IdsLike,
        num_users: int | None = None,
        num_items: int | None = None,
    ) -> PositiveIndex:
        """Build an index from parallel arrays of user and item ids.

        Duplicated pairs count once. ``num_users`` and ``num_items`` default to one
        more than the largest id present. NumPy arrays and CPU tensors of any
        integer dtype are used as they are (``int32`` ids are not widened).

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
        users_a = _id_array("users", users)
        items_a = _id_array("items", items)
        if users_a.ndim != 1 or items_a.ndim != 1:
            raise ValueError(
                f"users and items must be 1-D, got shapes {users_a.shape} and {items_a.shape}"
            )
        if users_a.size != items_a.size:
            raise ValueError(
                f"users and items must have the same length, got {users_a.size} and {items_a.size}"
            )
        return cls._from_numpy_pairs(users_a, items_a, num_users, num_items)

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
        if num_users * num_items - 1 <= _INT64_MAX:
            return cls._from_arrays(*_csr_from_keys(users, items, num_users, num_items), num_items)
        # (user, item) keys overflow int64: sort the pairs instead (slower, rare).
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
        mapping: Mapping[int, Iterable[int]],
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
    def from_scipy(cls, matrix: sparray | spmatrix) -> PositiveIndex:
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
        return cls._from_arrays(csr.indptr.astype(np.int64), csr.indices, num_items)

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
        return self._items.numel()

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
        """CSR item ids, sorted within each row, in the smallest dtype that fits.

        Computed from the stored keys for an index that keeps flat keys (see
        the module notes): a new tensor per access.
        """
        if self._flat:
            keys = self._items
            if self._num_items > torch.iinfo(keys.dtype).max:
                # One user and num_items = 2**7, 2**15 or 2**31: the keys' dtype holds every key
                # but not num_items itself, which would wrap to a negative divisor.
                keys = keys.long()
            return (keys % self._num_items).to(self._item_dtype)
        return self._items

    def _items_at(self, positions: torch.Tensor) -> torch.Tensor:
        """``indices[positions]`` as ``int64``, without building ``indices``."""
        stored = self._items.index_select(0, positions.reshape(-1)).view(positions.shape)
        return stored.long() % self._num_items if self._flat else stored.long()

    @property
    def device(self) -> torch.device:
        """Device the index's tensors live on."""
        return self._items.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's tensors.

        ``(num_users + 1)`` row pointers plus two entries per interaction (the
        item and its ``q``, as flat keys or as they are), each in the smallest
        dtype that fits.

        Example:
            >>> PositiveIndex.from_pairs([0, 1, 1], [2, 0, 3], num_items=40_000).nbytes
            36
        """
        tensors = (self._indptr, self._items, self._table)
        return sum(t.numel() * t.element_size() for t in tensors)

    def __repr__(self) -> str:
        return (
            f"PositiveIndex(num_users={self.num_users}, num_items={self.num_items}, "
            f"num_interactions={self.num_interactions}, device={self.device})"
        )

    def to(self, device: torch.device | str) -> PositiveIndex:
        """Return a copy of the index on ``device`` (``self`` if already there).

        Args:
            device: Where the copy's tensors go, e.g. ``"cuda"``.

        Returns:
            The index on ``device``: ``self`` when it is already there, else a
            copy; both can then be used, each on its own device.

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
        moved._items = self._items.to(device)
        moved._table = self._table.to(device)
        moved._derived = {}
        return moved

    # ------------------------------------------------------------------ queries

    def _users(self, users: IdsLike, *, validate: bool) -> torch.Tensor:
        tensor = as_index_tensor("users", users)
        if tensor.device != self.device:
            raise ValueError(
                f"users are on {tensor.device} but the index is on {self.device}; "
                f"move one of them (index.to(device))"
            )
        if validate:
            check_ids_in_range("users", tensor, self.num_users, "user")
        return tensor.long()

    def degree(self, users: IdsLike, *, validate: bool = True) -> torch.Tensor:
        """Number of positives of each user (``int64``, same shape as ``users``).

        Args:
            users: Integer user ids of any shape, on the index's device.
            validate: Check that the ids are in range (reads values back to the host).

        Returns:
            ``int64`` tensor of the shape of ``users``.

        Raises:
            TypeError: If the ids are not integers.
            ValueError: If ``users`` is on another device, or (with
                ``validate``) an id is out of range.

        Example:
            >>> index = PositiveIndex.from_dict({0: [1, 2]}, num_users=2)
            >>> index.degree(torch.tensor([0, 1])).tolist()
            [2, 0]
        """
        users_t = self._users(users, validate=validate)
        return (self._indptr[users_t + 1] - self._indptr[users_t]).long()

    def complement_size(self, users: IdsLike, *, validate: bool = True) -> torch.Tensor:
        """Number of non-positive items of each user: ``num_items - degree(users)``.

        Args:
            users: Integer user ids of any shape, on the index's device.
            validate: Check that the ids are in range (reads values back to the host).

        Returns:
            ``int64`` tensor of the shape of ``users``.

        Raises:
            TypeError: If the ids are not integers.
            ValueError: If ``users`` is on another device, or (with
                ``validate``) an id is out of range.

        Example:
            >>> index = PositiveIndex.from_dict({0: [1, 2]}, num_items=4)
            >>> index.complement_size(torch.tensor([0])).tolist()
            [2]
        """
        return self._num_items - self.degree(users, validate=validate)

    def positives(self, user: int) -> torch.Tensor:
        """The sorted positive item ids of one user, as an ``int64`` tensor.

        Args:
            user: One user id, ``0 <= user < num_users``.

        Returns:
            ``int64`` tensor of shape ``(degree,)`` on the index's device.

        Raises:
            TypeError: If ``user`` is not an int.
            ValueError: If ``user`` is out of range.

        Example:
            >>> PositiveIndex.from_dict({0: {3, 1}}).positives(0).tolist()
            [1, 3]
        """
        user = check_int("user", user, minimum=0)
        if user >= self.num_users:
            raise ValueError(f"user must be a user id in [0, {self.num_users}), got {user}")
        start, end = int(self._indptr[user]), int(self._indptr[user + 1])
        return self._items_at(torch.arange(start, end, device=self.device))

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every ``(user, item)`` positive as two parallel ``int64`` tensors.

        Sorted by user, then item (CSR order), on the index's device: ready for
        a ``torch.utils.data.TensorDataset`` or a shuffled batch loop. The
        inverse of :meth:`from_pairs` (up to order and duplicates).

        Returns:
            ``(users, items)``, each ``int64`` of shape ``(num_interactions,)``.

        Example:
            >>> users, items = PositiveIndex.from_dict({0: [3, 1], 2: [0]}).pairs()
            >>> users.tolist(), items.tolist(), users.dtype
            ([0, 0, 2], [1, 3, 0], torch.int64)
        """
        if self._flat:
            # The flat keys are user * num_items + item: one division gives both.
            keys = self._items.long()
            return keys // self._num_items, keys % self._num_items
        users = torch.repeat_interleave(
            torch.arange(self.num_users, device=self.device),
            (self._indptr[1:] - self._indptr[:-1]).long(),
            output_size=self.num_interactions,
        )
        return users, self._items.long()

    def contains(self, users: IdsLike, items: IdsLike, *, validate: bool = True) -> torch.Tensor:
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
        return self._is_positive(users_t, items_t)

    def _is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Unchecked :meth:`contains` on ``int64`` tensors of valid ids of equal shape."""
        if self.num_interactions == 0:
            return torch.zeros(users.shape, dtype=torch.bool, device=self.device)
        if self._flat:
            key = (users * self._num_items + items).to(self._items.dtype)
            first = torch.searchsorted(self._items, key).clamp_(max=self.num_interactions - 1)
            return self._items.index_select(0, first.view(-1)).view(key.shape) == key
        flat = users.reshape(-1)
        start = self._indptr.index_select(0, flat).view(users.shape)
        end = self._indptr.index_select(0, flat + 1).view(users.shape)
        start, end = start.to(self._position_dtype), end.to(self._position_dtype)
        # The last positive <= item, if any, is the item itself exactly when it is a positive.
        count = _count_at_most(self._items, start, end, items, self._search_steps)
        last = (start + count - 1).clamp(min=0)
        found = self._items.index_select(0, last.view(-1)).view(items.shape) == items
        return (count > 0) & found

    def complement_items(
        self, users: IdsLike, ranks: IdsLike, *, validate: bool = True
    ) -> torch.Tensor:
        """Map ranks to items: the ``ranks``-th (0-based) non-positive item of each user.

        Computes ``r + #{i : p_i - i <= r}`` for the whole batch at once, with one
        ``searchsorted`` or a binary search inside each user's row (see the module
        notes). ``users`` and ``ranks`` broadcast; the result is ``int64``.

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

        ``users`` is a 1-D ``int64`` tensor of valid ids. A user with ``n_u = 0``
        gets :data:`NO_NEGATIVE` in every entry: checking would synchronise, and
        a modulo by 0 raises on the CPU but gives an arbitrary item elsewhere.
        """
        sizes = self._complement_sizes(users)[:, None]
        ranks = bits % sizes.clamp(min=1)
        if self._flat:
            items = self._complement_items(users[:, None].expand_as(bits), ranks)
        else:
            start = self._indptr[users].to(self._position_dtype)[:, None]
            end = self._indptr[users + 1].to(self._position_dtype)[:, None]
            items = ranks + _count_at_most(self._table, start, end, ranks, self._search_steps)
        return torch.where(sizes > 0, items, NO_NEGATIVE)

    def _complement_items(self, users: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
        """Unchecked :meth:`complement_items` on int64 tensors of equal shape."""
        if self._flat:
            query = (users * self._num_items + ranks).to(self._table.dtype)
            below = torch.searchsorted(self._table, query, right=True) - self._indptr[users]
            return ranks + below
        start = self._indptr[users].to(self._position_dtype)
        end = self._indptr[users + 1].to(self._position_dtype)
        return ranks + _count_at_most(self._table, start, end, ranks, self._search_steps)

    def check_samplable(self, users: torch.Tensor) -> None:
        """Raise :class:`~negsample.EmptyComplementError` if a user has no negatives.

        Reads values back to the host. This knows nothing of candidate weights: before
        sampling with ``validate=False``, use the sampler's own
        :meth:`~negsample.HardNegativeSampler.check_samplable`, which also
        rejects users whose non-positives all weigh 0 under popularity candidates.

        Args:
            users: Integer tensor of user ids, in range and on the index's
                device (not checked here).

        Raises:
            EmptyComplementError: Naming every such user among ``users``.

        Example:
            >>> index = PositiveIndex.from_dict({0: [0, 1]}, num_items=2, num_users=2)
            >>> index.check_samplable(torch.tensor([1]))
            >>> index.check_samplable(torch.tensor([1, 0]))
            Traceback (most recent call last):
            ...
            negsample.errors.EmptyComplementError: user 0 has every one of the 2 items ...
        """
        users_t = users.long()
        full = self._complement_sizes(users_t) <= 0
        if users_t.numel() and bool(full.any()):
            bad = torch.unique(users_t[full])
            raise EmptyComplementError(bad.tolist(), self._num_items)

    def sample(
        self,
        users: IdsLike,
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
                Without the check, a user with no negative gets
                :data:`NO_NEGATIVE` (-1) in every entry.

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


def _id_array(name: str, value: Any) -> np.ndarray:
    """Ids as a NumPy array, keeping a NumPy array's or CPU tensor's integer dtype.

    Other inputs (lists, other devices) go through :func:`as_index_tensor`; so do
    ``uint64`` arrays, which become ``int64`` there.
    """
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.dtype != np.uint64:
        return value
    return as_index_tensor(name, value).cpu().numpy()


def _csr_from_keys(
    users: np.ndarray, items: np.ndarray, num_users: int, num_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, de-duplicated CSR (int64 ``indptr``, item-dtype ids) from in-range pairs.

    One sort of the keys ``user * num_items + item`` (``int32`` where they fit),
    in place; everything else is computed from the sorted keys without int64
    temporaries the size of the input, so the build's peak above its inputs is
    the keys plus the final item ids.
    """
    cells = num_users * num_items
    key_dtype = np.int32 if cells <= _INT32_MAX else np.int64
    keys = np.multiply(users, num_items, dtype=key_dtype, casting="unsafe")
    np.add(keys, items, out=keys, casting="unsafe")
    keys.sort()
    keys = keys[: _drop_repeats(keys)]
    indptr = np.empty(num_users + 1, dtype=np.int64)
    indptr[0] = 0
    indptr[-1] = keys.size
    row_starts = (np.arange(1, num_users, dtype=np.int64) * num_items).astype(key_dtype)
    indptr[1:-1] = np.searchsorted(keys, row_starts)
    item_ids = np.empty(keys.size, dtype=_numpy_dtype(_smallest_signed_dtype(num_items - 1)))
    np.remainder(keys, num_items, out=item_ids, casting="unsafe")
    return indptr, item_ids


def _drop_repeats(sorted_values: np.ndarray) -> int:
    """Move the distinct values of a sorted array to its front, in place; return their count.

    Block by block. A block reads positions ``start - 1 .. stop - 1`` after the
    earlier blocks wrote ``0 .. kept - 1`` with ``kept <= start``; they can only
    have written position ``start - 1`` when nothing was dropped so far, and then
    with the value it already held. So every comparison sees the input.
    """
    size = sorted_values.size
    if size == 0:
        return 0
    kept = 1
    for start in range(1, size, _CHUNK):
        stop = min(start + _CHUNK, size)
        block = sorted_values[start:stop]
        fresh = block[block != sorted_values[start - 1 : stop - 1]]
        sorted_values[kept : kept + fresh.size] = fresh
        kept += fresh.size
    return kept


def _row_keys(
    indptr: np.ndarray,
    items: np.ndarray,
    num_items: int = 0,
    dtype: np.dtype[Any] | None = None,
    minus_position: bool = True,
) -> np.ndarray:
    """``q_i = p_i - i`` for each row's sorted items ``p``, plus ``user * num_items``.

    With the default ``num_items=0`` that is ``q`` itself, in the items' dtype
    (``0 <= q_i <= p_i``); with the catalogue size, the flat row-offset keys.
    ``minus_position=False`` leaves out ``- i``: the flat item keys
    ``user * num_items + p_i``. Computed for blocks of whole rows of about
    ``_CHUNK`` interactions.
    """
    out = np.empty(items.size, dtype=items.dtype if dtype is None else dtype)
    for first, last, lo, hi in _row_blocks(indptr, _CHUNK):
        degrees = np.diff(indptr[first : last + 1])
        if minus_position:
            shift = np.repeat(indptr[first:last] - lo, degrees) - np.arange(hi - lo)
        else:
            shift = np.zeros(hi - lo, dtype=np.int64)
        if num_items:
            shift += np.repeat(np.arange(first, last, dtype=np.int64) * num_items, degrees)
        np.add(items[lo:hi], shift, out=out[lo:hi], casting="unsafe")
    return out


def _row_blocks(indptr: np.ndarray, size: int) -> Iterator[tuple[int, int, int, int]]:
    """Blocks of whole rows of about ``size`` interactions: ``(first, last, lo, hi)``.

    Rows ``first .. last - 1`` hold interactions ``lo .. hi - 1`` (``hi > lo``);
    a row longer than ``size`` is a block of its own, empty blocks are skipped.
    """
    num_users = indptr.size - 1
    first = 0
    while first < num_users:
        end = int(np.searchsorted(indptr, indptr[first] + size, side="right")) - 1
        last = min(max(end, first + 1), num_users)
        lo, hi = int(indptr[first]), int(indptr[last])
        if hi > lo:
            yield first, last, lo, hi
        first = last


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
