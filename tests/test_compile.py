"""``torch.compile`` of the vectorized path: compiled output equals eager output exactly.

What compiles (torch 2.13, CPU):

* ``hard_negatives(..., validate=False)`` with a scorer that does not validate
  either (``MFModel(validate=False)``), on the path every device but the CPU
  takes (uniform candidates searched for every draw; here by emptying
  ``negsample.candidates._COMPACTING_DEVICES``): one graph, ``fullgraph=True``,
  under inductor, ``aot_eager`` and ``eager``. Tested below with inductor on
  fixed draws.
* ``sampler.sample`` with ``generator=None`` (torch's default generator) and
  ``validate=False``, on that path: one graph, ``fullgraph=True``; the draws
  stay ``aten.randint`` calls on the default generator, so a compiled sampler
  and an eager one reproduce each other under the same ``torch.manual_seed``.

Where it breaks (each is a graph break without ``fullgraph``, an error with it):

* on the CPU, uniform candidates search only the draws that the pair filter
  flags, gathered with ``torch.nonzero`` (data-dependent shapes); that step is
  ``torch.compiler.disable``-d, so it runs eagerly between two graphs. Tested
  below with inductor, without ``fullgraph``;

* a seeded sampler (``generator=int`` or a ``torch.Generator``):
  ``torch.randint(..., generator=gen)`` is not traceable ("Failed to convert
  args/kwargs to proxy" for the ``Generator`` argument); the first call of an
  int-seeded sampler also creates its generator inside the region ("An opaque
  object was created in the middle of the program"). The draws then run eagerly
  and the rest is compiled.
* ``validate=True`` (the sampler's NaN check, the index's and the model's id
  checks): ``bool(tensor.any())`` reads a value back ("Could not guard on
  data-dependent expression"); each check is a graph break.

The inductor test uses one compile of small, fixed shapes (``dynamic=False``,
recompiles are errors). The end-to-end tests check dynamo's capture of
``sample`` without generating code (``backend="aot_eager"`` for the single graph,
``"eager"`` for the seeded sampler, whose draws run outside the graph), since
the code inductor generates for the same operations is what the first test checks.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import torch
import torch._dynamo

import negsample.candidates
from negsample import HardNegativeSampler, MFModel, PositiveIndex
from negsample.candidates import UniformCandidates
from negsample.samplers import HardDraws, hard_negatives

NUM_USERS, NUM_ITEMS, BATCH, M, HARD, RANDOM = 8, 24, 16, 8, 2, 2

if not torch._dynamo.is_dynamo_supported():
    pytest.skip("torch.compile is not supported on this platform", allow_module_level=True)


def _has_cpp_compiler() -> bool:
    from torch._inductor import config

    return shutil.which(config.cpp.cxx[1] or "g++") is not None


INDUCTOR = pytest.mark.skipif(
    not _has_cpp_compiler(), reason="inductor on CPU needs a C++ compiler (none found)"
)


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    """Compiled code and its guards must not leak into other tests."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _index() -> PositiveIndex:
    """Rows from empty to one non-positive left, so complements of every size occur."""
    positives = {
        1: [0],
        2: list(range(0, NUM_ITEMS, 2)),
        3: list(range(1, NUM_ITEMS)),  # only item 0 is a negative: all candidates tie
        4: [5, 6, 7, 20],
        5: list(range(12)),
        6: [23],
        7: list(range(3, NUM_ITEMS, 3)),
    }
    return PositiveIndex.from_dict(positives, num_users=NUM_USERS, num_items=NUM_ITEMS)


def _integer_model() -> MFModel:
    """Embeddings in {-1, 0, 1}: every score is an exact small integer.

    So the compiled scorer's summation order cannot change a score, and ties are
    common; user 0's embedding is zero, so all of its candidates tie.
    """
    gen = torch.Generator().manual_seed(0)
    model = MFModel(NUM_USERS, NUM_ITEMS, dim=4, init_std=0.0, validate=False)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.randint(-1, 2, (NUM_USERS, 4), generator=gen))
        model.item_embedding.weight.copy_(torch.randint(-1, 2, (NUM_ITEMS, 4), generator=gen))
        model.user_embedding.weight[0] = 0.0
    return model


def _assert_no_positive(index: PositiveIndex, users: torch.Tensor, items: torch.Tensor) -> None:
    hits = index.contains(users[:, None], items)
    assert not bool(hits.any()), (users[hits.any(dim=1)], items[hits.any(dim=1)])


def _has_tied_scores(model: MFModel, users: torch.Tensor, candidates: torch.Tensor) -> bool:
    with torch.no_grad():
        ordered = model(users[:, None], candidates).sort(dim=1).values
    return bool((ordered[:, 1:] == ordered[:, :-1]).any())


@pytest.fixture
def every_draw_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    """The uniform-candidate path of accelerators: no compaction, fixed shapes."""
    monkeypatch.setattr(negsample.candidates, "_COMPACTING_DEVICES", ())


@INDUCTOR
@pytest.mark.usefixtures("every_draw_searched")
def test_inductor_compiled_hard_negatives_equal_eager_on_the_same_draws() -> None:
    index = _index()
    model = _integer_model()

    def select(users: torch.Tensor, draws: HardDraws) -> torch.Tensor:
        return hard_negatives(
            index, users, model, draws, num_hard=HARD, num_random=RANDOM, validate=False
        )

    compiled = torch.compile(select, fullgraph=True, dynamic=False)
    gen = torch.Generator().manual_seed(1)
    sampler = HardNegativeSampler(index, M, HARD, RANDOM, generator=2, validate=False)
    batches = []
    for _ in range(3):
        users = torch.randint(0, NUM_USERS, (BATCH,), generator=gen)
        batches.append((users, sampler.draw(BATCH)))
    # Every user, and slot keys from {0, 1, 2} so that the random part's tie-break is exercised.
    users = torch.arange(BATCH) % NUM_USERS
    tied_keys = torch.randint(0, 3, (BATCH, M), generator=gen)
    batches.append((users, sampler.draw(BATCH)._replace(slot_keys=tied_keys)))

    with torch._dynamo.config.patch(error_on_recompile=True):
        for users, draws in batches:
            expected = select(users, draws)
            actual = compiled(users, draws)
            assert torch.equal(actual, expected), (users, draws, actual, expected)
            _assert_no_positive(index, users, actual)
    candidates = UniformCandidates(index).draw(batches[-1][0], batches[-1][1].candidate_bits)
    assert _has_tied_scores(model, batches[-1][0], candidates)


@pytest.mark.usefixtures("every_draw_searched")
def test_compiled_sample_with_the_default_generator_is_one_graph_and_reproduces_eager() -> None:
    index = _index()
    model = _integer_model()
    eager = HardNegativeSampler(index, M, HARD, RANDOM, validate=False)
    traced = HardNegativeSampler(index, M, HARD, RANDOM, validate=False)
    compiled = torch.compile(
        lambda users: traced.sample(users, model), backend="aot_eager", fullgraph=True
    )
    gen = torch.Generator().manual_seed(3)
    with torch.random.fork_rng(devices=[]):  # leave the global generator as other tests found it
        for seed in range(3):
            users = torch.randint(0, NUM_USERS, (BATCH,), generator=gen)
            torch.manual_seed(seed)
            expected = eager.sample(users, model)
            torch.manual_seed(seed)
            actual = compiled(users)
            assert torch.equal(actual, expected)
            _assert_no_positive(index, users, actual)


def test_compiled_seeded_sample_breaks_at_the_draws_and_still_matches_eager() -> None:
    index = _index()
    model = _integer_model()
    eager = HardNegativeSampler(index, M, HARD, RANDOM, generator=5, validate=False)
    traced = HardNegativeSampler(index, M, HARD, RANDOM, generator=5, validate=False)
    compiled = torch.compile(lambda users: traced.sample(users, model), backend="eager")
    gen = torch.Generator().manual_seed(4)
    for _ in range(3):
        users = torch.randint(0, NUM_USERS, (BATCH,), generator=gen)
        actual = compiled(users)
        assert torch.equal(actual, eager.sample(users, model))
        _assert_no_positive(index, users, actual)


@INDUCTOR
def test_inductor_compiled_sampler_on_cpu_runs_the_filtered_draw_eagerly_and_matches() -> None:
    index = _index()
    model = _integer_model()
    eager = HardNegativeSampler(index, M, HARD, RANDOM, generator=6, validate=False)
    traced = HardNegativeSampler(index, M, HARD, RANDOM, generator=6, validate=False)
    assert traced.candidates._filter is not None  # type: ignore[union-attr]
    compiled = torch.compile(lambda users: traced.sample(users, model), dynamic=False)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        users = torch.randint(0, NUM_USERS, (BATCH,), generator=gen)
        actual = compiled(users)
        assert torch.equal(actual, eager.sample(users, model))
        _assert_no_positive(index, users, actual)

    def select(users: torch.Tensor, draws: HardDraws) -> torch.Tensor:
        return hard_negatives(
            index, users, model, draws, num_hard=HARD, num_random=RANDOM, validate=False
        )

    # The only break left once the draws are given is the filtered draw itself.
    one_graph = torch.compile(select, fullgraph=True, backend="eager")
    with pytest.raises(torch._dynamo.exc.Unsupported, match="_replace_flagged"):
        one_graph(users, eager.draw(BATCH))
