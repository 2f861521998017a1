"""Negative samplers: one module per sampler, each with its reference beside its vectorized path.

Every sampler splits randomness from logic. ``sample`` first draws raw random
bits (:class:`HardDraws` for the hard sampler) from the sampler's generator,
then hands them to one of two deterministic functions of those bits: a per-row
reference that reads like the sampling contract (the oracle, ``backend="reference"``)
and batched tensor code with no loop over rows and no host synchronisation
(``backend="vectorized"``). Given the same bits the two return identical
tensors, so a seeded sampler returns the same negatives whichever backend it uses.

Import the public names from here (or the samplers from :mod:`negsample`); the
code lives in private modules, one idea each:

* ``_base``: what every sampler shares: the generator (one stream per device),
  ``state_dict`` / ``load_state_dict``, the checks of the users;
  :class:`NegativeSample` and :data:`Scorer`.
* ``_hard``: :class:`~negsample.HardNegativeSampler` and the contract on given
  draws (:func:`hard_negatives`, :class:`HardDraws`), with the per-row
  reference and the vectorized implementation side by side.
* ``_selection``: the vectorized selection kernels of the hard part (the best
  slots, the free slots of the random part, Gumbel noise).
* ``_uniform``: :class:`~negsample.UniformSampler`, with its reference.
* ``_shared``: :class:`~negsample.SharedNegativeSampler` (shared and in-batch
  negatives), :class:`SharedNegatives`, and the mask of known positives: its
  reference and its vectorized kernels.
* ``_composed``: :class:`~negsample.CandidateSampler`, a batch's candidate set
  for a softmax loss (shared, in-batch, hard and supplied negatives) in one
  call, as a :class:`CandidateSet`.

The candidate distributions they draw from are in :mod:`negsample.candidates`,
the known positives in :class:`~negsample.PositiveIndex`.
"""

from __future__ import annotations

from negsample.samplers._base import NegativeSample, Scorer
from negsample.samplers._composed import CandidateSampler, CandidateSet
from negsample.samplers._hard import HardDraws, HardNegativeSampler, hard_negatives
from negsample.samplers._shared import SharedNegatives, SharedNegativeSampler
from negsample.samplers._uniform import UniformSampler

__all__ = [
    "CandidateSampler",
    "CandidateSet",
    "HardDraws",
    "HardNegativeSampler",
    "NegativeSample",
    "Scorer",
    "SharedNegativeSampler",
    "SharedNegatives",
    "UniformSampler",
    "hard_negatives",
]
