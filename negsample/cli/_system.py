"""Process settings for CPU training: torch's thread count and glibc's reuse of freed memory."""

from __future__ import annotations

import ctypes
import sys

import torch


def set_threads(threads: int) -> None:
    """Run torch's intra-op work on ``threads`` threads.

    One thread per core (torch's default) is fastest on an idle machine by a
    little, and collapses on a busy one: each parallel region waits for its
    slowest thread, and a thread that shares its core with another process
    makes every region wait. The measured figures are in the docs' tutorial.
    """
    torch.set_num_threads(threads)


def keep_freed_memory() -> bool:
    """Let glibc reuse freed blocks of up to 32 MiB instead of unmapping them.

    A softmax step allocates several ``B x K`` float tensors (24 MiB at B=2048,
    K=3072); by default glibc returns such blocks to the system when they are
    freed and the next step pays the page faults of fresh memory again. Keeping
    them made the Gowalla softmax step about 25% faster on CPU. Linux/glibc
    only; returns whether the settings took.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))
