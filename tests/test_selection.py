"""Slot selection: the argmax/argmin rounds and topk give exactly what a stable sort gives.

And AHNS's target: the same numbers for one row as for a batch, close to ``pow``.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from negsample.samplers._selection import (
    _ahns_target,
    _highest_slots,
    _lowest_slots,
    _smallest_free_slots,
    _smallest_slots,
    _unique_score_keys,
)

TIE_VALUES = [-math.inf, -1.5, -0.0, 0.0, 0.5, 1.0, math.inf, math.nan, -math.nan]
"""Few distinct values, so ties are frequent; -0.0 == 0.0, and NaN of either sign."""

FLOAT_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
TAKEN = torch.iinfo(torch.int64).max


@st.composite
def score_tables(draw: st.DrawFn) -> torch.Tensor:
    """A ``(B, M)`` table, B in 1..6 and M in 1..12, mostly tie values, in a float dtype."""
    batch = draw(st.integers(1, 6))
    width = draw(st.integers(1, 12))
    value = st.one_of(
        st.sampled_from(TIE_VALUES),
        st.sampled_from(TIE_VALUES),
        st.floats(allow_nan=True, allow_infinity=True, width=32),
    )
    values = draw(st.lists(value, min_size=batch * width, max_size=batch * width))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    return torch.tensor(values, dtype=torch.float64).to(dtype).reshape(batch, width)


def stable_descending(keys: torch.Tensor) -> torch.Tensor:
    return torch.sort(keys, dim=1, descending=True, stable=True).indices


@st.composite
def slot_key_tables(draw: st.DrawFn, batch: int, width: int) -> torch.Tensor:
    """``int64`` slot keys in ``[0, 2**62)``: from a tiny range (many ties) or the full one."""
    narrow = st.integers(0, 3)
    wide = st.integers(0, 2**62 - 1)
    key = draw(st.sampled_from([narrow, wide, st.one_of(narrow, wide)]))
    values = draw(st.lists(key, min_size=batch * width, max_size=batch * width))
    return torch.tensor(values, dtype=torch.int64).reshape(batch, width)


# ---------------------------------------------------------------------- hard part: highest scores


@settings(max_examples=150)
@given(scores=score_tables())
def test_highest_slots_is_the_stable_descending_sort_for_every_k(scores: torch.Tensor) -> None:
    batch, width = scores.shape
    expected = stable_descending(scores)
    for k in range(width + 1):
        picked = _highest_slots(scores, k)
        assert picked.shape == (batch, k) and picked.dtype == torch.int64
        assert torch.equal(picked, expected[:, :k]), (scores, k, picked, expected[:, :k])


@settings(max_examples=100)
@given(scores=score_tables())
def test_highest_slots_leaves_the_scores_untouched(scores: torch.Tensor) -> None:
    before = scores.clone()
    _highest_slots(scores, min(3, scores.shape[1]))
    _highest_slots(scores, scores.shape[1])
    assert torch.equal(scores.view(torch.uint8), before.view(torch.uint8))  # bitwise: NaN, -0.0


@settings(max_examples=100)
@given(scores=score_tables().filter(lambda t: t.dtype != torch.float64))
def test_unique_score_keys_are_distinct_and_order_slots_like_the_stable_sort(
    scores: torch.Tensor,
) -> None:
    keys = _unique_score_keys(scores)
    assert keys.dtype == torch.int64 and keys.shape == scores.shape
    ordered = torch.sort(keys, dim=1).values
    assert bool((ordered[:, 1:] > ordered[:, :-1]).all()), "keys repeat within a row"
    # Distinct keys: any sort of them is the stable descending sort of the scores.
    assert torch.equal(torch.argsort(keys, dim=1, descending=True), stable_descending(scores))


def test_negative_zero_ties_with_zero_and_every_nan_ranks_above_infinity() -> None:
    row = [0.0, -0.0, math.inf, math.nan, -math.nan, -math.inf, 1.0]
    for dtype in FLOAT_DTYPES:
        scores = torch.tensor([row], dtype=dtype)
        # NaNs first in slot order, then +inf, 1.0, the zeros in slot order, -inf.
        assert _highest_slots(scores, 7).tolist() == [[3, 4, 2, 6, 0, 1, 5]], dtype
        assert _highest_slots(scores, 4).tolist() == [[3, 4, 2, 6]], dtype
        assert _highest_slots(torch.tensor([[-0.0, 0.0]], dtype=dtype), 1).tolist() == [[0]]


# ---------------------------------------------------------------------- random part: smallest keys


@settings(max_examples=150)
@given(data=st.data(), scores=score_tables())
def test_smallest_free_slots_is_the_stable_ascending_sort_of_the_free_slots(
    data: st.DataObject, scores: torch.Tensor
) -> None:
    batch, width = scores.shape
    num_taken = data.draw(st.integers(0, width), label="num_taken")
    taken = _highest_slots(scores, num_taken)  # distinct slots in each row, as in the sampler
    slot_keys = data.draw(slot_key_tables(batch, width), label="slot_keys")
    before = slot_keys.clone()
    expected = torch.sort(slot_keys.scatter(1, taken, TAKEN), dim=1, stable=True).indices
    for k in range(width - num_taken + 1):
        picked = _smallest_free_slots(slot_keys, taken, k)
        assert picked.shape == (batch, k) and picked.dtype == torch.int64
        assert torch.equal(picked, expected[:, :k]), (slot_keys, taken, k)
        chosen = torch.cat([taken, picked], dim=1)
        assert all(len(set(row)) == num_taken + k for row in chosen.tolist())
    assert torch.equal(slot_keys, before)


def test_smallest_free_slots_breaks_ties_towards_the_lower_slot_and_skips_taken_ones() -> None:
    slot_keys = torch.tensor([[2, 0, 0, 1, 0, 2], [5, 5, 5, 5, 5, 5]])
    taken = torch.tensor([[2], [0]])
    assert _smallest_free_slots(slot_keys, taken, 5).tolist() == [[1, 4, 3, 0, 5], [1, 2, 3, 4, 5]]
    assert _smallest_free_slots(slot_keys, taken, 3).tolist() == [[1, 4, 3], [1, 2, 3]]


def test_smallest_free_slots_of_zero_slots_is_an_empty_table() -> None:
    picked = _smallest_free_slots(torch.tensor([[3, 1, 2]]), torch.tensor([[0]]), 0)
    assert picked.shape == (1, 0) and picked.dtype == torch.int64


# ---------------------------------------------------------------------- DNS(M, N) and AHNS


@settings(max_examples=100)
@given(data=st.data(), batch=st.integers(1, 5), width=st.integers(1, 12))
def test_smallest_slots_is_the_stable_ascending_sort(
    data: st.DataObject, batch: int, width: int
) -> None:
    keys = data.draw(slot_key_tables(batch, width), label="keys")
    expected = torch.sort(keys, dim=1, stable=True).indices
    for k in range(width + 1):
        assert torch.equal(_smallest_slots(keys.clone(), k), expected[:, :k]), (keys, k)


@settings(max_examples=100)
@given(scores=score_tables())
def test_lowest_slots_put_nan_last_and_ties_to_the_lower_slot(scores: torch.Tensor) -> None:
    distances = scores.double().abs()  # AHNS's keys: >= 0, +inf, NaN
    for k in range(scores.shape[1] + 1):
        picked = _lowest_slots(distances, k).tolist()
        for row, slots in zip(distances.tolist(), picked, strict=True):
            order = sorted(
                range(len(row)),
                key=lambda s: (math.isnan(row[s]), 0.0 if math.isnan(row[s]) else row[s], s),
            )
            assert slots == order[:k], (row, k)


def test_ahns_target_matches_the_formula() -> None:
    def formula(score: float, alpha: float, beta: float, p: int) -> float:
        base = score + alpha
        if base == 0 and p + 1 < 0:
            return math.inf  # Python's ** raises here; pow gives an infinity
        return beta * base ** (p + 1)

    scores = torch.tensor([1.5, 0.0, -0.5, 2.0, -1.0])
    for alpha, beta, p in [
        (1.0, 0.1, -2),
        (0.5, 2.0, 0),
        (0.0, 0.25, 1),
        (1.0, 1.0, -4),
        (2, 3, 4),
    ]:
        expected = [formula(s, alpha, beta, p) for s in scores.tolist()]
        got = _ahns_target(scores, alpha, beta, p)
        assert got.dtype == torch.float64
        assert got.tolist() == pytest.approx(expected, rel=1e-15), (alpha, beta, p)


@settings(max_examples=100)
@given(
    values=st.lists(st.floats(width=32), min_size=1, max_size=40),
    alpha=st.floats(-3, 3),
    beta=st.floats(-3, 3),
    p=st.integers(-7, 6),
)
def test_ahns_target_of_one_row_is_bitwise_that_of_the_batch(
    values: list[float], alpha: float, beta: float, p: int
) -> None:
    # The reference computes each row's target alone, the vectorized path the batch's.
    scores = torch.tensor(values, dtype=torch.float32)
    batch = _ahns_target(scores, alpha, beta, p)
    rows = torch.cat([_ahns_target(scores[i : i + 1], alpha, beta, p) for i in range(len(values))])
    assert torch.equal(batch.view(torch.int64), rows.view(torch.int64))
