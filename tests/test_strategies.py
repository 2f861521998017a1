"""Popularity candidates, softmax selection and ``return_info``: the same guarantees as top-k.

Never a positive (nor a zero-weight item), reference == vectorized on identical
draws, argument checks, and the information returned with the negatives. The
distributions themselves are tested in ``test_distribution.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import negsample.candidates as candidates_module
from negsample import (
    NO_NEGATIVE,
    EmptyComplementError,
    HardNegativeSampler,
    PositiveIndex,
    UniformSampler,
)
from negsample.candidates import (
    PopularityCandidates,
    UniformCandidates,
    _alias_table,
    make_candidates,
)
from negsample.samplers import HardDraws, hard_negatives
from tests.strategies import Case, batches, cases, table_scorer, tie_tables
from tests.test_samplers import BACKENDS, assert_no_positive, draws_for, hard_configs

ALPHAS = [0.0, 0.5, 1.0]


def weighted_users(case: Case, source: PopularityCandidates) -> list[int]:
    """Users whose complement holds an item of positive weight (what ``check`` accepts)."""
    weights = source.weights.tolist()
    return [
        u for u in range(len(case.positives)) if any(weights[i] > 0 for i in case.complement(u))
    ]


@st.composite
def weighted_cases(draw: st.DrawFn) -> tuple[Case, PopularityCandidates, torch.Tensor]:
    """A case, a popularity source on it and a batch of users it can sample for."""
    case = draw(cases())
    source = PopularityCandidates(case.index, draw(st.sampled_from(ALPHAS)))
    users = weighted_users(case, source)
    batch = draw(st.lists(st.sampled_from(users), min_size=1, max_size=8)) if users else []
    return case, source, torch.tensor(batch, dtype=torch.int64)


def exact_popularity(case: Case, alpha: float, user: int) -> dict[int, float]:
    """``q_u(i)`` written out from the definition, independent of the library."""
    counts = [sum(i in p for p in case.positives) for i in range(case.num_items)]
    weights = {i: float(counts[i]) ** alpha for i in case.complement(user)}
    total = sum(weights.values())
    return {i: w / total for i, w in weights.items() if w > 0}


# ---------------------------------------------------------------------- popularity candidates


@given(data=st.data(), drawn=weighted_cases())
def test_popularity_draws_are_non_positive_items_of_positive_weight_on_both_paths(
    data: st.DataObject, drawn: tuple[Case, PopularityCandidates, torch.Tensor]
) -> None:
    case, source, users = drawn
    if users.numel() == 0:
        with pytest.raises(EmptyComplementError, match="non-zero weight"):
            source.check(torch.arange(case.index.num_users))
        return
    source.check(users)
    k = data.draw(st.integers(1, 6))
    bits = torch.tensor(
        data.draw(
            st.lists(
                st.integers(0, 2**62 - 1), min_size=users.numel() * k, max_size=users.numel() * k
            )
        )
    ).reshape(-1, k)
    vectorized = source.draw(users, bits)
    reference = [
        source.reference_draw(u, row) for u, row in zip(users.tolist(), bits.tolist(), strict=True)
    ]
    assert vectorized.tolist() == reference
    assert_no_positive(case, users, vectorized)
    for user, row in zip(users.tolist(), vectorized.tolist(), strict=True):
        support = exact_popularity(case, source.alpha, user)
        assert set(row) <= set(support), f"user {user}: {row} outside the support {support}"
        assert source.log_prob(torch.tensor([user]), torch.tensor([row]))[
            0
        ].tolist() == pytest.approx([math.log(support[i]) for i in row], rel=1e-12, abs=1e-12)


@given(
    st.lists(
        st.one_of(st.just(0.0), st.floats(1e-9, 1e9), st.integers(0, 50).map(float)),
        min_size=1,
        max_size=60,
    )
)
def test_the_alias_table_gives_each_item_its_weight_and_never_a_weightless_one(
    weights: list[float],
) -> None:
    w = np.array(weights)
    assume(w.sum() > 0)
    keep, alias = _alias_table(w)
    n = w.size
    # Column c (probability 1/n) keeps c with probability keep[c], else gives alias[c].
    probability = keep / n
    np.add.at(probability, alias, (1.0 - keep) / n)
    assert probability == pytest.approx(w / w.sum(), rel=1e-9, abs=1e-12)
    weightless = w == 0
    assert (keep[weightless] == 0).all()
    assert not weightless[alias[keep < 1]].any()
    assert ((keep >= 0) & (keep <= 1)).all()


@given(data=st.data(), drawn=weighted_cases())
def test_extreme_bits_stay_inside_the_complement(
    data: st.DataObject, drawn: tuple[Case, PopularityCandidates, torch.Tensor]
) -> None:
    """Draws at the ends of the range, and at each alias column's edges, are weighted non-positives.

    Where rounding could push a uniform onto a neighbour: ``U`` = 0 and the
    largest ``U``, and ``U`` just below and at each column boundary ``c / N``.
    """
    case, source, users = drawn
    assume(users.numel() > 0)
    edges = [0, 1, 2**62 - 2, 2**62 - 1]
    for column in range(1, case.num_items):
        at = (column * 2**62) // case.num_items
        edges += [at - 1, at, at + 1]
    bits = torch.tensor([edges]).expand(users.numel(), len(edges))
    out = source.draw(users, bits)
    for user, row, row_bits in zip(users.tolist(), out.tolist(), bits.tolist(), strict=True):
        support = exact_popularity(case, source.alpha, user)
        assert set(row) <= set(support), f"user {user}: {row} outside the support {support}"
        assert row == source.reference_draw(user, row_bits)


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data(), drawn=weighted_cases(), config=hard_configs(), seed=st.integers(0, 2**32))
def test_samplers_with_popularity_candidates_never_return_a_positive(
    backend: str,
    data: st.DataObject,
    drawn: tuple[Case, PopularityCandidates, torch.Tensor],
    config: tuple[int, int, int],
    seed: int,
) -> None:
    case, source, users = drawn
    kwargs: dict[str, Any] = {"candidates": "popularity", "alpha": source.alpha, "backend": backend}
    assume(users.numel() > 0)
    table = data.draw(tie_tables(case.index.num_users, case.num_items))
    hard = HardNegativeSampler(case.index, *config, generator=seed, **kwargs)
    assert_no_positive(case, users, hard.sample(users, table_scorer(table)))
    uniform = UniformSampler(case.index, 3, generator=seed, **kwargs)
    out = uniform.sample(users)
    assert_no_positive(case, users, out)
    weights = source.weights
    assert bool((weights[out] > 0).all())


@given(data=st.data(), drawn=weighted_cases(), config=hard_configs(), softmax=st.booleans())
def test_reference_and_vectorized_agree_with_popularity_and_softmax(
    data: st.DataObject,
    drawn: tuple[Case, PopularityCandidates, torch.Tensor],
    config: tuple[int, int, int],
    softmax: bool,
) -> None:
    case, source, users = drawn
    assume(users.numel() > 0)
    num_candidates, num_hard, num_random = config
    draws = data.draw(draws_for(users.numel(), num_candidates))
    if softmax:
        selection = data.draw(draws_for(users.numel(), num_candidates)).candidate_bits
        draws = HardDraws(draws.candidate_bits, draws.slot_keys, selection)
    temperature = data.draw(st.sampled_from([1e-3, 0.5, 1.0, 7.0])) if softmax else None
    scorer = table_scorer(data.draw(tie_tables(case.index.num_users, case.num_items)))
    kwargs: dict[str, Any] = {
        "num_hard": num_hard,
        "num_random": num_random,
        "candidates": source,
        "temperature": temperature,
        "return_info": True,
    }
    ref = hard_negatives(case.index, users, scorer, draws, backend="reference", **kwargs)
    vec = hard_negatives(case.index, users, scorer, draws, backend="vectorized", **kwargs)
    assert torch.equal(ref.items, vec.items), (ref.items, vec.items)
    assert torch.equal(ref.is_hard, vec.is_hard)
    assert ref.scores is not None and vec.scores is not None
    assert torch.equal(ref.scores, vec.scores)
    assert torch.allclose(ref.log_prob, vec.log_prob, rtol=1e-6, atol=1e-6)
    assert float(ref.duplicate_fraction) == pytest.approx(float(vec.duplicate_fraction))


def test_alpha_zero_is_the_uniform_distribution() -> None:
    index = PositiveIndex.from_dict({0: [1, 4], 1: [0], 2: []}, num_items=6)
    flat = PopularityCandidates(index, alpha=0.0)
    assert flat.weights.tolist() == [1.0] * 6  # also the never-interacted items 2, 3, 5
    users = torch.tensor([0, 1, 2])
    items = torch.tensor([[0, 2, 5], [1, 2, 3], [0, 1, 5]])
    assert torch.allclose(
        flat.log_prob(users, items), UniformCandidates(index).log_prob(users, items)
    )


def test_popularity_counts_interactions_per_item_and_weighs_them_by_alpha() -> None:
    index = PositiveIndex.from_dict({0: [0, 1], 1: [0], 2: [0, 3]}, num_items=5)
    source = PopularityCandidates(index, alpha=0.5)
    assert source.popularity.tolist() == [3, 1, 0, 1, 0]
    assert source.weights.tolist() == pytest.approx([math.sqrt(3), 1.0, 0.0, 1.0, 0.0])
    # user 1's complement {1, 2, 3, 4} has weight 1 + 0 + 1 + 0
    probs = torch.exp(source.log_prob(torch.tensor([1]), torch.tensor([[1, 3]])))
    assert probs[0].tolist() == pytest.approx([0.5, 0.5])
    assert source.nbytes > 0


def test_a_user_whose_complement_weighs_nothing_gets_a_clear_error() -> None:
    # Item 2 is nobody's positive, so with alpha > 0 it weighs 0: user 0 has only item 2 left.
    index = PositiveIndex.from_dict({0: [0, 1], 1: [0, 1]}, num_items=3)
    for sampler in (
        UniformSampler(index, 1, candidates="popularity", alpha=1.0),
        HardNegativeSampler(index, 2, 1, 0, candidates="popularity"),
    ):
        with pytest.raises(
            EmptyComplementError, match=r"user 0 has no non-positive item of non-zero weight"
        ) as err:
            sampler.sample(torch.tensor([0, 1]), lambda u, i: i.float())
        assert err.value.users == [0, 1]
    # alpha = 0 weighs every item 1: item 2 can be drawn.
    out = UniformSampler(index, 4, candidates="popularity", alpha=0.0, generator=0).sample(
        torch.tensor([0])
    )
    assert out.tolist() == [[2, 2, 2, 2]]


def test_an_index_without_interactions() -> None:
    index = PositiveIndex.from_dict({}, num_users=2, num_items=4)
    out = UniformSampler(index, 5, candidates="popularity", alpha=0.0, generator=0).sample(
        torch.tensor([0, 1])
    )
    assert out.shape == (2, 5) and bool(((out >= 0) & (out < 4)).all())
    with pytest.raises(EmptyComplementError):
        UniformSampler(index, 1, candidates="popularity", alpha=0.3).sample(torch.tensor([0]))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"candidates": "popular"}, ValueError, "candidates must be one of"),
        ({"alpha": 0.5}, ValueError, r"alpha=0.5 only applies to candidates='popularity'"),
        (
            {"candidates": "popularity", "alpha": 1.5},
            ValueError,
            r"alpha must be in \[0, 1\], got 1.5",
        ),
        (
            {"candidates": "popularity", "alpha": -0.1},
            ValueError,
            r"alpha must be in \[0, 1\], got -0.1",
        ),
        ({"candidates": "popularity", "alpha": math.nan}, ValueError, "alpha must be in"),
        ({"candidates": "popularity", "alpha": "1"}, TypeError, "alpha must be a float"),
        ({"candidates": "popularity", "alpha": True}, TypeError, "alpha must be a float"),
        ({"selection": "gumbel"}, ValueError, "selection must be one of"),
        ({"temperature": 0.5}, ValueError, r"temperature=0.5 only applies to selection='softmax'"),
        (
            {"selection": "softmax", "temperature": 0.0},
            ValueError,
            "temperature must be a finite float > 0, got 0.0",
        ),
        (
            {"selection": "softmax", "temperature": -1},
            ValueError,
            "temperature must be a finite float > 0",
        ),
        (
            {"selection": "softmax", "temperature": math.inf},
            ValueError,
            "temperature must be a finite",
        ),
        ({"selection": "softmax", "temperature": "hot"}, TypeError, "temperature must be a float"),
        (
            {"selection": "ahns", "temperature": 0.5},
            ValueError,
            r"temperature=0.5 only applies to selection='softmax', not selection='ahns'",
        ),
        ({"top_n": 2}, ValueError, r"top_n=2 only applies to selection='dns_mn'"),
        ({"selection": "dns_mn"}, ValueError, "selection='dns_mn' needs top_n, the N of DNS"),
        (
            {"selection": "dns_mn", "top_n": 4},
            ValueError,
            r"top_n must be between max\(1, num_hard\)=1 and num_candidates=3, got 4",
        ),
        ({"selection": "dns_mn", "top_n": 0}, ValueError, r"top_n must be between .* got 0"),
        ({"selection": "dns_mn", "top_n": 2.0}, TypeError, "top_n must be an int, got 2.0"),
        ({"selection": "dns_mn", "top_n": True}, TypeError, "top_n must be an int, got True"),
        (
            {"selection": "softmax", "ahns_alpha": 1.0},
            ValueError,
            r"ahns_alpha=1.0 only applies to selection='ahns', not selection='softmax'",
        ),
        ({"ahns_beta": 0.2}, ValueError, r"ahns_beta=0.2 only applies to selection='ahns'"),
        ({"ahns_p": -1}, ValueError, r"ahns_p=-1 only applies to selection='ahns'"),
        (
            {"selection": "ahns", "ahns_alpha": math.nan},
            ValueError,
            "ahns_alpha must be a finite float, got nan",
        ),
        (
            {"selection": "ahns", "ahns_beta": math.inf},
            ValueError,
            "ahns_beta must be a finite float, got inf",
        ),
        ({"selection": "ahns", "ahns_beta": "0.1"}, TypeError, "ahns_beta must be a finite float"),
        ({"selection": "ahns", "ahns_p": -1.5}, TypeError, "ahns_p must be an int, got -1.5"),
        ({"selection": "ahns", "ahns_p": False}, TypeError, "ahns_p must be an int, got False"),
    ],
)
def test_strategy_arguments_are_checked(kwargs: dict[str, Any], error: type, match: str) -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4)
    with pytest.raises(error, match=match):
        HardNegativeSampler(index, 3, 1, 1, **kwargs)
    if set(kwargs) <= {"candidates", "alpha"}:
        with pytest.raises(error, match=match):
            UniformSampler(index, 1, **kwargs)


def test_top_n_may_not_be_below_num_hard() -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4)
    with pytest.raises(
        ValueError, match=r"between max\(1, num_hard\)=2 and num_candidates=5, got 1"
    ):
        HardNegativeSampler(index, 5, 2, 1, selection="dns_mn", top_n=1)


def test_hard_negatives_checks_its_strategy_inputs() -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4)
    draws = HardDraws(torch.tensor([[0, 1, 2]]), torch.tensor([[5, 3, 4]]))
    users = torch.tensor([0])
    with pytest.raises(ValueError, match=r"needs draws\.selection_bits"):
        hard_negatives(
            index, users, lambda u, i: i.float(), draws, num_hard=1, num_random=0, temperature=1.0
        )
    other = PositiveIndex.from_dict({0: [1]}, num_items=4)
    with pytest.raises(ValueError, match="same index"):
        hard_negatives(
            index,
            users,
            lambda u, i: i.float(),
            draws,
            num_hard=1,
            num_random=0,
            candidates=UniformCandidates(other),
        )


def test_make_candidates_and_reprs() -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4)
    assert isinstance(make_candidates(index, "uniform", None), UniformCandidates)
    assert repr(make_candidates(index, "popularity", 0.25)) == "PopularityCandidates(alpha=0.25)"
    sampler = HardNegativeSampler(
        index, 4, 1, 1, candidates="popularity", alpha=1, selection="softmax"
    )
    assert repr(sampler) == (
        "HardNegativeSampler(num_candidates=4, num_hard=1, num_random=1, candidates='popularity', "
        "alpha=1.0, selection='softmax', temperature=1.0, backend='vectorized', validate=True)"
    )
    assert repr(HardNegativeSampler(index, 4, 1, 1, selection="dns_mn", top_n=3)) == (
        "HardNegativeSampler(num_candidates=4, num_hard=1, num_random=1, selection='dns_mn', "
        "top_n=3, backend='vectorized', validate=True)"
    )
    assert repr(HardNegativeSampler(index, 4, 1, 0, selection="ahns", ahns_p=0)) == (
        "HardNegativeSampler(num_candidates=4, num_hard=1, num_random=0, selection='ahns', "
        "ahns_alpha=1.0, ahns_beta=0.1, ahns_p=0, backend='vectorized', validate=True)"
    )
    assert repr(UniformSampler(index, 2, candidates="popularity")) == (
        "UniformSampler(num_negatives=2, candidates='popularity', alpha=0.75, "
        "backend='vectorized', validate=True)"
    )


# ---------------------------------------------------------------------- softmax selection


def test_softmax_at_a_tiny_temperature_is_the_top_k() -> None:
    index = PositiveIndex.from_dict({0: [3]}, num_items=200)
    users = torch.zeros(64, dtype=torch.int64)
    scores = torch.randn(200, generator=torch.Generator().manual_seed(1))  # distinct, gaps >> 1e-6

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return scores[i]

    top = HardNegativeSampler(index, 12, 3, 2, generator=9).sample(users, scorer)
    soft = HardNegativeSampler(
        index, 12, 3, 2, selection="softmax", temperature=1e-9, generator=9
    ).sample(users, scorer)
    # The softmax sampler draws the same candidates and slot keys first, then its Gumbel bits.
    assert torch.equal(top, soft)


def test_softmax_at_a_high_temperature_is_not_the_top_k() -> None:
    index = PositiveIndex.from_dict({0: [3]}, num_items=200)
    users = torch.zeros(256, dtype=torch.int64)

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return i.float()

    soft = HardNegativeSampler(index, 12, 1, 0, selection="softmax", temperature=1e6, generator=9)
    top = HardNegativeSampler(index, 12, 1, 0, generator=9)
    # Near-uniform selection: the best candidate is picked about 1/12 of the time, not always.
    agree = (soft.sample(users, scorer) == top.sample(users, scorer)).float().mean()
    assert 0.02 < float(agree) < 0.25


def test_softmax_draws_carry_selection_bits_and_topk_draws_do_not() -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4)
    assert HardNegativeSampler(index, 3, 1, 1, generator=0).draw(2).selection_bits is None
    draws = HardNegativeSampler(index, 3, 1, 1, selection="softmax", generator=0).draw(2)
    assert draws.selection_bits is not None and draws.selection_bits.shape == (2, 3)


def test_a_resumed_softmax_popularity_sampler_draws_the_same_negatives() -> None:
    index = PositiveIndex.from_pairs([0, 1, 1, 2], [0, 1, 2, 5], num_items=30)
    users = torch.tensor([0, 1, 2, 1])

    def make() -> HardNegativeSampler:
        return HardNegativeSampler(
            index, 6, 2, 1, candidates="popularity", alpha=0.0, selection="softmax", generator=3
        )

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.cos(i * 1.0)

    running = make()
    running.sample(users, scorer)
    state = running.state_dict()
    expected = running.sample(users, scorer)
    resumed = make()
    resumed.load_state_dict(state)
    assert torch.equal(resumed.sample(users, scorer), expected)


# ---------------------------------------------------------------------- DNS(M, N) and AHNS


@pytest.mark.parametrize("backend", BACKENDS)
def test_dns_mn_draws_from_the_top_n_only_and_keeps_rank_order(backend: str) -> None:
    index = PositiveIndex.from_dict({}, num_users=1, num_items=6)
    # No positives: the bits are the items. Slots hold items 5, 1, 3, 0, 2, 4 and the
    # scorer prefers high ids, so the ranking is slot 0 (5), 5 (4), 2 (3), 4 (2), 1, 3.
    bits = torch.tensor([[5, 1, 3, 0, 2, 4]] * 2)
    # Row 0: of the top 4 slots {0, 5, 2, 4}, keys 9, 2, 7, 3: the two smallest are slots 5
    # and 4, returned in rank order (items 4, 2); slots 1 and 3 have smaller keys still
    # but are not in the top 4. Row 1: all keys tie, so the better ranks win (items 5, 4).
    keys = torch.tensor([[9, 0, 7, 1, 3, 2], [5, 5, 5, 5, 5, 5]])
    # Random part, one of the four free slots: row 0 {0, 1, 2, 3} smallest key at slot 2
    # (item 3); row 1 {1, 2, 3, 4}, all keys 0, the lowest slot 1 (item 1).
    slot_keys = torch.tensor([[3, 8, 1, 5, 0, 0], [0, 0, 0, 0, 0, 0]])
    out = hard_negatives(
        index,
        torch.tensor([0, 0]),
        lambda u, i: i.float(),
        HardDraws(bits, slot_keys, keys),
        num_hard=2,
        num_random=1,
        selection="dns_mn",
        top_n=4,
        backend=backend,  # type: ignore[arg-type]
    )
    assert out.tolist() == [[4, 2, 3], [5, 4, 1]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("num_hard", "num_random"), [(1, 2), (3, 1), (2, 0)])
def test_dns_mn_with_top_n_equal_to_num_hard_is_the_top_k(
    backend: str, num_hard: int, num_random: int
) -> None:
    # Every one of the top num_hard is drawn, kept in rank order; the candidates and slot
    # keys are drawn before the DNS keys, so a seed gives the top-k sampler's negatives.
    index = PositiveIndex.from_pairs([0, 1, 1, 2], [3, 4, 0, 9], num_items=60)
    users = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1])

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.sin(u * 7.0 + i)

    kwargs: dict[str, Any] = {"backend": backend, "generator": 5}
    top = HardNegativeSampler(index, 8, num_hard, num_random, **kwargs)
    dns = HardNegativeSampler(
        index, 8, num_hard, num_random, selection="dns_mn", top_n=num_hard, **kwargs
    )
    # One call: after it the streams part (DNS drew a third block of bits).
    assert torch.equal(dns.sample(users, scorer), top.sample(users, scorer))


def test_dns_mn_with_a_larger_top_n_is_not_the_top_k() -> None:
    index = PositiveIndex.from_dict({0: [3]}, num_items=200)
    users = torch.zeros(512, dtype=torch.int64)

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return i.float()

    top = HardNegativeSampler(index, 12, 1, 0, generator=9).sample(users, scorer)
    dns = HardNegativeSampler(index, 12, 1, 0, selection="dns_mn", top_n=4, generator=9)
    # The best candidate is picked a quarter of the time (a binomial(512, 1/4): mean 128, sd 10).
    agree = (dns.sample(users, scorer) == top).float().mean()
    assert 0.15 < float(agree) < 0.35


# Candidates: items 0..5 (slot j holds item j); item 6 is the users' positive, scoring
# 1.5 for user 0 and 0.0 for user 1. All values are exact in float32.
AHNS_SCORES = torch.tensor(
    [
        [-1.0, 0.25, 0.375, 1.0, 3.0, 0.625, 1.5],
        [-1.0, 0.25, 0.375, 1.0, 3.0, 0.625, 0.0],
    ]
)
AHNS_CASES = {
    # target beta * (s_pos + alpha) ** (p + 1), the hard part the three closest, ties to the
    # lower slot. (alpha, beta, p): expected rows, worked out by hand.
    # p = -2: 1 / (1.5 + 0.5) = 0.5 -> distances 1.5, .25, .125, .5, 2.5, .125: slots 2, 5, 1;
    #         1 / (0 + 0.5) = 2 -> distances 3, 1.75, 1.625, 1, 1, 1.375: slots 3, 4, 5.
    "inverse": ((0.5, 1.0, -2), [[2, 5, 1], [3, 4, 5]]),
    # the authors' defaults: 0.1 / 2.5 = 0.04 -> distances 1.04, .21, .335, .96, 2.96, .585;
    #                        0.1 / 1.0 = 0.1 -> distances 1.1, .15, .275, .9, 2.9, .525.
    "defaults": ((1.0, 0.1, -2), [[1, 2, 5], [1, 2, 5]]),
    # p = 1: 0.25 * 1.5 ** 2 = 0.5625 -> distances 1.5625, .3125, .1875, .4375, 2.4375, .0625;
    #        0.25 * 0 ** 2 = 0 -> distances 1, .25, .375, 1, 3, .625.
    "square": ((0.0, 0.25, 1), [[5, 2, 1], [1, 2, 5]]),
    # p = 0: 1.5 * (1.5 + 0.5) = 3 -> distances 4, 2.75, 2.625, 2, 0, 2.375;
    #        1.5 * (0 + 0.5) = 0.75 -> distances 1.75, .5, .375, .25, 2.25, .125.
    "linear": ((0.5, 1.5, 0), [[4, 3, 5], [5, 3, 2]]),
    # p = -2 and s_pos + alpha = 0 for user 1: an infinite target, every distance infinite,
    # so the lowest slots (uniform draws); user 0: 1 / 1.5 -> distances 1.67, .42, .29, .33,
    # 2.33, .04: slots 5, 2, 3.
    "infinite": ((0.0, 1.0, -2), [[5, 2, 3], [0, 1, 2]]),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(AHNS_CASES))
def test_ahns_takes_the_candidates_closest_to_the_positives_target(backend: str, case: str) -> None:
    (alpha, beta, p), expected = AHNS_CASES[case]
    index = PositiveIndex.from_dict({0: [6], 1: [6]}, num_items=7)
    bits = torch.arange(6).expand(2, 6)  # bits % 7 = j, not a positive: slot j holds item j
    out = hard_negatives(
        index,
        torch.tensor([0, 1]),
        table_scorer(AHNS_SCORES),
        HardDraws(bits, torch.zeros(2, 6, dtype=torch.int64)),
        num_hard=3,
        num_random=0,
        selection="ahns",
        positives=torch.tensor([6, 6]),
        ahns_alpha=alpha,
        ahns_beta=beta,
        ahns_p=p,
        backend=backend,  # type: ignore[arg-type]
    )
    assert out.tolist() == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_ahns_scores_the_positives_without_grad_with_the_same_scorer(backend: str) -> None:
    index = PositiveIndex.from_dict({0: [1, 2], 1: [0]}, num_items=8)
    weights = torch.randn(8, requires_grad=True)
    calls: list[tuple[bool, list[int], list[int]]] = []

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        calls.append((torch.is_grad_enabled(), u.flatten().tolist(), i.flatten().tolist()))
        return weights[i] + u

    sampler = HardNegativeSampler(index, 4, 1, 1, selection="ahns", backend=backend, generator=0)  # type: ignore[arg-type]
    users = torch.tensor([0, 1, 0])
    info = sampler.sample(users, scorer, positives=[2, 0, 1], return_info=True)
    assert info.items.shape == (3, 2) and info.items.grad_fn is None
    assert calls and not any(grad for grad, _, _ in calls)
    # the positives were scored with their users: the calls of at most 3 items (one call,
    # or one per row), as the candidates come 4 a row
    pairs = [pair for _, u, i in calls if len(i) <= 3 for pair in zip(u, i, strict=True)]
    assert pairs == [(0, 2), (1, 0), (0, 1)]


def test_positives_are_required_by_ahns_and_refused_by_the_other_selections() -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4, num_users=2)
    users = torch.tensor([0, 1])

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return i.float()

    ahns = HardNegativeSampler(index, 3, 1, 1, selection="ahns", generator=0)
    with pytest.raises(ValueError, match=r"selection='ahns' needs each row's positive item"):
        ahns.sample(users, scorer)
    for kwargs in ({}, {"selection": "softmax"}, {"selection": "dns_mn", "top_n": 2}):
        other = HardNegativeSampler(index, 3, 1, 1, generator=0, **kwargs)
        with pytest.raises(ValueError, match=r"positives only apply to selection='ahns', not"):
            other.sample(users, scorer, positives=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"one item id per user, shape \(2,\), got shape \(3,\)"):
        ahns.sample(users, scorer, positives=[1, 2, 3])
    with pytest.raises(ValueError, match=r"positives must be item ids in \[0, 4\), got 4"):
        ahns.sample(users, scorer, positives=[1, 4])
    with pytest.raises(TypeError, match="positives must hold integer ids"):
        ahns.sample(users, scorer, positives=torch.tensor([1.0, 2.0]))
    assert ahns.sample(users, scorer, positives=np.array([1, 3], dtype=np.int32)).shape == (2, 2)


def test_hard_negatives_checks_the_inputs_of_the_new_selections() -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4)
    users = torch.tensor([0])
    draws = HardDraws(torch.tensor([[0, 2, 3]]), torch.tensor([[5, 3, 4]]))
    kwargs: dict[str, Any] = {"num_hard": 1, "num_random": 0}

    def scorer(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return i.float()

    with pytest.raises(ValueError, match=r"selection='dns_mn' needs draws\.selection_bits"):
        hard_negatives(index, users, scorer, draws, selection="dns_mn", top_n=2, **kwargs)
    with pytest.raises(ValueError, match="needs top_n"):
        hard_negatives(index, users, scorer, draws, selection="dns_mn", **kwargs)
    with pytest.raises(ValueError, match="selection='ahns' needs positives"):
        hard_negatives(index, users, scorer, draws, selection="ahns", **kwargs)
    with pytest.raises(ValueError, match="positives only apply to selection='ahns'"):
        hard_negatives(index, users, scorer, draws, positives=torch.tensor([2]), **kwargs)
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):
        hard_negatives(
            index, users, scorer, draws, selection="ahns", positives=torch.tensor([2, 3]), **kwargs
        )
    with pytest.raises(ValueError, match=r"temperature=1\.0 only applies to selection='softmax'"):
        hard_negatives(index, users, scorer, draws, selection="topk", temperature=1.0, **kwargs)


def test_dns_mn_draws_carry_selection_bits_and_ahns_draws_do_not() -> None:
    index = PositiveIndex.from_dict({0: [1]}, num_items=4)
    draws = HardNegativeSampler(index, 3, 1, 1, selection="dns_mn", top_n=2, generator=0).draw(2)
    assert draws.selection_bits is not None and draws.selection_bits.shape == (2, 3)
    assert HardNegativeSampler(index, 3, 1, 1, selection="ahns").draw(2).selection_bits is None


# ---------------------------------------------------------------------- return_info


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("candidates", ["uniform", "popularity"])
def test_return_info_describes_the_returned_negatives(backend: str, candidates: str) -> None:
    index = PositiveIndex.from_pairs([0, 0, 1, 2, 2, 2], [1, 4, 1, 0, 1, 2], num_items=9)
    users = torch.tensor([0, 1, 2, 2, 0])
    table = torch.randn(3, 9, generator=torch.Generator().manual_seed(0))
    scorer = table_scorer(table)
    kwargs: dict[str, Any] = {"candidates": candidates, "backend": backend}
    if candidates == "popularity":
        kwargs["alpha"] = 0.0  # every item weighs 1: all users samplable
    plain = HardNegativeSampler(index, 5, 2, 2, generator=4, **kwargs).sample(users, scorer)
    info = HardNegativeSampler(index, 5, 2, 2, generator=4, **kwargs).sample(
        users, scorer, return_info=True
    )
    assert torch.equal(info.items, plain)
    assert info.is_hard.tolist() == [[True, True, False, False]] * 5
    assert info.scores is not None
    assert torch.equal(info.scores, table[users[:, None], info.items])
    sizes = index.complement_size(users).double()
    assert torch.allclose(info.log_prob.double(), -torch.log(sizes)[:, None].expand(5, 4))
    assert info.log_prob.dtype == torch.get_default_dtype()
    assert float(info.hard_score_mean) == pytest.approx(float(info.scores[:, :2].mean()), rel=1e-6)
    assert float(info.random_score_mean) == pytest.approx(
        float(info.scores[:, 2:].mean()), rel=1e-6
    )
    # the hard part is the top of the candidates, so on average it scores at least the random part
    assert float(info.hard_score_mean) >= float(info.random_score_mean)


def test_duplicate_fraction_counts_repeated_candidates_per_row() -> None:
    index = PositiveIndex.from_dict({0: [0]}, num_items=5)  # bits 1..4 draw the items 1..4
    # row 0 candidates 1, 1, 2, 1 (two repeats); row 1 candidates 1, 2, 3, 4 (none)
    draws = HardDraws(torch.tensor([[1, 1, 2, 1], [1, 2, 3, 4]]), torch.tensor([[0, 1, 2, 3]] * 2))
    for backend in BACKENDS:
        info = hard_negatives(
            index,
            torch.tensor([0, 0]),
            lambda u, i: i.float(),
            draws,
            num_hard=1,
            num_random=1,
            backend=backend,  # type: ignore[arg-type]
            return_info=True,
        )
        assert float(info.duplicate_fraction) == pytest.approx(2 / 8)


def test_summaries_leave_out_the_slots_of_a_user_without_negatives() -> None:
    # User 1 has every item: unvalidated, its row is NO_NEGATIVE with NaN scores. Row 0 is
    # as above (candidates 1, 1, 2, 1): hard 2, random 1, two repeats in four candidates.
    index = PositiveIndex.from_dict({0: [0], 1: [0, 1, 2, 3, 4]}, num_items=5)
    draws = HardDraws(torch.tensor([[1, 1, 2, 1], [1, 2, 3, 4]]), torch.tensor([[1, 0, 2, 3]] * 2))
    for backend in BACKENDS:
        info = hard_negatives(
            index,
            torch.tensor([0, 1]),
            lambda u, i: i.float(),
            draws,
            num_hard=1,
            num_random=1,
            backend=backend,  # type: ignore[arg-type]
            validate=False,
            return_info=True,
        )
        assert info.items.tolist() == [[2, 1], [NO_NEGATIVE, NO_NEGATIVE]]
        assert float(info.hard_score_mean) == 2.0
        assert float(info.random_score_mean) == 1.0
        assert float(info.duplicate_fraction) == pytest.approx(2 / 4)
    # Every row without negatives: no items, so no repeats (and no mean).
    info = UniformSampler(index, 3, validate=False, generator=0).sample([1, 1], return_info=True)
    assert float(info.duplicate_fraction) == 0.0
    assert math.isnan(float(info.hard_score_mean))


def test_uniform_sampler_info_has_log_probs_and_no_scores() -> None:
    index = PositiveIndex.from_dict({0: [0], 1: [0, 1, 2]}, num_items=5)
    users = torch.tensor([0, 1])
    for backend in BACKENDS:
        info = UniformSampler(index, 3, backend=backend, generator=0).sample(
            users, return_info=True
        )  # type: ignore[arg-type]
        assert info.scores is None
        assert not bool(info.is_hard.any())
        assert torch.allclose(info.log_prob, -torch.log(torch.tensor([[4.0], [2.0]])).expand(2, 3))
        assert math.isnan(float(info.hard_score_mean)) and math.isnan(float(info.random_score_mean))
        assert 0.0 <= float(info.duplicate_fraction) < 1.0


def test_return_info_on_an_empty_batch() -> None:
    index = PositiveIndex.from_dict({0: [0]}, num_items=5)
    info = HardNegativeSampler(index, 3, 1, 1).sample(
        torch.empty(0, dtype=torch.int64), lambda u, i: i.float(), return_info=True
    )
    assert info.items.shape == (0, 2) and info.log_prob.shape == (0, 2)
    assert float(info.duplicate_fraction) == 0.0


@given(case=cases(), data=st.data())
def test_popularity_alpha_zero_has_the_uniform_log_prob_on_any_case(
    case: Case, data: st.DataObject
) -> None:
    users = data.draw(batches(case)).long()
    sampler = UniformSampler(case.index, 2, candidates="popularity", alpha=0.0, generator=0)
    info = sampler.sample(users, return_info=True)
    expected = torch.tensor([[-math.log(len(case.complement(u)))] * 2 for u in users.tolist()])
    assert torch.allclose(info.log_prob, expected)
    assert_no_positive(case, users, info.items)


def test_moving_a_popularity_sampler_moves_its_tables_and_keeps_one_index() -> None:
    index = PositiveIndex.from_dict({0: [1], 1: [2, 3]}, num_items=6)
    sampler = HardNegativeSampler(index, 4, 1, 1, candidates="popularity")
    assert sampler.to("cpu").index is index  # already there: nothing copied
    sampler.to("meta")  # a device without data: enough to see where everything went
    assert sampler.index is sampler.candidates.index
    assert sampler.index.device.type == "meta"
    assert isinstance(sampler.candidates, PopularityCandidates)
    assert {
        t.device.type for t in (sampler.candidates.weights, sampler.candidates._cumulative)
    } == {"meta"}


def test_a_users_popularity_weights_do_not_depend_on_how_many_users_come_before() -> None:
    # Two million users of degree 1 (items 0 and 1 in turn), each with a complement of mass
    # about 1000 under alpha = 0.5: a running sum over all rows reaches 2e9, where a float64
    # step is 2.4e-7, and a later row's share of it came out wrong by about that much.
    many = 2_000_000
    indptr = np.concatenate([np.arange(many + 1), [many + 2, many + 4]])
    items = np.concatenate([np.arange(many) % 2, [2, 3], [0, 1]])
    index = PositiveIndex(indptr, items, num_items=4)
    source = PopularityCandidates(index, alpha=0.5)
    weights = source.weights.tolist()
    for user in (0, many - 2, many - 1, many + 1):
        complement = [i for i in range(4) if i not in index.positives(user).tolist()]
        log_prob = source.log_prob(torch.tensor([user]), torch.tensor([complement]))
        total = math.fsum(torch.exp(log_prob).flatten().tolist())
        assert abs(total - 1.0) <= 1e-14, (user, total - 1.0)
        exact = math.fsum(weights[i] for i in complement)
        assert abs(float(source._totals[user]) / exact - 1.0) <= 4 * 2.0**-53, user


def test_popularity_tables_too_large_for_the_machine_are_refused_before_allocating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 2**31 items: about 256 GiB at the build's peak. The index itself holds one interaction.
    index = PositiveIndex.from_pairs([0], [5], num_items=2**31)

    def no_build(self: PopularityCandidates) -> None:
        raise AssertionError("the tables were being built")

    monkeypatch.setattr(PopularityCandidates, "_build", no_build)
    monkeypatch.setattr(candidates_module, "_physical_memory", lambda: 64 * 2**30)
    with pytest.raises(
        ValueError, match=r"num_items=2147483648, .* needs about 256\.0 GiB .* 64\.0 GiB"
    ):
        UniformSampler(index, 1, candidates="popularity")
    small = PositiveIndex.from_pairs([0], [5], num_items=10)
    monkeypatch.setattr(candidates_module, "_physical_memory", lambda: 10 * 2**10)
    with pytest.raises(AssertionError, match="the tables were being built"):
        PopularityCandidates(small)  # 1280 + 80 + 120 bytes fit: the build starts
