"""The softmax recipe's step: by the model's vectors (fused) and by scores, the same loss."""

from __future__ import annotations

import pytest
import torch

from negsample import MFModel, PositiveIndex
from negsample.cli._recipes import make_step, recipe


def small_index() -> PositiveIndex:
    return PositiveIndex.from_dict(
        {u: [u % 11, (u * 3 + 1) % 11, 12 + u % 5] for u in range(30)}, num_items=200
    )


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"sampler": "uniform", "in_batch": False}, id="shared"),
        pytest.param({"sampler": "uniform", "in_batch": True}, id="shared+in-batch"),
        pytest.param({"in_batch": True, "num_candidates": 8, "num_hard": 3}, id="recipe"),
        pytest.param(
            {"in_batch": True, "num_candidates": 8, "num_hard": 3, "user_temperature": True},
            id="recipe+user-temperature",
        ),
        # 300 shared candidates for 200 items: every item is scored once instead.
        pytest.param({"num_negatives": 300, "num_candidates": 8}, id="every-item+hard"),
    ],
)
@pytest.mark.parametrize("bias", [False, True])
def test_the_step_by_vectors_equals_the_step_by_scores(
    options: dict[str, object], bias: bool
) -> None:
    # A scorer that is not the model itself (as a DistributedDataParallel wrapper) makes the
    # step score pairs; the model itself makes it use the fused loss over its vectors. Same
    # seeds, same candidates: the same losses and gradients, step after step.
    index = small_index()
    users, items = index.pairs()
    options = {"num_negatives": 20, **options}
    config = recipe("softmax", batch_size=len(users), **options)  # type: ignore[arg-type]
    results = []
    for by_scores in (False, True):
        torch.manual_seed(0)
        model = MFModel(
            30, 200, 8, similarity="cosine", init_std=0.1, bias=bias, dtype=torch.float64
        )
        scorer = model.forward if by_scores else None
        step, _ = make_step(config, model, index, scorer=scorer)
        losses, grads = [], []
        for _ in range(3):
            model.zero_grad()
            loss = step(users, items)
            loss.backward()
            losses.append(loss.detach())
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
        results.append((losses, grads))
    (losses_v, grads_v), (losses_s, grads_s) = results
    torch.testing.assert_close(torch.stack(losses_v), torch.stack(losses_s))
    for got, want in zip(grads_v, grads_s, strict=True):
        assert len(got) == len(want) == (3 if bias else 2)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w)


def test_the_readme_loop_trains_what_the_command_trains() -> None:
    # The README's softmax loop, written with the public API only, against the command's
    # step for the same recipe and seeds: the same losses, step after step.
    from negsample import CandidateSampler, HardNegativeSampler, SampledSoftmaxLoss

    index = small_index()
    users, items = index.pairs()
    config = recipe(
        "softmax",
        in_batch=True,
        num_negatives=20,
        num_candidates=8,
        num_hard=3,
        seed=5,
        batch_size=len(users),
    )
    torch.manual_seed(0)
    model = MFModel(30, 200, 8, similarity="cosine", init_std=0.1)
    step, _ = make_step(config, model, index)
    command = [step(users, items).item() for _ in range(3)]

    torch.manual_seed(0)
    model = MFModel(30, 200, 8, similarity="cosine", init_std=0.1)
    hard = HardNegativeSampler(index, 8, num_hard=3, num_random=0, generator=6)
    sampler = CandidateSampler(index, 20, in_batch=True, hard=hard, generator=5)
    loss_fn = SampledSoftmaxLoss(0.1, neg_weight=1.22, include_positive=False)
    mine = []
    for _ in range(3):
        cands = sampler.sample(users, items, model)
        vectors = model.candidate_vectors(users, items, cands.items, cands.row_items)
        mine.append(loss_fn.from_vectors(*vectors, log_q=cands.log_q, mask=cands.mask).item())
    assert mine == command


def test_a_catalogue_smaller_than_the_sample_is_scored_whole() -> None:
    # 300 shared candidates + 90 in-batch for 200 items: the command's step is the full
    # softmax (every item once, log_q 0) plus the hard negatives, as the public API writes it.
    from negsample import CandidateSampler, HardNegativeSampler, SampledSoftmaxLoss

    index = small_index()
    users, items = index.pairs()
    config = recipe("softmax", num_negatives=300, num_candidates=8, seed=5, batch_size=90)
    torch.manual_seed(0)
    model = MFModel(30, 200, 8, similarity="cosine", init_std=0.1)
    step, description = make_step(config, model, index)
    command = [step(users, items).item() for _ in range(3)]
    assert "all 200 items" in description and "in-batch" not in description

    torch.manual_seed(0)
    model = MFModel(30, 200, 8, similarity="cosine", init_std=0.1)
    hard = HardNegativeSampler(index, 8, num_hard=4, num_random=0, generator=6)
    sampler = CandidateSampler(index, "all", hard=hard)
    loss_fn = SampledSoftmaxLoss(0.1, neg_weight=1.22, include_positive=False)
    mine = []
    for _ in range(3):
        cands = sampler.sample(users, items, model)
        scores = cands.scores(model, users)
        mine.append(loss_fn(model(users, items), scores, log_q=cands.log_q, mask=cands.mask))
    torch.testing.assert_close(torch.stack(mine), torch.tensor(command))
