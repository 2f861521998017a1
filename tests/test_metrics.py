"""Ranking metrics and ``evaluate``: values worked out by hand, a naive oracle, the ranking, errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from negsample import MFModel, PositiveIndex
from negsample.metrics import (
    evaluate,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from tests.helpers import DEVICES, SMALL_NARROW_ID_DTYPES, one_past_max

METRICS: dict[str, Callable[..., torch.Tensor]] = {
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "precision": precision_at_k,
}


def d(j: int) -> float:
    """The discount of slot ``j`` (1-based)."""
    return 1 / math.log2(j + 1)


def assert_values(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype))


# ---------------------------------------------------------------------- an independent oracle


def naive_metrics(ranking: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """The four metrics of one ranking, one slot at a time in Python floats."""
    hits = [1 if item >= 0 and item in relevant else 0 for item in ranking[:k]]
    dcg = 0.0
    for j, hit in enumerate(hits, start=1):
        dcg += hit / math.log2(j + 1)
    idcg = 0.0
    for j in range(1, min(len(relevant), k) + 1):
        idcg += 1 / math.log2(j + 1)
    found = 0
    precision_sum = 0.0
    for j, hit in enumerate(hits, start=1):
        if hit:
            found += 1
            precision_sum += found / j
    return {
        "recall": sum(hits) / len(relevant),
        "ndcg": dcg / idcg,
        "map": precision_sum / min(len(relevant), k),
        "precision": sum(hits) / k,
    }


def naive_ranking(scores: list[float], excluded: set[int], k: int) -> list[int]:
    """Allowed items by score, highest first, ties to the lower id, padded with -1."""
    allowed = [item for item in range(len(scores)) if item not in excluded]
    best = sorted(allowed, key=lambda item: (-scores[item], item))[:k]
    return best + [-1] * (k - len(best))


# ---------------------------------------------------------------------- metrics by hand

# User 0 has T = {1, 4, 7}; the ranking puts a miss, a hit, padding, a hit, a hit.
ONE_ROW = [[3, 1, -1, 4, 7]]

HAND = {
    # k = 2 < K and |T| = 3 > k: slots 3, 1 -> one hit at slot 2.
    2: {
        "recall": 1 / 3,
        "precision": 1 / 2,
        "ndcg": d(2) / (d(1) + d(2)),
        "map": (1 / 2) / 2,
    },
    # k = 4: the -1 at slot 3 is no hit; hits at slots 2 and 4; item 7 is beyond k.
    4: {
        "recall": 2 / 3,
        "precision": 2 / 4,
        "ndcg": (d(2) + d(4)) / (d(1) + d(2) + d(3)),
        "map": (1 / 2 + 2 / 4) / 3,
    },
    # k = K = 5: hits at slots 2, 4 and 5.
    5: {
        "recall": 3 / 3,
        "precision": 3 / 5,
        "ndcg": (d(2) + d(4) + d(5)) / (d(1) + d(2) + d(3)),
        "map": (1 / 2 + 2 / 4 + 3 / 5) / 3,
    },
}


@pytest.mark.parametrize("k", sorted(HAND))
@pytest.mark.parametrize("name", sorted(METRICS))
def test_one_row_by_hand(name: str, k: int) -> None:
    relevant = PositiveIndex.from_dict({0: [1, 4, 7]}, num_items=8)
    value = METRICS[name](torch.tensor(ONE_ROW), relevant, torch.tensor([0]), k)
    assert value.shape == (1,)
    assert value.dtype == torch.get_default_dtype()
    assert_values(value, [HAND[k][name]])


def test_more_relevant_items_than_k() -> None:
    # |T| = 5 > k = 3; hits at slots 1 and 3. Recall divides by |T| = 5, not by
    # min(|T|, k) = 3; IDCG and AP use min(|T|, k) = 3.
    relevant = PositiveIndex.from_dict({0: [0, 1, 2, 3, 4]}, num_items=10)
    args = (torch.tensor([[0, 9, 1]]), relevant, torch.tensor([0]), 3)
    assert_values(recall_at_k(*args), [2 / 5])
    assert_values(ndcg_at_k(*args), [(d(1) + d(3)) / (d(1) + d(2) + d(3))])
    assert_values(map_at_k(*args), [(1 / 1 + 2 / 3) / 3])
    assert_values(precision_at_k(*args), [2 / 3])


@pytest.mark.parametrize("device", DEVICES)
def test_rows_follow_their_users(device: str) -> None:
    relevant = PositiveIndex.from_dict({0: [0], 1: [2, 3], 2: [5]}, num_items=6).to(device)
    # Row 0 is user 1 (hits at slots 1, 3), row 1 user 2 (slot 2), row 2 user 1 again
    # (slots 1, 2, then padding).
    ranked = torch.tensor([[2, 0, 3], [0, 5, 1], [3, 2, -1]], device=device)
    users = torch.tensor([1, 2, 1], device=device)
    assert_values(recall_at_k(ranked, relevant, users, 3).cpu(), [2 / 2, 1 / 1, 2 / 2])
    assert_values(precision_at_k(ranked, relevant, users, 3).cpu(), [2 / 3, 1 / 3, 2 / 3])
    assert_values(
        ndcg_at_k(ranked, relevant, users, 3).cpu(),
        [(d(1) + d(3)) / (d(1) + d(2)), d(2) / d(1), (d(1) + d(2)) / (d(1) + d(2))],
    )
    assert_values(
        map_at_k(ranked, relevant, users, 3).cpu(), [(1 / 1 + 2 / 3) / 2, (1 / 2) / 1, 1.0]
    )


def test_padding_only_rows_score_zero() -> None:
    relevant = PositiveIndex.from_dict({0: [0, 1]}, num_items=3)
    ranked = torch.full((2, 3), -1)
    for metric in METRICS.values():
        assert_values(metric(ranked, relevant, torch.tensor([0, 0]), 2), [0.0, 0.0])


def test_accepts_other_integer_types() -> None:
    relevant = PositiveIndex.from_dict({0: [1, 4, 7]}, num_items=8)
    expected = recall_at_k(torch.tensor(ONE_ROW), relevant, torch.tensor([0]), 4)
    for ranked, users in [
        (torch.tensor(ONE_ROW, dtype=torch.int32), torch.tensor([0], dtype=torch.int16)),
        (ONE_ROW, [0]),
        (np.array(ONE_ROW), np.array([0])),
    ]:
        assert torch.equal(recall_at_k(ranked, relevant, users, 4), expected)


def test_empty_batch() -> None:
    relevant = PositiveIndex.from_dict({0: [1]}, num_items=3)
    ranked = torch.empty((0, 2), dtype=torch.int64)
    for metric in METRICS.values():
        assert metric(ranked, relevant, torch.empty(0, dtype=torch.int64), 2).shape == (0,)


def test_without_validation_a_user_with_no_relevant_item_gets_nan() -> None:
    relevant = PositiveIndex.from_dict({0: [1]}, num_users=2, num_items=3)
    ranked = torch.tensor([[1, 0], [1, 0]])
    users = torch.tensor([0, 1])
    for name in ("recall", "ndcg", "map"):
        value = METRICS[name](ranked, relevant, users, 2, validate=False)
        assert value[0].item() > 0
        assert math.isnan(value[1].item())
    assert_values(precision_at_k(ranked, relevant, users, 2, validate=False), [1 / 2, 0.0])


@st.composite
def ranking_cases(draw: st.DrawFn) -> tuple[list[list[int]], list[set[int]], list[int], int, int]:
    """Relevant sets, a batch of rankings with -1 anywhere, the users of the rows, K and k."""
    num_items = draw(st.integers(1, 10))
    num_users = draw(st.integers(1, 4))
    relevant = [draw(st.sets(st.integers(0, num_items - 1), min_size=1)) for _ in range(num_users)]
    width = draw(st.integers(1, num_items + 2))
    rows = draw(st.integers(1, 5))
    users = [draw(st.integers(0, num_users - 1)) for _ in range(rows)]
    ranked = [
        draw(st.permutations(list(range(num_items)) + [-1] * width))[:width] for _ in range(rows)
    ]
    k = draw(st.integers(1, width))
    return ranked, relevant, users, num_items, k


@given(ranking_cases())
def test_metrics_match_naive_loops(case: tuple[Any, ...]) -> None:
    ranked, relevant, users, num_items, k = case
    index = PositiveIndex.from_dict(dict(enumerate(relevant)), num_items=num_items)
    for name, metric in METRICS.items():
        actual = metric(torch.tensor(ranked), index, torch.tensor(users), k)
        expected = [
            naive_metrics(row, relevant[user], k)[name]
            for row, user in zip(ranked, users, strict=True)
        ]
        assert_values(actual, expected)


def test_metric_errors() -> None:
    relevant = PositiveIndex.from_dict({0: [1], 1: [2]}, num_users=3, num_items=4)
    ranked = torch.tensor([[1, 2, 3], [0, 1, 2]])
    users = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"k must be <= the number of ranked columns K=3, got 4"):
        recall_at_k(ranked, relevant, users, 4)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        ndcg_at_k(ranked, relevant, users, 0)
    with pytest.raises(TypeError, match="k must be an int"):
        map_at_k(ranked, relevant, users, True)
    with pytest.raises(TypeError, match="relevant must be a PositiveIndex, got dict"):
        recall_at_k(ranked, {0: [1]}, users, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ranked must hold integer ids"):
        recall_at_k(ranked.float(), relevant, users, 2)
    with pytest.raises(ValueError, match=r"ranked must be 2-D \(B, K\), got shape \(3,\)"):
        recall_at_k(ranked[0], relevant, users, 2)
    with pytest.raises(ValueError, match=r"users must be 1-D with one user per row .* \(3,\)"):
        recall_at_k(ranked, relevant, torch.tensor([0, 1, 1]), 2)
    with pytest.raises(ValueError, match=r"ranked must hold item ids in \[0, 4\) or -1 .*got -2"):
        recall_at_k(torch.tensor([[1, -2, 3], [0, 1, 2]]), relevant, users, 2)
    with pytest.raises(ValueError, match=r"ranked must hold item ids in \[0, 4\) .*got 4"):
        precision_at_k(torch.tensor([[1, 4, 3], [0, 1, 2]]), relevant, users, 2)
    with pytest.raises(ValueError, match="row 1 holds item 0 twice"):
        map_at_k(torch.tensor([[1, 2, 3], [0, -1, 0]]), relevant, users, 3)
    with pytest.raises(ValueError, match=r"users must be user ids in \[0, 3\), got 3"):
        recall_at_k(ranked, relevant, torch.tensor([0, 3]), 2)
    with pytest.raises(ValueError, match=r"user 2 \(row 1\) has none"):
        ndcg_at_k(ranked, relevant, torch.tensor([0, 2]), 2)


def test_repeats_beyond_k_are_allowed() -> None:
    relevant = PositiveIndex.from_dict({0: [1]}, num_items=4)
    # Item 2 repeats only beyond the cut-off k = 2: those slots are never read.
    ranked = torch.tensor([[1, 2, 2, 2]])
    assert_values(recall_at_k(ranked, relevant, torch.tensor([0]), 2), [1.0])


# ---------------------------------------------------------------------- evaluate by hand


class TableModel:
    """A duck-typed model (not an ``nn.Module``) that reads scores from a table."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table
        self.grad_enabled: list[bool] = []

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.table[users]


class FixedRanking:
    """A duck-typed model with only ``recommend``: hands back a given ranking per user."""

    def __init__(self, rows: dict[int, list[int]], dtype: torch.dtype | None = None) -> None:
        self.rows = rows
        self.dtype = dtype
        self.calls: list[tuple[list[int], int, PositiveIndex]] = []

    def recommend(self, users: torch.Tensor, k: int, exclude: PositiveIndex) -> torch.Tensor:
        self.calls.append((users.tolist(), k, exclude))
        return torch.tensor([self.rows[user][:k] for user in users.tolist()], dtype=self.dtype)


PATHS = ["recommend", "score_all"]
"""How ``evaluate`` ranks: with ``MFModel.recommend``, or from ``score_all`` itself."""


def bias_model(biases: list[float], num_users: int, path: str = "recommend") -> Any:
    """A model whose scores are the item biases: every user ranks items the same way.

    An ``MFModel`` (ranked by its ``recommend``), or for ``path="score_all"`` a
    ``TableModel`` of the same scores (ranked by ``evaluate`` from ``score_all``).
    """
    model = MFModel(num_users, len(biases), dim=1, init_std=0.0, bias=True)
    assert model.item_bias is not None
    with torch.no_grad():
        model.item_bias.copy_(torch.tensor(biases))
    if path == "score_all":
        return TableModel(model.score_all(torch.arange(num_users)).detach())
    return model


# Scores rank 0 > 1 > ... > 5 for everyone. User 0 trains on item 0 (the best one)
# and ranks 1, 2, 3, 4, 5; user 1 trains on 1, 2 and ranks 0, 3, 4, 5. User 2 has
# no test item, so it is not evaluated.
TRAIN = {0: [0], 1: [1, 2], 2: [3]}
TEST = {0: [1, 4], 1: [4, 5]}

EVALUATE_BY_HAND = {
    # top 2: user 0 gets 1, 2 (a hit at slot 1); user 1 gets 0, 3 (no hit).
    "recall@2": (1 / 2 + 0) / 2,
    "ndcg@2": (d(1) / (d(1) + d(2)) + 0) / 2,
    "map@2": ((1 / 1) / 2 + 0) / 2,
    "precision@2": (1 / 2 + 0) / 2,
    # top 4: user 0 gets 1, 2, 3, 4 (hits at slots 1, 4); user 1 gets 0, 3, 4, 5 (3, 4).
    "recall@4": (2 / 2 + 2 / 2) / 2,
    "ndcg@4": ((d(1) + d(4)) / (d(1) + d(2)) + (d(3) + d(4)) / (d(1) + d(2))) / 2,
    "map@4": ((1 / 1 + 2 / 4) / 2 + (1 / 3 + 2 / 4) / 2) / 2,
    "precision@4": (2 / 4 + 2 / 4) / 2,
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_evaluate_by_hand(device: str, path: str) -> None:
    train = PositiveIndex.from_dict(TRAIN, num_items=6)
    test = PositiveIndex.from_dict(TEST, num_users=3, num_items=6)
    model = bias_model([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], num_users=3, path=path)
    if path == "recommend":
        model.to(device)  # evaluate moves the indexes to the model
    else:
        model.table = model.table.to(device)  # no parameters: runs where train_index is
        train = train.to(device)
    result = evaluate(model, train, test, ks=(2, 4), metrics=("recall", "ndcg", "map", "precision"))
    assert list(result) == list(EVALUATE_BY_HAND)
    assert all(type(value) is float for value in result.values())
    assert result == pytest.approx(EVALUATE_BY_HAND, rel=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_evaluate_defaults(path: str) -> None:
    train = PositiveIndex.from_dict({0: [0]}, num_items=60)
    test = PositiveIndex.from_dict({0: [1, 30]}, num_items=60)
    model = bias_model([-float(i) for i in range(60)], num_users=1, path=path)
    # User 0 ranks 1, 2, ..., 59: item 1 at slot 1, item 30 at slot 30.
    result = evaluate(model, train, test)
    assert result == pytest.approx(
        {
            "recall@20": 1 / 2,
            "ndcg@20": d(1) / (d(1) + d(2)),
            "map@20": 1 / 2,
            "recall@50": 2 / 2,
            "ndcg@50": (d(1) + d(30)) / (d(1) + d(2)),
            "map@50": (1 / 1 + 2 / 30) / 2,
        },
        rel=1e-12,
    )


@pytest.mark.parametrize("path", PATHS)
def test_evaluate_given_users_and_single_k(path: str) -> None:
    train = PositiveIndex.from_dict(TRAIN, num_items=6)
    test = PositiveIndex.from_dict(TEST, num_users=3, num_items=6)
    model = bias_model([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], num_users=3, path=path)
    assert evaluate(model, train, test, 4, users=torch.tensor([1]), metrics="map") == pytest.approx(
        {"map@4": (1 / 3 + 2 / 4) / 2}, rel=1e-12
    )
    # A repeated user counts again: user 0 twice, user 1 once.
    assert evaluate(model, train, test, 2, users=[0, 0, 1], metrics="recall") == pytest.approx(
        {"recall@2": (1 / 2 + 1 / 2 + 0) / 3}, rel=1e-12
    )


def test_evaluate_uses_recommend_when_the_model_has_it() -> None:
    # The ranking of ONE_ROW again, now made by the model: the values worked out
    # for the metric functions (HAND) are the means over this single user.
    model = FixedRanking({0: ONE_ROW[0]})
    train = PositiveIndex.from_dict({0: [0]}, num_items=8)
    test = PositiveIndex.from_dict({0: [1, 4, 7]}, num_items=8)
    result = evaluate(model, train, test, ks=(2, 4, 5), metrics=("recall", "ndcg", "map"))
    expected = {
        f"{name}@{k}": HAND[k][name] for k in (2, 4, 5) for name in ("recall", "ndcg", "map")
    }
    assert result == pytest.approx(expected, rel=1e-12)
    # One call for the largest cut-off, excluding the training positives.
    assert len(model.calls) == 1
    users, k, exclude = model.calls[0]
    assert (users, k) == ([0], 5)
    assert exclude is train


def test_evaluate_refuses_an_item_recommended_twice_for_a_user() -> None:
    # Counted twice it would give recall@2 = map@2 = 2.0 for one test item.
    train = PositiveIndex.from_dict({0: [0], 1: [0]}, num_items=4)
    test = PositiveIndex.from_dict({0: [1], 1: [2]}, num_items=4)
    with pytest.raises(
        ValueError, match="must not return an item twice for a user, got item 1 twice for user 1"
    ):
        evaluate(FixedRanking({0: [2, 1], 1: [1, 1]}), train, test, ks=2)
    # Padding is not an item: it may fill the end of a row.
    result = evaluate(FixedRanking({0: [1, -1, -1], 1: [3, -1, -1]}), train, test, ks=3)
    assert result == pytest.approx({"recall@3": 0.5, "ndcg@3": 0.5, "map@3": 0.5}, rel=1e-12)


@pytest.mark.parametrize("dtype", SMALL_NARROW_ID_DTYPES)
def test_evaluate_takes_narrow_ids_from_recommend_past_their_max(dtype: torch.dtype) -> None:
    top = torch.iinfo(dtype).max
    num_items = one_past_max(dtype)
    train = PositiveIndex.from_dict({0: [0]}, num_items=num_items)
    test = PositiveIndex.from_dict({0: [top]}, num_items=num_items)
    result = evaluate(FixedRanking({0: [1, top]}, dtype=dtype), train, test, ks=2, metrics="recall")
    assert result == {"recall@2": 1.0}


@pytest.mark.parametrize("path", PATHS)
def test_train_positives_take_no_slot(path: str) -> None:
    model = bias_model([3.0, 2.0, 1.0, 0.0], num_users=1, path=path)
    test = PositiveIndex.from_dict({0: [2]}, num_items=4)
    # Item 0 scores best but is a training positive: the top 2 is 1, 2, not 0, 1.
    train = PositiveIndex.from_dict({0: [0]}, num_items=4)
    assert evaluate(model, train, test, 2, metrics="recall") == {"recall@2": 1.0}
    empty_train = PositiveIndex.from_dict({}, num_users=1, num_items=4)
    assert evaluate(model, empty_train, test, 2, metrics="recall") == {"recall@2": 0.0}


@pytest.mark.parametrize("path", PATHS)
def test_an_item_in_train_and_test_is_never_a_hit(path: str) -> None:
    model = bias_model([3.0, 2.0, 1.0, 0.0], num_users=1, path=path)
    train = PositiveIndex.from_dict({0: [0]}, num_items=4)
    test = PositiveIndex.from_dict({0: [0, 2]}, num_items=4)
    # Top 2 is 1, 2: item 2 hits at slot 2; item 0 is excluded but still in |T| = 2.
    result = evaluate(model, train, test, 2, metrics=("recall", "ndcg"))
    assert result == pytest.approx({"recall@2": 1 / 2, "ndcg@2": d(2) / (d(1) + d(2))}, rel=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_evaluate_pads_users_with_few_items_left(path: str) -> None:
    # User 0 trains on 5 of the 6 items: its top 3 is 5, -1, -1.
    model = bias_model([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], num_users=1, path=path)
    train = PositiveIndex.from_dict({0: [0, 1, 2, 3, 4]}, num_items=6)
    test = PositiveIndex.from_dict({0: [5]}, num_items=6)
    result = evaluate(model, train, test, 3, metrics=("recall", "ndcg", "map", "precision"))
    assert result == pytest.approx(
        {"recall@3": 1.0, "ndcg@3": 1.0, "map@3": 1.0, "precision@3": 1 / 3}, rel=1e-12
    )


# ---------------------------------------------------------------------- evaluate: properties


@st.composite
def evaluation_cases(draw: st.DrawFn) -> tuple[torch.Tensor, list[set[int]], list[set[int]], int]:
    """Integer-valued scores from a tiny range (lots of ties), train and test sets."""
    num_items = draw(st.integers(1, 8))
    num_users = draw(st.integers(1, 5))
    values = draw(
        st.lists(st.integers(-2, 2), min_size=num_users * num_items, max_size=num_users * num_items)
    )
    table = torch.tensor(values, dtype=torch.float32).reshape(num_users, num_items)
    items = st.integers(0, num_items - 1)
    train = [draw(st.sets(items)) for _ in range(num_users)]
    test = [draw(st.sets(items, min_size=1)) for _ in range(num_users)]
    k = draw(st.integers(1, num_items))
    return table, train, test, k


@given(evaluation_cases(), st.integers(1, 6))
def test_evaluate_matches_naive_pipeline(case: tuple[Any, ...], batch_size: int) -> None:
    table, train, test, k = case
    num_users, num_items = table.shape
    train_index = PositiveIndex.from_dict(dict(enumerate(train)), num_items=num_items)
    test_index = PositiveIndex.from_dict(dict(enumerate(test)), num_items=num_items)
    names = ("recall", "ndcg", "map", "precision")
    result = evaluate(
        TableModel(table), train_index, test_index, k, batch_size=batch_size, metrics=names
    )
    expected = dict.fromkeys(names, 0.0)
    for user in range(num_users):
        ranking = naive_ranking(table[user].tolist(), train[user], k)
        for name, value in naive_metrics(ranking, test[user], k).items():
            expected[name] += value / num_users
    assert result == pytest.approx({f"{name}@{k}": expected[name] for name in names}, rel=1e-9)


def random_split(
    num_users: int, num_items: int, seed: int, max_train: int, max_test: int
) -> tuple[PositiveIndex, PositiveIndex]:
    """Disjoint train and test sets; every user has 1..max_test test items."""
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    for user in range(num_users):
        n_train = int(rng.integers(0, max_train + 1))
        n_test = int(rng.integers(1, max_test + 1))
        items = rng.permutation(num_items)
        train[user] = items[:n_train].tolist()
        test[user] = items[n_train : n_train + n_test].tolist()
    return (
        PositiveIndex.from_dict(train, num_users=num_users, num_items=num_items),
        PositiveIndex.from_dict(test, num_users=num_users, num_items=num_items),
    )


def test_batch_size_does_not_change_the_result() -> None:
    train, test = random_split(37, 50, seed=1, max_train=10, max_test=6)
    torch.manual_seed(0)
    model = MFModel(37, 50, dim=4, bias=True)
    reference = evaluate(model, train, test, ks=(5, 10, 50), metrics=("recall", "ndcg", "map"))
    for batch_size in (1, 7, 37):
        result = evaluate(
            model,
            train,
            test,
            ks=(5, 10, 50),
            batch_size=batch_size,
            metrics=("recall", "ndcg", "map"),
        )
        assert result == pytest.approx(reference, rel=1e-12)


def test_perfect_model() -> None:
    train, test = random_split(60, 100, seed=2, max_train=20, max_test=30)
    degrees = test.degree(torch.arange(60))
    # Scores 1 on the user's test items and 0 elsewhere: the test items fill the top.
    model = TableModel(test.contains(torch.arange(60)[:, None], torch.arange(100)).double())
    k = 20
    small = (degrees <= k).nonzero()[:, 0]
    assert 0 < small.numel() < 60  # both kinds of user are present
    result = evaluate(model, train, test, k, users=small)
    assert result == pytest.approx({"recall@20": 1.0, "ndcg@20": 1.0, "map@20": 1.0}, rel=1e-12)
    # Over everyone, a user with |T| > k finds k of its |T| items.
    expected = sum(min(t, k) / t for t in degrees.tolist()) / 60
    assert evaluate(model, train, test, k, metrics="recall") == pytest.approx(
        {"recall@20": expected}, rel=1e-12
    )


class RandomModel:
    """Fresh uniform random scores at every call: a random ranking of the catalogue."""

    def __init__(self, num_items: int, seed: int) -> None:
        self.num_items = num_items
        self.generator = torch.Generator().manual_seed(seed)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return torch.rand((users.numel(), self.num_items), generator=self.generator)


def test_random_ranking_has_the_expected_recall() -> None:
    num_users, num_items, k = 3000, 100, 10
    train, test = random_split(num_users, num_items, seed=3, max_train=50, max_test=10)
    users = torch.arange(num_users)
    n = (num_items - train.degree(users)).tolist()  # items each user's ranking draws from
    t = test.degree(users).tolist()
    # A random ranking of user u's n_u non-training items puts each of them in the
    # top k with probability k / n_u (k / num_items if the user had no training
    # items), so E[recall] = k / n_u. Hits are hypergeometric (t_u successes among
    # n_u, k draws): Var[recall] = k (t/n)(1 - t/n)(n - k)/(n - 1) / t**2.
    expected = sum(k / nu for nu in n) / num_users
    variance = sum(
        k * (tu / nu) * (1 - tu / nu) * (nu - k) / (nu - 1) / tu**2
        for nu, tu in zip(n, t, strict=True)
    )
    sd = math.sqrt(variance) / num_users  # about 0.0034 here, against a mean of about 0.139
    # 4 standard deviations: with the seed fixed the test is deterministic, and a
    # fresh seed would fail it with probability ~6e-5 (normal approximation over
    # 3000 independent users). A ranking that left the training items in
    # (E = k / num_items = 0.1) would be about 12 standard deviations off.
    result = evaluate(RandomModel(num_items, seed=4), train, test, k, metrics="recall")
    assert abs(result["recall@10"] - expected) < 4 * sd
    assert abs(expected - k / num_items) > 10 * sd


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_scores_without_grad_in_eval_mode_and_restores_the_mode(training: bool) -> None:
    class Recording(MFModel):
        modes: list[bool]

        def score_all(self, users: torch.Tensor) -> torch.Tensor:
            self.modes.append(self.training)
            assert not torch.is_grad_enabled()
            return super().score_all(users)

    train, test = random_split(5, 8, seed=5, max_train=2, max_test=2)
    model = Recording(5, 8, dim=2)
    model.modes = []
    model.train(training)
    evaluate(model, train, test, 3, batch_size=2)
    assert model.modes == [False, False, False]
    assert model.training == training


def test_evaluate_scores_a_duck_typed_model_without_grad() -> None:
    train, test = random_split(5, 8, seed=5, max_train=2, max_test=2)
    model = TableModel(torch.rand(5, 8))
    evaluate(model, train, test, 3)
    assert model.grad_enabled == [False]


# ---------------------------------------------------------------------- the ranking


def test_mf_model_ranks_the_same_either_way() -> None:
    # Integer-valued weights make many ties; recommend and the score_all path
    # must break them the same way (to the lower item id).
    torch.manual_seed(6)
    model = MFModel(40, 30, dim=2, bias=True)
    assert model.item_bias is not None
    with torch.no_grad():
        for weight in (model.user_embedding.weight, model.item_embedding.weight, model.item_bias):
            weight.copy_(torch.randint(-1, 2, weight.shape))
    train, test = random_split(40, 30, seed=7, max_train=25, max_test=5)
    table = TableModel(model.score_all(torch.arange(40)).detach())
    names = ("recall", "ndcg", "map", "precision")
    for batch_size in (3, 1024):
        expected = evaluate(model, train, test, (1, 5, 30), batch_size=batch_size, metrics=names)
        actual = evaluate(table, train, test, (1, 5, 30), batch_size=batch_size, metrics=names)
        assert actual == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------- evaluate: errors


def test_evaluate_errors() -> None:
    train = PositiveIndex.from_dict(TRAIN, num_items=6)
    test = PositiveIndex.from_dict(TEST, num_users=3, num_items=6)
    model = bias_model([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], num_users=3)
    with pytest.raises(ValueError, match="ks must name at least one cut-off"):
        evaluate(model, train, test, ks=())
    with pytest.raises(ValueError, match="each of ks must be >= 1, got 0"):
        evaluate(model, train, test, ks=(2, 0))
    with pytest.raises(ValueError, match="ks must all be <= num_items=6, got 7"):
        evaluate(model, train, test, ks=(7,))
    with pytest.raises(TypeError, match=r"each of ks must be an int, got 2\.0"):
        evaluate(model, train, test, ks=(2.0,))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ks must be an int or a sequence of ints"):
        evaluate(model, train, test, ks=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ks must not repeat a cut-off, got \[2, 2\]"):
        evaluate(model, train, test, ks=(2, 2))
    other = PositiveIndex.from_dict(TEST, num_users=3, num_items=7)
    with pytest.raises(
        ValueError, match=r"same num_items, got 6 and 7; build the test index with num_items="
    ):
        evaluate(model, train, other, ks=2)
    with pytest.raises(TypeError, match="test_index must be a PositiveIndex, got dict"):
        evaluate(model, train, TEST, ks=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"metrics must be names from .*got 'auc'"):
        evaluate(model, train, test, ks=2, metrics=("recall", "auc"))
    with pytest.raises(ValueError, match="metrics must name at least one"):
        evaluate(model, train, test, ks=2, metrics=())
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        evaluate(model, train, test, ks=2, batch_size=0)
    with pytest.raises(ValueError, match=r"users must be user ids in \[0, 3\), got 5"):
        evaluate(model, train, test, ks=2, users=[0, 5])
    with pytest.raises(ValueError, match="user 2 has none"):
        evaluate(model, train, test, ks=2, users=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="users must be a non-empty 1-D tensor"):
        evaluate(model, train, test, ks=2, users=[])
    empty_test = PositiveIndex.from_dict({}, num_users=3, num_items=6)
    with pytest.raises(ValueError, match="no user with a test item"):
        evaluate(model, train, empty_test, ks=2)
    short_train = PositiveIndex.from_dict({0: [0]}, num_items=6)
    with pytest.raises(ValueError, match=r"train_index has no row for user 1 .*num_users=1"):
        evaluate(model, short_train, test, ks=2)


def test_evaluate_model_errors() -> None:
    train = PositiveIndex.from_dict(TRAIN, num_items=6)
    test = PositiveIndex.from_dict(TEST, num_users=3, num_items=6)
    with pytest.raises(TypeError, match=r"model must have a recommend.* or a score_all"):
        evaluate(nn.Linear(2, 2), train, test, ks=2)
    fixed = FixedRanking({0: [1, 2, 3], 1: [0, 3, 4]})
    fixed.rows[1] = [0, 3, 6]
    with pytest.raises(
        ValueError, match=r"recommend must return item ids in \[0, 6\) or -1, got 6"
    ):
        evaluate(fixed, train, test, ks=3)
    with pytest.raises(
        ValueError, match=r"recommend returned shape \(2, 2\) for 2 users; expected \(2, 3\)"
    ):
        evaluate(FixedRanking({0: [1, 2], 1: [0, 3]}), train, test, ks=3)
    with pytest.raises(
        TypeError, match=r"recommend must return an integer tensor .*torch\.float32"
    ):
        evaluate(FixedRanking({0: [1.0, 2.0], 1: [0.0, 3.0]}), train, test, ks=2)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"returned shape \(2, 5\) for 2 users; expected \(2, 6\)"):
        evaluate(TableModel(torch.zeros(3, 5)), train, test, ks=2)
    with pytest.raises(
        TypeError, match=r"must return a floating tensor of scores, got dtype torch\.int64"
    ):
        evaluate(TableModel(torch.zeros(3, 6, dtype=torch.int64)), train, test, ks=2)
    table = torch.zeros(3, 6)
    table[1, 4] = math.nan
    with pytest.raises(ValueError, match=r"NaN .*user 1, item 4"):
        evaluate(TableModel(table), train, test, ks=2)
