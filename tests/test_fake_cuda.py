"""The ``validate=False`` training path on fake CUDA tensors: no device mismatch, no host read.

No GPU is needed. Under :class:`~torch._subclasses.fake_tensor.FakeTensorMode` a
tensor created with ``device="cuda"`` carries shapes, dtypes and a CUDA device but
no values, so every operation runs its shape rules only. Three things then fail
loudly, which is what these tests check never happens on the hot path:

* reading a value back to the host (``.item()``, ``bool(t)``, ``.tolist()``) raises
  ``DataDependentOutputException``, and an operation whose output shape depends on
  values (``nonzero``, boolean-mask indexing, ``unique``) raises
  ``DynamicOutputShapeException``: on a real GPU each is a synchronisation;
* an operation mixing a CPU tensor into CUDA ones raises
  ``FakeTensorDeviceMismatchError`` (a real tensor raises too: the mode takes fakes only).

The samplers' kernels run on given draws (randomness is split from logic, and a
CUDA generator needs CUDA); the samplers' own structures are built on the CPU and
copied to fake CUDA tensors of the same shapes. Two limits of a CPU-only build are
worked around here, and neither hides a synchronisation: Python indexing
(``t[...]``) asks the CUDA device guard for the tensor's device, so it runs with the
fakes marked ``meta`` for the call (the operation is the same, its output marked
CUDA again); and autograd cannot record or run a graph on a CUDA device (the
process aborts), so forwards run under ``no_grad``, the loss's hand-written
backward is called directly, and the optimizer steps on given gradients. Autograd's
own backward of the model (embedding and matrix-product gradients) is torch's, not
ours; the real CUDA tests (``tests/helpers.CUDA``) cover it where a GPU is.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorDeviceMismatchError,
    FakeTensorMode,
)
from torch.utils._pytree import tree_leaves

from negsample import (
    MFModel,
    PositiveIndex,
    SampledSoftmaxLoss,
    SharedNegativeSampler,
    functional,
)
from negsample.candidates import PopularityCandidates, UniformCandidates
from negsample.samplers import HardDraws, hard_negatives

CUDA = torch.device("cuda", 0)
META = torch.device("meta")


def _fake_indexing(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (``Tensor.__getitem__`` or ``__setitem__``) with fake CUDA tensors marked meta."""

    def call(self: torch.Tensor, *args: Any) -> Any:
        fakes = [
            t
            for t in (self, *tree_leaves(args))
            if isinstance(t, FakeTensor) and t.fake_device.type == "cuda"
        ]
        devices = [t.fake_device for t in fakes]
        for t in fakes:
            t.fake_device = META
        try:
            out = method(self, *args)
        finally:
            for t, device in zip(fakes, devices, strict=True):
                t.fake_device = device
        if isinstance(out, FakeTensor) and out.fake_device == META and fakes:
            out.fake_device = devices[0]
        return out

    return call


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTensorMode]:
    """A FakeTensorMode (to enter) in which Python indexing works on fake CUDA tensors."""
    monkeypatch.setattr(torch.Tensor, "__getitem__", _fake_indexing(torch.Tensor.__getitem__))
    monkeypatch.setattr(torch.Tensor, "__setitem__", _fake_indexing(torch.Tensor.__setitem__))
    yield FakeTensorMode()


def on_fake_cuda(obj: Any, memo: dict[int, Any] | None = None) -> Any:
    """A copy of ``obj`` (an index, a sampler, a candidate source) with its tensors on fake CUDA.

    Built on the CPU first, so whatever an object computes once from its data (popularity
    counts, alias tables) is there; called inside the mode. Generators are kept: the
    kernels tested here take their random bits as arguments.
    """
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, torch.Tensor):
        out: Any = torch.empty(obj.shape, dtype=obj.dtype, device=CUDA)
    elif isinstance(obj, dict):
        out = {key: on_fake_cuda(value, memo) for key, value in obj.items()}
    elif isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        out = type(obj)(on_fake_cuda(value, memo) for value in obj)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("negsample"):
        out = copy.copy(obj)
        memo[id(obj)] = out
        for name, value in vars(obj).items():
            setattr(out, name, on_fake_cuda(value, memo))
        return out
    else:
        out = obj
    memo[id(obj)] = out
    return out


def cuda_ids(*shape: int) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.int64, device=CUDA)


def cuda_bits(*shape: int) -> torch.Tensor:
    """Random bits as the samplers draw them: ``int64`` in ``[0, 2**62)`` (values unknown)."""
    return torch.empty(shape, dtype=torch.int64, device=CUDA)


def primed_index() -> PositiveIndex:
    """A small CPU index with its in-batch counts built (a one-time host read on any device)."""
    index = PositiveIndex.from_dict(
        {0: [0, 1, 4], 1: [0, 2, 4], 2: [0, 1, 5], 3: [0, 4], 4: [3]}, num_items=9
    )
    SharedNegativeSampler(index, 1).in_batch(torch.tensor([0]), torch.tensor([0]))
    return index


def assert_fake_cuda(*tensors: torch.Tensor) -> None:
    for tensor in tensors:
        assert isinstance(tensor, FakeTensor) and tensor.device == CUDA, tensor


# ---------------------------------------------------------------------- the harness catches


def test_the_harness_catches_host_reads_dynamic_shapes_and_cpu_tensors(
    fake_cuda: FakeTensorMode,
) -> None:
    # The checks below are only worth something if these fail under the mode.
    with fake_cuda:
        x = torch.empty(4, device=CUDA)
        with pytest.raises(DataDependentOutputException):
            x.sum().item()
        with pytest.raises(DataDependentOutputException):
            bool(x.any())
        with pytest.raises(DynamicOutputShapeException):
            x[x > 0]
        with pytest.raises(FakeTensorDeviceMismatchError):
            x + torch.empty(4)
        # Indexing through the harness keeps the device and the shape rules.
        assert x[1:].shape == (3,) and x[None, :].device == CUDA
        assert_fake_cuda(x[torch.empty(2, dtype=torch.int64, device=CUDA)])


# ---------------------------------------------------------------------- samplers' kernels


SELECTION_SETTINGS: dict[str, dict[str, Any]] = {
    "topk": {},
    "softmax": {"temperature": 0.5},
    "dns_mn": {"top_n": 4},
    "ahns": {"ahns_alpha": 0.5, "ahns_beta": 0.2, "ahns_p": -3},
}


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
@pytest.mark.parametrize("selection", sorted(SELECTION_SETTINGS))
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_hard_negatives_on_given_draws(
    fake_cuda: FakeTensorMode, kind: str, selection: str, similarity: str
) -> None:
    index = primed_index()
    source = UniformCandidates(index) if kind == "uniform" else PopularityCandidates(index, 0.75)
    with fake_cuda:
        cuda_index, cuda_source = on_fake_cuda((index, source))
        model = MFModel(5, 9, dim=8, similarity=similarity, validate=False, device=CUDA)  # type: ignore[arg-type]
        with_bits = selection in ("softmax", "dns_mn")
        draws = HardDraws(cuda_bits(6, 7), cuda_bits(6, 7), cuda_bits(6, 7) if with_bits else None)
        info = hard_negatives(
            cuda_index,
            cuda_ids(6),
            model,
            draws,
            num_hard=2,
            num_random=3,
            candidates=cuda_source,
            selection=selection,  # type: ignore[arg-type]
            positives=cuda_ids(6) if selection == "ahns" else None,
            validate=False,
            max_scores_per_call=14,  # two rows per scorer call: the chunked path
            return_info=True,
            **SELECTION_SETTINGS[selection],
        )
    assert info.items.shape == (6, 5) and info.items.dtype == torch.int64
    assert info.scores is not None
    assert_fake_cuda(info.items, info.log_prob, info.is_hard, info.scores, info.duplicate_fraction)


def test_uniform_sampler_kernel_on_given_draws(fake_cuda: FakeTensorMode) -> None:
    index = primed_index()
    with fake_cuda:
        cuda_index = on_fake_cuda(index)
        items = UniformCandidates(cuda_index).draw(cuda_ids(6), cuda_bits(6, 4))
    assert items.shape == (6, 4)
    assert_fake_cuda(items)


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_shared_and_in_batch_sets_with_their_masks_and_log_q(
    fake_cuda: FakeTensorMode, kind: str
) -> None:
    index = primed_index()
    options: dict[str, Any] = {"candidates": "popularity"} if kind == "popularity" else {}
    sampler = SharedNegativeSampler(index, 5, validate=False, **options)
    with fake_cuda:
        cuda_sampler = on_fake_cuda(sampler)
        users, pos_items = cuda_ids(4), cuda_ids(4)
        items = cuda_sampler.items_from_bits(cuda_bits(5))
        mask = cuda_sampler.mask(users, items)
        batch = cuda_sampler.in_batch(users, pos_items)
        both = torch.cat([items, batch.items])
        log_q = torch.logaddexp(
            cuda_sampler.log_prob(both) + math.log(5),
            cuda_sampler.in_batch_log_prob(both) + math.log(4),
        )
    assert mask.shape == (4, 5) and batch.mask.shape == (4, 4) and log_q.shape == (9,)
    assert mask.dtype == batch.mask.dtype == torch.bool
    assert_fake_cuda(items, mask, batch.items, batch.mask, batch.log_prob, log_q)


# ---------------------------------------------------------------------- model, loss, optimizer


class _Ctx:
    """What autograd gives a Function's forward and backward, for calling them directly."""

    def __init__(self, needs_input_grad: tuple[bool, ...]) -> None:
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple[torch.Tensor | None, ...] = ()

    def save_for_backward(self, *tensors: torch.Tensor | None) -> None:
        self.saved_tensors = tensors


@pytest.mark.parametrize(("neg_weight", "include_positive"), [(1.0, True), (1.22, False)])
def test_recipe_forward_and_the_loss_backward(
    fake_cuda: FakeTensorMode, neg_weight: float, include_positive: bool
) -> None:
    # The recipe's forward as a user's loop writes it (shared + in-batch + hard, masks and
    # log_q concatenated, the model scoring all three), then the loss's backward.
    index = primed_index()
    shared = SharedNegativeSampler(index, 5, validate=False)
    with fake_cuda, torch.no_grad():
        cuda_index, cuda_shared = on_fake_cuda((index, shared))
        model = MFModel(5, 9, dim=8, similarity="cosine", validate=False, device=CUDA)
        users, pos_items = cuda_ids(4), cuda_ids(4)
        hard = hard_negatives(
            cuda_index,
            users,
            model,
            HardDraws(cuda_bits(4, 6), cuda_bits(4, 6)),
            num_hard=2,
            num_random=0,
            validate=False,
        )
        items = torch.cat([cuda_shared.items_from_bits(cuda_bits(5)), pos_items])
        mask = torch.cat(
            [
                cuda_shared.mask(users, items[:5]),
                cuda_shared.in_batch(users, pos_items).mask,
                torch.zeros_like(hard, dtype=torch.bool),
            ],
            dim=1,
        )
        log_q = torch.cat(
            [cuda_shared.log_prob(items) + math.log(5), torch.full((2,), -1.5, device=CUDA)]
        )
        neg_scores = torch.cat(
            [model(users[:, None], items[None, :]), model(users[:, None], hard)], dim=1
        )
        pos_scores = model(users, pos_items)
        loss = SampledSoftmaxLoss(0.1, neg_weight=neg_weight, include_positive=include_positive)(
            pos_scores, neg_scores, log_q=log_q, mask=mask
        )
        assert_fake_cuda(loss)
        # The hand-written backward, as autograd would call it (first order).
        pos, neg = pos_scores.detach(), neg_scores.detach()
        ctx = _Ctx((True, True, False, False, False, True, False))
        terms = functional._SampledSoftmax.forward(
            ctx, pos, neg, 0.1, neg_weight, include_positive, log_q.expand(4, 11), mask
        )
        grads = functional._SampledSoftmax.backward(ctx, torch.full_like(terms, 0.25))
        grad_pos, grad_neg, grad_log_q = grads[0], grads[1], grads[5]
    assert loss.shape == () and terms.shape == (4,)
    assert grad_pos is not None and grad_neg is not None and grad_log_q is not None
    assert grad_pos.shape == (4,) and grad_neg.shape == grad_log_q.shape == (4, 11)
    assert_fake_cuda(terms, grad_pos, grad_neg, grad_log_q)


@pytest.mark.parametrize("fused", [True, False])
def test_adam_steps_on_fake_cuda_gradients(fake_cuda: FakeTensorMode, fused: bool) -> None:
    with fake_cuda:
        model = MFModel(5, 9, dim=8, similarity="cosine", validate=False, device=CUDA)
        for parameter in model.parameters():
            parameter.grad = torch.empty_like(parameter)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert_fake_cuda(*model.parameters())


def test_validation_is_the_one_host_read(fake_cuda: FakeTensorMode) -> None:
    # With validate=True the same kernel reads scores back (its NaN check): the harness sees it.
    index = primed_index()
    with fake_cuda:
        cuda_index = on_fake_cuda(index)
        model = MFModel(5, 9, dim=8, validate=False, device=CUDA)
        draws = HardDraws(cuda_bits(3, 4), cuda_bits(3, 4))
        with pytest.raises(DataDependentOutputException):
            hard_negatives(cuda_index, cuda_ids(3), model, draws, num_hard=1, num_random=1)
