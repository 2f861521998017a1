"""MFModel: scores, broadcasting, full ranking, recommendations, the L2 penalty, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import negsample.models
from negsample import HardNegativeSampler, PositiveIndex
from negsample.models import MFModel
from tests.helpers import DEVICES, SMALL_NARROW_ID_DTYPES, one_past_max
from tests.strategies import Case, cases


def small_model(bias: bool = True, seed: int = 0, **kwargs: Any) -> MFModel:
    torch.manual_seed(seed)
    model = MFModel(4, 6, dim=3, bias=bias, init_std=1.0, **kwargs)
    if model.item_bias is not None:
        with torch.no_grad():
            model.item_bias.normal_()
    return model


def naive_score(model: MFModel, user: int, item: int) -> float:
    """``<e_u, e_i> + b_i`` one coordinate at a time, in Python floats."""
    user_vector = model.user_embedding.weight[user].tolist()
    item_vector = model.item_embedding.weight[item].tolist()
    score = sum(a * b for a, b in zip(user_vector, item_vector, strict=True))
    if model.item_bias is not None:
        score += model.item_bias[item].item()
    return score


# ---------------------------------------------------------------------- construction


def test_parameters_and_initialisation() -> None:
    torch.manual_seed(0)
    model = MFModel(300, 400, dim=50, bias=True, init_std=0.3)
    assert model.user_embedding.weight.shape == (300, 50)
    assert model.item_embedding.weight.shape == (400, 50)
    assert model.item_bias is not None and model.item_bias.shape == (400,)
    assert torch.equal(model.item_bias, torch.zeros(400))
    # 15,000+ N(0, 0.3^2) draws: the sample std is within 2% of 0.3 with overwhelming probability.
    for weight in (model.user_embedding.weight, model.item_embedding.weight):
        assert abs(weight.std().item() - 0.3) < 0.006
        assert abs(weight.mean().item()) < 0.006
    assert (model.num_users, model.num_items, model.dim) == (300, 400, 50)
    assert {name for name, _ in model.named_parameters()} == {
        "user_embedding.weight",
        "item_embedding.weight",
        "item_bias",
    }


def test_no_bias_by_default() -> None:
    model = MFModel(2, 3)
    assert model.item_bias is None
    assert model.dim == 64
    assert "item_bias" not in dict(model.named_parameters())


def test_same_seed_same_model() -> None:
    first, second = small_model(seed=3), small_model(seed=3)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_repr() -> None:
    text = repr(MFModel(2, 3, dim=4, bias=True))
    assert "num_users=2, num_items=3, dim=4, bias=True, validate=True" in text
    assert "Embedding(2, 4)" in text and "Embedding(3, 4)" in text


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dtype_and_device_are_honoured(device: str, dtype: torch.dtype) -> None:
    model = MFModel(3, 5, dim=2, bias=True, dtype=dtype, device=device)
    for parameter in model.parameters():
        assert parameter.dtype == dtype
        assert parameter.device.type == device
    users = torch.tensor([0, 2], device=device)
    items = torch.tensor([[1, 4], [0, 3]], device=device)
    out = model(users[:, None], items)
    assert out.dtype == dtype and out.device.type == device
    assert model.score_all(users).dtype == dtype
    assert model.recommend(users, 2).device.type == device


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_users": 0}, ValueError, "num_users must be >= 1, got 0"),
        ({"num_items": -3}, ValueError, "num_items must be >= 1, got -3"),
        ({"dim": 0}, ValueError, "dim must be >= 1, got 0"),
        ({"dim": 2.5}, TypeError, r"dim must be an int, got 2.5 \(float\)"),
        ({"num_users": "3"}, TypeError, r"num_users must be an int, got '3' \(str\)"),
        ({"bias": 1}, TypeError, "bias must be a bool, got 1"),
        ({"validate": "no"}, TypeError, "validate must be a bool, got 'no'"),
        ({"init_std": -0.1}, ValueError, "init_std must be a finite float >= 0, got -0.1"),
        ({"init_std": math.nan}, ValueError, "init_std must be a finite float >= 0, got nan"),
        ({"init_std": "0.1"}, TypeError, "init_std must be a float, got '0.1'"),
        (
            {"dtype": torch.int64},
            TypeError,
            "dtype must be None or a floating torch.dtype, got torch.int64",
        ),
        (
            {"dtype": "float32"},
            TypeError,
            "dtype must be None or a floating torch.dtype, got 'float32'",
        ),
    ],
)
def test_constructor_errors(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    arguments: dict[str, Any] = {"num_users": 3, "num_items": 4, "dim": 2, **kwargs}
    with pytest.raises(error, match=message):
        MFModel(**arguments)


# ---------------------------------------------------------------------- scoring


@pytest.mark.parametrize("bias", [False, True])
def test_forward_values_and_broadcasting(bias: bool) -> None:
    model = small_model(bias=bias)
    users = torch.tensor([0, 3, 3])
    items = torch.tensor([[5, 0], [1, 1], [2, 4]])
    pairs = model(users, items[:, 0])
    assert pairs.shape == (3,)
    grid = model(users[:, None], items)
    assert grid.shape == (3, 2)
    expected = [
        [naive_score(model, u, i) for i in row]
        for u, row in zip([0, 3, 3], items.tolist(), strict=True)
    ]
    torch.testing.assert_close(grid, torch.tensor(expected))
    torch.testing.assert_close(pairs, grid[:, 0])
    # One user against many items, and a 0-d pair.
    assert model(torch.tensor([2]), torch.arange(6)).shape == (6,)
    assert model(torch.tensor(1), torch.tensor(2)).shape == ()
    # Users expanded over the items (as the samplers pass them) score the same.
    torch.testing.assert_close(model(users[:, None].expand(3, 2), items), grid)
    # An expanded dim that the items do not fill must keep its size.
    rows = torch.tensor([[0, 3]]).expand(3, 2)
    out = model(rows, torch.tensor([5, 1]))
    assert out.shape == (3, 2)
    torch.testing.assert_close(out, model(rows.contiguous(), torch.tensor([[5, 1]] * 3)))
    # int32 / int16 / uint8 ids score like int64 ones (uint8 must not act as a mask).
    for dtype in (torch.int32, torch.int16, torch.uint8):
        torch.testing.assert_close(model(users[:, None].to(dtype), items.to(dtype)), grid)


def test_forward_is_differentiable() -> None:
    model = small_model()
    model(torch.tensor([0, 1]), torch.tensor([2, 3])).sum().backward()
    assert model.user_embedding.weight.grad is not None
    assert model.item_bias is not None and model.item_bias.grad is not None
    assert torch.count_nonzero(model.item_bias.grad) == 2


@pytest.mark.parametrize("bias", [False, True])
def test_score_all_agrees_with_forward(bias: bool) -> None:
    model = small_model(bias=bias)
    users = torch.tensor([3, 0, 1, 3])
    full = model.score_all(users)
    assert full.shape == (4, 6)
    torch.testing.assert_close(full, model(users[:, None], torch.arange(6).expand(4, 6)))
    torch.testing.assert_close(full, model(users[:, None], torch.arange(6)))
    assert model.score_all(torch.tensor([], dtype=torch.int64)).shape == (0, 6)


def test_model_is_a_sampler_scorer() -> None:
    index = PositiveIndex.from_dict({0: [0, 1], 1: [2], 3: [5, 4, 3]}, num_users=4, num_items=6)
    model = small_model()
    sampler = HardNegativeSampler(index, num_candidates=5, num_hard=2, num_random=1, generator=0)
    users = torch.tensor([0, 1, 2, 3, 3])
    negatives = sampler.sample(users, model)
    assert negatives.shape == (5, 3) and negatives.dtype == torch.int64
    assert not index.contains(users[:, None], negatives).any()
    # The hard part is the best-scored candidate set: its first item outscores its second.
    hard_scores = model(users[:, None], negatives[:, :2])
    assert bool((hard_scores[:, 0] >= hard_scores[:, 1]).all())


@pytest.mark.parametrize(
    ("users", "items", "error", "message"),
    [
        (
            torch.tensor([0.0]),
            torch.tensor([1]),
            TypeError,
            "users must be an integer tensor of ids, got dtype torch.float32",
        ),
        (
            torch.tensor([0]),
            torch.tensor([True]),
            TypeError,
            "items must be an integer tensor of ids, got dtype torch.bool",
        ),
        (
            [0, 1],
            torch.tensor([1, 2]),
            TypeError,
            "users must be an integer tensor of ids, got list",
        ),
        (
            torch.tensor([4]),
            torch.tensor([1]),
            ValueError,
            r"users must be user ids in \[0, 4\), got 4",
        ),
        (
            torch.tensor([-1, 0]),
            torch.tensor([1]),
            ValueError,
            r"users must be user ids in \[0, 4\), got -1",
        ),
        (
            torch.tensor([0]),
            torch.tensor([6, 7, 1]),
            ValueError,
            r"items must be item ids in \[0, 6\), got 6 \(and 1 more",
        ),
        (
            torch.tensor([0, 1]),
            torch.tensor([1, 2, 3]),
            ValueError,
            r"must broadcast together, got shapes \(2,\) and \(3,\)",
        ),
    ],
)
def test_forward_errors(users: Any, items: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        small_model()(users, items)


def test_score_all_errors() -> None:
    model = small_model()
    with pytest.raises(ValueError, match=r"users must be 1-D, got shape \(2, 1\)"):
        model.score_all(torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"users must be user ids in \[0, 4\), got 9"):
        model.score_all(torch.tensor([9]))
    with pytest.raises(TypeError, match="users must be an integer tensor"):
        model.score_all(torch.tensor([0.5]))


def test_validate_false_skips_the_value_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def spy(name: str, *args: Any) -> None:
        calls.append(name)

    monkeypatch.setattr(negsample.models, "check_ids_in_range", spy)
    model = small_model(validate=False)
    users, items = torch.tensor([0, 1]), torch.tensor([[2, 3], [4, 5]])
    model(users[:, None], items)
    model.score_all(users)
    model.recommend(users, 2)
    model.l2_regularization(users, items[:, 0], items)
    assert calls == []
    model.validate = True
    model(users, items[:, 0])
    assert calls == ["users", "items"]
    # The cheap checks always run.
    model.validate = False
    with pytest.raises(TypeError, match="items must be an integer tensor"):
        model(users, items.float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ids_on_another_device() -> None:
    model = small_model()
    with pytest.raises(ValueError, match="users are on cuda:0 but the model is on cpu"):
        model(torch.tensor([0], device="cuda"), torch.tensor([1]))


@pytest.mark.parametrize("dtype", SMALL_NARROW_ID_DTYPES)
def test_forward_takes_narrow_ids_of_a_model_past_their_max(dtype: torch.dtype) -> None:
    # 2**31 rows for int32 ids would be an 8 GiB table: those go through the same
    # check, tested for every dtype in test_checks.py.
    top = torch.iinfo(dtype).max
    size = one_past_max(dtype)
    model = MFModel(size, size, dim=2)
    ids = torch.tensor([top, 0, 1])
    expected = model(ids, ids.flip(0))
    torch.testing.assert_close(model(ids.to(dtype), ids.flip(0).to(dtype)), expected)
    torch.testing.assert_close(
        model.score_all(ids.to(dtype))[:, top], model(ids, ids.new_full((3,), top))
    )


# ---------------------------------------------------------------------- recommend


def naive_recommend(
    scores: list[list[float]], users: list[int], k: int, positives: list[set[int]] | None
) -> list[list[int]]:
    """Per user: non-excluded items by (NaN last, score descending, item id), padded with -1."""
    result = []
    for user in users:
        row = scores[user]
        allowed = [i for i in range(len(row)) if positives is None or i not in positives[user]]
        ranked = sorted(allowed, key=lambda i: (math.isnan(row[i]), -row[i], i))[:k]
        result.append(ranked + [-1] * (k - len(ranked)))
    return result


def integer_model(
    num_users: int,
    num_items: int,
    user_values: list[int],
    item_values: list[int],
    biases: list[float],
) -> MFModel:
    """A 1-D model with small integer parameters: exact scores with many ties."""
    model = MFModel(num_users, num_items, dim=1, bias=True)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor(user_values, dtype=torch.float32)[:, None])
        model.item_embedding.weight.copy_(torch.tensor(item_values, dtype=torch.float32)[:, None])
        assert model.item_bias is not None
        model.item_bias.copy_(torch.tensor(biases))
    return model


@st.composite
def ranking_problems(draw: st.DrawFn) -> tuple[Case, MFModel, torch.Tensor, int]:
    case = draw(cases(max_users=6, max_items=12, allow_full=True))
    num_users, num_items = case.index.num_users, case.num_items
    small = st.integers(-2, 2)
    model = integer_model(
        num_users,
        num_items,
        draw(st.lists(small, min_size=num_users, max_size=num_users)),
        draw(st.lists(small, min_size=num_items, max_size=num_items)),
        # -inf biases give genuinely -inf scores, which must still beat excluded items.
        draw(
            st.lists(
                st.sampled_from([-1.0, 0.0, 1.0, -math.inf]), min_size=num_items, max_size=num_items
            )
        ),
    )
    users = draw(st.lists(st.integers(0, num_users - 1), min_size=0, max_size=8))
    dtype = draw(st.sampled_from([torch.int64, torch.int32]))
    k = draw(st.integers(1, num_items))
    return case, model, torch.tensor(users, dtype=dtype), k


@given(ranking_problems())
def test_recommend_matches_naive_ranking(problem: tuple[Case, MFModel, torch.Tensor, int]) -> None:
    case, model, users, k = problem
    scores = model.score_all(torch.arange(case.index.num_users)).tolist()
    got = model.recommend(users, k, exclude=case.index)
    assert got.dtype == torch.int64 and got.shape == (users.numel(), k)
    assert got.tolist() == naive_recommend(scores, users.tolist(), k, case.positives)
    assert model.recommend(users, k).tolist() == naive_recommend(scores, users.tolist(), k, None)


@given(ranking_problems())
def test_recommend_never_returns_an_excluded_positive(
    problem: tuple[Case, MFModel, torch.Tensor, int],
) -> None:
    case, model, users, k = problem
    got = model.recommend(users, k, exclude=case.index)
    for user, row in zip(users.tolist(), got.tolist(), strict=True):
        items = [item for item in row if item != -1]
        assert not set(items) & case.positives[user]
        assert len(set(items)) == len(items)
        # -1 only pads the end of a row, and only when the user ran out of non-positives.
        assert row[len(items) :] == [-1] * (k - len(items))
        assert len(items) == min(k, case.num_items - len(case.positives[user]))


def test_recommend_highest_first_ties_to_lower_id() -> None:
    model = integer_model(1, 6, [1], [0, 3, 1, 3, 2, 3], [0.0] * 6)
    assert model.recommend(torch.tensor([0]), 6).tolist() == [[1, 3, 5, 4, 2, 0]]
    assert model.recommend(torch.tensor([0]), 2).tolist() == [[1, 3]]


def test_recommend_fewer_than_k_non_positives_pads_with_minus_one() -> None:
    model = integer_model(3, 5, [1, 1, 1], [4, 3, 2, 1, 0], [0.0] * 5)
    index = PositiveIndex.from_dict({0: [0, 2, 3], 1: range(5)}, num_users=3, num_items=5)
    got = model.recommend(torch.tensor([0, 1, 2]), 4, exclude=index)
    assert got.tolist() == [[1, 4, -1, -1], [-1, -1, -1, -1], [0, 1, 2, 3]]


def test_recommend_ranks_minus_inf_scores_above_excluded_items() -> None:
    model = integer_model(1, 4, [1], [0, 0, 0, 0], [-math.inf, 1.0, -math.inf, 0.0])
    index = PositiveIndex.from_dict({0: [1, 3]}, num_items=4)
    assert model.recommend(torch.tensor([0]), 3, exclude=index).tolist() == [[0, 2, -1]]


def test_recommend_nan_scores() -> None:
    model = integer_model(1, 4, [1], [0, 0, 0, 0], [math.nan, -math.inf, 2.0, math.nan])
    with pytest.raises(
        ValueError, match=r"the model scores NaN \(e.g. for user 0, item 0\); 2 NaN"
    ):
        model.recommend(torch.tensor([0]), 2)
    model.validate = False
    # NaN ranks below -inf, and above excluded items.
    assert model.recommend(torch.tensor([0]), 4).tolist() == [[2, 1, 0, 3]]
    index = PositiveIndex.from_dict({0: [0, 2]}, num_items=4)
    assert model.recommend(torch.tensor([0]), 4, exclude=index).tolist() == [[1, 3, -1, -1]]


def test_recommend_in_chunks_equals_all_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = MFModel(50, 30, dim=4)
    index = PositiveIndex.from_pairs(
        torch.randint(0, 50, (300,)), torch.randint(0, 30, (300,)), 50, 30
    )
    users = torch.randint(0, 50, (40,))
    whole = model.recommend(users, 7, exclude=index)
    monkeypatch.setattr(negsample.models, "_RECOMMEND_CHUNK_SCORES", 3 * 30)
    assert torch.equal(model.recommend(users, 7, exclude=index), whole)


def test_recommend_without_gradients() -> None:
    model = small_model()
    out = model.recommend(torch.tensor([0, 1]), 3)
    assert not out.requires_grad
    assert model.recommend(torch.tensor([], dtype=torch.int64), 3).shape == (0, 3)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda m: m.recommend(torch.tensor([0]), 7),
            ValueError,
            "k must be <= num_items=6, got 7",
        ),
        (lambda m: m.recommend(torch.tensor([0]), 0), ValueError, "k must be >= 1, got 0"),
        (
            lambda m: m.recommend(torch.tensor([0]), 2.0),
            TypeError,
            r"k must be an int, got 2.0 \(float\)",
        ),
        (
            lambda m: m.recommend(torch.tensor([[0]]), 2),
            ValueError,
            r"users must be 1-D, got shape \(1, 1\)",
        ),
        (
            lambda m: m.recommend(torch.tensor([4]), 2),
            ValueError,
            r"users must be user ids in \[0, 4\), got 4",
        ),
        (
            lambda m: m.recommend(torch.tensor([0]), 2, exclude={0: [1]}),
            TypeError,
            "exclude must be None or a PositiveIndex, got dict",
        ),
        (
            lambda m: m.recommend(
                torch.tensor([0]), 2, exclude=PositiveIndex.from_dict({0: [1]}, num_items=5)
            ),
            ValueError,
            "exclude must index the model's 6 items, got an index with num_items=5",
        ),
        (
            lambda m: m.recommend(
                torch.tensor([0, 3]), 2, exclude=PositiveIndex.from_dict({1: [1]}, num_items=6)
            ),
            ValueError,
            "exclude has no row for user 3: it has num_users=2",
        ),
    ],
)
def test_recommend_errors(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call(small_model())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_recommend_on_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    # Small integer parameters: exact scores on both devices, with many ties.
    model = integer_model(
        50,
        30,
        torch.randint(-2, 3, (50,)).tolist(),
        torch.randint(-2, 3, (30,)).tolist(),
        [0.0] * 30,
    )
    index = PositiveIndex.from_pairs(
        torch.randint(0, 50, (300,)), torch.randint(0, 30, (300,)), 50, 30
    )
    users = torch.randint(0, 50, (40,))
    expected = model.recommend(users, 7, exclude=index)
    got = model.to("cuda").recommend(users.cuda(), 7, exclude=index.to("cuda"))
    assert torch.equal(got.cpu(), expected)
    with pytest.raises(ValueError, match="exclude is on cpu but the users are on cuda"):
        model.recommend(users.cuda(), 7, exclude=index)


# ---------------------------------------------------------------------- L2 penalty


@pytest.mark.parametrize("neg_shape", ["(B, N)", "(B,)"])
def test_l2_regularization_value(neg_shape: str) -> None:
    model = small_model(dtype=torch.float64)
    users = [0, 3, 3]
    pos = [5, 1, 5]
    neg = [[0, 2], [2, 2], [4, 1]] if neg_shape == "(B, N)" else [[0], [2], [4]]
    users_w = model.user_embedding.weight.tolist()
    items_w = model.item_embedding.weight.tolist()
    squares = sum(x * x for u in users for x in users_w[u])
    squares += sum(x * x for i in pos for x in items_w[i])
    squares += sum(x * x for row in neg for i in row for x in items_w[i])
    expected = 0.5 * squares / len(users)
    neg_t = torch.tensor(neg) if neg_shape == "(B, N)" else torch.tensor(neg)[:, 0]
    penalty = model.l2_regularization(torch.tensor(users), torch.tensor(pos)[:, None], neg_t)
    assert penalty.shape == ()
    assert penalty.item() == pytest.approx(expected, rel=1e-12)


def test_l2_regularization_gradient() -> None:
    model = small_model(bias=True)
    users, pos, neg = torch.tensor([1, 1]), torch.tensor([0, 2]), torch.tensor([[2, 3], [3, 3]])
    model.l2_regularization(users, pos, neg).backward()
    # d/d e of 0.5 * count * ||e||^2 / B is count * e / B; the bias is not penalised.
    assert (
        model.user_embedding.weight.grad is not None
        and model.item_embedding.weight.grad is not None
    )
    expected_user = torch.zeros_like(model.user_embedding.weight)
    expected_user[1] = 2 * model.user_embedding.weight[1].detach() / 2
    torch.testing.assert_close(model.user_embedding.weight.grad, expected_user)
    counts = torch.tensor([1.0, 0.0, 2.0, 3.0, 0.0, 0.0])
    expected_item = counts[:, None] * model.item_embedding.weight.detach() / 2
    torch.testing.assert_close(model.item_embedding.weight.grad, expected_item)
    assert model.item_bias is not None and model.item_bias.grad is None


@pytest.mark.parametrize(
    ("users", "pos", "neg", "error", "message"),
    [
        ([], [], [[]], ValueError, "users is empty"),
        ([[0]], [1], [[1]], ValueError, r"users must be 1-D, got shape \(1, 1\)"),
        (
            [0, 1],
            [1],
            [[1], [2]],
            ValueError,
            r"pos_items must have B=2 rows like users, got shape \(1,\)",
        ),
        (
            [0, 1],
            [1, 2],
            [[1, 2]],
            ValueError,
            r"neg_items must have B=2 rows like users, got shape \(1, 2\)",
        ),
        (
            [0, 1],
            [[1, 2], [2, 3]],
            [[1], [2]],
            ValueError,
            r"pos_items must have shape \(B,\) or \(B, 1\), got shape \(2, 2\)",
        ),
        (
            [0],
            [1],
            [[[1]]],
            ValueError,
            r"neg_items must have shape \(B, N\) or \(B,\), got shape \(1, 1, 1\)",
        ),
        ([0], [6], [[1]], ValueError, r"pos_items must be item ids in \[0, 6\), got 6"),
        ([0], [1], [[1, -2]], ValueError, r"neg_items must be item ids in \[0, 6\), got -2"),
    ],
)
def test_l2_regularization_errors(
    users: Any, pos: Any, neg: Any, error: type[Exception], message: str
) -> None:
    def as_ids(values: Any) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int64)

    with pytest.raises(error, match=message):
        small_model().l2_regularization(as_ids(users), as_ids(pos), as_ids(neg))


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("neg_shape", ["(B, N) short", "(B, N) long", "(B,)"])
def test_scores_and_l2_equal_the_separate_calls(
    similarity: str, bias: bool, neg_shape: str
) -> None:
    # The separate calls' values and gradients, in float64, from one lookup per table.
    gen = torch.Generator().manual_seed(3)
    users = torch.randint(0, 4, (5,), generator=gen)
    pos = torch.randint(0, 6, (5, 1), generator=gen)
    width = {"(B, N) short": 3, "(B, N) long": 11, "(B,)": 1}[neg_shape]
    neg = torch.randint(0, 6, (5, width), generator=gen)
    if neg_shape == "(B,)":
        neg = neg[:, 0]

    separate, fused = (
        small_model(bias=bias, dtype=torch.float64, similarity=similarity) for _ in range(2)
    )
    expected = (
        separate(users, pos[:, 0]),
        separate(users[:, None] if neg.ndim == 2 else users, neg),
        separate.l2_regularization(users, pos, neg),
    )
    lookups = {"user": 0, "item": 0}
    for name in lookups:
        table = getattr(fused, f"{name}_embedding")
        table.register_forward_hook(
            lambda *_, name=name: lookups.__setitem__(name, lookups[name] + 1)
        )
    terms = fused.scores_and_l2(users, pos, neg)
    assert lookups == {"user": 1, "item": 1}
    assert terms.pos_scores.shape == (5,) and terms.neg_scores.shape == neg.shape
    for got, want in zip(terms, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # The same weighted sum of the three, differentiated both ways.
    weights = torch.linspace(0.5, 2.0, neg.numel(), dtype=torch.float64).view(neg.shape)
    (expected[0].sum() + (weights * expected[1]).sum() + 3 * expected[2]).backward()
    (terms.pos_scores.sum() + (weights * terms.neg_scores).sum() + 3 * terms.l2).backward()
    for want_p, got_p in zip(separate.parameters(), fused.parameters(), strict=True):
        assert want_p.grad is not None and got_p.grad is not None
        torch.testing.assert_close(got_p.grad, want_p.grad, rtol=1e-12, atol=1e-12)


def test_scores_and_l2_checks_like_l2_regularization() -> None:
    model = small_model()
    with pytest.raises(ValueError, match=r"pos_items must have shape \(B,\) or \(B, 1\)"):
        model.scores_and_l2(torch.tensor([0]), torch.tensor([[1, 2]]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="users is empty"):
        empty = torch.zeros(0, dtype=torch.int64)
        model.scores_and_l2(empty, empty, empty[:, None])
    with pytest.raises(TypeError, match="neg_items must be an integer tensor"):
        model.scores_and_l2(torch.tensor([0]), torch.tensor([1]), torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="MFModel has num_items=6"):
        model.scores_and_l2(torch.tensor([0]), torch.tensor([1]), torch.tensor([[6]]))


def test_l2_regularization_needs_integer_tensors() -> None:
    with pytest.raises(
        TypeError, match=r"neg_items must be an integer tensor of ids, got dtype torch\.float32"
    ):
        small_model().l2_regularization(torch.tensor([0]), torch.tensor([1]), torch.tensor([[1.0]]))


@given(
    st.lists(st.sampled_from([0, 1, 2, 3]), max_size=4),
    st.lists(st.sampled_from([0, 1, 2, 3]), max_size=4),
)
def test_broadcast_shapes_agrees_with_torch(a: list[int], b: list[int]) -> None:
    try:
        expected = torch.broadcast_shapes(torch.Size(a), torch.Size(b))  # type: ignore[no-untyped-call]
    except RuntimeError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError, match="do not broadcast"):
            negsample.models._broadcast_shapes(torch.Size(a), torch.Size(b))
    else:
        assert negsample.models._broadcast_shapes(torch.Size(a), torch.Size(b)) == expected


def test_out_of_range_ids_name_the_model_and_its_size() -> None:
    # A sampler over 6 items feeding a model of 4: the message says which side is smaller.
    model = MFModel(2, 4, dim=2)
    sampler = HardNegativeSampler(
        PositiveIndex.from_dict({0: [0], 1: [1]}, num_items=6), 5, 5, 0, generator=0
    )
    with pytest.raises(
        ValueError, match=r"^MFModel has num_items=4; items must be item ids in \[0, 4\), got [45]"
    ):
        sampler.sample(torch.tensor([0, 1]), model)
    with pytest.raises(ValueError, match=r"^MFModel has num_users=2; users must be user ids"):
        model.score_all(torch.tensor([2]))


# ---------------------------------------------------------------------- cosine similarity


def test_cosine_scores_are_cosines_of_the_embeddings_everywhere() -> None:
    torch.manual_seed(0)
    model = MFModel(4, 9, dim=5, similarity="cosine", bias=True)
    with torch.no_grad():
        model.item_bias.copy_(torch.linspace(-0.5, 0.5, 9))  # type: ignore[union-attr]
    u, i = model.user_embedding.weight.detach(), model.item_embedding.weight.detach()
    expected = (u @ i.T) / (u.norm(dim=1)[:, None] * i.norm(dim=1)[None, :])
    expected = expected + torch.linspace(-0.5, 0.5, 9)
    users = torch.arange(4)
    torch.testing.assert_close(model.score_all(users), expected)
    torch.testing.assert_close(model(users[:, None], torch.arange(9)[None, :]), expected)
    torch.testing.assert_close(model(users[:, None], torch.arange(9).expand(4, 9)), expected)
    torch.testing.assert_close(
        model(torch.tensor([1, 3]), torch.tensor([2, 8])), expected[[1, 3], [2, 8]]
    )
    top = model.recommend(users, k=3)
    assert torch.equal(top, torch.argsort(expected, dim=1, descending=True, stable=True)[:, :3])


def test_shared_row_matrix_product_equals_the_elementwise_scores() -> None:
    torch.manual_seed(1)
    for similarity in ("dot", "cosine"):
        model = MFModel(6, 20, dim=8, similarity=similarity)  # type: ignore[arg-type]
        users, items = torch.tensor([5, 0, 2]), torch.tensor([3, 3, 19, 0])
        shared = model(users[:, None], items[None, :])
        elementwise = model(
            users[:, None].expand(3, 4).contiguous(), items.expand(3, 4).contiguous()
        )
        torch.testing.assert_close(shared, elementwise)


def test_per_row_cosine_scores_and_gradients_equal_the_elementwise_ones() -> None:
    # (B, 1) users against (B, N) items divides the products by the item norms instead of
    # normalising the gathered (B, N, dim) vectors: the same values and gradients.
    users, items = torch.tensor([[1], [0], [3]]), torch.tensor([[2, 7, 7], [0, 8, 1], [5, 4, 3]])
    results = []
    for per_row in (True, False):
        torch.manual_seed(2)
        model = MFModel(4, 9, dim=6, similarity="cosine", dtype=torch.float64)
        with torch.no_grad():
            model.item_embedding.weight[7] = 0.0  # a zero vector scores 0, gradient finite
        rows = users if per_row else users.expand(3, 3).contiguous()
        scores = model(rows, items)
        scores.backward(torch.linspace(-1.0, 2.0, 9, dtype=torch.float64).view(3, 3))
        user_grad, item_grad = model.user_embedding.weight.grad, model.item_embedding.weight.grad
        assert user_grad is not None and item_grad is not None
        results.append((scores.detach(), user_grad, item_grad))
    for got, want in zip(*results, strict=True):
        assert bool(torch.isfinite(got).all())
        torch.testing.assert_close(got, want)
    assert results[0][0][0, 1].item() == 0.0


def test_cosine_of_a_zero_embedding_is_zero_not_nan() -> None:
    model = MFModel(2, 3, dim=4, similarity="cosine", init_std=0.0)
    assert model.score_all(torch.tensor([0, 1])).tolist() == [[0.0] * 3] * 2


def test_unknown_similarity_is_rejected() -> None:
    with pytest.raises(
        ValueError, match=r"similarity must be one of \('dot', 'cosine'\), got 'l2'"
    ):
        MFModel(2, 3, similarity="l2")  # type: ignore[arg-type]
    assert "similarity='cosine'" in repr(MFModel(2, 3, similarity="cosine"))


# ---------------------------------------------------------------------- candidate vectors


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("bias", [False, True])
def test_candidate_vectors_give_the_model_s_scores_and_gradients(
    similarity: str, bias: bool
) -> None:
    users, pos_items = torch.tensor([1, 0, 3]), torch.tensor([2, 2, 8])
    shared, own = torch.tensor([0, 5, 5, 7]), torch.tensor([[1, 3], [4, 4], [6, 0]])
    results = []
    for fused in (True, False):
        torch.manual_seed(3)
        model = MFModel(4, 9, dim=5, bias=bias, similarity=similarity, dtype=torch.float64)  # type: ignore[arg-type]
        if model.item_bias is not None:
            with torch.no_grad():
                model.item_bias.copy_(torch.linspace(-1.0, 1.0, 9))
        if fused:
            pos, u, items, rows = model.candidate_vectors(users, pos_items, shared, own)
            assert rows is not None
            neg = torch.cat([u @ items.T, (rows @ u[:, :, None]).squeeze(2)], dim=1)
        else:
            pos = model(users, pos_items)
            neg = torch.cat([model(users[:, None], shared[None, :]), model(users[:, None], own)], 1)
        (pos.sum() + (neg * torch.linspace(0.1, 1.0, 6, dtype=torch.float64)).sum()).backward()
        grads = [p.grad for p in model.parameters()]
        results.append([pos.detach(), neg.detach(), *grads])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want)


def test_candidate_vectors_take_user_vectors_of_your_own_and_check_shapes() -> None:
    model = MFModel(4, 9, dim=5)
    users, pos_items, shared = torch.tensor([1, 0]), torch.tensor([2, 3]), torch.tensor([4])
    mine = torch.ones(2, 5)
    vectors = model.candidate_vectors(users, pos_items, shared, user_vectors=mine)
    assert vectors.user_vectors is mine and vectors.row_vectors is None
    with pytest.raises(ValueError, match=r"user_vectors must have shape \(B, dim\)"):
        model.candidate_vectors(users, pos_items, shared, user_vectors=torch.ones(2, 4))
    with pytest.raises(ValueError, match="users and pos_items must be 1-D of one length"):
        model.candidate_vectors(users, torch.tensor([2]), shared)
    with pytest.raises(ValueError, match=r"row_items must have shape \(B, n\) with B=2"):
        model.candidate_vectors(users, pos_items, shared, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="items must be 1-D"):
        model.candidate_vectors(users, pos_items, shared[None, :])
    with pytest.raises(ValueError, match="num_items=9"):
        model.candidate_vectors(users, pos_items, torch.tensor([9]))


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width", [2, 7])
def test_rows_of_scores_without_gradients_equal_those_with(
    similarity: str, bias: bool, dtype: torch.dtype, width: int
) -> None:
    # Without gradients the CPU scores each user's row of items by a sampled matrix
    # product; with them, by a batched product of the gathered vectors.
    torch.manual_seed(0)
    model = MFModel(5, 9, dim=6, similarity=similarity, bias=bias, init_std=0.5, dtype=dtype)
    if bias:
        torch.nn.init.normal_(model.item_bias)
    users = torch.tensor([0, 3, 4, 4, 1, 2])
    items = torch.randint(0, 9, (6, width))
    items[0] = 8  # a row of one repeated item
    sparse = model._sparse_row_scores(users[:, None], items)
    with torch.no_grad():
        assert model._sparse_row_scores(users[:, None], items) == (
            similarity == "dot" or 2 * items.numel() >= 9
        )
        fast = model(users[:, None], items)
    assert not sparse  # gradients asked for: the gathered vectors
    gathered = model(users[:, None], items).detach()
    expected = (model.user_vectors(users)[:, None, :] * model.item_vectors(items)).sum(
        -1
    ).detach() + (model.item_bias[items].detach() if bias else 0)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert fast.dtype == dtype and fast.shape == items.shape
    torch.testing.assert_close(fast, gathered, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(fast, expected, rtol=tolerance, atol=tolerance)


def test_rows_of_scores_without_gradients_take_the_expanded_users_of_a_sampler() -> None:
    model = MFModel(4, 30, dim=3, similarity="cosine", validate=False)
    users = torch.tensor([2, 0, 3])
    items = torch.randint(0, 30, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expanded = model(users[:, None].expand(3, 12), items)
        assert model._sparse_row_scores(users[:, None], items)
        empty = model(
            torch.zeros((0, 1), dtype=torch.int64), torch.zeros((0, 12), dtype=torch.int64)
        )
    torch.testing.assert_close(expanded, model(users[:, None], items).detach())
    assert empty.shape == (0, 12)


def test_rows_of_scores_wider_than_the_catalogue() -> None:
    # More candidates per row than items (drawn with replacement): the gathered path.
    torch.manual_seed(3)
    model = MFModel(3, 2, dim=3, init_std=1.0)
    users, items = torch.tensor([0, 2]), torch.tensor([[0, 1, 1], [1, 0, 0]])
    with torch.no_grad():
        assert not model._sparse_row_scores(users[:, None], items)
        scores = model(users[:, None], items)
    weights = model.user_embedding.weight[users][:, None, :] * model.item_embedding.weight[items]
    torch.testing.assert_close(scores, weights.sum(-1).detach())


@pytest.mark.parametrize("bad", [-1, 30])
def test_rows_of_scores_without_gradients_refuse_ids_out_of_range(bad: int) -> None:
    # With validate=False the ids are not checked up front; the sampled product reads
    # the table without a bounds check of its own, so the model checks them first.
    model = MFModel(4, 30, dim=3, validate=False)
    items = torch.arange(24).view(2, 12)
    items[1, 5] = bad
    with torch.no_grad(), pytest.raises(IndexError, match=f"from {min(bad, 0)} to {max(bad, 23)}"):
        model(torch.tensor([[0], [1]]), items)


def _composite_vectors(weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.nn.functional.embedding(ids, weight), dim=-1)


def test_cosine_vectors_and_their_gradients_equal_the_composite() -> None:
    # MFModel normalises looked-up rows with a backward of its own; autograd's
    # backward of F.normalize(F.embedding(ids, weight)) is the oracle, in float64,
    # with repeated ids, a zero row (norm clamped to eps), a row just above eps.
    torch.manual_seed(0)
    model = MFModel(3, 6, dim=4, similarity="cosine", init_std=0.5, dtype=torch.float64)
    with torch.no_grad():
        model.item_embedding.weight[2] = 0.0
        model.item_embedding.weight[4] = torch.tensor([3e-12, 0.0, 0.0, 0.0])
    ids = torch.tensor([[0, 2, 2], [4, 5, 0]])
    grad = torch.randn(2, 3, 4, dtype=torch.float64)
    weight = model.item_embedding.weight
    ours = model.item_vectors(ids)
    (ours_grad,) = torch.autograd.grad(ours, weight, grad)
    theirs = _composite_vectors(weight, ids)
    (theirs_grad,) = torch.autograd.grad(theirs, weight, grad)
    torch.testing.assert_close(ours, theirs, rtol=1e-14, atol=0)
    others = [0, 1, 2, 3, 5]
    torch.testing.assert_close(ours_grad[others], theirs_grad[others], rtol=1e-12, atol=1e-300)
    # Just above eps the gradient is of order 1/|v| = 3e11 and its component along
    # the row cancels to rounding noise in both computations: compare at that scale.
    torch.testing.assert_close(ours_grad[4], theirs_grad[4], rtol=1e-12, atol=1e-4)
    assert bool(ours_grad[4].abs().max() > 1e10)
    assert bool(ours_grad[2].abs().max() > 0)  # the clamped row's gradient is g / eps


def test_cosine_vectors_have_exact_first_and_second_derivatives() -> None:
    torch.manual_seed(1)
    weight = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([1, 3, 1, 0])
    normalized = negsample.models._NormalizedRows.apply
    assert torch.autograd.gradcheck(lambda w: normalized(w, ids), (weight,))
    assert torch.autograd.gradgradcheck(lambda w: normalized(w, ids), (weight,))


def test_cosine_vectors_of_an_embedding_with_options_take_its_own_lookup() -> None:
    # A table with max_norm renormalises rows as it looks them up: not a plain lookup.
    torch.manual_seed(2)
    model = MFModel(3, 6, dim=4, similarity="cosine", init_std=2.0)
    plain = model.item_vectors(torch.tensor([1, 2]))
    model.item_embedding = torch.nn.Embedding(6, 4, max_norm=0.5)
    assert not negsample.models._plain_embedding(model.item_embedding)
    with torch.no_grad():
        model.item_embedding.weight.copy_(torch.randn(6, 4) * 2.0)
    expected = torch.nn.functional.normalize(
        torch.nn.functional.embedding(torch.tensor([1, 2]), model.item_embedding.weight.clone()),
        dim=-1,
    )
    torch.testing.assert_close(model.item_vectors(torch.tensor([1, 2])), expected)
    assert plain.shape == (2, 4)
