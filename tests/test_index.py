"""PositiveIndex: constructors, CSR layout, membership, exact complement mapping, errors."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

import negsample.index as index_module
from negsample import NO_NEGATIVE, EmptyComplementError, PositiveIndex, UniformSampler
from negsample.index import _count_at_most, _drop_repeats, _id_array
from tests.helpers import DEVICES, NARROW_ID_DTYPES, SMALL_NARROW_ID_DTYPES, one_past_max
from tests.strategies import Case, cases


def csr_lists(index: PositiveIndex) -> list[list[int]]:
    indptr = index.indptr.tolist()
    indices = index.indices.tolist()
    return [indices[indptr[u] : indptr[u + 1]] for u in range(index.num_users)]


# ---------------------------------------------------------------------- construction


@given(cases(allow_full=True))
def test_every_constructor_gives_sorted_deduplicated_rows(case: Case) -> None:
    assert csr_lists(case.index) == [sorted(p) for p in case.positives]
    assert case.index.num_users == len(case.positives)
    assert case.index.num_items == case.num_items
    assert case.index.num_interactions == sum(len(p) for p in case.positives)


def test_duplicates_count_once_and_sizes_default_to_largest_id_plus_one() -> None:
    index = PositiveIndex.from_pairs([2, 2, 0, 2], [5, 1, 3, 5])
    assert (index.num_users, index.num_items, index.num_interactions) == (3, 6, 3)
    assert csr_lists(index) == [[3], [], [1, 5]]


def test_from_dict_accepts_defaultdict_of_sets_and_numpy_keys() -> None:
    mapping: defaultdict[int, set[int]] = defaultdict(set)
    mapping[np.int64(3)].update({np.int32(2), 7})  # type: ignore[index]
    mapping[0].add(0)
    index = PositiveIndex.from_dict(mapping)
    assert csr_lists(index) == [[0], [], [], [2, 7]]


def test_from_scipy_ignores_explicit_zeros_and_sums_duplicates() -> None:
    matrix = sp.coo_array(([1.0, 0.0, 2.0, 1.0], ([0, 0, 1, 1], [1, 2, 0, 0])), shape=(3, 4))
    index = PositiveIndex.from_scipy(matrix)
    assert csr_lists(index) == [[1], [0], []]
    assert index.num_items == 4


@pytest.mark.parametrize(
    ("num_items", "dtype"),
    [(100, torch.int8), (128, torch.int8), (129, torch.int16), (40_981, torch.int32)],
)
def test_item_ids_use_the_smallest_dtype_that_fits(num_items: int, dtype: torch.dtype) -> None:
    index = PositiveIndex.from_pairs([0, 1], [0, num_items - 1], num_items=num_items)
    assert index.indices.dtype == dtype
    assert index.indptr.dtype == torch.int32
    assert index.contains(torch.tensor([1]), torch.tensor([num_items - 1])).tolist() == [True]


def test_csr_constructor_validates_its_arrays() -> None:
    index = PositiveIndex([0, 2, 2, 3], [1, 4, 0], num_items=5)
    assert csr_lists(index) == [[1, 4], [], [0]]
    with pytest.raises(ValueError, match="strictly increasing within each row"):
        PositiveIndex([0, 2], [4, 1], num_items=5)
    with pytest.raises(ValueError, match="strictly increasing within each row"):
        PositiveIndex([0, 2], [1, 1], num_items=5)
    with pytest.raises(ValueError, match="start at 0 and end at len"):
        PositiveIndex([0, 1], [1, 2], num_items=5)
    with pytest.raises(ValueError, match="non-decreasing"):
        PositiveIndex([0, 2, 1, 2], [1, 2], num_items=5)
    with pytest.raises(ValueError, match=r"item ids in \[0, 5\), got 5"):
        PositiveIndex([0, 1], [5], num_items=5)


# ---------------------------------------------------------------------- queries


@given(cases(allow_full=True))
def test_contains_matches_the_sets_for_every_pair(case: Case) -> None:
    users = torch.arange(case.index.num_users)[:, None]
    items = torch.arange(case.num_items)[None, :]
    got = case.index.contains(users, items)
    expected = [[i in p for i in range(case.num_items)] for p in case.positives]
    assert got.tolist() == expected


@given(cases(allow_full=True))
def test_degree_and_complement_size(case: Case) -> None:
    users = torch.arange(case.index.num_users)
    assert case.index.degree(users).tolist() == [len(p) for p in case.positives]
    assert case.index.complement_size(users).tolist() == [
        case.num_items - len(p) for p in case.positives
    ]


@given(cases())
def test_complement_items_enumerates_each_complement_in_order(case: Case) -> None:
    for user in range(case.index.num_users):
        complement = case.complement(user)
        ranks = torch.arange(len(complement))
        got = case.index.complement_items(torch.tensor([user]), ranks)
        assert got.tolist() == complement


def test_complement_with_int64_keys_near_the_int32_limit() -> None:
    # 50_000 x 50_000 > 2**31, so the row-offset keys need int64; the last row exercises it.
    last = 49_999
    index = PositiveIndex.from_pairs([0, last, last, last], [7, 0, 1, 49_998], 50_000, 50_000)
    users = torch.tensor([last, last, last, 0, 0, 1])
    ranks = torch.tensor([0, 1, 49_996, 6, 7, 49_999])
    assert index.complement_items(users, ranks).tolist() == [2, 3, 49_999, 6, 8, 49_999]


@given(cases(), st.integers(0, 2**31), st.integers(1, 5))
def test_index_sample_never_returns_a_positive(case: Case, seed: int, k: int) -> None:
    users = torch.tensor(case.samplable_users())
    draws = case.index.sample(users, k, generator=seed)
    assert draws.shape == (users.numel(), k)
    assert draws.dtype == torch.int64
    for user, row in zip(users.tolist(), draws.tolist(), strict=True):
        assert set(row) <= set(case.complement(user))


def test_index_sample_is_reproducible_with_a_seed() -> None:
    index = PositiveIndex.from_pairs([0, 0, 1], [1, 5, 2], num_items=50)
    users = torch.tensor([0, 1, 1, 0])
    first = index.sample(users, 6, generator=3)
    assert torch.equal(first, index.sample(users, 6, generator=3))
    assert not torch.equal(first, index.sample(users, 6, generator=4))


@pytest.mark.parametrize("device", DEVICES)
def test_to_moves_every_tensor(device: str) -> None:
    index = PositiveIndex.from_pairs([0, 1, 1], [2, 0, 3], num_items=5).to(device)
    assert index.indptr.device.type == device
    assert index.indices.device.type == device
    users = torch.tensor([1, 1, 0], device=device)
    assert index.contains(users, torch.tensor([0, 1, 2], device=device)).tolist() == [
        True,
        False,
        True,
    ]
    assert index.complement_items(users, torch.tensor([0, 2, 3], device=device)).tolist() == [
        1,
        4,
        4,
    ]
    negatives = index.sample(users, 3, generator=0)
    assert negatives.device.type == device
    assert not bool(index.contains(users[:, None], negatives).any())


def test_positives_and_repr() -> None:
    index = PositiveIndex.from_dict({1: [4, 2]}, num_items=6)
    assert index.positives(1).tolist() == [2, 4]
    assert index.positives(0).tolist() == []
    assert repr(index) == "PositiveIndex(num_users=2, num_items=6, num_interactions=2, device=cpu)"
    assert index.nbytes == 3 * 4 + 2 * 1 + 2 * 1  # int32 indptr, int8 items, int8 keys
    with pytest.raises(ValueError, match=r"user must be a user id in \[0, 2\), got 2"):
        index.positives(2)


@pytest.mark.parametrize("dtype", NARROW_ID_DTYPES)
def test_contains_takes_narrow_items_of_a_catalogue_past_their_max(dtype: torch.dtype) -> None:
    top = torch.iinfo(dtype).max
    index = PositiveIndex.from_dict({0: [1, top]}, num_items=one_past_max(dtype))
    items = torch.tensor([1, 0, top], dtype=dtype)
    assert index.contains(torch.tensor([0]), items).tolist() == [True, False, True]
    assert index.contains(torch.tensor([0]), items, validate=False).tolist() == [True, False, True]


@pytest.mark.parametrize("dtype", SMALL_NARROW_ID_DTYPES)
def test_degree_takes_narrow_users_of_an_index_past_their_max(dtype: torch.dtype) -> None:
    # int32 / uint32 users past their max need 2**31 row pointers (16 GiB): the
    # shared check they go through is tested for them in test_checks.py.
    top = torch.iinfo(dtype).max
    index = PositiveIndex.from_dict({0: [1], top: [0, 1]}, num_users=one_past_max(dtype))
    users = torch.tensor([top, 0, 1], dtype=dtype)
    assert index.degree(users).tolist() == [2, 1, 0]
    assert index.contains(users, torch.tensor([0, 0, 0])).tolist() == [True, False, False]


# ---------------------------------------------------------------------- layout and scale

SEARCHES = [("flat", torch.int32), ("row", torch.int32), ("row", torch.int64)]
"""Flat row-offset keys, and the in-row search over ``q`` with both position dtypes."""


def build_with(
    search: str, position_dtype: torch.dtype, positives: list[set[int]], num_items: int
) -> PositiveIndex:
    """An index of ``positives`` that uses the given complement search."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index_module, "_FLAT_KEYS_MAX", 2**63 - 1 if search == "flat" else -1)
        index = PositiveIndex.from_dict(
            {u: p for u, p in enumerate(positives) if p},
            num_users=len(positives),
            num_items=num_items,
        )
    assert index._flat == (search == "flat")
    index._position_dtype = position_dtype
    return index


def brute_force_complement(positives: set[int], rank: int) -> int:
    """The formula, ``r + #{i : p_i - i <= r}``, straight from the sorted list."""
    q = [p - i for i, p in enumerate(sorted(positives))]
    return rank + bisect_right(q, rank)


@pytest.mark.parametrize(
    ("num_items", "dtype"),
    [(128, torch.int8), (1_000, torch.int16), (1_000_000, torch.int32), (2**31 - 1, torch.int32)],
)
def test_q_takes_the_items_dtype_so_an_interaction_takes_at_most_8_bytes(
    monkeypatch: pytest.MonkeyPatch, num_items: int, dtype: torch.dtype
) -> None:
    monkeypatch.setattr(index_module, "_FLAT_KEYS_MAX", -1)
    index = PositiveIndex.from_pairs([0, 0, 2], [0, num_items - 1, 5], num_items=num_items)
    assert not index._flat
    assert index.indices.dtype == index._table.dtype == dtype
    assert index._table.tolist() == [0, num_items - 2, 5]
    per_interaction = (index.nbytes - 4 * (index.num_users + 1)) / index.num_interactions
    assert per_interaction == 2 * dtype.itemsize <= 8
    assert index.complement_items(torch.tensor([0, 2]), torch.tensor([0, 5])).tolist() == [1, 6]


@pytest.mark.parametrize(
    ("num_users", "num_items", "flat", "key_dtype"),
    [
        (3, 100, True, torch.int16),
        (2, 2**30 - 1, True, torch.int32),
        (2, 2**30, True, torch.int32),  # the last key is 2**31 - 1
        (2, 2**30 + 1, False, torch.int32),  # keys would need int64: q instead
        (50_000, 50_000, False, torch.int32),
    ],
)
def test_flat_keys_serve_while_they_fit_in_int32(
    num_users: int, num_items: int, flat: bool, key_dtype: torch.dtype
) -> None:
    index = PositiveIndex.from_pairs(
        [0, num_users - 1, num_users - 1], [num_items - 1, 0, 2], num_users, num_items
    )
    assert (index._flat, index._table.dtype) == (flat, key_dtype)
    per_interaction = (index.nbytes - 4 * (num_users + 1)) / 3
    assert per_interaction <= 8
    users = torch.tensor([0, 0, num_users - 1, num_users - 1])
    ranks = torch.tensor([0, num_items - 2, 0, num_items - 3])
    expected = [0, num_items - 2, 1, num_items - 1]
    assert index.complement_items(users, ranks).tolist() == expected


def test_a_million_users_by_a_million_items_keeps_8_bytes_per_interaction() -> None:
    # 10**12 cells: row-offset keys would need int64 here (12 bytes per interaction).
    n = 1_000_000
    users = np.array([n - 1, n - 1, n - 1, 0, 123_456], dtype=np.int32)
    items = np.array([0, n - 1, 1, n - 2, 500_000], dtype=np.int32)
    index = PositiveIndex.from_pairs(users, items, n, n)
    assert not index._flat
    assert (index.indptr.dtype, index.indices.dtype, index._table.dtype) == (torch.int32,) * 3
    assert index.nbytes == 4 * (n + 1) + 8 * 5
    got = index.complement_items(
        torch.tensor([n - 1, n - 1, n - 1, 0, 0, 123_456, 123_456, 5]),
        torch.tensor([0, n - 4, 1, n - 3, n - 2, 499_999, 500_000, n - 1]),
    )
    assert got.tolist() == [2, n - 2, 3, n - 3, n - 1, 499_999, 500_001, n - 1]


@pytest.mark.parametrize(
    ("num_items", "items"),
    [(2**7, list(range(1, 2**7))), (2**15, list(range(1, 2**15))), (2**31, [0, 5, 2**31 - 1])],
)
def test_indices_of_one_user_with_a_power_of_two_catalogue(
    num_items: int, items: list[int]
) -> None:
    # The flat keys of one user fit the dtype whose maximum is num_items - 1: computing
    # key % num_items in that dtype wrapped the divisor, so ids past the middle came back
    # negative, the pair filter missed them and the samplers returned known positives.
    index = PositiveIndex.from_dict({0: items}, num_items=num_items)
    assert index.indices.tolist() == items
    negatives = UniformSampler(index, 8, generator=0).sample(torch.zeros(200, dtype=torch.int64))
    assert not bool(index.contains(torch.zeros(200, 1, dtype=torch.int64), negatives).any())


@pytest.mark.parametrize(("search", "position_dtype"), SEARCHES)
@pytest.mark.parametrize(
    ("num_items", "item_dtype"), [(100, torch.int8), (1_000, torch.int16), (40_981, torch.int32)]
)
def test_pairs_round_trip_through_from_pairs_on_both_layouts(
    search: str, position_dtype: torch.dtype, num_items: int, item_dtype: torch.dtype
) -> None:
    rng = np.random.default_rng(0)
    positives = [set(rng.choice(num_items, size=k, replace=False).tolist()) for k in (5, 0, 1, 30)]
    positives[0] |= {0, num_items - 1}
    index = build_with(search, position_dtype, positives, num_items)
    assert index.indices.dtype == item_dtype
    users, items = index.pairs()
    assert users.dtype == items.dtype == torch.int64
    expected = [(u, i) for u, row in enumerate(positives) for i in sorted(row)]
    assert list(zip(users.tolist(), items.tolist(), strict=True)) == expected
    again = PositiveIndex.from_pairs(users, items, index.num_users, num_items)
    assert torch.equal(again.indptr, index.indptr)
    assert torch.equal(again.indices, index.indices)


@pytest.mark.parametrize("flat_keys_max", [2**31 - 1, -1])
@pytest.mark.parametrize("num_items", [2**7, 2**15])
def test_pairs_of_one_user_with_a_power_of_two_catalogue(
    monkeypatch: pytest.MonkeyPatch, flat_keys_max: int, num_items: int
) -> None:
    # One user: the flat keys take the dtype whose maximum is num_items - 1 (as for indices).
    monkeypatch.setattr(index_module, "_FLAT_KEYS_MAX", flat_keys_max)
    index = PositiveIndex.from_dict({0: [0, num_items // 2, num_items - 1]}, num_items=num_items)
    users, items = index.pairs()
    assert users.tolist() == [0, 0, 0]
    assert items.tolist() == [0, num_items // 2, num_items - 1]


@pytest.mark.parametrize("device", DEVICES)
def test_pairs_of_an_empty_index_and_on_the_index_device(device: str) -> None:
    empty = PositiveIndex.from_pairs([], [], num_users=3, num_items=4).to(device)
    users, items = empty.pairs()
    assert users.shape == items.shape == (0,)
    assert users.dtype == items.dtype == torch.int64
    index = PositiveIndex.from_dict({1: [2, 0]}, num_items=3).to(device)
    users, items = index.pairs()
    assert users.device.type == items.device.type == device
    assert (users.tolist(), items.tolist()) == ([1, 1], [0, 2])


def test_int32_ids_are_not_widened() -> None:
    users = np.array([1, 0, 1], dtype=np.int32)
    assert _id_array("users", users) is users
    assert _id_array("users", np.array([3], dtype=np.uint16)).dtype == np.uint16
    assert _id_array("users", np.array([3], dtype=np.uint64)).dtype == np.int64
    assert _id_array("users", torch.tensor([3], dtype=torch.int32)).dtype == np.int32
    assert _id_array("users", [3, 4]).dtype == np.int64


@given(case=cases(allow_full=True), seed=st.integers(0, 2**31))
def test_both_searches_map_every_rank_like_the_formula(case: Case, seed: int) -> None:
    pairs = [
        (user, rank)
        for user in case.samplable_users()
        for rank in range(case.num_items - len(case.positives[user]))
    ]
    users = torch.tensor([user for user, _ in pairs], dtype=torch.int64)
    ranks = torch.tensor([rank for _, rank in pairs], dtype=torch.int64)
    expected = [brute_force_complement(case.positives[u], r) for u, r in pairs]
    samplable = torch.tensor(case.samplable_users(), dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2**62, (samplable.numel(), 5), generator=gen)
    drawn = []
    for search, position_dtype in SEARCHES:
        index = build_with(search, position_dtype, case.positives, case.num_items)
        assert index._complement_items(users, ranks).tolist() == expected
        drawn.append(index._draw_complement(samplable, bits))
    assert torch.equal(drawn[0], drawn[1])
    assert torch.equal(drawn[0], drawn[2])
    for user, row_bits, row in zip(
        samplable.tolist(), bits.tolist(), drawn[0].tolist(), strict=True
    ):
        n = case.num_items - len(case.positives[user])
        assert row == [brute_force_complement(case.positives[user], b % n) for b in row_bits]


@given(
    st.lists(st.lists(st.integers(0, 40), max_size=17).map(sorted), min_size=1, max_size=6),
    st.integers(-1, 45),
)
def test_in_row_count_matches_a_brute_force_count(rows: list[list[int]], value: int) -> None:
    # Rows of every length up to 17 straddle the step counts' powers of two; rows may be empty.
    flat = torch.tensor([x for row in rows for x in row], dtype=torch.int16)
    lengths = torch.tensor([len(row) for row in rows])
    end = torch.cumsum(lengths, 0)
    start = end - lengths
    steps = int(lengths.max()).bit_length()
    values = torch.full((len(rows), 3), value, dtype=torch.int64) + torch.tensor([-1, 0, 1])
    got = _count_at_most(flat, start[:, None], end[:, None], values, steps)
    expected = [[sum(x <= v for x in row) for v in (value - 1, value, value + 1)] for row in rows]
    assert got.tolist() == expected


@pytest.mark.parametrize(("search", "position_dtype"), SEARCHES)
def test_a_long_row_next_to_short_ones_at_every_rank(
    search: str, position_dtype: torch.dtype
) -> None:
    # The longest row sets the number of steps; every rank of every row, both ends included.
    num_items = 3_000
    rows = [set(), {*range(0, 2_999, 3), 2_999}, {0}, {2_999}, set()]
    index = build_with(search, position_dtype, rows, num_items)
    assert index.max_degree == len(rows[1])
    for user, positives in enumerate(rows):
        ranks = torch.arange(num_items - len(positives))
        got = index.complement_items(torch.full_like(ranks, user), ranks)
        assert got.tolist() == [i for i in range(num_items) if i not in positives]


@pytest.mark.parametrize(("search", "position_dtype"), SEARCHES)
def test_seeded_draws_are_the_same_as_with_the_first_layout(
    search: str, position_dtype: torch.dtype
) -> None:
    # Values recorded with the first layout (flat keys only, before the in-row search).
    rows = [{0, 1, 2, 3, 4, 100, 150}, set(), set(), {1, 299}, set(), set(range(0, 300, 2)), set()]
    index = build_with(search, position_dtype, rows, 300)
    draws = index.sample(torch.tensor([0, 3, 6, 5, 5]), 4, generator=11)
    assert draws.tolist() == [
        [123, 35, 137, 12],
        [246, 173, 71, 20],
        [221, 197, 122, 177],
        [87, 203, 123, 157],
        [51, 17, 37, 113],
    ]


@given(st.lists(st.integers(0, 6), max_size=40).map(sorted))
def test_drop_repeats_keeps_each_value_once_in_place(values: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    kept = _drop_repeats(array)
    assert array[:kept].tolist() == sorted(set(values))


@pytest.mark.parametrize("flat_keys_max", [2**31 - 1, -1])
@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_blockwise_build_steps_match_one_block(
    monkeypatch: pytest.MonkeyPatch, chunk: int, flat_keys_max: int
) -> None:
    monkeypatch.setattr(index_module, "_FLAT_KEYS_MAX", flat_keys_max)
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 400)
    items = rng.integers(0, 50, 400)
    users[:40] = 7  # a row longer than the blocks
    whole = PositiveIndex.from_pairs(users, items, num_users=32, num_items=50)
    values = np.sort(rng.integers(0, 9, 60))
    kept_whole = _drop_repeats(values.copy())
    monkeypatch.setattr(index_module, "_CHUNK", chunk)
    blocks = PositiveIndex.from_pairs(users, items, num_users=32, num_items=50)
    assert torch.equal(blocks.indptr, whole.indptr)
    assert torch.equal(blocks.indices, whole.indices)
    assert torch.equal(blocks._table, whole._table)
    in_blocks = values.copy()
    assert _drop_repeats(in_blocks) == kept_whole
    assert in_blocks[:kept_whole].tolist() == sorted(set(values.tolist()))


# ---------------------------------------------------------------------- errors


def test_a_user_with_no_negative_cannot_be_sampled() -> None:
    index = PositiveIndex.from_dict({0: [0, 1, 2], 1: [0]}, num_items=3)
    with pytest.raises(EmptyComplementError, match="user 0 has every one of the 3 items") as info:
        index.sample(torch.tensor([1, 0, 1]))
    assert info.value.users == [0]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("search", "position_dtype"), SEARCHES)
def test_without_validation_a_user_with_no_negative_gets_no_negative(
    search: str, position_dtype: torch.dtype
) -> None:
    # Checking would synchronise; the modulo by n_u = 0 raised on the CPU and gave an
    # arbitrary item (possibly a positive) elsewhere.
    index = build_with(search, position_dtype, [{0, 1, 2}, {0}, set(), {0, 1, 2}], 3)
    draws = index.sample(torch.tensor([1, 0, 2, 3]), 4, generator=0, validate=False)
    drawn = draws[[0, 2]]
    assert bool((drawn >= 0).all())
    assert not bool(index.contains(torch.tensor([[1], [2]]), drawn).any())
    assert draws[[1, 3]].tolist() == [[NO_NEGATIVE] * 4] * 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"users": [0, 3], "items": [1, 2], "num_users": 3},
            ValueError,
            "num_users=3 is too small: user id 3",
        ),
        (
            {"users": [0, 1], "items": [1, 9], "num_items": 5},
            ValueError,
            "num_items=5 is too small: item id 9",
        ),
        ({"users": [0, -1], "items": [1, 2]}, ValueError, "user ids must be >= 0, got -1"),
        ({"users": [0, 1], "items": [-4, 2]}, ValueError, "item ids must be >= 0, got -4"),
        ({"users": [0, 1], "items": [1.0, 2.0]}, TypeError, "items must hold integer ids"),
        ({"users": np.array([0.5]), "items": [1]}, TypeError, "users must hold integer ids"),
        ({"users": torch.tensor([True]), "items": [1]}, TypeError, "users must hold integer ids"),
        ({"users": [0, 1], "items": [1]}, ValueError, "same length, got 2 and 1"),
        ({"users": [[0]], "items": [[1]]}, ValueError, "must be 1-D"),
        ({"users": [0], "items": [1], "num_items": 2.0}, TypeError, "num_items must be an int"),
        ({"users": [], "items": []}, ValueError, "num_items must be >= 1"),
    ],
)
def test_from_pairs_rejects_bad_input(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        PositiveIndex.from_pairs(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mapping", "error", "match"),
    [
        ([(0, [1])], TypeError, "mapping must be a Mapping"),
        ({0: 5}, TypeError, r"mapping\[0\] must be an iterable of int item ids"),
        ({0: "12"}, TypeError, r"mapping\[0\] must be an iterable of int item ids"),
        ({0: [1.5]}, TypeError, r"mapping\[0\] must hold int item ids"),
        ({"a": [1]}, TypeError, "mapping key 'a' must be an int"),
        ({-1: [1]}, ValueError, "mapping key -1 must be >= 0"),
        ({2: [-3]}, ValueError, r"mapping\[2\] holds a negative item id -3"),
    ],
)
def test_from_dict_rejects_bad_input(mapping: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        PositiveIndex.from_dict(mapping)  # type: ignore[arg-type]


def test_uint64_ids_beyond_int64_are_reported_as_they_were_given() -> None:
    big = np.array([0, 2**63 + 1], dtype=np.uint64)
    with pytest.raises(
        ValueError, match=r"users must be ids below 2\*\*63 .*got 9223372036854775809"
    ):
        PositiveIndex.from_pairs(big, np.array([0, 1]))
    index = PositiveIndex.from_pairs(np.array([0, 2], dtype=np.uint64), [0, 1])  # small ones pass
    assert index.num_users == 3
    with pytest.raises(ValueError, match="got 9223372036854775809"):
        index.degree(big)


def test_from_dict_rejects_sizes_below_the_ids_present() -> None:
    with pytest.raises(ValueError, match="num_users=2 is too small: user id 4"):
        PositiveIndex.from_dict({4: [0]}, num_users=2)
    with pytest.raises(ValueError, match="num_items=3 is too small: item id 3"):
        PositiveIndex.from_dict({0: [3]}, num_items=3)


def test_from_scipy_rejects_dense_input() -> None:
    with pytest.raises(TypeError, match=r"scipy\.sparse matrix or array, got ndarray"):
        PositiveIndex.from_scipy(np.eye(3))


def test_queries_reject_out_of_range_ids_and_ranks() -> None:
    index = PositiveIndex.from_dict({0: [1], 1: [0, 2]}, num_items=3)
    with pytest.raises(ValueError, match=r"users must be user ids in \[0, 2\), got 2"):
        index.contains(torch.tensor([2]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"items must be item ids in \[0, 3\), got -1"):
        index.contains(torch.tensor([0]), torch.tensor([-1]))
    with pytest.raises(ValueError, match="got rank 1 for user 1 whose complement has 1 items"):
        index.complement_items(torch.tensor([0, 1]), torch.tensor([1, 1]))
    with pytest.raises(TypeError, match="users must hold integer ids"):
        index.degree(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        index.sample(torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="users must be 1-D"):
        index.sample(torch.tensor([[0]]))
    with pytest.raises(
        TypeError, match=r"generator must be None, an int seed or a torch\.Generator"
    ):
        index.sample(torch.tensor([0]), generator=1.5)  # type: ignore[arg-type]
