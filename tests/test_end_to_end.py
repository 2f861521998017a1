"""End to end: hard negatives + MFModel + a loss learn a planted structure.

The data: 200 users and 100 items in 5 clusters (user ``u`` and item ``i`` are in
clusters ``u % 5`` and ``i % 5``). Each user likes 12 random items of its own
cluster; 8 are training pairs and 4 are held out. A model that learns the
clusters ranks the 12 unseen items of a user's cluster first, so recall@10 on
the held-out items approaches 10 / 12; a random ranking of the 92 items a user
has not trained on scores 10 / 92 ~ 0.11 in expectation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from negsample import HardNegativeSampler, PositiveIndex
from negsample.losses import BCELoss, BPRLoss
from negsample.models import MFModel

NUM_USERS, NUM_ITEMS, NUM_CLUSTERS = 200, 100, 5
LIKED, TRAIN = 12, 8
K = 10
RANDOM_RECALL = K / (NUM_ITEMS - TRAIN)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one thread: on tensors this small, intra-op threads only add overhead."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted_data() -> tuple[PositiveIndex, list[set[int]]]:
    """The training index and each user's held-out items."""
    gen = torch.Generator().manual_seed(0)
    train: dict[int, list[int]] = {}
    held_out: list[set[int]] = []
    for user in range(NUM_USERS):
        cluster_items = torch.arange(user % NUM_CLUSTERS, NUM_ITEMS, NUM_CLUSTERS)
        liked = cluster_items[torch.randperm(cluster_items.numel(), generator=gen)[:LIKED]].tolist()
        train[user] = liked[:TRAIN]
        held_out.append(set(liked[TRAIN:]))
    return PositiveIndex.from_dict(train, num_users=NUM_USERS, num_items=NUM_ITEMS), held_out


def naive_recall(model: MFModel, index: PositiveIndex, held_out: list[set[int]]) -> float:
    """Mean over users of |top-K ∩ held out| / |held out|, training positives excluded."""
    with torch.no_grad():
        scores = model.score_all(torch.arange(NUM_USERS))
    total = 0.0
    for user in range(NUM_USERS):
        row = scores[user].clone()
        row[index.positives(user)] = -torch.inf
        top = torch.argsort(row, descending=True)[:K].tolist()
        total += len(set(top) & held_out[user]) / len(held_out[user])
    return total / NUM_USERS


def train(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], index: PositiveIndex
) -> MFModel:
    torch.manual_seed(0)
    model = MFModel(NUM_USERS, NUM_ITEMS, dim=16)
    sampler = HardNegativeSampler(index, num_candidates=10, num_hard=2, num_random=2, generator=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    pair_users = torch.repeat_interleave(
        torch.arange(NUM_USERS), (index.indptr[1:] - index.indptr[:-1]).long()
    )
    pair_items = index.indices.long()
    gen = torch.Generator().manual_seed(1)
    for _ in range(300):
        batch = torch.randint(0, pair_users.numel(), (256,), generator=gen)
        users, pos = pair_users[batch], pair_items[batch]
        neg = sampler.sample(users, model)
        loss = loss_fn(model(users, pos), model(users[:, None], neg))
        loss = loss + 1e-2 * model.l2_regularization(users, pos, neg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("loss_fn", [BPRLoss(), BCELoss()], ids=["bpr", "bce"])
def test_training_with_hard_negatives_recovers_the_clusters(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> None:
    index, held_out = planted_data()
    torch.manual_seed(0)
    untrained = naive_recall(MFModel(NUM_USERS, NUM_ITEMS, dim=16), index, held_out)
    model = train(loss_fn, index)
    recall = naive_recall(model, index, held_out)
    # An untrained model ranks at about the random level; a trained one far above it.
    assert untrained < 2 * RANDOM_RECALL
    assert recall > 0.6, f"recall@{K} = {recall:.3f} (random ranking: {RANDOM_RECALL:.3f})"
    # recommend() gives the same top-K as the naive ranking.
    top = model.recommend(torch.arange(NUM_USERS), K, exclude=index)
    hits = [len(set(row) & held_out[u]) / len(held_out[u]) for u, row in enumerate(top.tolist())]
    assert sum(hits) / NUM_USERS == pytest.approx(recall)
