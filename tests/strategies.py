"""Shared Hypothesis strategies: small indexes with the awkward rows that matter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from hypothesis import strategies as st

from negsample import PositiveIndex


@dataclass
class Case:
    """An index together with the plain Python sets it was built from."""

    index: PositiveIndex
    positives: list[set[int]]
    num_items: int

    def complement(self, user: int) -> list[int]:
        return [i for i in range(self.num_items) if i not in self.positives[user]]

    def samplable_users(self) -> list[int]:
        return [u for u, p in enumerate(self.positives) if len(p) < self.num_items]


def build(positives: list[set[int]], num_items: int, how: str, id_dtype: str) -> PositiveIndex:
    """Build an index with one of the public constructors, ids in ``id_dtype``."""
    num_users = len(positives)
    users = np.array([u for u, p in enumerate(positives) for _ in p], dtype=id_dtype)
    items = np.array([i for p in positives for i in sorted(p)], dtype=id_dtype)
    if how == "dict":
        return PositiveIndex.from_dict(
            {u: p for u, p in enumerate(positives) if p}, num_users=num_users, num_items=num_items
        )
    if how == "pairs-numpy":
        return PositiveIndex.from_pairs(users, items, num_users=num_users, num_items=num_items)
    if how == "pairs-torch":
        return PositiveIndex.from_pairs(
            torch.from_numpy(users),
            torch.from_numpy(items),
            num_users=num_users,
            num_items=num_items,
        )
    if how == "pairs-list":
        return PositiveIndex.from_pairs(
            users.tolist(), items.tolist(), num_users=num_users, num_items=num_items
        )
    matrix = sp.csr_matrix(
        (np.ones(users.size), (users.astype(np.int64), items.astype(np.int64))),
        shape=(num_users, num_items),
    )
    return PositiveIndex.from_scipy(matrix)


@st.composite
def rows(draw: st.DrawFn, num_items: int, allow_full: bool) -> set[int]:
    """One user's positives, biased towards the edge cases."""
    kinds = ["empty", "all_but_one", "random", "random"]
    if allow_full:
        kinds.append("full")
    kind = draw(st.sampled_from(kinds))
    if kind == "empty":
        return set()
    if kind == "full":
        return set(range(num_items))
    if kind == "all_but_one":
        keep = draw(st.integers(0, num_items - 1))
        return set(range(num_items)) - {keep}
    limit = num_items if allow_full else num_items - 1
    return set(draw(st.lists(st.integers(0, num_items - 1), max_size=limit, unique=True)))


@st.composite
def cases(
    draw: st.DrawFn, max_users: int = 6, max_items: int = 12, allow_full: bool = False
) -> Case:
    """An index of up to ``max_users`` x ``max_items``, built by a random constructor.

    Rows include users with no positives, users with every item but one (a
    one-item complement) and, if ``allow_full``, users with no negative at all.
    Ids go through int32 or int64 arrays.
    """
    num_items = draw(st.integers(1, max_items))
    num_users = draw(st.integers(1, max_users))
    positives = [draw(rows(num_items, allow_full)) for _ in range(num_users)]
    how = draw(st.sampled_from(["dict", "pairs-numpy", "pairs-torch", "pairs-list", "scipy"]))
    id_dtype = draw(st.sampled_from(["int32", "int64"]))
    return Case(build(positives, num_items, how, id_dtype), positives, num_items)


@st.composite
def batches(draw: st.DrawFn, case: Case, max_size: int = 8) -> torch.Tensor:
    """A batch of samplable users (repeats allowed), as int64 or int32."""
    users = draw(st.lists(st.sampled_from(case.samplable_users()), min_size=1, max_size=max_size))
    dtype = draw(st.sampled_from([torch.int64, torch.int32]))
    return torch.tensor(users, dtype=dtype)


def table_scorer(table: torch.Tensor):  # type: ignore[no-untyped-def]
    """A scorer that looks scores up in a ``(num_users, num_items)`` table."""

    def scorer(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return table[users.long(), items.long()]

    return scorer


@st.composite
def tie_tables(
    draw: st.DrawFn,
    num_users: int,
    num_items: int,
    nan: bool = False,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Scores from a tiny set (small integers, -0.0, +-inf, NaN if ``nan``): lots of ties."""
    values_set = [-2.0, -1.0, -0.0, 0.0, 1.0, 2.0, -math.inf, math.inf] + (
        [math.nan] if nan else []
    )
    choices = st.sampled_from(values_set)
    values = draw(st.lists(choices, min_size=num_users * num_items, max_size=num_users * num_items))
    return torch.tensor(values, dtype=dtype).reshape(num_users, num_items)


SELECTIONS = ["topk", "softmax", "dns_mn", "ahns"]
"""Every ``selection`` of the hard sampler."""


@st.composite
def selection_settings(
    draw: st.DrawFn, selection: str, num_candidates: int, num_hard: int
) -> dict[str, Any]:
    """``selection`` with parameters for it: keyword arguments of the sampler and ``hard_negatives``.

    AHNS's shifts include the values that make ``s_pos + alpha`` zero for the small
    integer scores of :func:`tie_tables` (an infinite target), and exponents of both signs.
    """
    if selection == "softmax":
        return {"selection": selection, "temperature": draw(st.sampled_from([1e-3, 0.5, 1.0, 7.0]))}
    if selection == "dns_mn":
        return {
            "selection": selection,
            "top_n": draw(st.integers(max(1, num_hard), num_candidates)),
        }
    if selection == "ahns":
        number = st.one_of(
            st.sampled_from([0.0, 0.5, 1.0, -1.0, 2.0]),
            st.floats(-3, 3, allow_nan=False, allow_infinity=False),
        )
        return {
            "selection": selection,
            "ahns_alpha": draw(number),
            "ahns_beta": draw(st.one_of(st.sampled_from([0.1, 1.0, 0.0, -0.5]), number)),
            "ahns_p": draw(st.integers(-4, 3)),
        }
    return {"selection": selection}


@st.composite
def item_ids(draw: st.DrawFn, num_items: int, size: int) -> torch.Tensor:
    """``size`` item ids in ``[0, num_items)`` (``int64``), e.g. a batch's positive items."""
    ids = draw(st.lists(st.integers(0, num_items - 1), min_size=size, max_size=size))
    return torch.tensor(ids, dtype=torch.int64)
