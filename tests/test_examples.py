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
