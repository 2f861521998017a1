"""Sampler throughput on a GPU: our exact vectorized sampler against the approximate recipe.

Usage (on a machine with CUDA)::

    python benchmarks/bench_gpu.py --data ../shared/data/gowalla
    python benchmarks/bench_gpu.py --device cpu --batch-size 4096   # a dry run anywhere

Candidates per second at B=65536, M=64 (2 hard + 2 random) by default, scored
by ``MFModel(dim=64)``, with ``validate=False`` (the sync-free path). The
approximate recipe draws candidates with ``torch.randint`` over all items (no
exclusion of positives), keeps the top 2 and 2 random slots that may repeat
them. Timed with CUDA events after warm-up, median of 20 calls each,
interleaved; prints the device name and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_index

from negsample import HardNegativeSampler, MFModel


def timer(device: torch.device, fn: Callable[[], object], calls: int) -> list[float]:
    """Seconds per call, one sample per call (CUDA events on a GPU)."""
    samples = []
    for _ in range(calls):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        else:
            begin = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - begin)
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", help="folder with a LightGCN-format train.txt (e.g. Gowalla)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--num-candidates", type=int, default=64)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here; pass --device cpu for a dry run")

    index, source = load_index(args.data)
    index = index.to(device)
    torch.manual_seed(0)
    model = MFModel(index.num_users, index.num_items, dim=64, validate=False, device=device)
    batch, m = args.batch_size, args.num_candidates
    gen = torch.Generator(device=device).manual_seed(0)
    users = torch.randint(0, index.num_users, (batch,), device=device, generator=gen)
    sampler = HardNegativeSampler(index, m, 2, 2, generator=0, validate=False)

    def approximate() -> torch.Tensor:
        with torch.no_grad():
            candidates = torch.randint(0, index.num_items, (batch, m), device=device, generator=gen)
            scores = model(users[:, None].expand(batch, m), candidates)
            hard = candidates.gather(1, torch.topk(scores, 2, dim=1).indices)
            rand = candidates.gather(
                1, torch.randint(0, m, (batch, 2), device=device, generator=gen)
            )
            return torch.cat([hard, rand], dim=1)

    def ours() -> torch.Tensor:
        return sampler.sample(users, model)

    for fn in (approximate, ours):
        timer(device, fn, 3)  # warm-up
    samples: dict[str, list[float]] = {"approximate": [], "ours": []}
    for _ in range(args.calls):
        samples["approximate"] += timer(device, approximate, 1)
        samples["ours"] += timer(device, ours, 1)
    seconds = {name: statistics.median(values) for name, values in samples.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"index: {source}: {index}")
    print(f"device: {name}, torch {torch.__version__}; B={batch}, M={m}, 2 hard + 2 random")
    for key, value in seconds.items():
        print(f"{key:>12}: {value * 1e3:8.2f} ms/call  {batch * m / value:,.0f} candidates/s")
    print(f"ours / approximate: {seconds['ours'] / seconds['approximate']:.2f}x the time")


if __name__ == "__main__":
    main()
