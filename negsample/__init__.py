"""Exact, fast and reproducible hard negative sampling for implicit-feedback recommenders.

Example:
    >>> import torch
    >>> from negsample import HardNegativeSampler, PositiveIndex
    >>> index = PositiveIndex.from_dict({0: {1, 2}, 1: {0}}, num_items=8)
    >>> sampler = HardNegativeSampler(index, num_candidates=5, num_hard=1, num_random=1, generator=0)
    >>> sampler.sample(torch.tensor([0, 1]), lambda users, items: items.float()).shape
    torch.Size([2, 2])
"""

from negsample.errors import EmptyComplementError
from negsample.index import PositiveIndex
from negsample.samplers import HardNegativeSampler, UniformSampler

__version__ = "0.1.0"

__all__ = [
    "EmptyComplementError",
    "HardNegativeSampler",
    "PositiveIndex",
    "UniformSampler",
    "__version__",
]
