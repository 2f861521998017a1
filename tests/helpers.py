"""Test helpers shared across modules."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
"""Mark for tests that need a GPU: they show as skipped where there is none."""

DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
"""Parametrise a test over devices with ``@pytest.mark.parametrize("device", DEVICES)``."""


def run_with_memory_cap(setup: str, body: str, *, headroom: int) -> None:
    """Run ``setup`` then ``body`` in a fresh Python, ``body`` allowed ``headroom`` more bytes.

    The address-space limit is set after ``setup`` (imports, building an index) from the
    process's own size then, so an allocation that ``body`` should not make fails with a
    ``RuntimeError`` in the child instead of taking the machine's memory. Raises
    ``AssertionError`` with the child's output unless it exits cleanly.
    """
    if sys.platform != "linux":
        pytest.skip("reads the process size from /proc and caps it with RLIMIT_AS (Linux)")
    prelude = textwrap.dedent(
        f"""
        import re, resource
        size = int(re.search(r"VmSize:\\s+(\\d+) kB", open("/proc/self/status").read())[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + {headroom}, resource.getrlimit(resource.RLIMIT_AS)[1]))
        """
    )
    script = textwrap.dedent(setup) + prelude + textwrap.dedent(body)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


NARROW_ID_DTYPES = [torch.int8, torch.uint8, torch.int16, torch.uint16, torch.int32, torch.uint32]
"""The integer dtypes narrower than ``int64`` that ids may come in."""

SMALL_NARROW_ID_DTYPES = NARROW_ID_DTYPES[:4]
"""Those whose range can be exceeded by a table that fits in a test (``2**16`` rows at most)."""


def one_past_max(dtype: torch.dtype) -> int:
    """The smallest size whose ids ``dtype`` cannot all compare against without wrapping."""
    return int(torch.iinfo(dtype).max) + 1
