"""``--user-temperature``: the Lambert W function, the per-user scales, the softmax step."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from negsample import MFModel, PositiveIndex, SampledSoftmaxLoss, SharedNegativeSampler
from negsample.cli._adaptive import UserTemperature, lambert_w
from negsample.cli._parser import UsageError, build_parser, train_settings
from negsample.cli._recipes import make_step, recipe
from negsample.functional import sampled_softmax_loss


def test_lambert_w_inverts_w_exp_w_on_its_principal_branch() -> None:
    x = torch.cat(
        [
            torch.linspace(-1 / math.e, 0, 2001, dtype=torch.float64),
            torch.logspace(-8, 6, 2001, dtype=torch.float64),
        ]
    )
    w = lambert_w(x)
    assert torch.all(w >= -1)
    assert torch.allclose(w * torch.exp(w), x, rtol=1e-12, atol=1e-15)
    assert torch.all(torch.diff(w[:2001]) > 0)  # increasing: the principal branch
    # Known values: W(0) = 0, W(e) = 1, W(-1/e) = -1 (also from float32's rounding of it),
    # W(1) = the omega constant; below -1/e it is undefined.
    known = lambert_w(torch.tensor([0.0, math.e, -1 / math.e, 1.0, -0.5], dtype=torch.float64))
    assert float(lambert_w(torch.tensor([-1 / math.e]))) == pytest.approx(-1.0, abs=1e-3)
    assert known[:4].tolist() == pytest.approx([0.0, 1.0, -1.0, 0.5671432904097838], abs=1e-12)
    assert math.isnan(known[4])


def test_scales_follow_each_users_loss_against_the_quantile() -> None:
    temperature = UserTemperature(5, steps_per_epoch=2, device=torch.device("cpu"))
    users = torch.tensor([0, 1, 2, 3, 4, 0])
    assert temperature(users).tolist() == [1.0] * 6  # before the first epoch ends
    # One epoch of two steps: per-user means 1.0 (user 0: 0.5 and 1.5), 1.0, 2.0, 3.0, 9.0.
    temperature.record(users[:3], torch.tensor([0.5, 1.0, 2.0]))
    assert temperature(users).tolist() == [1.0] * 6  # one step of two
    temperature.record(torch.tensor([3, 4, 0]), torch.tensor([3.0, 9.0, 1.5]))
    base = 3.0 + 0.6 * (9.0 - 3.0)  # the 0.9 quantile, linear: position 0.9 * 4 = 3.6
    assert base == pytest.approx(torch.quantile(torch.tensor([1.0, 1.0, 2.0, 3.0, 9.0]), 0.9))
    expected = []
    for mean in (1.0, 1.0, 2.0, 3.0, 9.0):
        x = max((mean - base) / 0.25, -1 / math.e)
        w = float(lambert_w(torch.tensor([x], dtype=torch.float64)))
        assert w * math.exp(w) == pytest.approx(x)
        expected.append(math.exp(-w))
    got = temperature(torch.arange(5)).tolist()
    assert got == pytest.approx(expected, rel=1e-6)
    # Far below the quantile: clamped at the branch point, r = e; above it: r < 1.
    assert got[0] == pytest.approx(math.e) and got[4] < 1.0
    # A user not seen in an epoch keeps its scale.
    temperature.record(torch.tensor([0, 1]), torch.tensor([5.0, 1.0]))
    temperature.record(torch.tensor([2]), torch.tensor([1.0]))
    assert temperature(torch.tensor([3, 4])).tolist() == pytest.approx(got[3:])


def test_the_softmax_step_scores_each_users_negatives_at_its_temperature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[UserTemperature] = []

    class Recorded(UserTemperature):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr("negsample.cli._recipes.UserTemperature", Recorded)
    torch.manual_seed(0)
    index = PositiveIndex.from_dict({u: [u % 7, (u + 3) % 7] for u in range(12)}, num_items=40)
    users, items = index.pairs()
    config = recipe(
        "softmax",
        sampler="uniform",
        in_batch=False,
        num_negatives=16,
        batch_size=24,
        user_temperature=True,
    )
    model = MFModel(12, 40, 8, similarity="cosine")
    step, description = make_step(config, model, index)
    assert "a temperature per user for the negatives" in description
    (temperature,) = created
    assert temperature.steps_per_epoch == 1  # 24 pairs, batches of 24
    # The same draws as the step's sampler (same seed), to compute the loss here.
    sampler = SharedNegativeSampler(index, 16, generator=0, validate=False)
    loss_fn = SampledSoftmaxLoss(0.1, neg_weight=1.22, include_positive=False)
    with torch.no_grad():
        pos_scores = model(users, items)
        for epoch in (1, 2):
            scales = temperature(users).clone()
            if epoch == 1:
                assert scales.tolist() == [1.0] * 24
            else:
                assert not torch.allclose(scales, torch.ones(24))
            got = step(users, items)
            drawn = sampler.sample(users)
            neg_scores = model(users[:, None], drawn.items[None, :])
            log_q = drawn.log_prob + math.log(16)
            expected = loss_fn(
                pos_scores, neg_scores * scales[:, None], log_q=log_q, mask=drawn.mask
            )
            assert got.item() == pytest.approx(expected.item(), rel=1e-5)
            # What the scales of the next epoch come from: each user's loss at temperature 1.
            at_one = sampled_softmax_loss(
                pos_scores,
                neg_scores,
                log_q=log_q,
                mask=drawn.mask,
                include_positive=False,
                reduction="none",
            )
            means = torch.zeros(12).index_add_(0, users, at_one) / 2
            x = ((means - torch.quantile(means, 0.9)) / 0.25).clamp(min=-1 / math.e)
            assert temperature(torch.arange(12)).tolist() == pytest.approx(
                torch.exp(-lambert_w(x)).tolist(), rel=1e-5
            )


def test_the_option_reaches_the_softmax_run_only() -> None:
    runs = train_settings(build_parser().parse_args(["train", "--user-temperature"])).runs
    assert [r.user_temperature for r in runs] == [False, False, True]
    assert not recipe("softmax").user_temperature


@pytest.mark.parametrize("loss", ["bpr", "bce"])
def test_the_option_is_refused_without_the_softmax_loss(loss: str) -> None:
    args = build_parser().parse_args(["train", "--loss", loss, "--user-temperature"])
    with pytest.raises(UsageError, match="--user-temperature applies to --loss softmax"):
        train_settings(args)
