"""The samplers: never a positive, reference == vectorized, determinism, shapes, errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import negsample.candidates as candidates_module
from negsample import (
    NO_NEGATIVE,
    EmptyComplementError,
    HardNegativeSampler,
    PositiveIndex,
    UniformSampler,
)
from negsample.samplers import HardDraws, hard_negatives
from tests.helpers import CUDA, DEVICES
from tests.strategies import (
    SELECTIONS,
    Case,
    batches,
    cases,
    item_ids,
    selection_settings,
    table_scorer,
    tie_tables,
)

BACKENDS = ["reference", "vectorized"]


@st.composite
def hard_configs(draw: st.DrawFn) -> tuple[int, int, int]:
    """(num_candidates, num_hard, num_random) with 1 <= hard + random <= candidates."""
    num_candidates = draw(st.integers(1, 6))
    total = draw(st.integers(1, num_candidates))
    num_hard = draw(st.integers(0, total))
    return num_candidates, num_hard, total - num_hard


@st.composite
def draws_for(draw: st.DrawFn, batch: int, num_candidates: int) -> HardDraws:
    """Arbitrary draws; slot keys from a tiny range so that ties between keys happen."""
    bits = st.integers(0, 2**62 - 1)
    cand = draw(st.lists(bits, min_size=batch * num_candidates, max_size=batch * num_candidates))
    keys = draw(
        st.lists(
            st.one_of(st.integers(0, 3), bits),
            min_size=batch * num_candidates,
            max_size=batch * num_candidates,
        )
    )
    shape = (batch, num_candidates)
    return HardDraws(torch.tensor(cand).reshape(shape), torch.tensor(keys).reshape(shape))


@st.composite
def selection_inputs(
    draw: st.DrawFn,
    selection: str,
    case: Case,
    users: torch.Tensor,
    num_candidates: int,
    num_hard: int,
) -> tuple[dict[str, Any], HardDraws]:
    """Arguments of ``hard_negatives`` for ``selection``, with draws that carry what it needs.

    Softmax and DNS(M, N) draws get ``selection_bits`` (from a tiny range at times, so
    that DNS's keys tie), AHNS a positive item per row.
    """
    settings = draw(selection_settings(selection, num_candidates, num_hard))
    draws = draw(draws_for(users.numel(), num_candidates))
    if selection in ("softmax", "dns_mn"):
        bits = draw(draws_for(users.numel(), num_candidates)).slot_keys
        draws = HardDraws(draws.candidate_bits, draws.slot_keys, bits)
    if selection == "ahns":
        settings["positives"] = draw(item_ids(case.num_items, users.numel()))
    return settings, draws


def assert_no_positive(case: Case, users: torch.Tensor, negatives: torch.Tensor) -> None:
    for user, row in zip(users.tolist(), negatives.tolist(), strict=True):
        hits = case.positives[user].intersection(row)
        assert not hits, f"user {user} got known positives {hits} among {row}"


# ---------------------------------------------------------------------- never a known positive


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data(), case=cases(), config=hard_configs(), seed=st.integers(0, 2**32))
def test_hard_negatives_are_never_known_positives(
    selection: str,
    backend: str,
    data: st.DataObject,
    case: Case,
    config: tuple[int, int, int],
    seed: int,
) -> None:
    users = data.draw(batches(case))
    table = data.draw(tie_tables(case.index.num_users, case.num_items))
    num_candidates, num_hard, num_random = config
    settings = data.draw(selection_settings(selection, num_candidates, num_hard))
    sampler = HardNegativeSampler(
        case.index,
        num_candidates,
        num_hard,
        num_random,
        backend=backend,  # type: ignore[arg-type]
        generator=seed,
        **settings,
    )
    positives = data.draw(item_ids(case.num_items, users.numel())) if selection == "ahns" else None
    negatives = sampler.sample(users, table_scorer(table), positives=positives)
    assert negatives.shape == (users.numel(), num_hard + num_random)
    assert negatives.dtype == torch.int64
    assert_no_positive(case, users, negatives)


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data(), case=cases(), k=st.integers(1, 5), seed=st.integers(0, 2**32))
def test_uniform_negatives_are_never_known_positives(
    backend: str, data: st.DataObject, case: Case, k: int, seed: int
) -> None:
    users = data.draw(batches(case))
    sampler = UniformSampler(case.index, k, backend=backend, generator=seed)  # type: ignore[arg-type]
    negatives = sampler.sample(users)
    assert negatives.shape == (users.numel(), k)
    assert negatives.dtype == torch.int64
    assert_no_positive(case, users, negatives)


# ---------------------------------------------------------------------- users with nothing to draw


def drawable(case: Case, candidates: dict[str, Any], user: int) -> bool:
    """Whether the candidate distribution has an item for ``user``, from the definition."""
    complement = case.complement(user)
    if candidates.get("candidates", "uniform") == "uniform":
        return bool(complement)
    popularity = [sum(i in p for p in case.positives) for i in range(case.num_items)]
    return any(float(popularity[i]) ** candidates["alpha"] > 0 for i in complement)


CANDIDATES: list[dict[str, Any]] = [
    {},
    {"candidates": "popularity", "alpha": 0.0},
    {"candidates": "popularity", "alpha": 0.5},
    {"candidates": "popularity", "alpha": 1.0},
]


@pytest.mark.parametrize("compacting", [True, False], ids=["cpu-path", "fixed-shape-path"])
@pytest.mark.parametrize("backend", BACKENDS)
@given(
    data=st.data(),
    case=cases(allow_full=True),
    candidates=st.sampled_from(CANDIDATES),
    seed=st.integers(0, 2**32),
)
def test_without_validation_a_user_with_nothing_to_draw_gets_no_negative_never_a_positive(
    compacting: bool,
    backend: str,
    data: st.DataObject,
    case: Case,
    candidates: dict[str, Any],
    seed: int,
) -> None:
    # Any users, including ones whose positives cover the catalogue and, by popularity,
    # ones whose non-positives all weigh 0 (nobody's positive, alpha > 0).
    users = torch.tensor(
        data.draw(st.lists(st.integers(0, case.index.num_users - 1), min_size=1, max_size=8))
    )
    config = data.draw(hard_configs())
    selection = data.draw(st.sampled_from(SELECTIONS), label="selection")
    settings = data.draw(selection_settings(selection, config[0], config[1]))
    positives = data.draw(item_ids(case.num_items, users.numel())) if selection == "ahns" else None
    table = data.draw(tie_tables(case.index.num_users, case.num_items))
    kwargs: dict[str, Any] = {"backend": backend, "generator": seed, "validate": False}
    hard = HardNegativeSampler(case.index, *config, **candidates, **settings, **kwargs)
    uniform = UniformSampler(case.index, 3, **candidates, **kwargs)
    with pytest.MonkeyPatch.context() as patch:
        if not compacting:
            patch.setattr(candidates_module, "_COMPACTING_DEVICES", ())
        info = hard.sample(users, table_scorer(table), positives=positives, return_info=True)
        uniform_info = uniform.sample(users, return_info=True)
    for out in (info, uniform_info):
        assert_no_positive(case, users, out.items)
        for user, row, log_prob in zip(users.tolist(), out.items, out.log_prob, strict=True):
            if drawable(case, candidates, user):
                assert bool((row >= 0).all()) and bool(torch.isfinite(log_prob).all()), (user, row)
            else:
                assert row.tolist() == [NO_NEGATIVE] * row.numel(), (user, row)
                assert bool(torch.isnan(log_prob).all())
    assert info.scores is not None
    assert torch.equal(torch.isnan(info.scores), info.items == NO_NEGATIVE)
    undrawable = sorted({u for u in users.tolist() if not drawable(case, candidates, u)})
    for sampler in (hard, uniform):
        if undrawable:
            with pytest.raises(EmptyComplementError) as err:
                sampler.check_samplable(users)
            assert err.value.users == undrawable
        else:
            sampler.check_samplable(users)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_issue_case_a_complement_of_weightless_items_gets_no_negative(backend: str) -> None:
    # Users 0 and 1 have items 0..6; item 7 is nobody's positive, so by popularity it weighs 0
    # and user 1 has nothing to draw, although its complement (item 7) is not empty.
    index = PositiveIndex.from_dict({0: range(7), 1: range(7)}, num_items=8)
    users = torch.tensor([1, 1])
    kwargs: dict[str, Any] = {"candidates": "popularity", "backend": backend, "generator": 0}
    uniform = UniformSampler(index, 4, validate=False, **kwargs)
    hard = HardNegativeSampler(index, 4, 1, 1, validate=False, **kwargs)
    assert uniform.sample(users).tolist() == [[NO_NEGATIVE] * 4] * 2
    assert hard.sample(users, _ones).tolist() == [[NO_NEGATIVE] * 2] * 2
    index.check_samplable(users)  # the index's own check knows nothing of weights
    for sampler in (uniform, hard):
        with pytest.raises(
            EmptyComplementError, match="user 1 has no non-positive item of non-zero weight"
        ):
            sampler.check_samplable(users)
        with pytest.raises(EmptyComplementError) as err:
            sampler.check_samplable()  # every user of the index
        assert err.value.users == [0, 1]
    with pytest.raises(EmptyComplementError, match="user 1 has no non-positive item"):
        UniformSampler(index, 4, **kwargs).sample(users)  # validated: a clear error


def test_check_samplable_checks_ids_and_accepts_lists() -> None:
    sampler = UniformSampler(_index(), 1)
    sampler.check_samplable([1, 2])
    with pytest.raises(ValueError, match=r"users must be user ids in \[0, 3\), got 3"):
        sampler.check_samplable([1, 3])
    with pytest.raises(TypeError, match="users must hold integer ids"):
        sampler.check_samplable([1.5])
    with pytest.raises(EmptyComplementError, match="user 0 has every one of the 3 items"):
        sampler.check_samplable()


# ---------------------------------------------------------------------- identical on identical draws


@pytest.mark.parametrize("selection", SELECTIONS)
@given(data=st.data(), case=cases(), config=hard_configs())
def test_reference_and_vectorized_agree_exactly_on_the_same_draws(
    selection: str, data: st.DataObject, case: Case, config: tuple[int, int, int]
) -> None:
    users = data.draw(batches(case)).long()
    num_candidates, num_hard, num_random = config
    settings, draws = data.draw(selection_inputs(selection, case, users, num_candidates, num_hard))
    scorer = table_scorer(data.draw(tie_tables(case.index.num_users, case.num_items)))
    kwargs: dict[str, Any] = {
        "num_hard": num_hard,
        "num_random": num_random,
        "return_info": True,
        **settings,
    }
    reference = hard_negatives(case.index, users, scorer, draws, backend="reference", **kwargs)
    vectorized = hard_negatives(case.index, users, scorer, draws, backend="vectorized", **kwargs)
    assert torch.equal(reference.items, vectorized.items), (reference.items, vectorized.items)
    assert reference.scores is not None and vectorized.scores is not None
    assert torch.equal(reference.scores, vectorized.scores)
    assert torch.equal(reference.is_hard, vectorized.is_hard)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@given(
    data=st.data(),
    case=cases(),
    config=hard_configs(),
    selection=st.sampled_from(SELECTIONS),
)
def test_backends_agree_on_nan_and_infinite_scores_without_validation(
    dtype: torch.dtype,
    data: st.DataObject,
    case: Case,
    config: tuple[int, int, int],
    selection: str,
) -> None:
    # For AHNS the positives' scores come from the same table: NaN and infinite targets too.
    users = data.draw(batches(case)).long()
    num_candidates, num_hard, num_random = config
    settings, draws = data.draw(selection_inputs(selection, case, users, num_candidates, num_hard))
    table = data.draw(tie_tables(case.index.num_users, case.num_items, nan=True, dtype=dtype))
    kwargs: dict[str, Any] = {
        "num_hard": num_hard,
        "num_random": num_random,
        "validate": False,
        **settings,
    }
    outputs = [
        hard_negatives(case.index, users, table_scorer(table), draws, backend=b, **kwargs)
        for b in BACKENDS
    ]
    assert torch.equal(outputs[0], outputs[1]), outputs


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nan_ranks_above_infinity_and_signed_zeros_tie(backend: str, dtype: torch.dtype) -> None:
    index = PositiveIndex.from_dict({}, num_users=1, num_items=6)
    # n = 6 and no positives: candidate slot j holds item j.
    draws = HardDraws(torch.arange(6)[None], torch.zeros(1, 6, dtype=torch.int64))
    scores = torch.tensor([-math.inf, 0.0, math.nan, -0.0, math.inf, math.nan], dtype=dtype)
    out = hard_negatives(
        index,
        torch.tensor([0]),
        lambda u, i: scores[i],
        draws,
        num_hard=6,
        num_random=0,
        backend=backend,  # type: ignore[arg-type]
        validate=False,
    )
    assert out.tolist() == [[2, 5, 4, 1, 3, 0]]


@pytest.mark.parametrize("selection", SELECTIONS)
@given(case=cases(), config=hard_configs(), seed=st.integers(0, 2**32), data=st.data())
def test_a_seed_gives_the_same_negatives_on_either_backend(
    selection: str, case: Case, config: tuple[int, int, int], seed: int, data: st.DataObject
) -> None:
    users = data.draw(batches(case))
    scorer = table_scorer(data.draw(tie_tables(case.index.num_users, case.num_items)))
    settings = data.draw(selection_settings(selection, config[0], config[1]))
    positives = data.draw(item_ids(case.num_items, users.numel())) if selection == "ahns" else None
    outputs = [
        HardNegativeSampler(case.index, *config, backend=b, generator=seed, **settings).sample(  # type: ignore[arg-type]
            users, scorer, positives=positives
        )
        for b in BACKENDS
    ]
    assert torch.equal(outputs[0], outputs[1])
    uniform = [
        UniformSampler(case.index, 3, backend=b, generator=seed).sample(users)  # type: ignore[arg-type]
        for b in BACKENDS
    ]
    assert torch.equal(uniform[0], uniform[1])


def test_hard_part_takes_the_highest_scores_first_and_ties_go_to_the_lower_slot() -> None:
    index = PositiveIndex.from_dict({}, num_users=1, num_items=6)
    # Candidate slots hold items 5, 1, 3, 4, 2 (n = 6, so bits are the ranks themselves).
    draws = HardDraws(torch.tensor([[5, 1, 3, 4, 2]]), torch.tensor([[0, 9, 2, 1, 7]]))
    scores = torch.tensor([0.0, 2.0, 0.5, 2.0, 1.0, 3.0])  # items 1 and 3 tie at 2.0

    def scorer(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return scores[items]

    for backend in BACKENDS:
        out = hard_negatives(
            index,
            torch.tensor([0]),
            scorer,
            draws,
            num_hard=3,
            num_random=2,
            backend=backend,  # type: ignore[arg-type]
        )
        # hard: item 5 (3.0), then the 2.0 tie in slot order: item 1 (slot 1) before item 3 (slot 2).
        # random: of the free slots 3 (key 1) and 4 (key 7), smallest key first.
        assert out.tolist() == [[5, 1, 3, 4, 2]]


# ---------------------------------------------------------------------- determinism and generators


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_stream_and_different_seeds_differ(backend: str) -> None:
    index = PositiveIndex.from_pairs([0, 0, 1, 2], [3, 4, 0, 9], num_items=200)
    users = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1])

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.sin(u * 7.0 + i)

    def run(seed: int) -> list[torch.Tensor]:
        sampler = HardNegativeSampler(index, 8, 2, 2, backend=backend, generator=seed)  # type: ignore[arg-type]
        return [sampler.sample(users, scorer) for _ in range(3)]

    first, again, other = run(11), run(11), run(12)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], first[1]), "the stream must advance between calls"
    assert not torch.equal(first[0], other[0])


def test_a_torch_generator_is_used_and_advanced() -> None:
    index = PositiveIndex.from_pairs([0], [1], num_items=1000)
    users = torch.zeros(16, dtype=torch.int64)
    gen_a = torch.Generator().manual_seed(5)
    gen_b = torch.Generator().manual_seed(5)
    a = UniformSampler(index, 4, generator=gen_a).sample(users)
    b = UniformSampler(index, 4, generator=gen_b).sample(users)
    assert torch.equal(a, b)
    assert not torch.equal(gen_a.get_state(), torch.Generator().manual_seed(5).get_state())


def test_without_a_generator_torch_manual_seed_reproduces() -> None:
    index = PositiveIndex.from_pairs([0], [1], num_items=1000)
    users = torch.zeros(16, dtype=torch.int64)
    torch.manual_seed(0)
    a = UniformSampler(index, 4).sample(users)
    torch.manual_seed(0)
    b = UniformSampler(index, 4).sample(users)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------- shapes, devices, scorer contract


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_output_lives_on_the_users_device(device: str, backend: str) -> None:
    index = PositiveIndex.from_pairs([0, 1, 1], [0, 1, 2], num_items=10).to(device)
    users = torch.tensor([0, 1, 1, 0], device=device)
    table = torch.rand(2, 10, device=device)
    hard = HardNegativeSampler(index, 5, 1, 2, backend=backend, generator=0)  # type: ignore[arg-type]
    out = hard.sample(users, table_scorer(table))
    assert out.device.type == device and out.shape == (4, 3)
    assert not bool(index.contains(users[:, None], out).any())
    uniform = UniformSampler(index, 2, backend=backend, generator=0).sample(users)  # type: ignore[arg-type]
    assert uniform.device.type == device and uniform.shape == (4, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend: str) -> None:
    index = PositiveIndex.from_pairs([0], [0], num_items=3)
    calls = []

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        calls.append(i.shape)
        return i.float()

    sampler = HardNegativeSampler(index, 3, 2, 1, backend=backend, generator=0)  # type: ignore[arg-type]
    out = sampler.sample(torch.empty(0, dtype=torch.int64), scorer)
    assert out.shape == (0, 3) and out.dtype == torch.int64
    assert calls == []
    assert UniformSampler(index, 2, backend=backend).sample(
        torch.tensor([], dtype=torch.int32)
    ).shape == (0, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_scorer_is_called_without_grad_on_same_shape_integer_tensors(backend: str) -> None:
    index = PositiveIndex.from_pairs([0, 1], [0, 1], num_items=10)
    weights = torch.randn(10, requires_grad=True)
    seen = []

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        seen.append((torch.is_grad_enabled(), u.shape == i.shape, u.dtype, i.dtype))
        return weights[i] + u

    users = torch.tensor([0, 1, 1], dtype=torch.int32)
    HardNegativeSampler(index, 4, 1, 1, backend=backend, generator=0).sample(users, scorer)  # type: ignore[arg-type]
    assert seen and all(s == (False, True, torch.int64, torch.int64) for s in seen)


def test_an_mf_style_module_is_a_scorer() -> None:
    torch.manual_seed(0)
    users_emb = torch.nn.Embedding(3, 4)
    items_emb = torch.nn.Embedding(20, 4)

    class Dot(torch.nn.Module):
        def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            return (users_emb(u) * items_emb(i)).sum(-1)

    index = PositiveIndex.from_pairs([0, 1, 2], [3, 4, 5], num_items=20)
    model = Dot()
    users = torch.tensor([0, 1, 2, 2])

    def as_function(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return (users_emb.weight[u] * items_emb.weight[i]).sum(-1)

    out = HardNegativeSampler(index, 8, 2, 1, generator=0).sample(users, model)
    same = HardNegativeSampler(index, 8, 2, 1, generator=0).sample(users, as_function)
    assert torch.equal(out, same)
    assert not bool(index.contains(users[:, None], out).any())
    assert all(p.grad is None for p in (users_emb.weight, items_emb.weight))


# ---------------------------------------------------------------------- sync-free vectorized path


STRATEGIES: list[dict[str, Any]] = [
    {},
    {"candidates": "popularity", "alpha": 0.0},
    {"candidates": "popularity", "alpha": 0.5, "selection": "softmax", "temperature": 0.3},
    {"selection": "dns_mn", "top_n": 3},
    {"candidates": "popularity", "alpha": 0.0, "selection": "ahns"},
]


SYNCHRONISING_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")
"""Tensor methods that read values back to the host (a synchronisation on an accelerator)."""


def _host_sync(*args: object, **kwargs: object) -> None:
    raise AssertionError("host synchronisation in the vectorized path")


def _sample_without_validation(
    strategy: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    forbid_more: Callable[[], None] = lambda: None,
) -> None:
    """Sample (hard, uniform, with info) with ``validate=False``, reading nothing back.

    The samplers are built first (building reads the index); then the methods in
    :data:`SYNCHRONISING_METHODS` and whatever ``forbid_more`` patches raise.
    """
    index = PositiveIndex.from_pairs([0, 1, 1], [0, 1, 2], num_items=50)
    users = torch.tensor([0, 1, 1, 0])
    table = torch.rand(2, 50)
    hard = HardNegativeSampler(index, 6, 2, 2, generator=0, validate=False, **strategy)
    candidates = {k: v for k, v in strategy.items() if k in ("candidates", "alpha")}
    uniform = UniformSampler(index, 3, generator=0, validate=False, **candidates)
    for name in SYNCHRONISING_METHODS:
        monkeypatch.setattr(torch.Tensor, name, _host_sync)
    positives = torch.tensor([0, 1, 2, 0]) if strategy.get("selection") == "ahns" else None
    forbid_more()
    out_hard = hard.sample(users, table_scorer(table), positives=positives)
    out_uniform = uniform.sample(users)
    info = hard.sample(users, table_scorer(table), positives=positives, return_info=True)
    monkeypatch.undo()
    assert out_hard.shape == (4, 4) and out_uniform.shape == (4, 3)
    assert info.log_prob.shape == (4, 4)
    assert not bool(index.contains(users[:, None], out_hard).any())
    assert not bool(index.contains(users[:, None], out_uniform).any())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_vectorized_path_does_not_read_values_back_when_validation_is_off(
    monkeypatch: pytest.MonkeyPatch, strategy: dict[str, Any]
) -> None:
    # The fixed-shape path every non-CPU device takes: no compaction of the flagged draws,
    # so no data-dependent shapes either (nonzero, masked_select, boolean-mask indexing).
    monkeypatch.setattr(candidates_module, "_COMPACTING_DEVICES", ())
    getitem = torch.Tensor.__getitem__

    def no_boolean_mask(self: torch.Tensor, key: Any) -> Any:
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, torch.Tensor) and k.dtype == torch.bool for k in keys):
            raise AssertionError("boolean-mask indexing (a data-dependent shape)")
        return getitem(self, key)

    def forbid_data_dependent_shapes() -> None:
        for name in ("nonzero", "masked_select"):
            monkeypatch.setattr(torch, name, _host_sync)
            monkeypatch.setattr(torch.Tensor, name, _host_sync)
        monkeypatch.setattr(torch.Tensor, "__getitem__", no_boolean_mask)

    _sample_without_validation(strategy, monkeypatch, forbid_data_dependent_shapes)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_default_cpu_path_does_not_read_values_back_when_validation_is_off(
    monkeypatch: pytest.MonkeyPatch, strategy: dict[str, Any]
) -> None:
    # On CPU uniform candidates compact the draws the filter flags (torch.nonzero); that is
    # allowed there, reading values back is not.
    calls = []
    replace_flagged = candidates_module._replace_flagged

    def counted(*args: Any) -> torch.Tensor:
        calls.append(1)
        return replace_flagged(*args)  # type: ignore[no-any-return]

    monkeypatch.setattr(candidates_module, "_replace_flagged", counted)
    _sample_without_validation(strategy, monkeypatch)
    if strategy.get("candidates", "uniform") == "uniform":
        assert len(calls) == 3, "the compacting CPU path was not taken"  # hard, uniform, info


def test_validation_does_read_values_so_the_patch_above_is_effective(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = PositiveIndex.from_pairs([0], [0], num_items=5)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("host synchronisation")

    monkeypatch.setattr(torch.Tensor, "__bool__", forbidden)
    with pytest.raises(AssertionError, match="host synchronisation"):
        UniformSampler(index, 1, generator=0).sample(torch.tensor([0]))


# ---------------------------------------------------------------------- bad input


def _index() -> PositiveIndex:
    return PositiveIndex.from_dict({0: [0, 1, 2], 1: [0]}, num_items=3, num_users=3)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((10, 2, 2), {"backend": "fast"}, ValueError, "backend must be one of"),
        ((0, 0, 1), {}, ValueError, "num_candidates must be >= 1, got 0"),
        ((5, -1, 2), {}, ValueError, "num_hard must be >= 0, got -1"),
        ((5, 1, -2), {}, ValueError, "num_random must be >= 0, got -2"),
        ((5, 0, 0), {}, ValueError, r"between 1 and num_candidates=5, got 0 \+ 0 = 0"),
        ((5, 4, 2), {}, ValueError, r"between 1 and num_candidates=5, got 4 \+ 2 = 6"),
        ((5.0, 1, 1), {}, TypeError, "num_candidates must be an int, got 5.0"),
        ((5, True, 1), {}, TypeError, "num_hard must be an int, got True"),
        (
            (5, 1, 1),
            {"generator": "seed"},
            TypeError,
            "generator must be None, an int seed or a torch.Generator",
        ),
        ((5, 1, 1), {"validate": 1}, TypeError, "validate must be a bool"),
    ],
)
def test_hard_sampler_rejects_bad_configuration(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        HardNegativeSampler(_index(), *args, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("num_hard", "num_random", "error", "match"),
    [
        (2, 1, ValueError, r"between 1 and num_candidates=2, got 2 \+ 1 = 3"),
        (-1, 1, ValueError, "num_hard must be >= 0, got -1"),
        (1, -1, ValueError, "num_random must be >= 0, got -1"),
        (0, 0, ValueError, r"between 1 and num_candidates=2, got 0 \+ 0 = 0"),
        (1.0, 1, TypeError, "num_hard must be an int, got 1.0"),
    ],
)
def test_hard_negatives_checks_its_sizes_like_the_sampler(
    backend: str, num_hard: Any, num_random: Any, error: type, match: str
) -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4)
    draws = HardDraws(torch.tensor([[0, 2]]), torch.tensor([[5, 3]]))
    with pytest.raises(error, match=match):
        hard_negatives(
            index,
            torch.tensor([0]),
            _ones,
            draws,
            num_hard=num_hard,
            num_random=num_random,
            backend=backend,  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("draws", "match"),
    [
        (HardDraws(torch.tensor([0, 2]), torch.tensor([5, 3])), r"candidate_bits must have shape"),
        (HardDraws(torch.tensor([[0, 2]] * 2), torch.tensor([[5, 3]] * 2)), r"got \(2, 2\)"),
        (HardDraws(torch.tensor([[0, 2]]), torch.tensor([[5]])), "slot_keys must have the shape"),
        (
            HardDraws(torch.tensor([[0, 2]]), torch.tensor([[5, 3]]), torch.tensor([[1]])),
            "selection_bits must have the shape",
        ),
    ],
)
def test_hard_negatives_checks_the_shapes_of_its_draws(draws: HardDraws, match: str) -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4)
    with pytest.raises(ValueError, match=match):
        hard_negatives(
            index, torch.tensor([0]), _ones, draws, num_hard=1, num_random=0, temperature=1.0
        )


def test_samplers_reject_a_non_index_and_bad_uniform_counts() -> None:
    with pytest.raises(TypeError, match="index must be a PositiveIndex, got dict"):
        HardNegativeSampler({0: [1]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_negatives must be >= 1, got 0"):
        UniformSampler(_index(), 0)


def _ones(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    return torch.ones(i.shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("users", "scorer", "error", "match"),
    [
        (torch.tensor([1, 3]), _ones, ValueError, r"users must be user ids in \[0, 3\), got 3"),
        (torch.tensor([1, -1]), _ones, ValueError, r"users must be user ids in \[0, 3\), got -1"),
        (
            torch.tensor([[1]]),
            _ones,
            ValueError,
            "users must be a 1-D tensor of user ids, got shape",
        ),
        (
            torch.tensor([1.0]),
            _ones,
            TypeError,
            "users must hold integer ids, got a tensor of dtype torch.float32",
        ),
        ([1, 0.5], _ones, TypeError, "users must hold integer ids"),
        (
            np.array([1, 2**63 + 1], dtype=np.uint64),
            _ones,
            ValueError,
            r"users must be ids below 2\*\*63 .*got 9223372036854775809",
        ),
        ([2**63 + 1], _ones, ValueError, "got 9223372036854775809"),
        (torch.tensor([1, 0]), _ones, EmptyComplementError, "user 0 has every one of the 3 items"),
        (torch.tensor([1]), "model", TypeError, "scorer must be callable"),
        (
            torch.tensor([1]),
            lambda u, i: i.float().sum(),
            ValueError,
            r"one score per item, shape .*got shape \(\)",
        ),
        (
            torch.tensor([1]),
            lambda u, i: i,
            ValueError,
            "floating-point scores, got dtype torch.int64",
        ),
        (
            torch.tensor([1]),
            lambda u, i: i.float().tolist(),
            TypeError,
            "scorer must return a tensor",
        ),
        (
            torch.tensor([1, 2]),
            lambda u, i: torch.where(u == 2, torch.nan, 1.0),
            ValueError,
            r"scorer returned NaN \(e.g. for user 2",
        ),
    ],
)
def test_hard_sample_rejects_bad_input(
    backend: str, users: Any, scorer: Any, error: type, match: str
) -> None:
    sampler = HardNegativeSampler(_index(), 3, 1, 1, backend=backend, generator=0)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        sampler.sample(users, scorer)


@pytest.mark.parametrize("backend", BACKENDS)
def test_uniform_sample_names_the_user_without_negatives(backend: str) -> None:
    sampler = UniformSampler(_index(), 2, backend=backend, generator=0)  # type: ignore[arg-type]
    with pytest.raises(EmptyComplementError, match="user 0 has every one of the 3 items") as info:
        sampler.sample(torch.tensor([2, 1, 0, 0]))
    assert info.value.users == [0]


def test_a_generator_on_another_device_type_is_rejected() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device to put the users on another device than the generator")
    index = _index().to("cuda")
    sampler = UniformSampler(index, 1, generator=torch.Generator())
    with pytest.raises(ValueError, match="generator is on cpu but the users are on cuda"):
        sampler.sample(torch.tensor([1], device="cuda"))


def test_users_on_another_device_than_the_index_are_rejected() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device to put the users on another device than the index")
    sampler = UniformSampler(_index(), 1, generator=0)
    with pytest.raises(ValueError, match=r"call sampler.to\('cuda:0'\)"):
        sampler.sample(torch.tensor([1], device="cuda"))
    assert sampler.to("cuda").sample(torch.tensor([1], device="cuda")).device.type == "cuda"


@pytest.mark.parametrize("validate", [True, False])
def test_sampling_on_the_meta_device_is_refused_with_a_clear_error(validate: bool) -> None:
    # Moving is fine (the tables' devices can be inspected there); drawing needs values.
    users = torch.tensor([1, 2], device="meta")
    for sampler in (
        UniformSampler(_index(), 1, generator=0, validate=validate).to("meta"),
        HardNegativeSampler(_index(), 3, 1, 1, generator=0, validate=validate).to("meta"),
    ):
        with pytest.raises(ValueError, match="a sampler cannot draw on device 'meta'"):
            sampler.sample(users, _ones)
        with pytest.raises(ValueError, match="a sampler cannot draw on device 'meta'"):
            sampler.draw(2, "meta")
    with pytest.raises(ValueError, match="a sampler cannot draw on device 'meta'"):
        UniformSampler(_index(), 1).sample(users)  # not moved: not told to move there


def test_repr() -> None:
    assert repr(HardNegativeSampler(_index(), 4, 1, 2)) == (
        "HardNegativeSampler(num_candidates=4, num_hard=1, num_random=2, backend='vectorized', validate=True)"
    )
    assert repr(UniformSampler(_index(), 3, backend="reference")) == (
        "UniformSampler(num_negatives=3, backend='reference', validate=True)"
    )


# ---------------------------------------------------------------------- resumable sampling


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("generator", ["seed", "torch.Generator"])
def test_a_resumed_sampler_draws_what_an_uninterrupted_one_draws(
    backend: str, generator: str, tmp_path: Any
) -> None:
    index = PositiveIndex.from_pairs([0, 0, 1, 2], [3, 4, 0, 9], num_items=100)
    users = torch.tensor([0, 1, 2, 2, 1])

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.cos(u * 3.0 + i)

    def make() -> HardNegativeSampler:
        gen: Any = 5 if generator == "seed" else torch.Generator().manual_seed(5)
        return HardNegativeSampler(index, 6, 2, 1, backend=backend, generator=gen)  # type: ignore[arg-type]

    uninterrupted = make()
    expected = [uninterrupted.sample(users, scorer) for _ in range(4)]

    first = make()
    for _ in range(2):
        first.sample(users, scorer)
    torch.save(first.state_dict(), tmp_path / "sampler.pt")
    resumed = make()
    resumed.load_state_dict(torch.load(tmp_path / "sampler.pt"))
    for want in expected[2:]:
        assert torch.equal(resumed.sample(users, scorer), want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_state_saved_before_the_first_sample_resumes_under_another_seed(backend: str) -> None:
    index = PositiveIndex.from_pairs([0, 0, 1], [3, 4, 0], num_items=100)
    users = torch.tensor([0, 1, 1])
    kwargs: dict[str, Any] = {"backend": backend}
    state = UniformSampler(index, 4, generator=5, **kwargs).state_dict()
    expected = UniformSampler(index, 4, generator=5, **kwargs)
    want = [expected.sample(users) for _ in range(2)]
    fresh = UniformSampler(index, 4, generator=99, **kwargs)
    used = UniformSampler(index, 4, generator=99, **kwargs)
    used.sample(users)  # its CPU stream started from seed 99: loading must replace it
    given_generator = UniformSampler(index, 4, generator=torch.Generator().manual_seed(99))
    for resumed in (fresh, used, given_generator):
        resumed.load_state_dict(state)
        for expected_out in want:
            assert torch.equal(resumed.sample(users), expected_out)
    with pytest.raises(TypeError, match=r"state_dict\['seed'\] must be an int seed"):
        fresh.load_state_dict({"generator_states": {}, "seed": torch.Generator()})


def test_load_state_dict_rejects_what_it_cannot_restore() -> None:
    index = PositiveIndex.from_pairs([0], [0], num_items=5)
    state = UniformSampler(index, generator=1).state_dict()
    with pytest.raises(ValueError, match="torch's default generator"):
        UniformSampler(index).load_state_dict(state)
    with pytest.raises(ValueError, match="must be what state_dict\\(\\) returns"):
        UniformSampler(index, generator=1).load_state_dict({"weights": 1})


@CUDA
def test_vectorized_cuda_path_never_synchronises_with_the_host() -> None:
    index = PositiveIndex.from_pairs([0, 1, 1, 2], [0, 1, 2, 5], num_items=64).to("cuda")
    users = torch.tensor([0, 1, 2, 2, 1, 0], device="cuda")
    table = torch.rand(3, 64, device="cuda")
    hard = HardNegativeSampler(index, 16, 2, 2, generator=0, validate=False)
    uniform = UniformSampler(index, 3, generator=0, validate=False)
    soft = HardNegativeSampler(
        index, 16, 2, 2, candidates="popularity", selection="softmax", generator=0, validate=False
    )
    dns = HardNegativeSampler(
        index, 16, 2, 2, selection="dns_mn", top_n=5, generator=0, validate=False
    )
    ahns = HardNegativeSampler(index, 16, 2, 2, selection="ahns", generator=0, validate=False)
    positives = torch.tensor([0, 1, 5, 2, 2, 0], device="cuda")
    soft.sample(users, table_scorer(table))
    dns.sample(users, table_scorer(table))
    ahns.sample(users, table_scorer(table), positives=positives)
    hard.sample(users, table_scorer(table))  # first call creates the generator
    uniform.sample(users)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out_hard = hard.sample(users, table_scorer(table))
        out_uniform = uniform.sample(users)
        out_soft = soft.sample(users, table_scorer(table), return_info=True).items
        out_dns = dns.sample(users, table_scorer(table))
        out_ahns = ahns.sample(users, table_scorer(table), positives=positives, return_info=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for out in (out_hard, out_uniform, out_soft, out_dns, out_ahns.items):
        assert not bool(index.contains(users[:, None], out).any())


def test_large_batches_are_scored_in_bounded_chunks_with_the_same_result() -> None:
    index = PositiveIndex.from_pairs([0, 1, 2], [3, 4, 5], num_items=40)
    users = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    seen: list[int] = []

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        seen.append(i.numel())
        return torch.sin(u * 5.0 + i)

    chunked = HardNegativeSampler(index, 4, 2, 1, generator=3, max_scores_per_call=10)
    whole = HardNegativeSampler(index, 4, 2, 1, generator=3)
    out = chunked.sample(users, scorer)
    assert seen == [8, 8, 8, 4]  # two rows of 4 candidates per call, then the rest
    seen.clear()
    assert torch.equal(out, whole.sample(users, scorer))
    assert seen == [28]
    with pytest.raises(ValueError, match="max_scores_per_call must be >= 1, got 0"):
        HardNegativeSampler(index, 4, 2, 1, max_scores_per_call=0)


@pytest.mark.parametrize("candidates", ["uniform", "popularity"])
def test_validation_reads_back_once_for_ids_and_complements_and_once_for_nan_scores(
    monkeypatch: pytest.MonkeyPatch, candidates: str
) -> None:
    index = PositiveIndex.from_pairs([0, 1, 1, 2], [0, 1, 2, 3], num_items=6)
    users = torch.tensor([0, 1, 2, 2])
    uniform = UniformSampler(index, 3, candidates=candidates, generator=0)  # type: ignore[arg-type]
    hard = HardNegativeSampler(index, 4, 1, 1, candidates=candidates, generator=0)  # type: ignore[arg-type]
    table = torch.rand(3, 6)
    reads = []
    to_bool = torch.Tensor.__bool__

    def counted(self: torch.Tensor) -> bool:
        reads.append(1)
        return to_bool(self)

    monkeypatch.setattr(torch.Tensor, "__bool__", counted)
    uniform.sample(users)
    after_uniform = len(reads)
    hard.sample(users, table_scorer(table))
    monkeypatch.undo()
    assert after_uniform == 1  # ids in range and every user samplable: one read-back
    assert len(reads) - after_uniform == 2  # the same, then the scores' NaN check
    # Each problem is still named by its own check.
    with pytest.raises(ValueError, match="users must be user ids in"):
        uniform.sample(torch.tensor([0, 3]))
    full = PositiveIndex.from_pairs([0, 0], [0, 1], num_items=2, num_users=2)
    with pytest.raises(EmptyComplementError, match="user 0"):
        UniformSampler(full, 1, generator=0).sample(torch.tensor([1, 0]))
