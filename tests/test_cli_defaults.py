"""The command's default recipe: the softmax loss's form and temperature chosen on validation,
sizes, options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from negsample.cli import main
from negsample.cli._parser import UsageError, build_parser, train_settings
from negsample.cli._recipes import (
    SOFTMAX_FORMS,
    SOFTMAX_TEMPERATURES,
    TRIAL_EPOCHS,
    recipe,
    scores_every_item,
)
from negsample.cli._train import softmax_trials
from negsample.data import synthetic_dataset
from negsample.index import PositiveIndex


def settings_of(*args: str):  # type: ignore[no-untyped-def]
    return train_settings(build_parser().parse_args(["train", *args]))


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    index = synthetic_dataset(120, 400, interactions_per_user=12, seed=3)
    path = tmp_path / "train.txt"
    lines = [" ".join(map(str, [u, *index.positives(u).tolist()])) for u in range(120)]
    path.write_text("\n".join(lines) + "\n")
    return path


def epoch_losses(out: str, name: str) -> dict[int, str]:
    """Epoch -> the loss as printed, for the log lines of the run called ``name``."""
    pattern = rf"^\[\s*{re.escape(name)}\] epoch\s+(\d+)  loss (\S+)"
    return {int(e): loss for e, loss in re.findall(pattern, out, flags=re.MULTILINE)}


def _small_index() -> PositiveIndex:
    """30 users with 3 positives each among 200 items: the step tests' data."""
    return PositiveIndex.from_dict(
        {u: [u % 11, (u * 3 + 1) % 11, 12 + u % 5] for u in range(30)}, num_items=200
    )


def test_on_a_file_the_default_is_the_softmax_recipe_with_its_form_chosen() -> None:
    (run,) = settings_of("--data", "x.txt").runs
    assert (run.loss, run.sampler, run.in_batch, run.num_negatives) == (
        "softmax",
        "hard",
        True,
        1024,
    )
    assert (run.num_candidates, run.num_hard, run.selection) == (64, 4, "topk")
    assert run.choose_softmax and run.choose_temperature
    # --loss bpr: the BPR recipe, its hard sampler's own sizes, nothing of the softmax to choose.
    (bpr,) = settings_of("--data", "x.txt", "--loss", "bpr").runs
    assert (bpr.num_candidates, bpr.num_hard, bpr.num_random, bpr.in_batch) == (10, 2, 2, False)
    assert not (bpr.choose_softmax or bpr.choose_temperature)


@pytest.mark.parametrize(
    ("args", "form"),
    [
        (["--include-positive"], (1.0, True)),
        (["--no-include-positive"], (1.22, False)),
        (["--neg-weight", "1.5"], (1.5, False)),
        (["--neg-weight", "1.5", "--include-positive"], (1.5, True)),
    ],
)
def test_a_form_given_is_not_chosen_but_the_temperature_still_is(
    args: list[str], form: tuple[float, bool]
) -> None:
    (run,) = settings_of("--data", "x.txt", *args).runs
    assert (run.neg_weight, run.include_positive, run.choose_softmax) == (*form, False)
    assert run.choose_temperature
    assert softmax_trials(run) == {"T0.1": (*form, 0.1), "T0.2": (*form, 0.2)}


def test_a_temperature_given_is_not_chosen_but_the_form_still_is() -> None:
    (run,) = settings_of("--data", "x.txt", "--temperature", "0.3").runs
    assert (run.temperature, run.choose_temperature, run.choose_softmax) == (0.3, False, True)
    assert softmax_trials(run) == {"bilateral": (1.22, False, 0.3), "plain": (1.0, True, 0.3)}


@pytest.mark.parametrize(
    "args",
    [
        ["--valid-fraction", "0"],  # nothing to choose on
        ["--temperature", "0.1", "--include-positive"],  # everything given
        ["--psl", "tanh"],  # not the sampled softmax
    ],
)
def test_without_a_validation_split_or_with_everything_given_nothing_is_tried(
    args: list[str],
) -> None:
    (run,) = settings_of("--data", "x.txt", *args).runs
    assert not (run.choose_softmax or run.choose_temperature)
    assert len(softmax_trials(run)) == 1
    if args[0] == "--valid-fraction":  # the recipe's first trial: the bilateral form at 0.1
        assert (run.neg_weight, run.include_positive, run.temperature) == (1.22, False, 0.1)


def test_the_trials_are_both_forms_at_0_1_then_the_plain_one_at_0_2() -> None:
    assert SOFTMAX_FORMS == {"bilateral": (1.22, False), "plain": (1.0, True)}
    assert SOFTMAX_TEMPERATURES == (0.1, 0.2)
    trials = softmax_trials(recipe("softmax", choose_softmax=True, choose_temperature=True))
    # The Gowalla recipe first (it wins a tie); the bilateral form at 0.2 is not tried.
    assert trials == {
        "bilateral/T0.1": (1.22, False, 0.1),
        "plain/T0.1": (1.0, True, 0.1),
        "plain/T0.2": (1.0, True, 0.2),
    }
    # With the form given, that form at both temperatures, the bilateral one included.
    given = recipe("softmax", choose_temperature=True)
    assert softmax_trials(given) == {"T0.1": (1.22, False, 0.1), "T0.2": (1.22, False, 0.2)}


def test_the_chosen_trial_trains_on_as_if_it_had_been_given_from_the_start(
    capsys: pytest.CaptureFixture[str], data_file: Path
) -> None:
    common = ["train", "--data", str(data_file), "--epochs", "6", "--ks", "10", "--patience", "0"]
    assert main(common) == 0
    out = capsys.readouterr().out
    match = re.search(
        r"\[\s*hard\] the softmax loss on validation after (\d+) epochs: (.*) \("
        r"bilateral: weight 1.22, positive out; plain: weight 1, positive in; "
        r"T: temperature\); going on with (\S+)$",
        out,
        flags=re.MULTILINE,
    )
    assert match is not None, out
    epochs, listed, chosen = match.groups()
    assert int(epochs) == TRIAL_EPOCHS
    scores = {
        label: float(score)
        for label, score in re.findall(r"(\S+) recall@10 ([\d.]+)(?:, |$)", listed)
    }
    assert list(scores) == ["bilateral/T0.1", "plain/T0.1", "plain/T0.2"]
    # Each trial printed its own curve, and the last validation figure is the one listed.
    for label, score in scores.items():
        recalls = re.findall(
            rf"^\[{re.escape('hard:' + label)}\] epoch\s+(\d+) .* recall@10 ([\d.]+)",
            out,
            flags=re.MULTILINE,
        )
        assert [int(e) for e, _ in recalls] == list(range(1, TRIAL_EPOCHS + 1)), out
        assert float(recalls[-1][1]) == score
    # The best on validation goes on (a tie keeps the first trial).
    best = max(scores.values())
    assert chosen == next(label for label, score in scores.items() if score == best), out
    trial = epoch_losses(out, f"hard:{chosen}")
    after = epoch_losses(out, "hard")
    assert sorted(trial) == list(range(1, TRIAL_EPOCHS + 1)), out
    assert sorted(after) == list(range(TRIAL_EPOCHS + 1, 7)), out
    # The same settings, given: the same losses epoch by epoch (same seeds, nothing else trained).
    form, temperature = chosen.split("/T")
    weight, include = SOFTMAX_FORMS[form]
    fixed = [
        "--neg-weight",
        str(weight),
        "--include-positive" if include else "--no-include-positive",
        "--temperature",
        temperature,
    ]
    assert main([*common, *fixed]) == 0
    alone = epoch_losses(capsys.readouterr().out, "hard")
    assert alone == {**trial, **after}


def test_a_catalogue_smaller_than_the_sample_is_scored_whole(
    capsys: pytest.CaptureFixture[str], data_file: Path
) -> None:
    (run,) = settings_of("--data", "x.txt").runs
    assert scores_every_item(run, 1024 + 2048) and not scores_every_item(run, 1024 + 2048 + 1)
    (no_batch,) = settings_of("--data", "x.txt", "--no-in-batch").runs
    assert scores_every_item(no_batch, 1024) and not scores_every_item(no_batch, 1025)
    status = main(["train", "--data", str(data_file), "--epochs", "1", "--valid-fraction", "0"])
    out = capsys.readouterr().out
    assert status == 0
    assert "train: PositiveIndex(num_users=120, num_items=341," in out, out
    assert "over all 341 items + the 4 top-scored of 64 per row" in out, out


@pytest.mark.parametrize(
    ("args", "selection", "top_n"),
    [
        (["--selection", "dns_mn", "--top-n", "8"], "dns_mn", 8),
        (["--selection", "ahns"], "ahns", None),
        (["--loss", "bpr", "--selection", "dns_mn", "--top-n", "3"], "dns_mn", 3),
        (["--loss", "bpr", "--selection", "softmax"], "softmax", None),
    ],
)
def test_selection_modes_reach_the_hard_part(
    args: list[str], selection: str, top_n: int | None
) -> None:
    (run,) = settings_of("--data", "x.txt", *args).runs
    assert (run.selection, run.top_n) == (selection, top_n)


def test_in_the_demo_selection_softmax_is_the_bpr_run_s_and_the_softmax_run_keeps_topk() -> None:
    runs = settings_of("--selection", "softmax").runs
    assert [(r.name, r.selection) for r in runs] == [
        ("uniform", "softmax"),
        ("hard", "softmax"),
        ("softmax", "topk"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--selection", "softmax"], "--selection softmax applies to --loss bpr/bce"),
        (["--selection", "dns_mn"], "--selection dns_mn needs --top-n N"),
        (["--top-n", "3"], "--top-n applies to --selection dns_mn"),
        (
            ["--selection", "dns_mn", "--top-n", "65"],
            "--top-n must be between max(1, --num-hard) = 4 and --num-candidates 64, got 65",
        ),
        (
            ["--loss", "bpr", "--selection", "dns_mn", "--top-n", "1"],
            "--top-n must be between max(1, --num-hard) = 2 and --num-candidates 10, got 1",
        ),
        (["--loss", "bpr", "--no-in-batch"], "--no-in-batch applies to --loss softmax"),
        (["--loss", "bpr", "--in-batch"], "--in-batch applies to --loss softmax"),
        (["--loss", "bpr", "--no-include-positive"], "--no-include-positive applies to"),
    ],
)
def test_bad_selection_options_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        settings_of("--data", "x.txt", *args)


@pytest.mark.parametrize(
    "selection", [["--selection", "dns_mn", "--top-n", "6"], ["--selection", "ahns"]]
)
def test_the_softmax_recipe_trains_with_an_adaptive_hard_part(
    capsys: pytest.CaptureFixture[str], data_file: Path, selection: list[str]
) -> None:
    status = main(
        ["train", "--data", str(data_file), "--epochs", "1", "--valid-fraction", "0", *selection]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    expected = "4 drawn among the top 6 of 64" if "dns_mn" in selection else "closest to AHNS"
    assert expected in out, out


def test_slatk_is_a_softmax_option_and_not_with_the_user_temperature() -> None:
    (run,) = settings_of("--data", "x.txt", "--slatk", "20").runs
    assert run.slatk == 20
    with pytest.raises(UsageError, match="--slatk applies to --loss softmax"):
        settings_of("--data", "x.txt", "--loss", "bpr", "--slatk", "20")
    with pytest.raises(UsageError, match="--slatk and --user-temperature both reweight"):
        settings_of("--data", "x.txt", "--slatk", "20", "--user-temperature")


def test_the_slatk_step_is_the_public_loss_with_thresholds_estimated_every_few_epochs() -> None:
    # The command's step with --slatk against a loop written with the public API: the plain
    # softmax (thresholds -inf, weight 1) for SLATK_EVERY epochs, then SoftmaxAtKLoss with the
    # thresholds of estimate_topk_thresholds (same seeds: the same candidates and estimates).
    import math

    import torch

    from negsample import (
        CandidateSampler,
        HardNegativeSampler,
        MFModel,
        SoftmaxAtKLoss,
        estimate_topk_thresholds,
    )
    from negsample.cli._recipes import SLATK_CANDIDATES, SLATK_EVERY, make_step, recipe

    index = _small_index()
    users, items = index.pairs()  # 90 pairs: one step per epoch
    config = recipe("softmax", slatk=5, num_negatives=20, num_candidates=8, seed=5, batch_size=90)
    torch.manual_seed(0)
    model = MFModel(30, 200, 8, similarity="cosine", init_std=0.1)
    step, description = make_step(config, model, index)
    assert "the SL@K weight at top 5" in description
    command = [step(users, items).item() for _ in range(SLATK_EVERY + 2)]

    hard = HardNegativeSampler(index, 8, num_hard=4, num_random=0, generator=6)
    sampler = CandidateSampler(index, 20, in_batch=True, hard=hard, generator=5)
    loss_fn = SoftmaxAtKLoss(0.1, 1.0, neg_weight=1.22, include_positive=False)
    thresholds = torch.full((30,), -math.inf)
    mine = []
    for epoch in range(SLATK_EVERY + 2):
        if epoch == SLATK_EVERY:
            thresholds = estimate_topk_thresholds(model, index, 5, SLATK_CANDIDATES, generator=7)
            assert bool(torch.isfinite(thresholds).all())
        cands = sampler.sample(users, items, model)
        vectors = model.candidate_vectors(users, items, cands.items, cands.row_items)
        loss = loss_fn.from_vectors(
            *vectors, thresholds=thresholds[users], log_q=cands.log_q, mask=cands.mask
        )
        mine.append(loss.item())
        if epoch == SLATK_EVERY:
            # The same candidates without the weight: the estimate changed the loss.
            plain = loss_fn.from_vectors(
                *vectors, thresholds=-math.inf, log_q=cands.log_q, mask=cands.mask
            )
            assert plain.item() != pytest.approx(loss.item(), rel=1e-3)
    assert mine == pytest.approx(command, rel=1e-6)


def test_psl_is_a_softmax_option_without_the_sampled_softmax_options() -> None:
    (run,) = settings_of("--data", "x.txt", "--psl", "tanh").runs
    # No trial of the softmax's forms or temperatures.
    assert (run.psl, run.choose_softmax, run.choose_temperature) == ("tanh", False, False)
    with pytest.raises(UsageError, match="--psl applies to --loss softmax"):
        settings_of("--data", "x.txt", "--loss", "bpr", "--psl", "tanh")
    for extra in (["--slatk", "20"], ["--user-temperature"], ["--neg-weight", "1"]):
        with pytest.raises(UsageError, match=f"{extra[0]} applies to the sampled softmax"):
            settings_of("--data", "x.txt", "--psl", "atan", *extra)
    with pytest.raises(UsageError, match="--no-include-positive applies to the sampled"):
        settings_of("--data", "x.txt", "--psl", "relu", "--no-include-positive")
    with pytest.raises(UsageError, match="invalid choice: 'sigmoid'"):
        settings_of("--data", "x.txt", "--psl", "sigmoid")


@pytest.mark.parametrize("activation", ["tanh", "exp"])
def test_the_psl_step_is_the_public_loss_over_the_candidate_set(activation: str) -> None:
    # The command's step with --psl against a loop written with the public API.
    import torch

    from negsample import (
        CandidateSampler,
        HardNegativeSampler,
        MFModel,
        PairwiseSoftmaxLoss,
        SampledSoftmaxLoss,
    )
    from negsample.cli._recipes import PSL_SCORE_SCALE, make_step, recipe

    index = _small_index()
    users, items = index.pairs()
    config = recipe(
        "softmax", psl=activation, num_negatives=20, num_candidates=8, seed=5, batch_size=90
    )
    torch.manual_seed(0)
    model = MFModel(30, 200, 8, similarity="cosine", init_std=0.1)
    step, description = make_step(config, model, index)
    assert description.startswith(
        f"PairwiseSoftmaxLoss(temperature=0.05, activation='{activation}'"
    )
    command = [step(users, items).item() for _ in range(3)]

    hard = HardNegativeSampler(index, 8, num_hard=4, num_random=0, generator=6)
    sampler = CandidateSampler(index, 20, in_batch=True, hard=hard, generator=5)
    loss_fn = PairwiseSoftmaxLoss(
        0.1 / PSL_SCORE_SCALE, activation, score_scale=PSL_SCORE_SCALE, include_positive=False
    )
    mine, softmax = [], []
    for _ in range(3):
        cands = sampler.sample(users, items, model)
        scores = cands.scores(model, users)
        loss = loss_fn(model(users, items), scores, log_q=cands.log_q, mask=cands.mask)
        mine.append(loss.item())
        plain = SampledSoftmaxLoss(0.1, include_positive=False)
        softmax.append(
            plain(model(users, items), scores, log_q=cands.log_q, mask=cands.mask).item()
        )
    assert mine == pytest.approx(command, rel=1e-5)
    if activation == "exp":  # at the recipe's temperature: the sampled softmax itself
        assert mine == pytest.approx(softmax, rel=1e-5)


def test_a_psl_run_on_a_file_trains_without_a_trial_of_the_forms(
    capsys: pytest.CaptureFixture[str], data_file: Path
) -> None:
    args = ["train", "--data", str(data_file), "--epochs", "2", "--ks", "10", "--psl", "atan"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "PairwiseSoftmaxLoss(temperature=0.05, activation='atan'" in out, out
    assert "the softmax loss on validation" not in out, out
    assert sorted(epoch_losses(out, "hard")) == [1, 2], out
