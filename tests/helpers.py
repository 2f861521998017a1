"""Test helpers shared across modules."""

import pytest
import torch

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
"""Mark for tests that need a GPU: they show as skipped where there is none."""

DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
"""Parametrise a test over devices with ``@pytest.mark.parametrize("device", DEVICES)``."""
