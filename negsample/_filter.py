"""A membership filter over an index's ``(user, item)`` pairs: "surely not" or "maybe".

:class:`PairFilter` is a blocked Bloom filter: each pair hashes to one 32-bit
word and two bits in it; building sets those bits for every known positive, so
a pair whose two bits are not both set is certainly not a positive (no false
negatives, ever), while a set pair may be one (a false positive, about 4% of
random pairs at the default size). Candidate draws (uniform and popularity,
see :mod:`negsample.candidates`) use it to skip the exact membership test for
the ~96% of first-stage items that are plainly not positives; the answer never
depends on it, only the time does.

Memory: the number of words is the power of two at or above ``nnz / 4``
(8 bits per interaction, rounded up), so 1 to 2 bytes per interaction.
"""

from __future__ import annotations

import numpy as np
import torch

from negsample.index import _row_blocks

__all__ = ["PairFilter"]

_MUL_USER = 0x5BD1E995  # odd constants below 2**31: u * A + i * B < 2**63 for ids < 2**31
_MUL_ITEM = 0x27D4EB2F
_ID_LIMIT = 2**31
_BITS_PER_PAIR = 8
_BUILD_BLOCK = 2**22
"""Pairs hashed at a time while building: bounds the int64 temporaries (32 MiB each)."""


def _hash(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Mixed ``int64`` hash of ``int64`` ids below ``2**31``; never overflows."""
    mixed = users * _MUL_USER + items * _MUL_ITEM
    return mixed ^ (mixed >> 29)


def _bit_pairs() -> torch.Tensor:
    """``int32`` masks with bits ``j % 32`` and ``j // 32`` set, for ``j`` in ``0..1023``."""
    j = np.arange(1024, dtype=np.uint32)
    masks = (np.uint32(1) << (j & 31)) | (np.uint32(1) << (j >> 5))
    return torch.from_numpy(masks.view(np.int32).copy())


class PairFilter:
    """No false negatives over the positives of a CSR index; see the module notes.

    Args:
        indptr: ``int64`` NumPy row pointers, one more than the users (ids below ``2**31``).
        items: NumPy item ids of each row (ids below ``2**31``).
    """

    def __init__(self, indptr: np.ndarray, items: np.ndarray) -> None:
        nnz = items.size
        num_words = 1 << max(0, (nnz * _BITS_PER_PAIR // 32 - 1).bit_length())
        self._mask = num_words - 1
        self._masks = _bit_pairs()
        words = np.zeros(num_words, dtype=np.int32)
        masks = self._masks.numpy()
        degrees = np.diff(indptr)
        for first, last, lo, hi in _row_blocks(indptr, _BUILD_BLOCK):
            users = torch.from_numpy(np.repeat(np.arange(first, last), degrees[first:last]))
            hashed = _hash(users, torch.from_numpy(items[lo:hi]).long()).numpy()
            np.bitwise_or.at(words, hashed & self._mask, masks[(hashed >> 33) & 1023])
        self._words = torch.from_numpy(words)

    @property
    def nbytes(self) -> int:
        """Bytes held by the filter's tensors."""
        return self._words.numel() * 4 + self._masks.numel() * 4

    def to(self, device: torch.device) -> PairFilter:
        """A copy of the filter on ``device``."""
        moved = PairFilter.__new__(PairFilter)
        moved._mask = self._mask
        moved._words = self._words.to(device)
        moved._masks = self._masks.to(device)
        return moved

    def maybe_contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``False`` where ``(user, item)`` is surely not a positive; same-shape ``int64`` ids."""
        hashed = _hash(users, items)
        word = self._words.index_select(0, (hashed & self._mask).view(-1)).view(hashed.shape)
        bits = self._masks.index_select(0, ((hashed >> 33) & 1023).view(-1)).view(hashed.shape)
        return (word & bits) == bits


def can_filter(num_users: int, num_items: int) -> bool:
    """Whether ids fit the filter's overflow-free hash."""
    return num_users <= _ID_LIMIT and num_items <= _ID_LIMIT
