"""Exact, fast and reproducible hard negative sampling for implicit-feedback recommenders.

Example:
    >>> import torch
    >>> from negsample import BPRLoss, HardNegativeSampler, MFModel, PositiveIndex
    >>> index = PositiveIndex.from_dict({0: {1, 2}, 1: {0}}, num_items=8)
    >>> model = MFModel(index.num_users, index.num_items, dim=4)
    >>> sampler = HardNegativeSampler(
    ...     index, num_candidates=5, num_hard=1, num_random=1, generator=0
    ... )
    >>> users, pos_items = torch.tensor([0, 1]), torch.tensor([1, 0])
    >>> neg_items = sampler.sample(users, model)
    >>> neg_items.shape
    torch.Size([2, 2])
    >>> loss = BPRLoss()(model(users, pos_items), model(users.unsqueeze(1), neg_items))
    >>> loss.shape
    torch.Size([])
"""

from negsample import data, functional, metrics
from negsample.errors import EmptyComplementError
from negsample.index import NO_NEGATIVE, PositiveIndex
from negsample.losses import (
    BCELoss,
    BPRLoss,
    PairwiseSoftmaxLoss,
    SampledSoftmaxLoss,
    SoftmaxAtKLoss,
)
from negsample.models import MFModel
from negsample.samplers import (
    CandidateSampler,
    HardNegativeSampler,
    SharedNegativeSampler,
    UniformSampler,
)
from negsample.thresholds import estimate_topk_thresholds

__version__ = "0.1.0"

__all__ = [
    "NO_NEGATIVE",
    "BCELoss",
    "BPRLoss",
    "CandidateSampler",
    "EmptyComplementError",
    "HardNegativeSampler",
    "MFModel",
    "PairwiseSoftmaxLoss",
    "PositiveIndex",
    "SampledSoftmaxLoss",
    "SharedNegativeSampler",
    "SoftmaxAtKLoss",
    "UniformSampler",
    "__version__",
    "data",
    "estimate_topk_thresholds",
    "functional",
    "metrics",
]
