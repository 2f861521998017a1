"""Every example script runs and does what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_train_mf_is_the_negsample_train_command(tmp_path: Path) -> None:
    # The script is a thin wrapper: the command itself is tested in tests/test_cli.py.
    lines = [" ".join(map(str, [u, *((u * 7 + j) % 30 for j in range(6))])) for u in range(40)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    submission = tmp_path / "submission.csv"
    out = run_example(
        "train_mf.py",
        *("--data", str(tmp_path / "train.txt"), "--epochs", "2", "--dim", "4", "--ks", "10"),
        *("--submission", str(submission), "--no-progress"),
    )
    assert "validation metrics at the epoch chosen on the validation split" in out, out
    assert submission.read_text().startswith("UserId,ItemId\n0,"), out
    help_text = run_example("train_mf.py", "--help")
    assert help_text.startswith("usage: negsample train [options]"), help_text
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_mf.py"), "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == "negsample: error: argument --epochs: must be an integer >= 1, got 0\n"
