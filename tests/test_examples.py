"""Every example script runs and does what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def test_train_mf_on_builtin_data_beats_random_ranking_with_both_samplers() -> None:
    out = run_example("train_mf.py", "--epochs", "4", "--no-progress")
    table = dict(re.findall(r"^\s*(hard|uniform)\s+4\s+[\d.]+\s+([\d.]+)", out, flags=re.MULTILINE))
    assert set(table) == {"hard", "uniform"}, out
    # Random ranking of 1000 items gives recall@20 of about 20 / 1000 = 0.02.
    assert float(table["hard"]) > 0.1, out
    assert float(table["uniform"]) > 0.1, out


def test_train_mf_on_files_writes_a_submission_without_training_items(tmp_path: Path) -> None:
    from negsample.data import load_competition_csv, load_lightgcn

    # 60 users in 3 clusters of 20 items each; users like their own cluster.
    train_lines, test_lines = [], []
    for user in range(60):
        cluster = user % 3
        items = [cluster * 20 + (user * 7 + j) % 20 for j in range(8)]
        train_lines.append(" ".join(map(str, [user, *items[:6]])))
        test_lines.append(" ".join(map(str, [user, *items[6:]])))
    (tmp_path / "train.txt").write_text("\n".join(train_lines) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test_lines) + "\n")
    submission = tmp_path / "submission.csv"
    out = run_example(
        "train_mf.py",
        "--data",
        str(tmp_path / "train.txt"),
        "--test",
        str(tmp_path / "test.txt"),
        "--epochs",
        "2",
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
    assert "submission (hard negatives) written" in out
    train = load_lightgcn(tmp_path / "train.txt")
    written = load_competition_csv(submission, like=train)
    assert written.num_pairs == 60 * 50
    train_index = train.to_index()
    assert not bool(
        train_index.contains(torch.from_numpy(written.users), torch.from_numpy(written.items)).any()
    )


def test_train_mf_plots_the_validation_curves(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the --plot option needs matplotlib")
    plot = tmp_path / "curves.png"
    run_example("train_mf.py", "--epochs", "1", "--no-progress", "--plot", str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
