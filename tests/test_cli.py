"""The ``negsample`` command, in process: exit codes, one-line errors, what ``train`` prints."""

from __future__ import annotations

import functools
import io
import itertools
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import negsample
from negsample.cli import main
from negsample.cli._parser import build_parser, train_settings
from negsample.cli._recipes import learning_rate, recipe
from negsample.cli._system import keep_freed_memory
from negsample.data import synthetic_dataset


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    # The command sets torch's thread count for the process (--threads); put it back.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_builtin_data(monkeypatch: pytest.MonkeyPatch) -> None:
    # The training mechanics on a quarter of the built-in data (1,000 users, 3,000
    # items) to keep the suite fast; one test below trains on the default itself.
    monkeypatch.setattr(
        "negsample.cli._data.synthetic_dataset", functools.partial(synthetic_dataset, 1000, 3000)
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def train(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    status, out, err = run(capsys, "train", "--no-progress", *args)
    assert status == 0, err
    return out


def assert_one_line_error(status: int, err: str, *parts: str) -> None:
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("negsample: error: "), err
    for part in parts:
        assert part in lines[0], (part, err)


def summary_rows(out: str, title: str) -> dict[str, list[float]]:
    """The rows of the summary table under ``title``: run -> [epochs, chosen, s/epoch, ...]."""
    block = out[out.index(title) :].split("\n\n")[0]
    rows = re.findall(r"^\s*(hard|uniform|softmax)((?:\s+[\d.]+)+)\s*$", block, flags=re.MULTILINE)
    return {name: [float(v) for v in values.split()] for name, values in rows}


def write_competition_csv(path: Path, rows: dict[int, list[int]]) -> None:
    lines = ["UserId,ItemId"] + [
        f"{user},{' '.join(map(str, items))}" for user, items in rows.items()
    ]
    path.write_text("\n".join(lines) + "\n")


def read_competition_csv(path: Path) -> dict[str, list[str]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "UserId,ItemId"
    rows: dict[str, list[str]] = {}
    for line in lines[1:]:
        user, items = line.split(",")
        assert user not in rows, f"user {user} written twice"
        rows[user] = items.split()
    return rows


def clustered_csv(path: Path) -> dict[int, list[int]]:
    # 61 users with raw ids 1000.., 90 items with gapped raw ids 7, 10, 13, ... in 3 taste
    # clusters; user 1060 has no training item at all and must still get 50 items.
    rows = {}
    for user in range(60):
        cluster = user % 3
        rows[1000 + user] = [7 + 3 * (cluster * 30 + (user * 7 + j) % 30) for j in range(8)]
    rows[1060] = []
    write_competition_csv(path, rows)
    return rows


# ---------------------------------------------------------------------- the command


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert (status, out.strip()) == (0, f"negsample {negsample.__version__}")
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "train" in out


def test_train_help_fits_a_screen_shows_defaults_and_no_allocator_talk(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    status, out, _ = run(capsys, "train", "--help")
    assert status == 0
    assert len(out.splitlines()) <= 60, out
    assert "malloc" not in out.lower() and "glibc" not in out.lower(), out
    for option in (
        "--patience",
        "--epochs",
        "--dim",
        "--batch-size",
        "--valid-fraction",
        "--split-seed",
        "--seed",
        "--threads",
    ):
        line = next(line for line in out.splitlines() if line.strip().startswith(option + " "))
        if option == "--epochs":  # two defaults: a data file's and the built-in data's
            assert "(100; built-in: 20, softmax 10)" in line, out
        else:
            assert "(default: " in line, (option, out)
    # The per-loss defaults are stated in the help rather than as one default.
    assert re.search(r"--lr X .*5e-3.*1e-3", out) and re.search(r"--reg X .*2e-2", out), out
    assert re.search(r"--num-candidates M .*bpr 10, softmax 64", out), out


def test_python_dash_m_negsample_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "negsample", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"negsample {negsample.__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys)
    assert status == 2 and err.splitlines()[-1] == "negsample: error: choose a command: train"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "x"], "argument --epochs: expected an integer, got 'x'"),
        (["--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
        (["--loss", "hinge"], "argument --loss: invalid choice: 'hinge'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["--valid-fraction", "1"], "--valid-fraction must be in [0, 1), got 1.0"),
        (["--test", "t.txt"], "--test needs --data"),
        (["--loss", "softmax", "--reg", "0.01"], "--reg applies to --loss bpr/bce"),
        (["--loss", "bpr", "--in-batch"], "--in-batch applies to --loss softmax"),
        (["--loss", "bpr", "--neg-weight", "1.5"], "--neg-weight applies to --loss softmax"),
        (["--loss", "bce", "--no-include-positive"], "--no-include-positive applies to --loss"),
        (["--loss", "softmax", "--neg-weight", "0"], "--neg-weight must be a finite number > 0"),
        (["--loss", "softmax", "--neg-weight", "nan"], "--neg-weight must be a finite number"),
        (["--lr-schedule", "linear"], "argument --lr-schedule: invalid choice: 'linear'"),
        (["--loss", "softmax", "--num-negatives", "0"], "argument --num-negatives: must be"),
        (["--loss", "bpr", "--temperature", "0.5"], "--temperature applies to --loss softmax"),
        (["--alpha", "0.5"], "--alpha applies to --candidates popularity"),
        (["--device", "nonsense"], "argument --device"),
        (["--submission", "/no/such/folder/s.csv"], "the folder /no/such/folder does not exist"),
        # In the command's own terms, not the sampler's arguments.
        (
            ["--num-hard", "20"],
            "--num-hard + --num-random must be between 1 and --num-candidates 10",
        ),
        (["--ks", "100000"], "--ks 100000 is more than the"),
    ],
)
def test_bad_options_are_one_line_errors_with_status_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    status, out, err = run(capsys, "train", *args)
    assert_one_line_error(status, err, message)
    assert "epoch" not in out, out  # nothing was trained


def test_a_missing_file_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.csv"
    status, _, err = run(capsys, "train", "--data", str(missing))
    assert_one_line_error(status, err, str(missing), "No such file or directory")


def test_a_line_without_a_comma_is_a_one_line_error_naming_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "train.csv"
    path.write_text("UserId,ItemId\n1,2 3\n2 4 5\n")
    status, _, err = run(capsys, "train", "--data", str(path))
    assert_one_line_error(status, err, f"{path}, line 3", "no comma", "2 4 5")


def test_a_non_integer_id_is_a_one_line_error_unless_string_ids(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "train.csv"
    rows = clustered_csv(path)
    text = path.read_text().replace("\n1005,", "\n1005x,")
    path.write_text(text)
    status, _, err = run(capsys, "train", "--data", str(path))
    assert_one_line_error(status, err, f"{path}, line 7", "user id '1005x' is not an integer")
    out = train(
        capsys, "--data", str(path), "--string-ids", "--epochs", "1", "--dim", "4", "--ks", "5"
    )
    assert f"train: PositiveIndex(num_users={len(rows)}," in out, out


def test_debug_shows_the_traceback_of_a_data_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        main(["train", "--debug", "--data", str(tmp_path / "missing.txt")])


def test_a_bug_is_not_hidden_behind_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import negsample.cli as cli

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug in the training code")

    monkeypatch.setattr(cli, "run_train", broken)
    with pytest.raises(ValueError, match="a bug in the training code"):
        main(["train", "--epochs", "1"])


# ---------------------------------------------------------------------- settings


def settings_of(*args: str):  # type: ignore[no-untyped-def]
    return train_settings(build_parser().parse_args(["train", *args]))


def test_the_default_is_three_runs_uniform_hard_and_the_softmax_recipe() -> None:
    settings = settings_of()
    assert settings.compare
    assert [(r.name, r.loss, r.sampler) for r in settings.runs] == [
        ("uniform", "bpr", "uniform"),
        ("hard", "bpr", "hard"),
        ("softmax", "softmax", "hard"),
    ]
    bpr, softmax = settings.runs[1], settings.runs[2]
    assert (bpr.lr, bpr.reg, bpr.similarity, bpr.init_std, bpr.temperature) == (
        5e-3,
        2e-2,
        "dot",
        0.1,
        None,
    )
    assert softmax == recipe(
        "softmax", name="softmax", epochs=10, choose_softmax=True, choose_temperature=True
    )
    # The softmax recipe's candidates: 1024 shared, in-batch, the 4 top-scored of 64.
    assert (softmax.num_negatives, softmax.in_batch, softmax.num_candidates) == (1024, True, 64)
    assert (softmax.num_hard, bpr.num_candidates, bpr.num_hard, bpr.in_batch) == (4, 10, 2, False)
    assert (softmax.lr, softmax.reg, softmax.similarity, softmax.temperature) == (
        1e-3,
        0.0,
        "cosine",
        0.1,
    )
    # The softmax recipe: BSL's negative weight with the positive out at 0.1 (tried against the
    # plain softmax at 0.1 and 0.2 on validation: choose_softmax, choose_temperature), the step
    # schedule.
    assert (softmax.neg_weight, softmax.include_positive, softmax.lr_schedule) == (
        1.22,
        False,
        "step",
    )
    assert not (bpr.choose_softmax or bpr.choose_temperature)
    assert (bpr.neg_weight, bpr.include_positive, bpr.lr_schedule) == (1.0, True, "constant")
    # A loss, a sampler or a file: the runs asked for.
    assert [r.name for r in settings_of("--loss", "bpr").runs] == ["hard", "uniform"]
    assert [r.name for r in settings_of("--sampler", "hard").runs] == ["hard"]
    assert [r.name for r in settings_of("--data", "x.txt").runs] == ["hard"]
    # Epochs: 20 on the built-in data (10 for the softmax recipe, about 8x a BPR epoch
    # there), 100 on a file, or as asked.
    assert [r.epochs for r in settings.runs] == [20, 20, 10]
    assert [r.epochs for r in settings_of("--loss", "softmax").runs] == [10, 10]
    assert {r.epochs for r in settings_of("--data", "x.txt").runs} == {100}
    assert {r.epochs for r in settings_of("--epochs", "7").runs} == {7}
    assert {r.epochs for r in settings_of("--data", "x.txt", "--epochs", "7").runs} == {7}


def test_options_reach_the_runs_they_apply_to() -> None:
    runs = settings_of("--reg", "0.5", "--temperature", "0.2", "--lr", "0.01").runs
    assert [(r.reg, r.temperature, r.lr) for r in runs] == [
        (0.5, None, 0.01),
        (0.5, None, 0.01),
        (0.0, 0.2, 0.01),
    ]


def test_softmax_options_reach_the_softmax_run_only() -> None:
    runs = settings_of("--neg-weight", "1.5", "--include-positive", "--lr-schedule", "cosine").runs
    assert [(r.neg_weight, r.include_positive, r.lr_schedule) for r in runs] == [
        (1.0, True, "cosine"),
        (1.0, True, "cosine"),
        (1.5, True, "cosine"),
    ]
    (run,) = settings_of("--loss", "softmax", "--sampler", "hard", "--neg-weight", "1").runs
    assert (run.neg_weight, run.include_positive, run.lr_schedule) == (1.0, False, "step")


def test_cosine_schedule_decays_from_lr_to_zero_over_the_epochs() -> None:
    config = recipe("softmax", lr=1e-3, epochs=4, lr_schedule="cosine")
    steps = 10  # per epoch
    rates = [learning_rate(config, step, steps) for step in range(4 * steps + 1)]
    assert rates[0] == 1e-3 and rates[-1] == 0.0
    assert rates[20] == pytest.approx(0.5e-3)  # half-way through the epochs: half the rate
    assert all(a > b for a, b in itertools.pairwise(rates))  # strictly decreasing
    # Past the epochs (never reached in training) it stays at 0, and constant is constant.
    assert learning_rate(config, 100, steps) == 0.0
    constant = recipe("bpr", lr=5e-3, epochs=4)
    assert {learning_rate(constant, step, steps) for step in range(50)} == {5e-3}


def test_step_schedule_divides_the_rate_by_ten_for_the_last_quarter() -> None:
    config = recipe("softmax", lr=1e-3, epochs=8, lr_schedule="step")
    steps = 10  # per epoch: 80 steps, the last 20 (epochs 7 and 8) at a tenth
    rates = [learning_rate(config, step, steps) for step in range(8 * steps)]
    assert rates[:60] == [1e-3] * 60
    assert rates[60:] == [pytest.approx(1e-4)] * 20
    # A step count that does not split evenly: the drop comes at ceil(0.75 * total).
    odd = recipe("bpr", lr=5e-3, epochs=3, lr_schedule="step")
    odd_rates = [learning_rate(odd, step, 7) for step in range(21)]  # 0.75 * 21 = 15.75
    assert odd_rates.index(pytest.approx(5e-4)) == 16 and odd_rates[15] == 5e-3


def test_the_schedule_sets_the_optimizers_rate_at_every_step(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[float] = []
    step = torch.optim.Adam.step

    def recording_step(self: torch.optim.Adam, *args: object, **kwargs: object) -> object:
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    out = train(
        capsys,
        *("--loss", "softmax", "--sampler", "uniform", "--num-negatives", "64"),
        *("--epochs", "2", "--valid-fraction", "0", "--lr-schedule", "cosine"),
    )
    assert "neg_weight=1.22, include_positive=False" in out, out
    config = recipe("softmax", lr=1e-3, epochs=2, lr_schedule="cosine")
    steps_per_epoch = len(seen) // 2
    assert len(seen) == 2 * steps_per_epoch > 0
    expected = [learning_rate(config, i, steps_per_epoch) for i in range(len(seen))]
    assert seen == pytest.approx(expected)
    assert seen[0] == 1e-3 and seen[-1] < 1e-3 / steps_per_epoch


def test_progress_bars_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not settings_of().runs[0].progress
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert settings_of().runs[0].progress
    assert not settings_of("--no-progress").runs[0].progress


@pytest.mark.usefixtures("small_builtin_data")
def test_threads_sets_torchs_thread_count(capsys: pytest.CaptureFixture[str]) -> None:
    train(capsys, "--sampler", "uniform", "--epochs", "1", "--threads", "2", "--dim", "4")
    assert torch.get_num_threads() == 2


def test_keeps_freed_memory_for_reuse_under_glibc() -> None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator settings are glibc's")
    # mallopt returns 1 when glibc accepts both settings (32 MiB is within its limit).
    assert keep_freed_memory() is True


# ---------------------------------------------------------------------- training


def test_default_runs_three_recipes_and_compares_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="the --plot option needs matplotlib")
    plot = tmp_path / "curves.png"
    out = train(capsys, "--epochs", "3", "--plot", str(plot))
    assert "built-in synthetic dataset (PositiveIndex(num_users=2000, num_items=6000," in out
    table = summary_rows(out, "validation metrics at the epoch chosen on the validation split")
    assert list(table) == ["uniform", "hard", "softmax"], out
    comparison = out[out.index("comparison on the validation split") :].splitlines()
    assert [line.split()[0] for line in comparison[2:5]] == ["uniform", "hard", "softmax"], out
    for line, name in zip(comparison[2:5], table, strict=True):
        recall, ndcg = map(float, line.split()[-2:])
        assert int(line.split()[-3]) == int(table[name][1])
        assert (recall, ndcg) == pytest.approx((table[name][3], table[name][4]), abs=1e-4)
    assert "SampledSoftmaxLoss(temperature=0.1" in out, out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.usefixtures("small_builtin_data")
def test_both_samplers_beat_random_ranking(capsys: pytest.CaptureFixture[str]) -> None:
    out = train(capsys, "--loss", "bpr", "--sampler", "both", "--epochs", "8", "--lr", "1e-2")
    table = summary_rows(out, "validation metrics at the epoch chosen on the validation split")
    assert set(table) == {"hard", "uniform"}, out
    for name, (epochs, chosen, _, recall, *_) in table.items():
        assert 1 <= chosen <= epochs <= 8, out
        # Random ranking of 3000 items gives recall@20 of about 20 / 3000 = 0.0067.
        assert recall > 0.1, out
        assert f"[{name:>7}] restored the weights of epoch {int(chosen)}" in out


@pytest.mark.usefixtures("small_builtin_data")
def test_keeps_the_best_epoch_on_validation_and_stops_early(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A learning rate far too high: validation recall peaks in the first epochs and falls.
    out = train(
        capsys,
        *("--loss", "bpr", "--sampler", "hard", "--epochs", "30", "--patience", "2"),
        *("--lr", "0.3", "--reg", "0", "--ks", "20"),
    )
    curve = [float(v) for v in re.findall(r"epoch\s+\d+ .* recall@20 ([\d.]+)", out)]
    best = max(range(len(curve)), key=lambda i: (curve[i], -i)) + 1
    assert len(curve) == best + 2, out  # patience 2: two epochs without improvement, then stop
    assert "stopped early: validation recall@20 has not improved for 2 epochs" in out
    assert f"restored the weights of epoch {best}, chosen on the validation split" in out
    epochs, chosen, _, recall, *_ = summary_rows(out, "validation metrics")["hard"]
    assert (epochs, chosen) == (best + 2, best), out
    assert recall == pytest.approx(curve[best - 1], abs=1e-4), out


@pytest.mark.parametrize("valid_fraction", ["0.2", "0"])
def test_submission_on_a_competition_file_is_valid(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, valid_fraction: str
) -> None:
    train_csv = tmp_path / "train.csv"
    rows = clustered_csv(train_csv)
    submission = tmp_path / "submission.csv"
    # --ks only where there is something to evaluate (else it is refused as doing nothing).
    ks = ("--ks", "10") if valid_fraction != "0" else ()
    out = train(
        capsys,
        *("--data", str(train_csv), "--valid-fraction", valid_fraction, "--epochs", "3"),
        *("--dim", "8", "--batch-size", "64", *ks, "--submission", str(submission)),
    )
    written = read_competition_csv(submission)
    assert set(written) == {str(user) for user in rows}, out
    for user, items in rows.items():
        recommended = written[str(user)]
        assert len(recommended) == 50 and len(set(recommended)) == 50, (user, recommended)
        assert not set(recommended) & {str(item) for item in items}, (user, recommended)
        assert set(recommended) <= {str(7 + 3 * i) for i in range(90)}, (user, recommended)
    if valid_fraction == "0":
        assert "valid:" not in out and "recall@10" not in out, out
        assert "retraining" not in out, out
    else:
        chosen = int(summary_rows(out, "validation metrics")["hard"][1])
        assert (
            f"retraining on all 480 training pairs for {chosen} epochs (chosen on the validation "
            "split)" in out
        ), out
    assert f"submission (softmax + hard run, top 50) written to {submission}" in out


def test_repeated_users_in_a_competition_file_are_merged_with_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "train.csv"
    path.write_text("UserId,ItemId\n0,1 2\n1,0 3\n0,3\n1,1\n2,0 1\n")
    with pytest.warns(UserWarning, match=r"2 user ids are on more than one row \(2 extra rows"):
        out = train(capsys, "--data", str(path), "--valid-fraction", "0", "--epochs", "1")
    assert "train: PositiveIndex(num_users=3, num_items=4, num_interactions=8," in out, out


def test_test_file_metrics_are_those_of_the_weights_chosen_on_validation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # 60 users in 3 clusters of 20 items each; users like their own cluster.
    train_lines, test_lines = [], []
    for user in range(60):
        cluster = user % 3
        items = [cluster * 20 + (user * 7 + j) % 20 for j in range(8)]
        train_lines.append(" ".join(map(str, [user, *items[:6]])))
        test_lines.append(" ".join(map(str, [user, *items[6:]])))
    (tmp_path / "train.txt").write_text("\n".join(train_lines) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test_lines) + "\n")
    out = train(
        capsys,
        *("--data", str(tmp_path / "train.txt"), "--test", str(tmp_path / "test.txt")),
        *("--epochs", "4", "--eval-every", "2", "--dim", "8", "--batch-size", "64", "--ks", "10"),
        *("--loss", "bpr"),
    )
    # The validation split is carved from the 360 training pairs, not from the test file.
    assert "valid: PositiveIndex(num_users=60, num_items=60, num_interactions=60" in out, out
    assert "test:  PositiveIndex(num_users=60, num_items=60, num_interactions=120" in out, out
    # --eval-every 2: the validation and the test curve at epochs 2 and 4.
    assert len(re.findall(r"epoch\s+[24] .*recall@10 .*test recall@10 ", out)) == 2, out
    chosen = int(summary_rows(out, "validation metrics")["hard"][1])
    assert chosen in (2, 4), out
    test_row = summary_rows(out, "test metrics at the epoch chosen on the validation split")["hard"]
    curve_at_chosen = re.search(rf"epoch\s+{chosen} .*test recall@10 ([\d.]+)", out)
    assert curve_at_chosen is not None, out
    assert test_row[3] == pytest.approx(float(curve_at_chosen.group(1)), abs=1e-4), out


def test_reads_movielens_u_data_by_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # user item rating timestamp, tab-separated; ratings >= 4 are the positives.
    lines = [
        f"{u + 1}\t{i + 1}\t{1 + (u + i) % 5}\t88125{u}{i}" for u in range(20) for i in range(30)
    ]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    positives = sum(1 + (u + i) % 5 >= 4 for u in range(20) for i in range(30))
    out = train(
        capsys,
        *("--data", str(tmp_path / "u.data"), "--rating-threshold", "4"),
        *("--valid-fraction", "0", "--epochs", "1", "--dim", "4"),
    )
    assert f"train: PositiveIndex(num_users=20, num_items=30, num_interactions={positives}," in out
    # Without the threshold every user has rated every item: nothing is left to sample.
    status, out, err = run(
        capsys, "train", *("--data", str(tmp_path / "u.data"), "--valid-fraction", "0")
    )
    assert "note: every rated pair is a positive; --rating-threshold 4" in out, out
    assert_one_line_error(status, err, "has every one of the 30 items as a positive")


@pytest.mark.usefixtures("small_builtin_data")
def test_softmax_with_shared_in_batch_and_hard_negatives_learns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = train(
        capsys,
        *("--loss", "softmax", "--in-batch", "--num-negatives", "256"),
        *("--epochs", "8", "--patience", "0", "--ks", "20"),
    )
    assert "SampledSoftmaxLoss(temperature=0.1" in out, out
    assert "in-batch negatives" in out and "the 4 top-scored of 64 per row" in out, out
    rows = summary_rows(out, "validation metrics")
    # Both runs (shared + in-batch, and with hard negatives) far above random ranking
    # (recall@20 of about 20 / 3000 = 0.0067 on the synthetic data; 0.034 and 0.044 measured).
    for name in ("hard", "uniform"):
        assert rows[name][3] > 0.025, out


@pytest.mark.usefixtures("small_builtin_data")
def test_time_budget_reports_the_loss_of_the_pairs_it_trained_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A budget that runs out after the first batch: the epoch's loss is the mean over
    # the 64 pairs trained on (BPR near log 2 = 0.693 at initialisation, plus the L2
    # term), not their sum divided by all ~39,000 pairs of the epoch (about 0.001).
    out = train(
        capsys,
        *("--loss", "bpr", "--sampler", "uniform", "--valid-fraction", "0", "--epochs", "3"),
        *("--time-budget", "0.001", "--batch-size", "64"),
    )
    losses = [float(m) for m in re.findall(r"epoch +\d+  loss ([\d.]+)", out)]
    assert len(losses) == 1, out
    assert 0.6 < losses[0] < 0.9, out
    assert "time budget of 0.001 s spent in epoch 1" in out, out
    assert "epochs trained: uniform 1" in out, out
