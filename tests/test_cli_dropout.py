"""``--user-dropout``: dropout on the user vectors of the softmax recipe, one mask per row."""

from __future__ import annotations

import math

import pytest
import torch

from negsample import MFModel, PositiveIndex, SampledSoftmaxLoss, SharedNegativeSampler
from negsample.cli import build_parser, train_settings
from negsample.cli._parser import UsageError
from negsample.cli._recipes import make_step, recipe, user_vectors


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_without_dropout_they_are_the_model_s_vectors(similarity: str) -> None:
    torch.manual_seed(0)
    model = MFModel(6, 9, 5, similarity=similarity)  # type: ignore[arg-type]
    users = torch.tensor([0, 3, 5, 3])
    torch.testing.assert_close(user_vectors(model, users, 0.0), model.user_vectors(users))


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_each_row_gets_one_mask_of_its_own(similarity: str) -> None:
    # One vector per row, which scores all of that row's items (positive and negatives).
    dim, p = 16, 0.3
    torch.manual_seed(1)
    model = MFModel(40, dim, dim, similarity=similarity)  # type: ignore[arg-type]
    users = torch.arange(40).repeat(5)  # 200 rows: each user in five rows
    seen = user_vectors(model, users, p)
    kept = model.user_embedding(users) / (1 - p)
    dropped = seen == 0
    if similarity == "dot":
        torch.testing.assert_close(seen[~dropped], kept[~dropped].detach())
    else:  # the dropped-out embedding, then normalised
        masked = torch.where(dropped, torch.zeros_like(kept), kept)
        torch.testing.assert_close(seen, torch.nn.functional.normalize(masked, dim=-1))
    # 3,200 coordinates, each dropped with probability 0.3: the fraction lies within
    # 5 standard deviations (about 0.04) of it (a two-sided test at level below 1e-6).
    sd = math.sqrt(p * (1 - p) / dropped.numel())
    assert abs(dropped.float().mean().item() - p) < 5 * sd
    # Two rows of one user get masks of their own.
    assert not torch.equal(dropped[:40], dropped[40:80])


def test_the_softmax_step_scores_with_the_dropped_out_vectors() -> None:
    index = PositiveIndex.from_dict({u: [u % 7, (u + 3) % 7] for u in range(12)}, num_items=40)
    users, items = index.pairs()
    config = recipe(
        "softmax", sampler="uniform", in_batch=False, num_negatives=16, user_dropout=0.25
    )
    torch.manual_seed(0)
    model = MFModel(12, 40, 8, similarity="cosine")
    step, description = make_step(config, model, index)
    assert "dropout 0.25 on the user vectors" in description
    # The same candidates as the step's sampler (same seed) and the same global seed for
    # the dropout mask: the step's loss is the loss of the dropped-out scores.
    sampler = SharedNegativeSampler(index, 16, generator=0, validate=False)
    loss_fn = SampledSoftmaxLoss(0.1, neg_weight=1.22, include_positive=False)
    torch.manual_seed(7)
    got = step(users, items)
    torch.manual_seed(7)
    dropped = user_vectors(model, users, 0.25)
    drawn = sampler.sample(users)
    expected = loss_fn(
        (dropped * model.item_vectors(items)).sum(dim=1),
        dropped @ model.item_vectors(drawn.items).T,
        log_q=drawn.log_prob + math.log(16),
        mask=drawn.mask,
    )
    torch.testing.assert_close(got, expected)
    without = make_step(
        recipe("softmax", sampler="uniform", in_batch=False, num_negatives=16), model, index
    )[0]
    assert not torch.allclose(without(users, items), got)
    got.backward()
    assert model.user_embedding.weight.grad is not None


def test_a_scorer_of_its_own_is_refused() -> None:
    index = PositiveIndex.from_dict({0: [1], 1: [2]}, num_items=5)
    model = MFModel(2, 5, 4, similarity="cosine")
    config = recipe("softmax", sampler="uniform", in_batch=False, num_negatives=4, user_dropout=0.1)
    with pytest.raises(ValueError, match="user_dropout"):
        make_step(config, model, index, scorer=lambda u, i: model(u, i))


def test_the_option_reaches_the_softmax_run_only() -> None:
    runs = train_settings(build_parser().parse_args(["train", "--user-dropout", "0.1"])).runs
    assert [r.user_dropout for r in runs] == [0.0, 0.0, 0.1]
    assert recipe("softmax").user_dropout == 0.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--user-dropout", "1"], r"--user-dropout must be in \[0, 1\), got 1.0"),
        (["--user-dropout", "-0.1"], r"--user-dropout must be in \[0, 1\), got -0.1"),
        (["--user-dropout", "nan"], r"--user-dropout must be in \[0, 1\), got nan"),
        (["--loss", "bpr", "--user-dropout", "0.1"], "--user-dropout applies to --loss softmax"),
    ],
)
def test_bad_values_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        train_settings(build_parser().parse_args(["train", *argv]))
