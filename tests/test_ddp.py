"""``examples/train_ddp.py`` under torchrun: two gloo ranks, valid and reproducible negatives.

The example runs twice on the same files with seed 0 (each launch costs tens of
seconds of process start-up, so a third launch for another seed is replaced by
in-process checks of the seed derivation). Each run dumps every rank's
first-epoch batches (users, positives, negatives) to ``rank{r}.pt``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist

from negsample import PositiveIndex
from negsample.data import holdout_split, load_lightgcn, synthetic_dataset

if not dist.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)
if not dist.is_gloo_available():
    pytest.skip("this torch build has no gloo backend", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
WORLD_SIZE = 2
NUM_NEGATIVES = 3  # --num-hard 1 --num-random 2


def run_ddp(data: Path, out: Path, seed: int) -> str:
    """Run the example on two gloo ranks (torchrun on a free localhost port); return stdout."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD_SIZE}",
        str(ROOT / "examples" / "train_ddp.py"),
        "--data",
        str(data / "train.txt"),
        "--test",
        str(data / "test.txt"),
        "--epochs",
        "1",
        "--dim",
        "8",
        "--batch-size",
        "128",
        "--num-candidates",
        "6",
        "--num-hard",
        "1",
        "--num-random",
        "2",
        "--ks",
        "10",
        "--seed",
        str(seed),
        "--dump-negatives",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("data")
    full = synthetic_dataset(240, 120, interactions_per_user=12, seed=3)
    train, test = holdout_split(full, 0.2, seed=3)
    train_items = set(train.indices.tolist())
    for name, index in (("train.txt", train), ("test.txt", test)):
        # The test file may only name items that the training file knows.
        lines = [
            " ".join(
                map(str, [user, *(i for i in index.positives(user).tolist() if i in train_items)])
            )
            for user in range(index.num_users)
        ]
        (data / name).write_text("\n".join(lines) + "\n")
    # What the ranks train on: train.txt less the validation split that chooses the epoch.
    fit, _ = holdout_split(load_lightgcn(data / "train.txt").to_index(), 0.2, seed=0)
    result: dict[str, Any] = {"train": fit}
    for name, seed in (("first", 0), ("rerun", 0)):
        out = tmp_path_factory.mktemp(name)
        result[f"{name}_stdout"] = run_ddp(data, out, seed)
        result[name] = [
            torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)
        ]
    return result


def test_every_rank_draws_valid_negatives_for_its_own_users(runs: dict[str, Any]) -> None:
    train: PositiveIndex = runs["train"]
    pairs = []
    for rank, dump in enumerate(runs["first"]):
        users, pos_items, negatives = dump["users"], dump["pos_items"], dump["negatives"]
        assert (dump["rank"], dump["world_size"]) == (rank, WORLD_SIZE)
        assert negatives.shape == (users.numel(), NUM_NEGATIVES)
        assert negatives.dtype == torch.int64
        assert bool(((negatives >= 0) & (negatives < train.num_items)).all())
        # Never a known positive of the user, checked against the full training index.
        assert not bool(train.contains(users.unsqueeze(1), negatives).any())
        # The rank trains on its users only, on real training pairs.
        assert bool((users % WORLD_SIZE == rank).all())
        assert bool(train.contains(users, pos_items).all())
        pairs.append(users * train.num_items + pos_items)
    # One epoch uses every training pair exactly once, across the ranks.
    every_pair = (
        torch.repeat_interleave(
            torch.arange(train.num_users), (train.indptr[1:] - train.indptr[:-1]).long()
        )
        * train.num_items
        + train.indices.long()
    )
    assert torch.equal(torch.cat(pairs).sort().values, every_pair.sort().values)


def test_ranks_draw_different_streams_seeded_from_seed_and_rank(runs: dict[str, Any]) -> None:
    seeds = {}
    for rank, dump in enumerate(runs["first"]):
        expected = np.random.SeedSequence(0, spawn_key=(rank,)).generate_state(2, dtype=np.uint32)
        assert dump["sampler_seed"] == int(expected[0])
        seeds[0, rank] = dump["sampler_seed"]
    rank_seeds = load_example().rank_seeds
    for rank in range(WORLD_SIZE):
        seeds[1, rank] = rank_seeds(1, rank)[0]
    # No two (seed, rank) pairs share a stream, not even (0, 1) and (1, 0).
    assert len(set(seeds.values())) == len(seeds), seeds
    streams = [
        torch.randint(0, 2**62, (256,), generator=torch.Generator().manual_seed(seed))
        for seed in seeds.values()
    ]
    for i, first in enumerate(streams):
        for second in streams[i + 1 :]:
            assert not torch.equal(first, second)
    # The two ranks' negatives differ (they also have other users, but not one row agrees
    # in full on the users they would share if streams were equal).
    rank0, rank1 = runs["first"]
    assert not torch.equal(rank0["negatives"][:16], rank1["negatives"][:16])


def test_a_rerun_reproduces_every_rank(runs: dict[str, Any]) -> None:
    for first, rerun in zip(runs["first"], runs["rerun"], strict=True):
        for key in ("users", "pos_items", "negatives"):
            assert torch.equal(first[key], rerun[key]), key
    final = [line for line in runs["first_stdout"].splitlines() if line.startswith("final")]
    assert final == [line for line in runs["rerun_stdout"].splitlines() if line.startswith("final")]


def test_rank_zero_alone_prints_the_validation_and_test_metrics(runs: dict[str, Any]) -> None:
    out = runs["first_stdout"]
    final = [line for line in out.splitlines() if line.startswith("final")]
    assert len(final) == 1, out
    words = final[0].split()
    assert words[:5] == ["final", "epochs", "1", "chosen", "1"], out
    metrics = dict(zip(words[5::2], map(float, words[6::2]), strict=True))
    assert set(metrics) == {"recall@10", "ndcg@10", "map@10"}, out
    assert all(0.0 <= value <= 1.0 for value in metrics.values()), out
    # The command's BPR recipe (L2 weight 2e-2), the epoch's validation line, the test metrics.
    assert "epoch   1  loss" in out and "valid recall@10" in out, out
    test = [line for line in out.splitlines() if line.startswith("test ")]
    assert len(test) == 1 and "recall@10" in test[0], out
    for rank in range(WORLD_SIZE):
        assert f"[rank {rank}] users" in out, out


def load_example() -> ModuleType:
    """The example as a module (its ``main`` is not run), to call its helpers in-process."""
    spec = importlib.util.spec_from_file_location("train_ddp", ROOT / "examples" / "train_ddp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rank_seeds_are_distinct_32_bit_words_for_common_seeds_and_ranks() -> None:
    rank_seeds = load_example().rank_seeds
    seeds = [rank_seeds(seed, rank) for seed in range(64) for rank in range(64)]
    # torch's CPU generator keeps only the low 32 bits of a seed.
    assert all(0 <= word < 2**32 for pair in seeds for word in pair)
    sampler_seeds = [sampler_seed for sampler_seed, _ in seeds]
    assert len(set(sampler_seeds)) == len(sampler_seeds)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--num-candidates", "4", "--num-hard", "3", "--num-random", "2"],
            "--num-hard + --num-random must be between 1 and --num-candidates=4, got 3 + 2 = 5",
        ),
        (["--batch-size", "0"], "argument --batch-size: must be an int >= 1, got 0"),
        (["--valid-fraction", "1.5"], "--valid-fraction must be in (0, 1), got 1.5"),
        (["--backend", "nccl"], "--backend nccl needs --device cuda"),
    ],
)
def test_bad_arguments_are_clear_cli_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_example().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
