"""The command never loses a file, never reports a broken run as a success, and refuses bad
input before training (issue 33: one test or more per item, and the extra finds)."""

from __future__ import annotations

import errno
import math
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import negsample.cli._command as command
from negsample.cli import main
from negsample.cli._adaptive import lambert_w
from negsample.cli._parser import build_parser, train_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A competition CSV of 30 users x 40 items, 6 items each (the issue's `small.csv`)."""
    rng = random.Random(0)
    rows = [f"{user},{' '.join(map(str, rng.sample(range(40), 6)))}" for user in range(30)]
    path = tmp_path / "small.csv"
    path.write_text("UserId,ItemId\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any run starts training."""

    def train(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a run started training")

    monkeypatch.setattr(command, "train", train)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["train", "--no-progress", *args])
    out, err = capsys.readouterr()
    return status, out, err


def quick(data: Path, *args: str) -> list[str]:
    """The issue's `T`: one epoch on the small file, cut-off 5 (and a small model)."""
    return ["--data", str(data), "--epochs", "1", "--ks", "5", "--dim", "4", *args]


def one_line(err: str, *parts: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("negsample: error: "), err
    for part in parts:
        assert part in lines[0], (part, err)
    return lines[0]


def assert_refused(
    capsys: pytest.CaptureFixture[str], args: list[str], *parts: str
) -> tuple[str, str]:
    """Status 2, one line holding ``parts``, nothing trained."""
    status, out, err = run(capsys, *args)
    assert status == 2, err
    line = one_line(err, *parts)
    assert not re.search(r"epoch\s+\d", out), out
    return line, out


def listing(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


# ---------------------------------------------------------------- 1, 8: outputs checked first


@pytest.mark.usefixtures("no_training")
def test_1_an_output_that_is_an_input_is_refused_and_the_input_kept(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    before = small.read_bytes()
    assert_refused(
        capsys,
        quick(small, "--submission", str(small)),
        f"--submission {small} is the file of --data",
    )
    # The same file by another name: a relative path, a symbolic link, a hard link.
    os.symlink(small, tmp_path / "link.csv")
    os.link(small, tmp_path / "hard.csv")
    for name in ("link.csv", "hard.csv", f"../{tmp_path.name}/small.csv"):
        assert_refused(
            capsys, quick(small, "--submission", str(tmp_path / name)), "is the file of --data"
        )
    test = tmp_path / "test.csv"
    test.write_text("UserId,ItemId\n0,1\n")
    assert_refused(
        capsys, quick(small, "--test", str(test), "--plot", str(test)), "is the file of --test"
    )
    out = tmp_path / "out.png"
    assert_refused(
        capsys,
        quick(small, "--submission", str(out), "--plot", str(out)),
        "is the file of --submission",
    )
    assert small.read_bytes() == before and not out.exists()


@pytest.mark.usefixtures("no_training")
def test_8_an_output_that_cannot_be_written_is_refused_before_training(
    capsys: pytest.CaptureFixture[str],
    small: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "existing_dir"
    folder.mkdir()
    assert_refused(capsys, quick(small, "--submission", str(folder)), "is a folder")
    assert_refused(capsys, quick(small, "--submission", os.devnull), "is not a regular file")
    # A read-only mount: the file that the write would create cannot be made.
    import negsample.cli._output as output

    def read_only(path: Path, mode: int = 0o666) -> int:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(output, "_create", read_only)
    line, _ = assert_refused(
        capsys, quick(small, "--submission", str(tmp_path / "s.csv")), "cannot write in"
    )
    assert "Read-only file system" in line
    assert listing(tmp_path) == {"small.csv": small.read_bytes()}


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes through permissions"
)
@pytest.mark.usefixtures("no_training")
def test_8_read_only_folder_and_file_are_refused(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    kept = tmp_path / "kept.csv"
    kept.write_text("old\n")
    kept.chmod(0o444)
    locked.chmod(0o555)
    try:
        assert_refused(capsys, quick(small, "--submission", str(locked / "s.csv")), "cannot write")
        assert_refused(capsys, quick(small, "--submission", str(kept)), "read-only")
    finally:
        locked.chmod(0o755)
    assert kept.read_text() == "old\n"


# ---------------------------------------------------------------- 2: atomic writes


def test_2_a_write_that_fails_part_way_keeps_the_old_file_and_names_it(
    capsys: pytest.CaptureFixture[str],
    small: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    submission = tmp_path / "submission.csv"
    submission.write_text("the old submission\n")
    submission.chmod(0o640)

    def full_disk(path: Path, *args: Any) -> None:
        with open(path, "w") as file:
            file.write("UserId,ItemId\n1,2 3\n4,")  # a truncated CSV
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(command, "write_submission", full_disk)
    status, out, err = run(capsys, *quick(small, "--submission", str(submission)))
    assert status == 1, err
    one_line(err, f"{submission}: No space left on device")
    assert "written to" not in out
    # The old file as it was (content and mode), and no temporary file left beside it.
    assert submission.read_text() == "the old submission\n"
    assert submission.stat().st_mode & 0o777 == 0o640
    assert sorted(path.name for path in tmp_path.iterdir()) == ["small.csv", "submission.csv"]


def test_2_a_replaced_file_keeps_its_mode_and_a_link_its_target(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    target.chmod(0o600)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    status, _, err = run(capsys, *quick(small, "--submission", str(link)))
    assert status == 0, err
    assert link.is_symlink() and target.read_text().startswith("UserId,ItemId\n")
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link.csv", "real.csv", "small.csv"]


# ---------------------------------------------------------------- 3, 4: values before training


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        # 3: accepted before, and trained to a NaN loss or a negative one.
        (["--reg", "nan"], "--reg must be a finite number >= 0, got nan"),
        (["--reg", "-1"], "--reg must be a finite number >= 0, got -1.0"),
        (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
        (
            ["--loss", "softmax", "--neg-weight", "1e308"],
            "--neg-weight must be a finite number > 0 that float32, the training's precision, can hold",
        ),
        # 4: refused late, with a traceback.
        (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
        (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (["--init-std", "-1"], "--init-std must be a finite number > 0, got -1.0"),
        (["--init-std", "nan"], "--init-std must be a finite number > 0, got nan"),
        (["--ks", "5", "5"], "--ks must not repeat a cut-off, got 5 5"),
        (["--device", "mps"], "argument --device: expected cpu, cuda or cuda:N, got 'mps'"),
        (["--device", "meta"], "argument --device: expected cpu, cuda or cuda:N, got 'meta'"),
        # Beyond the list: the other numbers, each before training.
        (["--init-std", "0"], "--init-std must be a finite number > 0, got 0.0"),
        (["--lr", "1e-50"], "--lr must be a finite number > 0 that float32"),
        (["--loss", "softmax", "--temperature", "0"], "--temperature must be a finite number > 0"),
        (["--candidates", "popularity", "--alpha", "2"], "--alpha must be in [0, 1], got 2.0"),
        (["--time-budget", "inf"], "--time-budget must be a finite number > 0, got inf"),
        (["--device", "cpu:1"], "argument --device: expected cpu, cuda or cuda:N"),
        (["--num-candidates", "0"], "argument --num-candidates: must be an integer >= 1, got 0"),
        (["--num-hard", "-1"], "argument --num-hard: must be an integer >= 0, got -1"),
        (
            ["--loss", "bpr", "--num-hard", "0", "--num-random", "0"],
            "--num-hard + --num-random must be between 1",
        ),
        (
            ["--loss", "softmax", "--num-hard", "0"],
            "--num-hard (the softmax run's hard negatives per pair) must be between 1 and",
        ),
        (["--threads", "1000000"], "argument --threads: must be at most the"),
        (["--seed", str(2**64)], "argument --seed: must be an integer in [0, 2**64 - 1]"),
        (["--delimiter", ""], "--delimiter must not be empty"),
    ],
)
def test_3_4_bad_values_are_refused_before_training(
    capsys: pytest.CaptureFixture[str], small: Path, args: list[str], message: str
) -> None:
    assert_refused(capsys, quick(small, *args), message)


def test_4_no_such_cuda_device(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "--device", f"cuda:{torch.cuda.device_count() + 3}")
    assert status == 2
    if torch.cuda.is_available():
        one_line(err, "there is no such device")
    else:
        one_line(err, "this torch has no CUDA device")


# ---------------------------------------------------------------- 3, d: a run that diverges


def test_3_a_diverging_run_stops_with_status_1_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    submission, plot = tmp_path / "s.csv", tmp_path / "p.png"
    submission.write_text("old\n")
    # A rate of 1e30: finite, but the weights grow to ~1e30 in one step and the second
    # epoch's BPR scores overflow float32.
    status, out, err = run(
        capsys,
        *quick(small, "--loss", "bpr", "--epochs", "3", "--lr", "1e30", "--reg", "0"),
        *("--submission", str(submission), "--plot", str(plot)),
    )
    assert status == 1, err
    one_line(
        err, "the hard run diverged in epoch 2: its training loss is nan", "nothing was written"
    )
    assert "validation metrics" not in out and "written to" not in out, out
    assert submission.read_text() == "old\n" and not plot.exists()


def test_3_weights_that_turn_non_finite_stop_the_run(
    capsys: pytest.CaptureFixture[str], small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The last step of an epoch can break the weights after its loss was computed.
    step = torch.optim.Adam.step

    def breaking_step(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        result = step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0][0, 0] = math.inf
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", breaking_step)
    status, _, err = run(capsys, *quick(small, "--loss", "bpr"))
    assert status == 1
    one_line(err, "the hard run diverged in epoch 1: its weights are not finite")
    # The softmax recipe's first trial, when its form and temperature are chosen on validation.
    status, _, err = run(capsys, *quick(small))
    assert status == 1
    one_line(err, "the hard:bilateral/T0.1 run diverged in epoch 1: its weights are not finite")


@pytest.mark.usefixtures("no_training")
def test_3_a_loss_that_is_not_finite_at_the_first_step_is_refused_before_training(
    capsys: pytest.CaptureFixture[str], small: Path
) -> None:
    assert_refused(
        capsys,
        quick(small, "--loss", "bpr", "--init-std", "1e30"),
        "the hard run's first step gives a loss of nan (check --init-std)",
    )


# ---------------------------------------------------------------- 5: the plot


@pytest.mark.usefixtures("no_training")
def test_5_a_plot_format_matplotlib_cannot_write_is_refused_before_training(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    submission = tmp_path / "s.csv"
    assert_refused(
        capsys,
        quick(small, "--plot", str(tmp_path / "c.xyz"), "--submission", str(submission)),
        "--plot",
        "matplotlib cannot write 'xyz' files (known formats: ",
    )
    assert not submission.exists()


@pytest.mark.usefixtures("no_training")
def test_5_a_plot_without_a_point_is_refused_before_training(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    test = tmp_path / "t.csv"
    test.write_text("UserId,ItemId\n0,39\n")
    assert_refused(
        capsys,
        [
            *("--data", str(small), "--valid-fraction", "0", "--test", str(test)),
            *("--eval-every", "5", "--epochs", "2", "--plot", str(tmp_path / "p.png")),
        ],
        "--plot would have no point: the test curve is evaluated every --eval-every 5 epochs, "
        "and --epochs is 2",
    )


def test_5_a_time_budget_spent_before_the_first_test_point_still_plots(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    test, plot = tmp_path / "t.csv", tmp_path / "p.png"
    test.write_text("UserId,ItemId\n0,39\n")
    status, out, err = run(
        capsys,
        *("--data", str(small), "--valid-fraction", "0", "--test", str(test), "--dim", "4"),
        *("--eval-every", "2", "--epochs", "2", "--time-budget", "1e-9", "--ks", "5"),
        *("--plot", str(plot)),
    )
    assert status == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", out


# ---------------------------------------------------------------- 6, 7, 11: files without pairs


@pytest.mark.usefixtures("no_training")
def test_6_a_test_file_without_pairs_is_refused_before_training(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("UserId,ItemId\n")
    assert_refused(
        capsys,
        quick(small, "--test", str(header_only)),
        f"the test file {header_only} has no pairs",
    )


def movielens(folder: Path) -> Path:
    lines = [f"{u + 1}\t{i + 1}\t{1 + (u + i) % 5}\t88125" for u in range(20) for i in range(30)]
    path = folder / "u.data"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize("valid_fraction", [[], ["--valid-fraction", "0"]])
def test_7_a_rating_threshold_no_rating_reaches_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, valid_fraction: list[str]
) -> None:
    data = movielens(tmp_path)
    line, _ = assert_refused(
        capsys,
        ["--data", str(data), "--rating-threshold", "6", "--epochs", "1", *valid_fraction],
        f"the training file {data} has no pairs rated at least --rating-threshold 6",
    )
    assert "--valid-fraction" not in line and "B = 0" not in line


@pytest.mark.usefixtures("no_training")
def test_11_empty_training_files_say_the_file_has_no_pairs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("UserId,ItemId\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for path in (header_only, empty):
        line, _ = assert_refused(
            capsys, ["--data", str(path)], f"the training file {path} has no pairs"
        )
        assert "num_items" not in line


# ---------------------------------------------------------------- 9: options that do nothing


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "bpr", "--num-negatives", "8"], "--num-negatives applies to --loss softmax"),
        (["--loss", "bce", "--num-negatives", "8"], "--num-negatives applies to --loss softmax"),
        (["--loss", "softmax", "--num-random", "1"], "--num-random applies to --loss bpr/bce"),
        (
            ["--loss", "softmax", "--sampler", "uniform", "--num-hard", "3"],
            "--num-hard applies to --sampler hard, or --loss bpr/bce",
        ),
        (
            ["--loss", "softmax", "--sampler", "uniform", "--num-candidates", "30"],
            "--num-candidates applies to --sampler hard",
        ),
        (["--sampler", "uniform", "--num-candidates", "30"], "--num-candidates applies to"),
        (
            ["--loss", "softmax", "--selection", "softmax"],
            "--selection softmax applies to --loss bpr/bce",
        ),
        (
            ["--loss", "softmax", "--sampler", "uniform", "--selection", "ahns"],
            "--selection applies to --sampler hard",
        ),
        (
            ["--sampler", "uniform", "--selection", "softmax"],
            "--selection applies to --sampler hard",
        ),
        # Even given at its default value.
        (["--loss", "bpr", "--num-negatives", "1024"], "--num-negatives applies to --loss softmax"),
        (
            ["--valid-fraction", "0", "--patience", "3"],
            "--patience applies with a validation split",
        ),
        (["--valid-fraction", "0", "--split-seed", "3"], "--split-seed seeds the validation split"),
        (["--valid-fraction", "0", "--eval-every", "2"], "--eval-every applies to evaluation"),
    ],
)
def test_9_an_option_that_does_nothing_is_refused(
    capsys: pytest.CaptureFixture[str], small: Path, args: list[str], message: str
) -> None:
    assert_refused(capsys, ["--data", str(small), "--epochs", "1", *args], message)


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(
    "args",
    [
        ["--string-ids"],
        ["--format", "csv"],
        ["--format", "auto"],
        ["--delimiter", ","],
        ["--rating-threshold", "4"],
    ],
)
def test_9_file_options_without_data_are_refused(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert_refused(capsys, args, f"{args[0]} applies to a file: it needs --data")


@pytest.mark.usefixtures("no_training")
def test_9_ks_without_anything_to_evaluate_is_refused(
    capsys: pytest.CaptureFixture[str], small: Path
) -> None:
    assert_refused(
        capsys,
        ["--data", str(small), "--valid-fraction", "0", "--ks", "5"],
        "--ks applies to evaluation: a validation split or --test",
    )


def settings_of(*args: str) -> Any:
    return train_settings(build_parser().parse_args(["train", *args]))


def test_9_options_that_apply_to_one_of_the_built_in_runs_are_accepted() -> None:
    # The built-in comparison trains uniform BPR, hard BPR and the softmax recipe.
    runs = settings_of("--num-negatives", "64", "--num-random", "1", "--selection", "softmax").runs
    # --selection softmax is the BPR runs' (the softmax run's hard part keeps the top-k).
    assert [(r.name, r.num_negatives, r.num_random, r.selection) for r in runs] == [
        ("uniform", 64, 1, "softmax"),
        ("hard", 64, 1, "softmax"),
        ("softmax", 64, 1, "topk"),
    ]
    # --num-hard + --num-random is the uniform BPR run's count of negatives.
    (uniform,) = settings_of("--loss", "bpr", "--sampler", "uniform", "--num-hard", "3").runs
    assert uniform.num_hard == 3


# ---------------------------------------------------------------- 10, 12, 16: messages


@pytest.mark.usefixtures("no_training")
def test_10_a_user_with_every_item_is_named_by_the_files_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = random.Random(1)
    rows = [f"{u},{' '.join(map(str, rng.sample(range(40), 6)))}" for u in range(29)]
    rows += ["9001," + " ".join(map(str, range(40))), "9002," + " ".join(map(str, range(40)))]
    path = tmp_path / "full.csv"
    path.write_text("UserId,ItemId\n" + "\n".join(rows) + "\n")
    assert_refused(
        capsys,
        ["--data", str(path), "--valid-fraction", "0"],
        f"{path}: user 9001 has every one of the 40 items as a positive, so no negative can be "
        "drawn for it (2 such users: 9001, 9002)",
    )


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(("row", "what"), [("0,999", "item id '999'"), ("77,1", "user id '77'")])
def test_12_a_test_id_absent_from_training_names_the_training_file(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path, row: str, what: str
) -> None:
    test = tmp_path / "test.csv"
    test.write_text(f"UserId,ItemId\n{row}\n")
    line, _ = assert_refused(
        capsys,
        quick(small, "--test", str(test)),
        f"{test}, line 2: {what} is not in the training file {small}",
    )
    assert "unknown=" not in line and "like" not in line


@pytest.mark.usefixtures("no_training")
def test_16_a_rating_threshold_on_a_competition_csv_says_what_the_file_is(
    capsys: pytest.CaptureFixture[str], small: Path
) -> None:
    hint = "'UserId,ItemId' is the header of a competition CSV"
    line, _ = assert_refused(
        capsys, quick(small, "--rating-threshold", "4"), f"{small}, line 1: {hint}"
    )
    assert "--rating-threshold and --delimiter apply to the pairs format" in line
    line, _ = assert_refused(capsys, quick(small, "--format", "pairs"), hint)
    assert "read it with --format csv" in line


def test_13_the_plot_is_written_to_the_name_given(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    curves = tmp_path / "curves"
    status, out, err = run(capsys, *quick(small, "--plot", str(curves)))
    assert status == 0, err
    assert f"plot written to {curves}\n" in out
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "curves.png").exists()
    svg = tmp_path / "curves.SVG"
    status, out, err = run(capsys, *quick(small, "--plot", str(svg)))
    assert status == 0 and b"<svg" in svg.read_bytes()


def test_14_the_largest_seed_trains_the_softmax_run_with_hard_negatives(
    capsys: pytest.CaptureFixture[str], small: Path
) -> None:
    seed = str(2**64 - 1)
    status, out, err = run(
        capsys, *quick(small, "--loss", "softmax", "--num-negatives", "8", "--seed", seed)
    )
    assert status == 0, err
    assert "18446744073709551616" not in out + err


@pytest.mark.usefixtures("no_training")
def test_15_selection_softmax_blames_no_option_that_was_not_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Alone it applies to the built-in comparison's hard BPR run.
    (hard,) = [run for run in settings_of("--selection", "softmax").runs if run.name == "hard"]
    assert (hard.selection, hard.temperature) == ("softmax", None)
    line, _ = assert_refused(
        capsys,
        ["--selection", "softmax", "--temperature", "2"],
        "--temperature would set both the softmax run's loss temperature and the hard run's "
        "--selection softmax temperature",
    )
    assert "--loss softmax" not in line


# ---------------------------------------------------------------- 19: Lambert W


def test_19_lambert_w_is_right_up_to_the_largest_float() -> None:
    x = torch.tensor([1e305, 1e307, 1.7976931348623157e308], dtype=torch.float64)
    w = lambert_w(x)
    # The exact values (mpmath.lambertw) to double precision.
    expected = [695.7434723450066, 700.3420546839304, 703.2270331047702]
    assert w.tolist() == pytest.approx(expected, rel=1e-14)
    # W + log W = log x, the equation that cannot overflow, from just above e upwards.
    x = torch.logspace(0.44, 308, 3001, dtype=torch.float64)
    w = lambert_w(x)
    torch.testing.assert_close(w + torch.log(w), torch.log(x), rtol=1e-14, atol=1e-14)
    assert torch.all(torch.diff(w) > 0)
    assert lambert_w(torch.tensor([math.inf], dtype=torch.float64)).item() == math.inf


# ---------------------------------------------------------------- 21, 22: docs


def test_21_no_url_of_a_host_that_does_not_exist() -> None:
    # The project has no public repository or documentation site (yet): no such URLs.
    pyproject = (ROOT / "pyproject.toml").read_text()
    readme = (ROOT / "README.md").read_text()
    for text in (pyproject, readme):
        assert "readthedocs" not in text and "github.com/negsample" not in text
    assert "sphinx-build" in readme


def test_22_the_docs_promise_errors_before_any_training() -> None:
    # The promise stands (the tests above hold the command to it) and says what status 1 is.
    for name in ("README.md", "docs/tutorial.rst", "docs/changelog.rst"):
        text = " ".join((ROOT / name).read_text().split())
        assert "before any training" in text, name
        assert "status 1" in text, name


# ---------------------------------------------------------------- beyond the list


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dim", str(10**9)], "the hard run does not fit in memory (try a smaller --dim"),
        (
            # (A large --num-negatives would not do: past the catalogue every item is scored.)
            ["--loss", "softmax", "--num-candidates", str(10**12)],
            "does not fit in memory (try a smaller --dim, --batch-size, --num-negatives, "
            "--num-candidates",
        ),
    ],
)
def test_a_run_too_large_for_memory_is_refused_before_training(
    capsys: pytest.CaptureFixture[str], small: Path, args: list[str], message: str
) -> None:
    assert_refused(capsys, quick(small, *args), message)


def test_running_out_of_memory_in_training_is_one_line_with_status_1(
    capsys: pytest.CaptureFixture[str], small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9")

    monkeypatch.setattr(command, "train", no_memory)
    status, _, err = run(capsys, *quick(small))
    assert status == 1
    one_line(err, "out of memory in training")


def test_a_bug_in_training_still_shows_its_traceback(
    small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(command, "train", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", *quick(small)])


@pytest.mark.usefixtures("no_training")
def test_an_unknown_extension_asks_for_the_commands_format_option(
    capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path
) -> None:
    ratings = tmp_path / "ratings.tsv"
    ratings.write_text("a\tx\n")
    line, _ = assert_refused(
        capsys,
        ["--data", str(ratings)],
        f"{ratings}: --format auto cannot tell the format from the extension '.tsv'",
        "pass --format lightgcn, csv, pickle or pairs",
    )
    assert "format=" not in line


@pytest.mark.usefixtures("no_training")
def test_the_training_file_as_test_file_is_refused(
    capsys: pytest.CaptureFixture[str], small: Path
) -> None:
    # Every test pair would be a training pair, which rankings leave out: recall 0 always.
    assert_refused(
        capsys, quick(small, "--test", str(small)), f"--test {small} is the file of --data"
    )


@pytest.mark.usefixtures("no_training")
def test_an_output_under_a_file_says_it_is_not_a_folder(
    capsys: pytest.CaptureFixture[str], small: Path
) -> None:
    assert_refused(
        capsys,
        quick(small, "--submission", str(small / "s.csv")),
        f"--submission {small / 's.csv'}: {small} is not a folder",
    )
