"""SharedNegativeSampler: the exact mask, in-batch negatives, draw frequencies, conventions.

Statistical tests: Pearson's chi-square at ALPHA = 0.001 with fixed seeds (so
deterministic); sample sizes are stated at each test.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from negsample import MFModel, PositiveIndex, SampledSoftmaxLoss, SharedNegativeSampler
from negsample import candidates as candidates_module
from negsample.samplers import _shared as shared_module
from tests.helpers import (
    DEVICES,
    NARROW_ID_DTYPES,
    SMALL_NARROW_ID_DTYPES,
    one_past_max,
    run_with_memory_cap,
)
from tests.strategies import Case, cases

ALPHA = 0.001
BACKENDS = ["vectorized", "reference"]


def brute_force_mask(case: Case, users: list[int], items: list[int]) -> list[list[bool]]:
    return [[item in case.positives[u] for item in items] for u in users]


@st.composite
def users_and_items(draw: st.DrawFn, case: Case) -> tuple[list[int], list[int]]:
    """Any users (including ones with every item or none); items with many repeats."""
    users = draw(st.lists(st.integers(0, len(case.positives) - 1), min_size=1, max_size=8))
    items = draw(st.lists(st.integers(0, case.num_items - 1), min_size=1, max_size=20))
    return users, items


# ---------------------------------------------------------------------- the mask


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data())
def test_mask_equals_brute_force_membership(backend: str, data: st.DataObject) -> None:
    case = data.draw(cases(allow_full=True))
    users, items = data.draw(users_and_items(case))
    sampler = SharedNegativeSampler(case.index, 4, backend=backend)  # type: ignore[arg-type]
    mask = sampler.mask(torch.tensor(users), torch.tensor(items))
    assert mask.dtype == torch.bool
    assert mask.tolist() == brute_force_mask(case, users, items)


@pytest.mark.parametrize(
    ("table_items", "per_positive"), [(0, 0), (2**40, 0)], ids=["search", "table"]
)
@given(data=st.data())
def test_compacting_mask_by_search_and_by_table_equal_brute_force(
    table_items: int, per_positive: int, data: st.DataObject
) -> None:
    # The CPU path finds the candidates among the rows' positives by a binary search, or by
    # a lookup in a table over the catalogue; force each in turn.
    case = data.draw(cases(allow_full=True))
    users, items = data.draw(users_and_items(case))
    sampler = SharedNegativeSampler(case.index, 4)
    original = (shared_module._TABLE_ITEMS, shared_module._TABLE_ITEMS_PER_POSITIVE)
    shared_module._TABLE_ITEMS, shared_module._TABLE_ITEMS_PER_POSITIVE = table_items, per_positive
    try:
        mask = sampler.mask(torch.tensor(users), torch.tensor(items))
        batch = sampler.in_batch(torch.tensor(users), torch.tensor(items[:1] * len(users)))
    finally:
        shared_module._TABLE_ITEMS, shared_module._TABLE_ITEMS_PER_POSITIVE = original
    assert mask.tolist() == brute_force_mask(case, users, items)
    assert batch.mask.tolist() == brute_force_mask(case, users, items[:1] * len(users))


@given(data=st.data())
def test_fixed_shape_mask_path_equals_the_compacting_one(data: st.DataObject) -> None:
    # Accelerators take the padded path; run it on the CPU by clearing the compacting devices.
    case = data.draw(cases(allow_full=True))
    users, items = data.draw(users_and_items(case))
    sampler = SharedNegativeSampler(case.index, 4)
    compact = sampler.mask(torch.tensor(users), torch.tensor(items))
    original = candidates_module._COMPACTING_DEVICES
    candidates_module._COMPACTING_DEVICES = ()
    try:
        padded = sampler.mask(torch.tensor(users), torch.tensor(items))
    finally:
        candidates_module._COMPACTING_DEVICES = original
    assert torch.equal(padded, compact)


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data())
def test_sample_masks_exactly_the_known_positives_it_drew(
    backend: str, data: st.DataObject
) -> None:
    case = data.draw(cases(allow_full=True))
    users, _ = data.draw(users_and_items(case))
    k = data.draw(st.integers(1, 30))
    sampler = SharedNegativeSampler(
        case.index, k, generator=data.draw(st.integers(0, 99)), backend=backend
    )  # type: ignore[arg-type]
    out = sampler.sample(torch.tensor(users))
    assert out.items.shape == (k,) and out.items.dtype == torch.int64
    assert out.mask.shape == (len(users), k)
    assert out.log_prob.shape == (k,)
    assert out.mask.tolist() == brute_force_mask(case, users, out.items.tolist())


def test_a_user_with_every_item_gets_an_all_masked_row_and_a_finite_zero_loss() -> None:
    index = PositiveIndex.from_dict({0: range(5), 1: [0]}, num_items=5)
    sampler = SharedNegativeSampler(index, 8, generator=0)
    users = torch.tensor([0, 1])
    out = sampler.sample(users)
    assert bool(out.mask[0].all())
    torch.manual_seed(0)
    model = MFModel(2, 5, dim=4, similarity="cosine")
    pos = model(users, torch.tensor([1, 0]))
    neg = model(users[:, None], out.items[None, :])
    losses = SampledSoftmaxLoss(0.1, reduction="none")(pos, neg, log_q=out.log_prob, mask=out.mask)
    assert losses[0].item() == 0.0
    losses.sum().backward()
    for p in model.parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())


def test_backends_return_identical_tensors_for_the_same_seed() -> None:
    index = PositiveIndex.from_pairs([0, 0, 1, 2, 2, 2], [1, 3, 0, 2, 3, 4], num_items=6)
    users = torch.tensor([2, 0, 1, 1])
    for kind in ({}, {"candidates": "popularity", "alpha": 0.5}):
        a = SharedNegativeSampler(index, 40, generator=3, backend="vectorized", **kind).sample(
            users
        )  # type: ignore[arg-type]
        b = SharedNegativeSampler(index, 40, generator=3, backend="reference", **kind).sample(users)  # type: ignore[arg-type]
        assert torch.equal(a.items, b.items) and torch.equal(a.mask, b.mask)
        assert torch.equal(a.log_prob, b.log_prob)


# ---------------------------------------------------------------------- in-batch negatives


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data())
def test_in_batch_masks_every_known_positive_of_the_row(backend: str, data: st.DataObject) -> None:
    case = data.draw(cases(allow_full=True))
    users, items = data.draw(users_and_items(case))
    pos_items = items[: len(users)] + [0] * (len(users) - len(items[: len(users)]))
    sampler = SharedNegativeSampler(case.index, 1, backend=backend)  # type: ignore[arg-type]
    out = sampler.in_batch(torch.tensor(users), torch.tensor(pos_items))
    assert torch.equal(out.items, torch.tensor(pos_items))
    assert out.mask.tolist() == brute_force_mask(case, users, pos_items)


def test_in_batch_log_prob_is_the_share_of_training_pairs() -> None:
    pairs_users = [0, 0, 1, 2, 2, 3]
    pairs_items = [0, 1, 1, 1, 2, 0]
    index = PositiveIndex.from_pairs(pairs_users, pairs_items, num_items=4)
    sampler = SharedNegativeSampler(index, 1)
    out = sampler.in_batch(torch.tensor([0, 2, 3]), torch.tensor([1, 2, 0]))
    share = {0: 2 / 6, 1: 3 / 6, 2: 1 / 6}
    expected = torch.tensor([math.log(share[i]) for i in (1, 2, 0)])
    torch.testing.assert_close(out.log_prob, expected)


def test_in_batch_log_prob_takes_any_integer_ids_and_checks_them() -> None:
    index = PositiveIndex.from_pairs([0, 1, 1], [2, 2, 0], num_items=3)
    sampler = SharedNegativeSampler(index, 1)
    expected = torch.tensor([[math.log(2 / 3)], [math.log(1 / 3)], [-math.inf]])
    for dtype in (torch.int64, torch.int16, torch.uint8, torch.uint16):
        items = torch.tensor([[2], [0], [1]], dtype=dtype)
        torch.testing.assert_close(sampler.in_batch_log_prob(items), expected)
    with pytest.raises(ValueError, match=r"items must be item ids in \[0, 3\), got 3"):
        sampler.in_batch_log_prob(torch.tensor([3]))


def test_in_batch_log_prob_of_an_index_without_interactions_is_minus_inf() -> None:
    sampler = SharedNegativeSampler(PositiveIndex.from_dict({0: []}, num_items=3), 1)
    log_prob = sampler.in_batch_log_prob(torch.tensor([0, 2]))
    assert torch.equal(log_prob, torch.full((2,), -math.inf))


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_batch_memory_grows_with_the_index_not_the_catalogue(backend: str) -> None:
    # A table over 2**31 - 1 items is 16 GiB; the three interactions need bytes. The child
    # may allocate 1 GiB past its size once the index is built (before the fix: killed).
    setup = f"""
        import math, torch
        from negsample import PositiveIndex, SharedNegativeSampler
        index = PositiveIndex.from_pairs([0, 0, 1], [5, 2**31 - 2, 5], num_items=2**31 - 1)
        sampler = SharedNegativeSampler(index, 4, backend={backend!r})
        """
    body = """
        out = sampler.in_batch(torch.tensor([0, 1, 0]), torch.tensor([5, 5, 2**31 - 2]))
        assert out.mask.tolist() == [[True, True, True], [True, True, False], [True, True, True]]
        expected = torch.tensor([math.log(2 / 3), math.log(2 / 3), math.log(1 / 3)])
        torch.testing.assert_close(out.log_prob, expected)
        torch.testing.assert_close(sampler.in_batch_log_prob(torch.tensor([7])), torch.tensor([-math.inf]))
        assert sampler.sample(torch.tensor([0, 1])).mask.shape == (2, 4)
        """
    run_with_memory_cap(setup, body, headroom=2**30)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_with_no_items_is_b_by_0(backend: str, device: str) -> None:
    index = PositiveIndex.from_dict({0: [1], 1: [0, 2]}, num_items=3).to(device)
    sampler = SharedNegativeSampler(index, 1, backend=backend)  # type: ignore[arg-type]
    users = torch.tensor([0, 1], device=device)
    mask = sampler.mask(users, torch.empty(0, dtype=torch.int64, device=device))
    assert mask.shape == (2, 0)
    assert mask.dtype == torch.bool
    assert mask.device == users.device


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", NARROW_ID_DTYPES)
def test_mask_and_in_batch_take_narrow_items_of_a_catalogue_past_their_max(
    backend: str, dtype: torch.dtype
) -> None:
    top = torch.iinfo(dtype).max
    index = PositiveIndex.from_dict({0: [1, top], 1: [0]}, num_items=one_past_max(dtype))
    sampler = SharedNegativeSampler(index, 2, backend=backend)  # type: ignore[arg-type]
    users, items = torch.tensor([0, 1]), torch.tensor([1, top], dtype=dtype)
    expected = [[True, True], [False, False]]
    assert sampler.mask(users, items).tolist() == expected
    out = sampler.in_batch(users, items)
    assert out.mask.tolist() == expected
    torch.testing.assert_close(out.log_prob, torch.full((2,), math.log(1 / 3)))


@pytest.mark.parametrize("dtype", SMALL_NARROW_ID_DTYPES)
def test_shared_sampler_takes_narrow_users_of_an_index_past_their_max(dtype: torch.dtype) -> None:
    top = torch.iinfo(dtype).max
    index = PositiveIndex.from_dict({top: [1]}, num_users=one_past_max(dtype), num_items=3)
    sampler = SharedNegativeSampler(index, 2)
    users = torch.tensor([top, 0], dtype=dtype)
    sampler.check_samplable(users)
    assert sampler.mask(users, torch.tensor([1, 2])).tolist() == [[True, False], [False, False]]


# ---------------------------------------------------------------------- draws and log q


def popularity_index() -> PositiveIndex:
    # Popularity of items 0..5: 4, 2, 1, 0, 3, 1 (item 3: nobody's, weight 0 when alpha > 0).
    pairs = {0: [0, 1, 4], 1: [0, 2, 4], 2: [0, 1, 5], 3: [0, 4]}
    return PositiveIndex.from_dict(pairs, num_items=6)


@pytest.mark.parametrize(
    ("kind", "weights"),
    [
        ({}, [1.0] * 6),
        ({"candidates": "popularity", "alpha": 1.0}, [4.0, 2.0, 1.0, 0.0, 3.0, 1.0]),
        (
            {"candidates": "popularity", "alpha": 0.5},
            [4**0.5, 2**0.5, 1.0, 0.0, 3**0.5, 1.0],
        ),
    ],
)
def test_candidates_follow_the_catalogue_distribution(
    kind: dict[str, Any], weights: list[float]
) -> None:
    # 200 calls x 500 candidates = 10^5 draws: the smallest non-zero cell expects >= 7,000,
    # so a 1% shift of probability mass between cells is detected with power ~1 at ALPHA.
    sampler = SharedNegativeSampler(popularity_index(), 500, generator=11, **kind)
    counts: Counter[int] = Counter()
    for _ in range(200):
        counts.update(sampler.sample(torch.tensor([0])).items.tolist())
    total = sum(weights)
    probs = {i: w / total for i, w in enumerate(weights) if w > 0}
    assert set(counts) <= set(probs), "an item of weight 0 was drawn"
    n = sum(counts.values())
    observed = [counts[i] for i in sorted(probs)]
    expected = [probs[i] * n for i in sorted(probs)]
    assert stats.chisquare(observed, expected).pvalue > ALPHA
    out = sampler.sample(torch.tensor([0]))
    expected_log = torch.tensor([math.log(probs[i]) for i in out.items.tolist()])
    torch.testing.assert_close(out.log_prob, expected_log)


def test_the_frequency_check_rejects_the_wrong_alpha() -> None:
    # The same test as above must fail for draws from alpha=1 judged against alpha=0.5.
    sampler = SharedNegativeSampler(
        popularity_index(), 500, generator=11, candidates="popularity", alpha=1.0
    )
    counts: Counter[int] = Counter()
    for _ in range(200):
        counts.update(sampler.sample(torch.tensor([0])).items.tolist())
    weights = {0: 2.0, 1: 2**0.5, 2: 1.0, 4: 3**0.5, 5: 1.0}
    total = sum(weights.values())
    n = sum(counts.values())
    observed = [counts[i] for i in sorted(weights)]
    expected = [weights[i] / total * n for i in sorted(weights)]
    assert stats.chisquare(observed, expected).pvalue < ALPHA


# ---------------------------------------------------------------------- conventions


def test_same_seed_same_negatives_and_state_dict_resumes() -> None:
    index = popularity_index()
    users = torch.tensor([0, 3, 1])
    a = SharedNegativeSampler(index, 16, generator=5)
    b = SharedNegativeSampler(index, 16, generator=5)
    first_a, first_b = a.sample(users), b.sample(users)
    assert torch.equal(first_a.items, first_b.items) and torch.equal(first_a.mask, first_b.mask)
    state = a.state_dict()
    ahead = a.sample(users)
    resumed = SharedNegativeSampler(index, 16, generator=5)
    resumed.sample(users)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.sample(users).items, ahead.items)
    assert not torch.equal(ahead.items, first_a.items)


@pytest.mark.parametrize("device", DEVICES)
def test_outputs_live_on_the_index_device(device: str) -> None:
    index = popularity_index().to(device)
    sampler = SharedNegativeSampler(index, 7, generator=0, candidates="popularity")
    out = sampler.sample(torch.tensor([0, 1], device=device))
    assert out.items.device == out.mask.device == out.log_prob.device == torch.device(device)
    expected = [[i in p for i in out.items.tolist()] for p in ({0, 1, 4}, {0, 2, 4})]
    assert out.mask.tolist() == expected


def test_fixed_shape_path_reads_nothing_back_without_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = popularity_index()
    users, pos_items = torch.tensor([0, 3, 1]), torch.tensor([0, 4, 2])
    monkeypatch.setattr(candidates_module, "_COMPACTING_DEVICES", ())
    for kind in ({}, {"candidates": "popularity"}):
        sampler = SharedNegativeSampler(index, 9, generator=0, validate=False, **kind)  # type: ignore[arg-type]
        sampler.in_batch(users, pos_items)  # builds the popularity counts once, outside the check

        def host_sync(*args: object, **kwargs: object) -> None:
            raise AssertionError("host synchronisation")

        with monkeypatch.context() as m:
            for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__"):
                m.setattr(torch.Tensor, name, host_sync)
            for name in ("nonzero", "masked_select", "repeat_interleave"):
                m.setattr(torch, name, host_sync)
                m.setattr(torch.Tensor, name, host_sync)
            out = sampler.sample(users)
            batch = sampler.in_batch(users, pos_items)
        assert out.mask.shape == (3, 9) and batch.mask.shape == (3, 3)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda s: s.sample(torch.tensor([0, 9])),
            ValueError,
            r"users must be user ids in \[0, 4\), got 9",
        ),
        (lambda s: s.sample(torch.tensor([[0]])), ValueError, "users must be a 1-D tensor"),
        (lambda s: s.sample(torch.tensor([0.0])), TypeError, "users must hold integer ids"),
        (
            lambda s: s.mask(torch.tensor([0]), torch.tensor([6])),
            ValueError,
            r"items must be item ids in \[0, 6\), got 6",
        ),
        (
            lambda s: s.mask(torch.tensor([0]), torch.tensor([[1]])),
            ValueError,
            "items must be a 1-D tensor",
        ),
        (
            lambda s: s.in_batch(torch.tensor([0, 1]), torch.tensor([1])),
            ValueError,
            "one item per user",
        ),
    ],
)
def test_bad_calls_raise_clear_errors(call: Any, error: type[Exception], match: str) -> None:
    sampler = SharedNegativeSampler(popularity_index(), 3, generator=0)
    with pytest.raises(error, match=match):
        call(sampler)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_negatives": 0}, ValueError, "num_negatives"),
        ({"num_negatives": 2.5}, TypeError, "num_negatives"),
        ({"num_negatives": 2, "candidates": "zipf"}, ValueError, "candidates must be one of"),
        ({"num_negatives": 2, "alpha": 0.5}, ValueError, "only applies to candidates='popularity'"),
        (
            {"num_negatives": 2, "candidates": "popularity", "alpha": 2.0},
            ValueError,
            "alpha must be in",
        ),
        ({"num_negatives": 2, "backend": "fast"}, ValueError, "backend must be one of"),
        (
            {
                "num_negatives": 2,
                "candidates": "popularity",
                "index": PositiveIndex.from_dict({}, num_items=3, num_users=2),
            },
            ValueError,
            "every item weight 0",
        ),
    ],
)
def test_bad_options_raise_clear_errors(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    kwargs = dict(kwargs)
    index = kwargs.pop("index", popularity_index())
    with pytest.raises(error, match=match):
        SharedNegativeSampler(index, **kwargs)


def test_repr_names_the_options() -> None:
    sampler = SharedNegativeSampler(popularity_index(), 3, candidates="popularity", alpha=0.5)
    assert repr(sampler) == (
        "SharedNegativeSampler(num_negatives=3, candidates='popularity', alpha=0.5, "
        "backend='vectorized', validate=True)"
    )


def test_mask_work_does_not_grow_with_the_other_users_interactions() -> None:
    # The mask searches the batch users' positives only: a batch of light users next to a
    # huge user gives the same mask as in an index without that user (and runs no B x K
    # search over all interactions, which would touch the huge row).
    light = {0: [1, 5], 1: [2]}
    big = dict(light)
    big[2] = list(range(0, 200_000, 2))
    small_index = PositiveIndex.from_dict(light, num_items=200_000)
    big_index = PositiveIndex.from_dict(big, num_items=200_000)
    items = torch.tensor([5, 2, 4, 1, 5])
    users = torch.tensor([0, 1])
    expected = SharedNegativeSampler(small_index, 1).mask(users, items)
    assert torch.equal(SharedNegativeSampler(big_index, 1).mask(users, items), expected)
    assert expected.tolist() == [
        [True, False, False, True, True],
        [False, True, False, False, False],
    ]
    assert np.array_equal(
        SharedNegativeSampler(big_index, 1).mask(torch.tensor([2]), items).numpy(),
        np.array([[False, True, True, False, False]]),
    )


def test_check_samplable_accepts_full_users_and_rejects_bad_ids() -> None:
    index = PositiveIndex.from_dict({0: range(3), 1: [0]}, num_items=3)
    sampler = SharedNegativeSampler(index, 2, validate=False)
    sampler.check_samplable([0, 1])  # user 0 has every item: an all-masked row, not an error
    sampler.check_samplable()
    with pytest.raises(ValueError, match=r"users must be user ids in \[0, 2\), got 5"):
        sampler.check_samplable([5])
