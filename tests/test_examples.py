"""Every example script runs and does what it says."""

from __future__ import annotations

import importlib.util
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart_learns_far_better_than_random_ranking() -> None:
    out = run_example("quickstart.py", "--epochs", "3")
    random_level = float(re.search(r"random ranking: recall@10 about ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    final = re.search(r"recall@10 hard ([\d.]+), uniform ([\d.]+)", out)
    assert final is not None, out
    hard, uniform = float(final.group(1)), float(final.group(2))
    assert hard > 4 * random_level, out
    assert uniform > 4 * random_level, out


def summary_rows(out: str, title: str) -> dict[str, list[float]]:
    """The rows of the summary table under ``title``: sampler -> [epochs, chosen, s/epoch, ...]."""
    block = out[out.index(title) :].split("\n\n")[0]
    rows = re.findall(r"^\s*(hard|uniform)((?:\s+[\d.]+)+)\s*$", block, flags=re.MULTILINE)
    return {name: [float(v) for v in values.split()] for name, values in rows}


def test_train_mf_on_builtin_data_beats_random_ranking_with_both_samplers() -> None:
    out = run_example("train_mf.py", "--epochs", "8", "--lr", "1e-2", "--no-progress")
    table = summary_rows(out, "validation metrics at the epoch chosen on the validation split")
    assert set(table) == {"hard", "uniform"}, out
    for name, (epochs, chosen, _, recall, *_) in table.items():
        assert 1 <= chosen <= epochs <= 8, out
        # Random ranking of 3000 items gives recall@20 of about 20 / 3000 = 0.007.
        assert recall > 0.1, out
        assert (
            f"[{name:>7}] restored the weights of epoch {int(chosen)}, chosen on the validation split"
            in out
        )


def test_train_mf_keeps_the_best_epoch_on_validation_and_stops_early() -> None:
    # A learning rate far too high: validation recall peaks in the first epochs and falls.
    out = run_example(
        "train_mf.py",
        "--sampler",
        "hard",
        "--epochs",
        "30",
        "--patience",
        "2",
        "--lr",
        "0.3",
        "--reg",
        "0",
        "--ks",
        "20",
        "--no-progress",
    )
    curve = [float(v) for v in re.findall(r"epoch\s+\d+ .* recall@20 ([\d.]+)", out)]
    best = max(range(len(curve)), key=lambda i: (curve[i], -i)) + 1
    assert len(curve) == best + 2, out  # patience 2: two epochs without improvement, then stop
    assert "stopped early: validation recall@20 has not improved for 2 epochs" in out
    assert f"restored the weights of epoch {best}, chosen on the validation split" in out
    epochs, chosen, _, recall, *_ = summary_rows(out, "validation metrics")["hard"]
    assert (epochs, chosen) == (best + 2, best), out
    assert recall == pytest.approx(curve[best - 1], abs=1e-4), out


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


@pytest.mark.parametrize("valid_fraction", ["0.2", "0"])
def test_train_mf_submission_on_a_competition_file_is_valid(
    tmp_path: Path, valid_fraction: str
) -> None:
    # 61 users with raw ids 1000.., 90 items with gapped raw ids 7, 10, 13, ... in 3 taste
    # clusters; user 1060 has no training item at all and must still get 50 items.
    rows = {}
    for user in range(60):
        cluster = user % 3
        rows[1000 + user] = [7 + 3 * (cluster * 30 + (user * 7 + j) % 30) for j in range(8)]
    rows[1060] = []
    train = tmp_path / "train.csv"
    write_competition_csv(train, rows)
    submission = tmp_path / "submission.csv"
    out = run_example(
        "train_mf.py",
        "--data",
        str(train),
        "--valid-fraction",
        valid_fraction,
        "--epochs",
        "3",
        "--dim",
        "8",
        "--batch-size",
        "64",
        "--ks",
        "10",
        "--submission",
        str(submission),
        "--no-progress",
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
            f"retraining on all 480 training pairs for {chosen} epochs (chosen on the validation split)"
            in out
        ), out
    assert f"submission (hard negatives, top 50) written to {submission}" in out


def test_train_mf_test_file_metrics_are_those_of_the_weights_chosen_on_validation(
    tmp_path: Path,
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
    out = run_example(
        "train_mf.py",
        "--data",
        str(tmp_path / "train.txt"),
        "--test",
        str(tmp_path / "test.txt"),
        "--epochs",
        "4",
        "--eval-every",
        "2",
        "--dim",
        "8",
        "--batch-size",
        "64",
        "--ks",
        "10",
        "--no-progress",
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


def test_train_mf_reads_movielens_u_data_by_name(tmp_path: Path) -> None:
    # user item rating timestamp, tab-separated; ratings >= 4 are the positives.
    lines = [
        f"{u + 1}\t{i + 1}\t{1 + (u + i) % 5}\t88125{u}{i}" for u in range(20) for i in range(30)
    ]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    positives = sum(1 + (u + i) % 5 >= 4 for u in range(20) for i in range(30))
    out = run_example(
        "train_mf.py",
        "--data",
        str(tmp_path / "u.data"),
        "--rating-threshold",
        "4",
        "--valid-fraction",
        "0",
        "--epochs",
        "1",
        "--dim",
        "4",
        "--no-progress",
    )
    assert f"train: PositiveIndex(num_users=20, num_items=30, num_interactions={positives}," in out


def test_train_mf_help_shows_the_defaults() -> None:
    out = run_example("train_mf.py", "--help")
    for option in (
        "--lr",
        "--reg",
        "--patience",
        "--epochs",
        "--dim",
        "--batch-size",
        "--num-candidates",
        "--valid-fraction",
        "--split-seed",
        "--seed",
    ):
        help_text = re.search(
            rf"^\s+{option} [A-Z_]+\s+(.*?)(?=\n\s+-|\n\n|\Z)", out, flags=re.DOTALL | re.MULTILINE
        )
        assert help_text is not None and "(default: " in help_text.group(1), (option, out)


def test_train_mf_plots_the_validation_curves(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the --plot option needs matplotlib")
    plot = tmp_path / "curves.png"
    run_example("train_mf.py", "--epochs", "1", "--no-progress", "--plot", str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_mf_softmax_with_shared_in_batch_and_hard_negatives_learns() -> None:
    out = run_example(
        "train_mf.py",
        "--loss",
        "softmax",
        "--in-batch",
        "--num-negatives",
        "256",
        "--epochs",
        "8",
        "--patience",
        "0",
        "--ks",
        "20",
        "--no-progress",
    )
    assert "SampledSoftmaxLoss(temperature=0.1" in out, out
    assert "in-batch negatives" in out and "the 2 top-scored of 10 per row" in out, out
    rows = summary_rows(out, "validation metrics")
    # Both runs (shared + in-batch, and with hard negatives) far above random ranking
    # (recall@20 of about 20 / 3000 items on the synthetic data). The cosine model starts
    # from near-zero embeddings: on the built-in data the default softmax run (1024 shared
    # candidates) passed 0.1 at epoch 7, and this one was at 0.02 to 0.03 after 4 epochs.
    for name in ("hard", "uniform"):
        assert rows[name][3] > 0.1, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "softmax", "--reg", "0.01"], "--reg applies to --loss bpr/bce"),
        (["--loss", "bpr", "--in-batch"], "--in-batch applies to --loss softmax"),
        (["--loss", "softmax", "--num-negatives", "0"], "--num-negatives must be >= 1"),
        (["--loss", "bpr", "--temperature", "0.5"], "--temperature applies to --loss softmax"),
    ],
)
def test_train_mf_rejects_options_that_do_not_apply(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_mf.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_train_mf_keeps_freed_memory_for_reuse_under_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator settings are glibc's")
    spec = importlib.util.spec_from_file_location("train_mf", ROOT / "examples" / "train_mf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_mf", module)  # dataclasses look the module up
    spec.loader.exec_module(module)
    # mallopt returns 1 when glibc accepts both settings (32 MiB is within its limit).
    assert module.keep_freed_memory() is True


def test_train_mf_time_budget_reports_the_loss_of_the_pairs_it_trained_on() -> None:
    # A budget that runs out after the first batch: the epoch's loss is the mean over
    # the 64 pairs trained on (BPR near log 2 = 0.693 at initialisation, plus the L2
    # term), not their sum divided by all ~32,000 pairs of the epoch (about 0.001).
    out = run_example(
        "train_mf.py",
        "--sampler",
        "uniform",
        "--valid-fraction",
        "0",
        "--epochs",
        "3",
        "--time-budget",
        "0.001",
        "--batch-size",
        "64",
        "--no-progress",
    )
    losses = [float(m) for m in re.findall(r"epoch +\d+  loss ([\d.]+)", out)]
    assert len(losses) == 1, out
    assert 0.6 < losses[0] < 0.9, out
    assert "time budget of 0.001 s spent in epoch 1" in out, out
    assert "epochs trained: uniform 1" in out, out
