"""CandidateSampler: a batch's softmax candidates from several sources, with one exact mask."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import negsample.functional
from negsample import (
    CandidateSampler,
    HardNegativeSampler,
    MFModel,
    PositiveIndex,
    SampledSoftmaxLoss,
    SharedNegativeSampler,
    _hits,
)
from negsample.samplers import CandidateSet
from tests.strategies import Case, batches, cases, table_scorer


def brute_force_mask(case: Case, users: list[int], columns: list[list[int]]) -> list[list[bool]]:
    """Row ``b``'s column ``k`` holds item ``columns[b][k]``: masked iff a known positive."""
    return [
        [item in case.positives[u] for item in row] for u, row in zip(users, columns, strict=True)
    ]


@given(data=st.data())
def test_the_mask_covers_exactly_the_known_positives_of_every_source(data: st.DataObject) -> None:
    case = data.draw(cases(allow_full=False))
    users = data.draw(batches(case))
    pos_items = torch.tensor(
        [data.draw(st.integers(0, case.num_items - 1)) for _ in range(users.numel())]
    )
    supplied = torch.tensor(
        [
            [data.draw(st.integers(0, case.num_items - 1)) for _ in range(2)]
            for _ in range(users.numel())
        ]
    )
    num_shared = data.draw(st.integers(0, 6))
    hard = HardNegativeSampler(case.index, 3, num_hard=1, num_random=1, generator=1)
    sampler = CandidateSampler(case.index, num_shared, in_batch=True, hard=hard, generator=0)
    scores = torch.randn(
        len(case.positives), case.num_items, generator=torch.Generator().manual_seed(0)
    )
    cands = sampler.sample(users, pos_items, table_scorer(scores), negatives=supplied)
    batch = users.numel()
    # On the CPU the in-batch columns are the batch's distinct positives, each once.
    assert torch.equal(cands.items[num_shared:], torch.tensor(sorted(set(pos_items.tolist()))))
    assert cands.row_items is not None and cands.row_items.shape == (batch, 4)
    assert torch.equal(cands.row_items[:, 2:], supplied)
    columns = [cands.items.tolist() + row for row in cands.row_items.tolist()]
    assert cands.mask.tolist() == brute_force_mask(case, users.tolist(), columns)
    # Hard negatives come from each user's complement: their columns are never masked.
    assert not bool(cands.mask[:, cands.columns("hard")].any())


def gowalla_like() -> PositiveIndex:
    gen = torch.Generator().manual_seed(0)
    users = torch.randint(0, 50, (600,), generator=gen)
    items = torch.randint(0, 200, (600,), generator=gen) ** 2 // 200  # popular low ids
    return PositiveIndex.from_pairs(users, items, num_users=50, num_items=200)


@pytest.mark.parametrize(
    "kind", [{}, {"candidates": "popularity", "alpha": 0.5}], ids=["uniform", "popularity"]
)
def test_it_equals_the_composition_by_hand(kind: dict[str, object]) -> None:
    # The loop of the docs page, source by source, with the same seeds.
    index = gowalla_like()
    users, pos_items = index.pairs()
    users, pos_items = users[:64], pos_items[:64]
    model = MFModel(50, 200, 8, similarity="cosine")
    k, b = 32, users.numel()
    hard = HardNegativeSampler(index, 10, 3, 0, generator=1)
    cands = CandidateSampler(index, k, in_batch=True, hard=hard, generator=0, **kind).sample(  # type: ignore[arg-type]
        users, pos_items, model
    )
    shared = SharedNegativeSampler(index, k, generator=0, **kind)  # type: ignore[arg-type]
    drawn = shared.sample(users)
    batch = shared.in_batch(users, pos_items)
    # The in-batch columns: each distinct positive once (its first copy's mask column),
    # its log_q lowered by the log of its number of copies.
    distinct, copies = torch.unique(pos_items, return_counts=True)
    assert distinct.numel() < b  # the case has repeated positives
    first = torch.tensor([pos_items.tolist().index(item) for item in distinct.tolist()])
    items = torch.cat([drawn.items, distinct])
    log_q = torch.logaddexp(
        shared.log_prob(items) + math.log(k), shared.in_batch_log_prob(items) + math.log(b)
    )
    log_q[k:] -= copies.log()
    hard_items = HardNegativeSampler(index, 10, 3, 0, generator=1).sample(users, model)
    assert torch.equal(cands.items, items)
    assert cands.row_items is not None and torch.equal(cands.row_items, hard_items)
    assert torch.equal(
        cands.mask,
        torch.cat(
            [drawn.mask, batch.mask[:, first], torch.zeros_like(hard_items, dtype=torch.bool)], 1
        ),
    )
    expected_log_q = torch.cat([log_q, torch.full((3,), math.log(k / 200))])
    torch.testing.assert_close(cands.log_q, expected_log_q)
    width = distinct.numel()
    assert cands.sources == (("shared", 32), ("in-batch", width), ("hard", 3))
    assert cands.columns("in-batch") == slice(32, 32 + width)


@pytest.mark.parametrize(
    ("neg_weight", "include_positive"), [(1.0, True), (1.22, False)], ids=["plain", "bilateral"]
)
def test_merged_in_batch_columns_give_the_loss_of_one_column_per_copy(
    neg_weight: float, include_positive: bool
) -> None:
    # The candidate set's distinct in-batch columns against the docs' by-hand set (one
    # column per positive, copies included): the same losses and gradients, in float64
    # (log_q too: torch's default dtype), through the scores and through the vectors.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _check_merged_columns(neg_weight, include_positive)
    finally:
        torch.set_default_dtype(previous)


def _check_merged_columns(neg_weight: float, include_positive: bool) -> None:
    index = gowalla_like()
    users, pos_items = index.pairs()
    order = torch.randperm(users.numel(), generator=torch.Generator().manual_seed(1))[:96]
    users, pos_items = users[order], pos_items[order]
    torch.manual_seed(0)
    model = MFModel(50, 200, 8, similarity="cosine", dtype=torch.float64)
    hard = HardNegativeSampler(index, 10, 3, 0, generator=1)
    cands = CandidateSampler(index, 32, in_batch=True, hard=hard, generator=0).sample(
        users, pos_items, model
    )
    shared = SharedNegativeSampler(index, 32, generator=0)
    drawn, batch = shared.sample(users), shared.in_batch(users, pos_items)
    assert cands.columns("in-batch").stop - 32 < 96  # repeated positives were merged
    items = torch.cat([drawn.items, batch.items])
    log_q = torch.logaddexp(
        shared.log_prob(items) + math.log(32), shared.in_batch_log_prob(items) + math.log(96)
    )
    assert cands.row_items is not None
    by_hand = CandidateSet(
        items,
        cands.row_items,
        torch.cat([drawn.mask, batch.mask, cands.mask[:, cands.columns("hard")]], 1),
        torch.cat([log_q, cands.log_q[cands.columns("hard")]]),
        (("shared", 32), ("in-batch", 96), ("hard", 3)),
    )
    loss_fn = SampledSoftmaxLoss(
        0.1, neg_weight=neg_weight, include_positive=include_positive, reduction="none"
    )
    row_weights = torch.linspace(0.5, 1.5, 96, dtype=torch.float64)

    def run(c: CandidateSet, by_vectors: bool) -> tuple[torch.Tensor, ...]:
        model.zero_grad()
        if by_vectors:
            vectors = model.candidate_vectors(users, pos_items, c.items, c.row_items)
            loss = loss_fn.from_vectors(*vectors, log_q=c.log_q, mask=c.mask)
        else:
            scores = c.scores(model, users)
            loss = loss_fn(model(users, pos_items), scores, log_q=c.log_q, mask=c.mask)
        (loss * row_weights).sum().backward()
        return (loss.detach(), *(p.grad.clone() for p in model.parameters() if p.grad is not None))

    for by_vectors in (False, True):
        merged, copies = run(cands, by_vectors), run(by_hand, by_vectors)
        assert len(merged) == 3
        for got, want in zip(merged, copies, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("num_shared", "in_batch", "expected"),
    [
        # one shared draw: q = 1/200, K = 8 -> log(8/200)
        (8, False, lambda pop, nnz: torch.full((8,), math.log(8 / 200))),
        # in-batch only: log(B * popularity / nnz), minus log(copies) for a repeated item
        (0, True, lambda pop, nnz: torch.log(4 * pop / nnz) - torch.log(torch.tensor([1, 1, 2]))),
    ],
    ids=["shared", "in-batch"],
)
def test_log_q_of_each_source_alone(num_shared: int, in_batch: bool, expected: object) -> None:
    index = gowalla_like()
    users, pos_items = torch.tensor([0, 1, 2, 3]), torch.tensor([5, 0, 5, 2])  # 5 twice
    cands = CandidateSampler(index, num_shared, in_batch=in_batch, generator=0).sample(
        users, pos_items
    )
    popularity = torch.bincount(index.indices.long(), minlength=200).double()
    want = expected(popularity[cands.items], index.num_interactions).float()  # type: ignore[operator]
    torch.testing.assert_close(cands.log_q, want)


def test_supplied_negatives_are_masked_where_known_positives_and_counted_as_uniform_draws() -> None:
    index = PositiveIndex.from_dict({0: [1, 2], 1: [3]}, num_items=10)
    sampler = CandidateSampler(index, 0, in_batch=False, generator=0)
    supplied = torch.tensor([[2, 5, 1], [3, 3, 0]])
    cands = sampler.sample(torch.tensor([0, 1]), negatives=supplied)
    assert cands.items.numel() == 0 and cands.row_items is not None
    assert cands.mask.tolist() == [[True, False, True], [True, True, False]]
    torch.testing.assert_close(cands.log_q, torch.full((3,), math.log(1 / 10)))
    assert cands.sources == (("supplied", 3),)


def test_scores_equal_the_model_s_on_every_column() -> None:
    index = gowalla_like()
    torch.manual_seed(0)
    model = MFModel(50, 200, 8)
    hard = HardNegativeSampler(index, 10, 2, 0, generator=1)
    users, pos_items = torch.tensor([0, 7, 7]), torch.tensor([3, 4, 5])
    cands = CandidateSampler(index, 5, in_batch=True, hard=hard, generator=0).sample(
        users, pos_items, model
    )
    scores = cands.scores(model, users)
    assert cands.row_items is not None
    columns = torch.cat([cands.items.expand(3, -1), cands.row_items], dim=1)
    torch.testing.assert_close(scores, model(users[:, None], columns))


def test_same_seed_same_candidates() -> None:
    index = gowalla_like()
    users, pos_items = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])

    def run() -> CandidateSet:
        return CandidateSampler(index, 16, in_batch=True, generator=3).sample(users, pos_items)

    first, second = run(), run()
    assert torch.equal(first.items, second.items) and torch.equal(first.mask, second.mask)


@given(data=st.data())
def test_every_item_once_with_the_exact_mask_and_no_correction(data: st.DataObject) -> None:
    # num_shared="all": the full softmax's columns. Every item once in id order, each row's
    # known positives masked (checked against the sets), log_q 0, hard columns never masked
    # and counted as one draw among num_items (log_q 0 too).
    case = data.draw(cases(allow_full=False))
    users = data.draw(batches(case))
    hard = HardNegativeSampler(case.index, 3, num_hard=2, num_random=0, generator=1)
    sampler = CandidateSampler(case.index, "all", hard=hard)
    scores = torch.randn(
        len(case.positives), case.num_items, generator=torch.Generator().manual_seed(0)
    )
    cands = sampler.sample(users, None, table_scorer(scores))
    assert sampler.num_shared == case.num_items
    assert cands.items.tolist() == list(range(case.num_items))
    assert cands.sources == (("shared", case.num_items), ("hard", 2))
    assert cands.row_items is not None
    columns = [cands.items.tolist() + row for row in cands.row_items.tolist()]
    assert cands.mask.tolist() == brute_force_mask(case, users.tolist(), columns)
    assert torch.equal(cands.log_q, torch.zeros(case.num_items + 2))


@pytest.mark.parametrize(
    ("kwargs", "call", "error", "match"),
    [
        ({"num_shared": -1}, None, ValueError, "num_shared must be >= 0, got -1"),
        ({"in_batch": 1}, None, TypeError, "in_batch must be a bool, got 1"),
        ({"hard": "top"}, None, TypeError, "hard must be None or a HardNegativeSampler"),
        (
            {"hard": HardNegativeSampler(PositiveIndex.from_dict({0: [1]}, num_items=10), 3, 1, 0)},
            None,
            ValueError,
            "hard samples another index",
        ),
        ({"num_shared": 0}, {}, ValueError, "no candidates"),
        ({"num_shared": "many"}, None, ValueError, "num_shared must be an int >= 0 or 'all'"),
        ({"num_shared": "all", "in_batch": True}, None, ValueError, "in_batch=True adds nothing"),
        (
            {"num_shared": "all", "candidates": "popularity"},
            None,
            ValueError,
            "candidates='popularity' and alpha=None do not apply",
        ),
        ({"in_batch": True}, {}, ValueError, "in_batch=True needs the batch's pos_items"),
        ({"in_batch": True}, {"pos_items": torch.tensor([1])}, ValueError, "one item per user"),
        ({"hard": "own"}, {}, ValueError, "hard negatives need a scorer"),
        (
            {},
            {"negatives": torch.tensor([1, 2])},
            ValueError,
            r"negatives must have shape \(B, n\)",
        ),
        ({}, {"negatives": torch.tensor([[1], [10]])}, ValueError, "negatives"),
        ({}, {"negatives": torch.tensor([[1.0], [2.0]])}, TypeError, "negatives"),
    ],
)
def test_bad_arguments_get_clear_errors(
    kwargs: dict[str, object], call: dict[str, object] | None, error: type[Exception], match: str
) -> None:
    index = PositiveIndex.from_dict({0: [1], 1: [2]}, num_items=10)
    if kwargs.get("hard") == "own":
        kwargs = {**kwargs, "hard": HardNegativeSampler(index, 3, 1, 0)}
    with pytest.raises(error, match=match):
        sampler = CandidateSampler(index, **kwargs)  # type: ignore[arg-type]
        sampler.sample(torch.tensor([0, 1]), **(call or {}))  # type: ignore[arg-type]


def test_an_ahns_hard_sampler_gets_the_batch_s_positives() -> None:
    # AHNS picks the candidate closest to a target set by the positive's score: the candidate
    # set's hard columns are the sampler's own negatives for the same positives and seed.
    index = PositiveIndex.from_dict({u: [u, u + 1] for u in range(6)}, num_items=40)
    model = MFModel(6, 40, dim=4)
    users, pos_items = torch.arange(6), torch.arange(6)

    def ahns() -> HardNegativeSampler:
        return HardNegativeSampler(index, 8, 2, 0, selection="ahns", generator=4)

    cands = CandidateSampler(index, 5, hard=ahns(), generator=0).sample(users, pos_items, model)
    assert cands.row_items is not None
    assert torch.equal(cands.row_items, ahns().sample(users, model, positives=pos_items))
    with pytest.raises(ValueError, match="selection='ahns' needs the pos_items"):
        CandidateSampler(index, 5, hard=ahns()).sample(users, None, model)


# ---------------------------------------------------------- the mask's recorded hits


@given(data=st.data())
def test_the_recorded_hits_are_exactly_the_mask_s_true_entries_rows_in_order(
    data: st.DataObject,
) -> None:
    case = data.draw(cases(allow_full=False))
    users = data.draw(batches(case))
    pos_items = torch.tensor(
        [data.draw(st.integers(0, case.num_items - 1)) for _ in range(users.numel())]
    )
    num_shared = data.draw(st.integers(0, 6))
    hard = HardNegativeSampler(case.index, 3, num_hard=1, num_random=1, generator=1)
    sampler = CandidateSampler(case.index, num_shared, in_batch=True, hard=hard, generator=0)
    scores = torch.randn(len(case.positives), case.num_items, generator=torch.Generator())
    cands = sampler.sample(users, pos_items, table_scorer(scores))
    hits = _hits.known(cands.mask)
    if not bool(cands.mask.any()):
        assert hits is None or hits[0].numel() == 0
        return
    assert hits is not None
    rows, columns = hits
    assert bool((rows[1:] >= rows[:-1]).all())
    recorded = sorted(zip(rows.tolist(), columns.tolist(), strict=True))
    assert recorded == sorted(map(tuple, cands.mask.nonzero().tolist()))


def _loss_and_grads(
    model: MFModel,
    users: torch.Tensor,
    pos_items: torch.Tensor,
    cands: CandidateSet,
    mask: torch.Tensor,
) -> list[torch.Tensor]:
    model.zero_grad()
    loss_fn = SampledSoftmaxLoss(0.1, neg_weight=1.22, include_positive=False, reduction="none")
    vectors = model.candidate_vectors(users, pos_items, cands.items, cands.row_items)
    loss = loss_fn.from_vectors(*vectors, log_q=cands.log_q, mask=mask)
    loss.sum().backward()
    return [loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_the_fused_loss_over_a_candidate_set_s_mask_equals_it_over_a_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The recorded hits (set by position) against the copy (no record: read whole),
    # over several blocks of rows, with a row whose every negative is masked.
    monkeypatch.setattr(negsample.functional, "_BLOCK_SCORES", 40)
    index = PositiveIndex.from_pairs(
        torch.tensor([0, 0, 0, 1, 1, 2, 3, 4]), torch.tensor([1, 2, 3, 3, 4, 5, 1, 2]), num_items=8
    )
    torch.manual_seed(0)
    model = MFModel(5, 8, 4, similarity="cosine")
    # Every positive of the batch is one of user 0's: its in-batch columns are all masked.
    users = torch.tensor([0, 0, 0, 1, 3, 4, 0, 1, 3])
    pos_items = torch.tensor([1, 2, 3, 3, 1, 2, 1, 3, 1])
    for num_shared, hard in ((0, None), (3, HardNegativeSampler(index, 3, 1, 0, generator=1))):
        sampler = CandidateSampler(index, num_shared, in_batch=True, hard=hard, generator=0)
        cands = sampler.sample(users, pos_items, model)
        assert _hits.known(cands.mask) is not None  # the fast path is the one tested
        if hard is None:
            assert bool(cands.mask[0].all())
        fused = _loss_and_grads(model, users, pos_items, cands, cands.mask)
        dense = _loss_and_grads(model, users, pos_items, cands, cands.mask.clone())
        for a, b in zip(fused, dense, strict=True):
            assert torch.equal(a, b)
        if hard is None:
            assert fused[0][0].item() == 0.0


def test_a_mask_changed_in_place_is_read_whole_not_by_its_stale_record() -> None:
    index = gowalla_like()
    torch.manual_seed(0)
    model = MFModel(50, 200, 8, similarity="cosine")
    users, pos_items = torch.tensor([0, 7, 7, 9]), torch.tensor([3, 4, 5, 6])
    cands = CandidateSampler(index, 5, in_batch=True, generator=0).sample(users, pos_items)
    before = _loss_and_grads(model, users, pos_items, cands, cands.mask)[0]
    free = (~cands.mask[0]).nonzero()[0, 0]
    cands.mask[0, free] = True
    assert _hits.known(cands.mask) is None
    after = _loss_and_grads(model, users, pos_items, cands, cands.mask)[0]
    expected = _loss_and_grads(model, users, pos_items, cands, cands.mask.clone())[0]
    assert torch.equal(after, expected)
    assert after[0].item() != before[0].item()


def test_copies_of_a_candidate_set_s_mask_carry_no_record_and_records_go_with_the_mask() -> None:
    import copy
    import io

    index = gowalla_like()
    users, pos_items = torch.tensor([0, 7, 7, 9]), torch.tensor([3, 4, 5, 6])
    cands = CandidateSampler(index, 5, in_batch=True, generator=0).sample(users, pos_items)
    mask = cands.mask
    assert _hits.known(mask) is not None
    copied = copy.deepcopy(mask)
    buffer = io.BytesIO()
    torch.save(mask, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    for other in (copied, loaded, mask.clone(), mask[:, :]):
        assert torch.equal(other, mask)
        assert _hits.known(other) is None
    records = len(_hits._RECORDS)
    del cands, mask, other  # the last view holds its base
    assert len(_hits._RECORDS) == records - 1


def test_a_mask_made_in_inference_mode_has_no_record_and_masks_the_same() -> None:
    # Inference tensors keep no version counter: nothing is recorded, the mask is read whole.
    index = gowalla_like()
    torch.manual_seed(0)
    model = MFModel(50, 200, 8, similarity="cosine")
    users, pos_items = torch.tensor([0, 7, 7, 9]), torch.tensor([3, 4, 5, 6])
    sampler = CandidateSampler(index, 5, in_batch=True, generator=0)
    loss_fn = SampledSoftmaxLoss(0.1, reduction="none")
    with torch.inference_mode():
        cands = sampler.sample(users, pos_items)
        assert _hits.known(cands.mask) is None
        vectors = model.candidate_vectors(users, pos_items, cands.items, cands.row_items)
        inferred = loss_fn.from_vectors(*vectors, log_q=cands.log_q, mask=cands.mask)
    recorded = CandidateSampler(index, 5, in_batch=True, generator=0).sample(users, pos_items)
    assert torch.equal(recorded.mask, cands.mask) and _hits.known(recorded.mask) is not None
    with torch.no_grad():
        vectors = model.candidate_vectors(users, pos_items, recorded.items, recorded.row_items)
        expected = loss_fn.from_vectors(*vectors, log_q=recorded.log_q, mask=recorded.mask)
    assert torch.equal(inferred, expected)
