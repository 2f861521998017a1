"""PairFilter and uniform candidate draws: no false negatives, a useful filter, exact draws."""

from __future__ import annotations

from collections import Counter
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import negsample.candidates as candidates_module
from negsample import PositiveIndex
from negsample._filter import PairFilter
from negsample.candidates import UniformCandidates, _pair_filter
from tests.strategies import Case, build

FULL_RANGE = 2**62


@st.composite
def wide_rows(draw: st.DrawFn, num_items: int, allow_full: bool) -> set[int]:
    """One user's positives over a catalogue of up to a few hundred items.

    Dense rows (every item, every item but one, every item but a few) make
    ``x = b % num_items`` hit a positive most of the time, so the complement
    search runs; sparse rows and empty rows are the common case.
    """
    kinds = ["empty", "all_but_one", "all_but_a_few", "block", "sparse", "sparse"]
    if allow_full:
        kinds.append("full")
    kind = draw(st.sampled_from(kinds))
    everything = set(range(num_items))
    if kind == "empty":
        return set()
    if kind == "full":
        return everything
    if kind == "all_but_one":
        return everything - {draw(st.integers(0, num_items - 1))}
    if kind == "all_but_a_few":
        kept = draw(st.lists(st.integers(0, num_items - 1), min_size=1, max_size=5, unique=True))
        return everything - set(kept)
    if kind == "block":
        start = draw(st.integers(0, num_items - 1))
        stop = draw(st.integers(start, num_items - 1))
        if stop - start + 1 == num_items and not allow_full:
            stop -= 1
        return set(range(start, stop + 1))
    limit = min(30, num_items if allow_full else num_items - 1)
    return set(draw(st.lists(st.integers(0, num_items - 1), max_size=limit, unique=True)))


@st.composite
def wide_cases(draw: st.DrawFn, allow_full: bool = False) -> Case:
    """An index of 1 to 6 users over 1 to 200 items, built by a random public constructor."""
    num_items = draw(st.one_of(st.integers(1, 8), st.integers(1, 200)))
    num_users = draw(st.integers(1, 6))
    positives = [draw(wide_rows(num_items, allow_full)) for _ in range(num_users)]
    how = draw(st.sampled_from(["dict", "pairs-numpy", "pairs-torch", "pairs-list", "scipy"]))
    id_dtype = draw(st.sampled_from(["int32", "int64"]))
    return Case(build(positives, num_items, how, id_dtype), positives, num_items)


@st.composite
def draw_inputs(draw: st.DrawFn, case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """Samplable users (repeats allowed) and ``(B, k)`` bits, full-range and small."""
    users = draw(st.lists(st.sampled_from(case.samplable_users()), min_size=1, max_size=6))
    width = draw(st.integers(1, 6))
    bit = st.one_of(
        st.integers(0, FULL_RANGE - 1),
        st.integers(0, 4 * case.num_items),
        st.integers(FULL_RANGE - 4 * case.num_items, FULL_RANGE - 1),
    )
    flat = draw(st.lists(bit, min_size=len(users) * width, max_size=len(users) * width))
    return torch.tensor(users), torch.tensor(flat, dtype=torch.int64).reshape(len(users), width)


def fixed_shape_draw(source: UniformCandidates, users: torch.Tensor, bits: torch.Tensor) -> Any:
    """``source.draw`` on the path every non-CPU device takes (no compaction, no nonzero)."""
    no_nonzero = mock.patch.object(
        torch, "nonzero", side_effect=AssertionError("the fixed-shape path compacted")
    )
    with mock.patch.object(candidates_module, "_COMPACTING_DEVICES", ()), no_nonzero:
        return source.draw(users, bits)


# ---------------------------------------------------------------------- the filter


@settings(max_examples=40)
@given(case=wide_cases(allow_full=True))
def test_the_filter_flags_every_known_positive(case: Case) -> None:
    pairs = [(u, i) for u, row in enumerate(case.positives) for i in sorted(row)]
    pair_filter = _pair_filter(case.index)
    if not pairs:
        assert pair_filter is None  # nothing to filter: every draw is searched
    else:
        assert pair_filter is not None
        users = torch.tensor([u for u, _ in pairs])
        items = torch.tensor([i for _, i in pairs])
        flagged = pair_filter.maybe_contains(users, items)
        assert flagged.shape == users.shape and flagged.dtype == torch.bool
        missed = [pairs[j] for j in torch.nonzero(~flagged).view(-1).tolist()]
        assert not missed, f"false negatives {missed}"
        # Broadcast (B, 1) x (B, k), the shape candidate draws query it with.
        grid = pair_filter.maybe_contains(users[:, None], items[:, None].expand(-1, 3))
        assert bool(grid.all())


def test_the_filter_rules_out_most_non_positives_in_a_few_bytes_per_interaction() -> None:
    rng = np.random.default_rng(0)
    num_users, num_items = 2000, 5000
    index = PositiveIndex.from_pairs(
        rng.integers(0, num_users, 20_000),
        rng.integers(0, num_items, 20_000),
        num_users=num_users,
        num_items=num_items,
    )
    pair_filter = _pair_filter(index)
    assert pair_filter is not None
    nnz = index.num_interactions
    mask_table = 1024 * 4  # the int32 bit-pair masks
    assert nnz <= pair_filter.nbytes - mask_table <= 2 * nnz
    assert UniformCandidates(index).nbytes == pair_filter.nbytes

    users = torch.from_numpy(rng.integers(0, num_users, 100_000))
    items = torch.from_numpy(rng.integers(0, num_items, 100_000))
    negative = ~index.contains(users, items)
    assert int(negative.sum()) > 99_000
    false_positive_rate = float(
        pair_filter.maybe_contains(users[negative], items[negative]).float().mean()
    )
    # About 4% of non-positives are flagged at exactly 8 bits per interaction; here the
    # word count rounds up to a power of two (8192 words, ~13 bits per interaction), ~2.5%.
    assert false_positive_rate < 0.10


def test_the_filter_is_built_once_per_index_and_shared_by_its_sources() -> None:
    index = PositiveIndex.from_pairs([0, 0, 1, 3], [2, 7, 7, 0], num_items=9)
    with mock.patch.object(candidates_module, "PairFilter", wraps=PairFilter) as spy:
        first = _pair_filter(index)
        assert spy.call_count == 1
        assert _pair_filter(index) is first
        assert UniformCandidates(index)._filter is first
        assert UniformCandidates(index)._filter is first
        assert spy.call_count == 1
    assert index._derived["pair_filter"] is first
    # Another index over the same pairs gets its own filter.
    other = PositiveIndex.from_pairs([0, 0, 1, 3], [2, 7, 7, 0], num_items=9)
    assert _pair_filter(other) is not first


def test_moving_uniform_candidates_to_meta_moves_the_filter_without_reading_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "meta" stands in for another device that compacts flagged draws.
    monkeypatch.setattr(candidates_module, "_COMPACTING_DEVICES", ("cpu", "meta"))
    index = PositiveIndex.from_pairs([0, 0, 1, 2], [2, 7, 7, 0], num_items=9)
    source = UniformCandidates(index)
    assert source._filter is not None

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a value was read back")

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    monkeypatch.setattr(candidates_module, "PairFilter", forbidden)  # no rebuild either
    moved = source.to("meta")
    monkeypatch.undo()

    assert moved.index.device.type == "meta"
    assert all(t.device.type == "meta" for t in (moved.index.indptr, moved.index.indices))
    assert moved._filter is not None and moved._filter is moved.index._derived["pair_filter"]
    assert moved._filter._words.device.type == "meta"
    assert moved._filter._masks.device.type == "meta"
    assert moved.nbytes == source.nbytes
    # The original stays where it was, with its own filter.
    assert source.index.device.type == "cpu" and source._filter._words.device.type == "cpu"


def test_a_device_that_searches_every_draw_gets_no_filter() -> None:
    # Without compaction (every device but the CPU) the filter would go unused.
    index = PositiveIndex.from_pairs([0, 0, 1, 2], [2, 7, 7, 0], num_items=9)
    on_meta = UniformCandidates(index).to("meta")
    assert on_meta._filter is None and on_meta.nbytes == 0
    assert "pair_filter" not in on_meta.index._derived
    assert UniformCandidates(index.to("meta"))._filter is None
    users = torch.zeros(3, dtype=torch.int64, device="meta")
    drawn = on_meta.draw(users, torch.zeros((3, 4), dtype=torch.int64, device="meta"))
    assert drawn.shape == (3, 4) and drawn.device.type == "meta"


# ---------------------------------------------------------------------- uniform candidate draws


@settings(max_examples=60)
@given(data=st.data(), case=wide_cases())
def test_draw_equals_the_reference_row_by_row_and_never_returns_a_positive(
    data: st.DataObject, case: Case
) -> None:
    users, bits = data.draw(draw_inputs(case))
    source = UniformCandidates(case.index)
    drawn = source.draw(users, bits)
    assert drawn.shape == bits.shape and drawn.dtype == torch.int64
    for user, row_bits, row in zip(users.tolist(), bits.tolist(), drawn.tolist(), strict=True):
        assert row == source.reference_draw(user, row_bits), (user, row_bits)
    assert not bool(case.index.contains(users[:, None], drawn).any())
    assert bool(((drawn >= 0) & (drawn < case.num_items)).all())


@settings(max_examples=60)
@given(data=st.data(), case=wide_cases())
def test_the_compacting_cpu_path_equals_the_fixed_shape_path(
    data: st.DataObject, case: Case
) -> None:
    users, bits = data.draw(draw_inputs(case))
    source = UniformCandidates(case.index)
    bits_before = bits.clone()
    with mock.patch.object(
        candidates_module, "_replace_flagged", wraps=candidates_module._replace_flagged
    ) as compacting:
        default = source.draw(users, bits)
    if source._filter is not None:
        assert compacting.call_count == 1  # the comparison below is between two paths
    fixed = fixed_shape_draw(source, users, bits)
    assert torch.equal(default, fixed), (default, fixed)
    assert torch.equal(bits, bits_before)  # neither path writes into the caller's bits


def test_an_index_without_interactions_keeps_every_first_draw() -> None:
    index = PositiveIndex.from_pairs([], [], num_users=3, num_items=7)
    source = UniformCandidates(index)
    assert source._filter is None and source.nbytes == 0
    users = torch.tensor([0, 2, 1])
    bits = torch.tensor([[0, 6, 7], [13, FULL_RANGE - 1, 2**40 + 3], [5, 12, 19]])
    expected = bits % 7
    assert torch.equal(source.draw(users, bits), expected)
    assert torch.equal(fixed_shape_draw(source, users, bits), expected)
    assert source.reference_draw(1, [5, 12, 19]) == [5, 5, 5]


@pytest.mark.parametrize("path", ["compacting", "fixed-shape"])
def test_an_empty_batch_draws_an_empty_table(path: str) -> None:
    index = PositiveIndex.from_pairs([0, 0, 1], [1, 4, 2], num_items=6)
    source = UniformCandidates(index)
    users = torch.empty(0, dtype=torch.int64)
    bits = torch.empty((0, 3), dtype=torch.int64)
    if path == "compacting":
        drawn = source.draw(users, bits)
    else:
        drawn = fixed_shape_draw(source, users, bits)
    assert drawn.shape == (0, 3) and drawn.dtype == torch.int64


def test_every_non_positive_is_drawn_equally_often_over_a_full_cycle_of_bits() -> None:
    # One user with positives {0, 2} out of N = 5 items, so n = 3 non-positives and k = 2
    # positives. Over b in range(5 * 3 * 4), x = b % 5 and r = (b // 5) % 3 both run through
    # whole cycles: each non-positive is x directly in 1/N of the bits, and the k/N of bits
    # that hit a positive spread evenly over the n ranks. That is the exactness argument
    # 1/N + (k/N)(1/n) = 1/5 + (2/5)(1/3) = 1/3 = 1/n made concrete.
    index = PositiveIndex.from_dict({0: [0, 2]}, num_items=5)
    source = UniformCandidates(index)
    bits = torch.arange(5 * 3 * 4)[None]
    users = torch.tensor([0])
    drawn = source.draw(users, bits)
    assert torch.equal(fixed_shape_draw(source, users, bits), drawn)
    assert drawn[0].tolist() == source.reference_draw(0, bits[0].tolist())
    assert Counter(drawn[0].tolist()) == {1: 20, 3: 20, 4: 20}


def test_ids_beyond_the_hash_range_get_no_filter_and_still_draw_exactly() -> None:
    # Ids of 2**31 and more would overflow the filter's int64 hash: every draw is searched.
    num_items = 2**31 + 10
    positives = [2**31 + 1, 2**31 + 5]
    index = PositiveIndex.from_pairs([0, 0], positives, num_items=num_items)
    source = UniformCandidates(index)
    assert source._filter is None and source.nbytes == 0
    # bits that land on each positive in stage 1, and on non-positives around them
    bits = torch.tensor([[2**31 + 1, 2**31 + 5, 2**31, 2**31 + 2, 3 * num_items + 2**31 + 5]])
    drawn = source.draw(torch.tensor([0]), bits)
    assert drawn.tolist() == [source.reference_draw(0, bits[0].tolist())]
    assert not bool(index.contains(torch.tensor([[0]]), drawn).any())
    # Positives fall back to the ((b // N) % n)-th non-positive: ranks 0, 0 and 3,
    # which are items 0, 0 and 3 (every item below 2**31 + 1 is a non-positive).
    assert drawn.tolist() == [[0, 0, 2**31, 2**31 + 2, 3]]
    # The index's own rank map in int64 too (the complement has more than 2**31 items).
    assert index.complement_size(torch.tensor([0])).tolist() == [num_items - 2]
    last_ranks = torch.tensor([[num_items - 3, 2**31 + 1]])
    assert index._draw_complement(torch.tensor([0]), last_ranks).tolist() == [
        [num_items - 1, 2**31 + 2]
    ]
