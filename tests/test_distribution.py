"""Both backends against the exact output distribution, enumerated on small cases.

The exact distribution is computed here from the contract alone (explicit
complement lists, every candidate tuple, every random choice), independently of
the library's code. Each backend's empirical frequencies are then tested against
it with Pearson's chi-square goodness-of-fit test.

The selections are tested the same way: DNS(M, N) also on fixed candidates
(the hard negative uniform over the top N, with the sampler's own random keys)
and with a hard part that always takes the best candidate, which must fail.

Significance level: ALPHA = 0.001 per test. Seeds are fixed, so each test is
deterministic. Sample size: N_DRAWS rows per backend, chosen so that the test
has power >= 0.99 against a shift of 0.02 probability mass between the two most
likely cells (the hardest such shift to detect); each test asserts that power
for its own case before sampling.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

import pytest
import torch
from scipy import stats

from negsample import HardNegativeSampler, PositiveIndex, UniformSampler
from negsample.samplers import HardDraws, hard_negatives

ALPHA = 0.001
SHIFT = 0.02
N_DRAWS = 30_000
SEEDS = {"reference": 101, "vectorized": 202}  # different seeds: two independent samples


def exact_hard_distribution(
    complement: list[int], scores: dict[int, float], m: int, num_hard: int, num_random: int
) -> dict[tuple[int, ...], Fraction]:
    """P(output row) by enumerating all M-tuples of candidates and all random picks."""
    dist: Counter[tuple[int, ...]] = Counter()
    p_tuple = Fraction(1, len(complement) ** m)
    for candidates in itertools.product(complement, repeat=m):
        ranked = sorted(range(m), key=lambda slot: (-scores[candidates[slot]], slot))
        hard = ranked[:num_hard]
        free = [slot for slot in range(m) if slot not in hard]
        picks = list(itertools.permutations(free, num_random))
        for pick in picks:
            row = tuple(candidates[s] for s in hard + list(pick))
            dist[row] += p_tuple / len(picks)
    return dict(dist)


def power_against_shift(probs: list[float], n: int) -> float:
    """Power of the chi-square test against moving SHIFT mass between the two largest cells."""
    df = len(probs) - 1
    p_a, p_b = sorted(probs)[-2:]
    noncentrality = n * SHIFT**2 * (1 / p_a + 1 / p_b)
    critical = stats.chi2.ppf(1 - ALPHA, df)
    return float(stats.ncx2.sf(critical, df, noncentrality))


def chi_square_p_value(
    counts: Counter[tuple[int, ...]], exact: dict[tuple[int, ...], Fraction]
) -> float:
    """Chi-square p-value; 0.0 if any row has probability 0 under the exact distribution."""
    if set(counts) - set(exact):
        return 0.0
    cells = sorted(exact)
    n = sum(counts.values())
    observed = [counts[c] for c in cells]
    expected = [float(exact[c]) * n for c in cells]
    assert min(expected) >= 5, "cells too small for the chi-square approximation"
    return float(stats.chisquare(observed, expected).pvalue)


HARD_CASES = {
    # positives {1, 3} of 6 items: complement {0, 2, 4, 5}; items 0 and 2 tie for the top score.
    "ties": ([1, 3], 6, {0: 1.0, 2: 1.0, 4: 0.0, 5: -1.0}, 3, 1, 1),
    # a one-item-short user: complement {1, 4}, two hard of three candidates, no random part.
    "dense": ([0, 2, 3], 5, {1: 0.5, 4: 0.25}, 3, 2, 0),
    # no hard part: two random picks without replacement among three candidates.
    "random-only": ([2], 4, {0: 0.0, 1: 0.0, 3: 0.0}, 3, 0, 2),
}


@pytest.mark.parametrize("backend", ["reference", "vectorized"])
@pytest.mark.parametrize("case", sorted(HARD_CASES))
def test_hard_sampler_matches_the_exact_distribution(case: str, backend: str) -> None:
    positives, num_items, scores, m, num_hard, num_random = HARD_CASES[case]
    complement = [i for i in range(num_items) if i not in positives]
    exact = exact_hard_distribution(complement, scores, m, num_hard, num_random)
    assert sum(exact.values()) == 1
    assert power_against_shift([float(p) for p in exact.values()], N_DRAWS) >= 0.99

    index = PositiveIndex.from_dict({0: positives}, num_items=num_items)
    table = torch.tensor([scores.get(i, float("nan")) for i in range(num_items)])
    sampler = HardNegativeSampler(
        index,
        m,
        num_hard,
        num_random,
        backend=backend,
        generator=SEEDS[backend],  # type: ignore[arg-type]
    )
    rows = sampler.sample(torch.zeros(N_DRAWS, dtype=torch.int64), lambda u, i: table[i])
    counts = Counter(map(tuple, rows.tolist()))
    assert chi_square_p_value(counts, exact) > ALPHA


@pytest.mark.parametrize("backend", ["reference", "vectorized"])
def test_uniform_sampler_draws_independent_uniform_pairs(backend: str) -> None:
    positives, num_items = [0, 3, 4], 7  # complement {1, 2, 5, 6}
    complement = [i for i in range(num_items) if i not in positives]
    exact = {
        pair: Fraction(1, len(complement) ** 2) for pair in itertools.product(complement, repeat=2)
    }
    assert power_against_shift([float(p) for p in exact.values()], N_DRAWS) >= 0.99

    index = PositiveIndex.from_dict({1: positives}, num_items=num_items)
    sampler = UniformSampler(index, 2, backend=backend, generator=SEEDS[backend])  # type: ignore[arg-type]
    rows = sampler.sample(torch.ones(N_DRAWS, dtype=torch.int64))
    counts = Counter(map(tuple, rows.tolist()))
    assert chi_square_p_value(counts, exact) > ALPHA


def test_the_chi_square_check_rejects_a_sampler_with_a_plausible_bug() -> None:
    """The same check must fail for a hard part that takes the *lowest* scores: it has teeth."""
    positives, num_items, scores, m, num_hard, num_random = HARD_CASES["ties"]
    complement = [i for i in range(num_items) if i not in positives]
    exact = exact_hard_distribution(complement, scores, m, num_hard, num_random)
    index = PositiveIndex.from_dict({0: positives}, num_items=num_items)
    table = torch.tensor([scores.get(i, 0.0) for i in range(num_items)])
    sampler = HardNegativeSampler(index, m, num_hard, num_random, generator=7)
    rows = sampler.sample(torch.zeros(N_DRAWS, dtype=torch.int64), lambda u, i: -table[i])
    counts = Counter(map(tuple, rows.tolist()))
    assert chi_square_p_value(counts, exact) < ALPHA


# ---------------------------------------------------------------------- popularity and softmax

# Popularity in this index (alpha = 1): item 0: 2, item 1: 1, item 2: 3, items 3 and 4: 1,
# item 5: 0. User 0's complement {0, 2, 3, 4, 5} weighs 2, 3, 1, 1, 0: item 5 is never drawn.
POPULARITY_INDEX = {0: [1], 1: [0, 2], 2: [2, 3], 3: [0, 2, 4]}
POPULARITY_ITEMS = 6


def exact_weighted_hard_distribution(
    q: dict[int, float],
    scores: dict[int, float],
    m: int,
    num_hard: int,
    num_random: int,
    temperature: float | None,
) -> dict[tuple[int, ...], float]:
    """P(output row) for candidates i.i.d. from ``q`` and a top-k or Plackett-Luce hard part."""
    dist: Counter[tuple[int, ...]] = Counter()
    for candidates in itertools.product(sorted(q), repeat=m):
        p_tuple = math.prod(q[c] for c in candidates)
        if temperature is None:
            ranked = sorted(range(m), key=lambda slot: (-scores[candidates[slot]], slot))
            hard_orders = [(tuple(ranked[:num_hard]), 1.0)]
        else:
            # Gumbel-top-k = sampling slots without replacement prop. to exp(score / T).
            weight = [math.exp(scores[c] / temperature) for c in candidates]
            hard_orders = []
            for order in itertools.permutations(range(m), num_hard):
                p_order, left = 1.0, sum(weight)
                for slot in order:
                    p_order *= weight[slot] / left
                    left -= weight[slot]
                hard_orders.append((order, p_order))
        for hard, p_hard in hard_orders:
            free = [slot for slot in range(m) if slot not in hard]
            picks = list(itertools.permutations(free, num_random))
            for pick in picks:
                row = tuple(candidates[s] for s in list(hard) + list(pick))
                dist[row] += p_tuple * p_hard / len(picks)
    return dict(dist)


def chi_square_p_value_float(
    counts: Counter[tuple[int, ...]], exact: dict[tuple[int, ...], float]
) -> float:
    """As :func:`chi_square_p_value`, for float probabilities."""
    return chi_square_p_value(counts, {cell: Fraction(p) for cell, p in exact.items()})


def popularity_q(alpha: float) -> dict[int, float]:
    weights = {
        0: 2.0**alpha,
        2: 3.0**alpha,
        3: 1.0,
        4: 1.0,
    }  # complement of user 0; item 5 weighs 0
    if alpha == 0.0:
        weights[5] = 1.0
    total = sum(weights.values())
    return {i: w / total for i, w in weights.items()}


@pytest.mark.parametrize("backend", ["reference", "vectorized"])
@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_popularity_uniform_sampler_draws_independent_weighted_pairs(
    backend: str, alpha: float
) -> None:
    q = popularity_q(alpha)
    exact = {pair: q[pair[0]] * q[pair[1]] for pair in itertools.product(q, repeat=2)}
    assert power_against_shift(list(exact.values()), N_DRAWS) >= 0.99
    index = PositiveIndex.from_dict(POPULARITY_INDEX, num_items=POPULARITY_ITEMS)
    sampler = UniformSampler(
        index,
        2,
        candidates="popularity",
        alpha=alpha,
        backend=backend,
        generator=SEEDS[backend],  # type: ignore[arg-type]
    )
    rows = sampler.sample(torch.zeros(N_DRAWS, dtype=torch.int64))
    counts = Counter(map(tuple, rows.tolist()))
    assert chi_square_p_value_float(counts, exact) > ALPHA


SOFTMAX_CASES = {
    # popularity candidates, softmax hard part, one random: (alpha, scores, M, hard, random, T)
    "popularity-softmax": (1.0, {0: 1.0, 2: 0.0, 3: -0.5, 4: 1.0}, 3, 1, 1, 0.7),
    "two-hard-softmax": (0.0, {0: 2.0, 2: 0.0, 3: -1.0, 4: 1.0, 5: 0.5}, 2, 2, 0, 1.5),
    "popularity-topk": (0.5, {0: 1.0, 2: 2.0, 3: 1.0, 4: 0.0}, 3, 1, 1, None),
}


@pytest.mark.parametrize("backend", ["reference", "vectorized"])
@pytest.mark.parametrize("case", sorted(SOFTMAX_CASES))
def test_hard_sampler_with_strategies_matches_the_exact_distribution(
    case: str, backend: str
) -> None:
    alpha, scores, m, num_hard, num_random, temperature = SOFTMAX_CASES[case]
    exact = exact_weighted_hard_distribution(
        popularity_q(alpha), scores, m, num_hard, num_random, temperature
    )
    assert sum(exact.values()) == pytest.approx(1.0)
    assert power_against_shift(list(exact.values()), N_DRAWS) >= 0.99
    index = PositiveIndex.from_dict(POPULARITY_INDEX, num_items=POPULARITY_ITEMS)
    table = torch.tensor([scores.get(i, float("nan")) for i in range(POPULARITY_ITEMS)])
    sampler = HardNegativeSampler(
        index,
        m,
        num_hard,
        num_random,
        candidates="popularity",
        alpha=alpha,
        selection="topk" if temperature is None else "softmax",
        temperature=temperature,
        backend=backend,  # type: ignore[arg-type]
        generator=SEEDS[backend],
    )
    rows = sampler.sample(torch.zeros(N_DRAWS, dtype=torch.int64), lambda u, i: table[i])
    counts = Counter(map(tuple, rows.tolist()))
    assert chi_square_p_value_float(counts, exact) > ALPHA


def test_the_softmax_check_rejects_the_wrong_temperature() -> None:
    """Teeth: the same check fails when the sampler runs at T=2 against the T=0.7 distribution."""
    alpha, scores, m, num_hard, num_random, temperature = SOFTMAX_CASES["popularity-softmax"]
    exact = exact_weighted_hard_distribution(
        popularity_q(alpha), scores, m, num_hard, num_random, temperature
    )
    index = PositiveIndex.from_dict(POPULARITY_INDEX, num_items=POPULARITY_ITEMS)
    table = torch.tensor([scores.get(i, 0.0) for i in range(POPULARITY_ITEMS)])
    sampler = HardNegativeSampler(
        index,
        m,
        num_hard,
        num_random,
        candidates="popularity",
        alpha=alpha,
        selection="softmax",
        temperature=2.0,
        generator=7,
    )
    rows = sampler.sample(torch.zeros(N_DRAWS, dtype=torch.int64), lambda u, i: table[i])
    assert chi_square_p_value_float(Counter(map(tuple, rows.tolist())), exact) < ALPHA


# ---------------------------------------------------------------------- DNS(M, N) and AHNS


def exact_ranked_distribution(
    complement: list[int],
    rank: Callable[[list[int]], list[int]],
    m: int,
    top_n: int,
    num_hard: int,
    num_random: int,
) -> dict[tuple[int, ...], Fraction]:
    """P(output row) for uniform candidates whose hard part is a uniform draw from the top.

    ``rank(candidates)`` orders the slots best first; the hard part is each
    ``num_hard``-subset of the first ``top_n`` with equal probability, in rank order.
    ``top_n = num_hard`` is a deterministic hard part (the top-k, or AHNS's closest).
    """
    dist: Counter[tuple[int, ...]] = Counter()
    p_tuple = Fraction(1, len(complement) ** m)
    for candidates in itertools.product(complement, repeat=m):
        ranked = rank(list(candidates))
        subsets = list(itertools.combinations(ranked[:top_n], num_hard))  # in rank order
        for hard in subsets:
            free = [slot for slot in range(m) if slot not in hard]
            picks = list(itertools.permutations(free, num_random))
            for pick in picks:
                row = tuple(candidates[s] for s in list(hard) + list(pick))
                dist[row] += p_tuple / len(subsets) / len(picks)
    return dict(dist)


DNS_POSITIVES, DNS_ITEMS = [1, 3], 6  # complement {0, 2, 4, 5}
DNS_SCORES = {0: 1.0, 2: 1.0, 4: 0.0, 5: -1.0}  # items 0 and 2 tie for the top


def by_score(candidates: list[int]) -> list[int]:
    return sorted(range(len(candidates)), key=lambda slot: (-DNS_SCORES[candidates[slot]], slot))


@pytest.mark.parametrize("backend", ["reference", "vectorized"])
def test_dns_mn_picks_uniformly_among_the_top_n_of_given_candidates(backend: str) -> None:
    # Fixed candidates (items 0..5 in slots 0..5, distinct scores), the sampler's own keys:
    # the hard negative is each of the 4 best items with probability 1/4.
    top_n, scores = 4, torch.tensor([0.3, -1.0, 2.0, 0.9, 1.5, 0.0])  # top 4: items 2, 4, 3, 0
    exact = {(item,): Fraction(1, top_n) for item in (2, 4, 3, 0)}
    assert power_against_shift([float(p) for p in exact.values()], N_DRAWS) >= 0.99
    index = PositiveIndex.from_dict({}, num_users=1, num_items=6)
    sampler = HardNegativeSampler(
        index, 6, 1, 0, selection="dns_mn", top_n=top_n, generator=SEEDS[backend]
    )
    drawn = sampler.draw(N_DRAWS)
    draws = HardDraws(torch.arange(6).expand(N_DRAWS, 6), drawn.slot_keys, drawn.selection_bits)
    rows = hard_negatives(
        index,
        torch.zeros(N_DRAWS, dtype=torch.int64),
        lambda u, i: scores[i],
        draws,
        num_hard=1,
        num_random=0,
        selection="dns_mn",
        top_n=top_n,
        backend=backend,  # type: ignore[arg-type]
    )
    counts = Counter(map(tuple, rows.tolist()))
    assert chi_square_p_value(counts, exact) > ALPHA


@pytest.mark.parametrize("backend", ["reference", "vectorized"])
def test_dns_mn_sampler_matches_the_exact_distribution(backend: str) -> None:
    # DNS(3, 2), one hard and one random: candidate ties included.
    exact = exact_ranked_distribution(
        [0, 2, 4, 5], by_score, m=3, top_n=2, num_hard=1, num_random=1
    )
    assert sum(exact.values()) == 1
    assert power_against_shift([float(p) for p in exact.values()], N_DRAWS) >= 0.99
    index = PositiveIndex.from_dict({0: DNS_POSITIVES}, num_items=DNS_ITEMS)
    table = torch.tensor([DNS_SCORES.get(i, float("nan")) for i in range(DNS_ITEMS)])
    sampler = HardNegativeSampler(
        index,
        3,
        1,
        1,
        selection="dns_mn",
        top_n=2,
        backend=backend,  # type: ignore[arg-type]
        generator=SEEDS[backend],
    )
    rows = sampler.sample(torch.zeros(N_DRAWS, dtype=torch.int64), lambda u, i: table[i])
    assert chi_square_p_value(Counter(map(tuple, rows.tolist())), exact) > ALPHA


def test_the_dns_mn_check_rejects_the_top_k() -> None:
    """Teeth: a hard part that always takes the best candidate fails against DNS(3, 2)."""
    exact = exact_ranked_distribution(
        [0, 2, 4, 5], by_score, m=3, top_n=2, num_hard=1, num_random=1
    )
    index = PositiveIndex.from_dict({0: DNS_POSITIVES}, num_items=DNS_ITEMS)
    table = torch.tensor([DNS_SCORES.get(i, 0.0) for i in range(DNS_ITEMS)])
    sampler = HardNegativeSampler(index, 3, 1, 1, generator=7)
    rows = sampler.sample(torch.zeros(N_DRAWS, dtype=torch.int64), lambda u, i: table[i])
    assert chi_square_p_value(Counter(map(tuple, rows.tolist())), exact) < ALPHA


# AHNS with the positive item 1 scoring 1.0, alpha 1, beta 0.5, p = -2: the target is
# 0.5 / (1.0 + 1.0) = 0.25, so the distances are item 0: 0.75, 2: 0.25, 4: 0.25, 5: 1.25.
AHNS_SCORES = {0: 1.0, 1: 1.0, 2: 0.5, 4: 0.0, 5: -1.0}
AHNS_DISTANCES = {0: 0.75, 2: 0.25, 4: 0.25, 5: 1.25}


def by_distance(candidates: list[int]) -> list[int]:
    return sorted(range(len(candidates)), key=lambda s: (AHNS_DISTANCES[candidates[s]], s))


@pytest.mark.parametrize("backend", ["reference", "vectorized"])
def test_ahns_sampler_matches_the_exact_distribution(backend: str) -> None:
    exact = exact_ranked_distribution(
        [0, 2, 4, 5], by_distance, m=3, top_n=1, num_hard=1, num_random=1
    )
    assert sum(exact.values()) == 1
    assert power_against_shift([float(p) for p in exact.values()], N_DRAWS) >= 0.99
    index = PositiveIndex.from_dict({0: DNS_POSITIVES}, num_items=DNS_ITEMS)
    table = torch.tensor([AHNS_SCORES.get(i, float("nan")) for i in range(DNS_ITEMS)])
    sampler = HardNegativeSampler(
        index,
        3,
        1,
        1,
        selection="ahns",
        ahns_alpha=1.0,
        ahns_beta=0.5,
        ahns_p=-2,
        backend=backend,  # type: ignore[arg-type]
        generator=SEEDS[backend],
    )
    users = torch.zeros(N_DRAWS, dtype=torch.int64)
    rows = sampler.sample(users, lambda u, i: table[i], positives=torch.ones_like(users))
    assert chi_square_p_value(Counter(map(tuple, rows.tolist())), exact) > ALPHA
