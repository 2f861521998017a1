"""The shared top-k ranking: exclusions, NaN, -inf and ties against a naive oracle."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import negsample._ranking as ranking
from negsample import PositiveIndex
from negsample._ranking import excluded_mask, may_hold_nan, top_k_items


def naive_top_k(scores: list[float], excluded: set[int], k: int) -> list[int]:
    """Sort by (allowed, not NaN, score, -item) descending; excluded slots become -1."""
    order = sorted(
        range(len(scores)),
        key=lambda i: (
            i not in excluded,
            not math.isnan(scores[i]),
            -math.inf if math.isnan(scores[i]) else scores[i],
            -i,
        ),
        reverse=True,
    )
    return [i if i not in excluded else -1 for i in order[:k]]


def draw_case(
    data: st.DataObject, max_users: int, max_items: int
) -> tuple[list[list[float]], list[set[int]], PositiveIndex, int]:
    """Rows of scores with ties, NaN and infinities, each row's excluded items, k."""
    num_users = data.draw(st.integers(1, max_users))
    num_items = data.draw(st.integers(1, max_items))
    values = st.sampled_from([-math.inf, -1.0, 0.0, 0.5, 1.0, math.inf, math.nan])
    scores = [
        data.draw(st.lists(values, min_size=num_items, max_size=num_items))
        for _ in range(num_users)
    ]
    rows = [data.draw(st.sets(st.integers(0, num_items - 1))) for _ in range(num_users)]
    index = PositiveIndex.from_dict(dict(enumerate(rows)), num_users=num_users, num_items=num_items)
    return scores, rows, index, data.draw(st.integers(1, num_items))


@given(st.data())
def test_top_k_items_matches_a_naive_sort(data: st.DataObject) -> None:
    scores, rows, index, k = draw_case(data, 5, 8)
    num_users = len(scores)
    users = torch.arange(num_users)
    got = top_k_items(torch.tensor(scores), k, exclude=index, users=users)
    expected = [naive_top_k(scores[u], rows[u], k) for u in range(num_users)]
    assert got.tolist() == expected
    plain = top_k_items(torch.tensor(scores), k)
    assert plain.tolist() == [naive_top_k(scores[u], set(), k) for u in range(num_users)]


@pytest.mark.parametrize(
    ("groups", "groups_per_pick"), [((2,), 1), ((3,), 1), ((2,), 2), ((5, 2), 2)]
)
@given(data=st.data())
def test_top_k_items_through_kept_groups_matches_a_naive_sort(
    groups: tuple[int, ...], groups_per_pick: int, data: st.DataObject
) -> None:
    # On the CPU, rows of many items first keep the (strided) groups of items with the
    # largest maxima. Force that on small rows (groups of 2 or 3 items, a partial
    # last group; groups of 5 where there are enough, else of 2) and check every tie,
    # NaN, inf and exclusion against the oracle.
    scores, rows, index, k = draw_case(data, 4, 24)
    num_users = len(scores)
    users = torch.arange(num_users)
    original = (ranking._GROUPS, ranking._MIN_GROUPS_PER_PICK)
    ranking._GROUPS, ranking._MIN_GROUPS_PER_PICK = groups, groups_per_pick
    try:
        got = top_k_items(torch.tensor(scores), k, exclude=index, users=users)
        plain = top_k_items(torch.tensor(scores), k)
    finally:
        ranking._GROUPS, ranking._MIN_GROUPS_PER_PICK = original
    assert got.tolist() == [naive_top_k(scores[u], rows[u], k) for u in range(num_users)]
    assert plain.tolist() == [naive_top_k(scores[u], set(), k) for u in range(num_users)]


@pytest.mark.parametrize(("num_items", "group"), [(3000, 16), (1700, 8)])
def test_top_k_items_of_a_large_catalogue_with_ties_match_a_naive_sort(
    num_items: int, group: int
) -> None:
    # The sizes of an evaluation (the kept groups, of 16 items or, with too few such
    # groups, of 8, are the default path here): scores rounded to a few values, so ties
    # straddle the k-th place in many rows.
    generator = torch.Generator().manual_seed(0)
    num_users, k = 40, 20
    scores = (torch.randn(num_users, num_items, generator=generator) * 4).round() / 4
    scores[3, 100:140] = 10.0  # 40 items tied above the rest: the tie spans groups
    fits = [g for g in ranking._GROUPS if num_items // g >= ranking._MIN_GROUPS_PER_PICK * (k + 1)]
    assert fits[0] == group
    rows = {
        u: torch.randperm(num_items, generator=generator)[:50].tolist() for u in range(num_users)
    }
    index = PositiveIndex.from_dict(rows, num_users=num_users, num_items=num_items)
    users = torch.arange(num_users)
    given_scores = scores.clone()
    got = top_k_items(given_scores, k, exclude=index, users=users)
    assert torch.equal(given_scores, scores)  # not overwritten unless asked
    values = scores.tolist()
    assert got.tolist() == [naive_top_k(values[u], set(rows[u]), k) for u in range(num_users)]
    overwritten = top_k_items(scores.clone(), k, exclude=index, users=users, overwrite=True)
    assert torch.equal(overwritten, got)


def test_minus_inf_scores_rank_before_excluded_items() -> None:
    index = PositiveIndex.from_dict({0: [0, 3]}, num_items=4)
    scores = torch.tensor([[-math.inf, 1.0, -math.inf, 0.0]])
    assert top_k_items(scores, 4, exclude=index, users=torch.tensor([0])).tolist() == [
        [1, 2, -1, -1]
    ]


def test_may_hold_nan_is_false_only_without_nan() -> None:
    scores = torch.randn(64, 500)
    assert not may_hold_nan(scores)
    scores[17, 311] = math.nan
    assert may_hold_nan(scores)
    # inf - inf: the sum is NaN although no score is; ranking then looks element-wise.
    both = torch.tensor([[math.inf, 1.0, -math.inf]])
    assert may_hold_nan(both)
    assert top_k_items(both, 3).tolist() == [[0, 1, 2]]
    # The caller's scores are left as they were.
    kept = torch.tensor([[0.5, math.nan, 2.0]])
    index = PositiveIndex.from_dict({0: [2]}, num_items=3)
    assert top_k_items(kept, 3, exclude=index, users=torch.tensor([0])).tolist() == [[0, 1, -1]]
    assert kept[0, 2] == 2.0 and math.isnan(kept[0, 1])


def test_excluded_mask() -> None:
    index = PositiveIndex.from_dict({0: [1, 3], 2: [0, 1, 2, 3]}, num_users=3, num_items=4)
    users = torch.tensor([2, 1, 0, 0])
    expected = [[True] * 4, [False] * 4, [False, True, False, True], [False, True, False, True]]
    assert excluded_mask(index, users).tolist() == expected
