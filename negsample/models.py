"""Matrix factorisation: the reference model that plugs into the samplers as a scorer."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from negsample._checks import _short, check_ids_in_range, check_int, is_integer_dtype
from negsample._ranking import check_no_nan, top_k_items
from negsample.index import PositiveIndex

__all__ = ["CandidateVectors", "MFModel", "PairwiseTerms"]

# Rows of users scored at once by ``recommend``: about 2**24 scores per chunk.
_RECOMMEND_CHUNK_SCORES = 2**24

Similarity = Literal["dot", "cosine"]
"""How :class:`MFModel` scores a pair: ``"dot"`` product or ``"cosine"`` similarity."""
_SIMILARITIES = ("dot", "cosine")


def _ids(name: str, value: Any) -> torch.Tensor:
    """Return ``value`` if it is an integer tensor, else raise ``TypeError``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be an integer tensor of ids, got {type(value).__name__}")
    if not is_integer_dtype(value.dtype):
        raise TypeError(f"{name} must be an integer tensor of ids, got dtype {value.dtype}")
    return value


def _check_init_std(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"init_std must be a float, got {_short(value)}")
    std = float(value)
    if not math.isfinite(std) or std < 0:
        raise ValueError(f"init_std must be a finite float >= 0, got {std}")
    return std


def _broadcast_shapes(a: torch.Size, b: torch.Size) -> torch.Size:
    """``torch.broadcast_shapes`` for two shapes, in plain Python (several times faster).

    Raises:
        ValueError: If the shapes do not broadcast.
    """
    if a == b:
        return a
    width = max(len(a), len(b))
    padded_a = (1,) * (width - len(a)) + tuple(a)
    padded_b = (1,) * (width - len(b)) + tuple(b)
    out = []
    for x, y in zip(padded_a, padded_b, strict=True):
        if x != y and 1 not in (x, y):
            raise ValueError(f"shapes {tuple(a)} and {tuple(b)} do not broadcast")
        out.append(y if x == 1 else x)
    return torch.Size(out)


def _unexpand(users: torch.Tensor, items_shape: torch.Size, shape: torch.Size) -> torch.Tensor:
    """Drop the repeats of an expanded ``users`` view where broadcasting restores them.

    The samplers pass ``users[:, None].expand(B, M)`` (stride 0 along the
    candidates); looking each user up once instead of ``M`` times saves a
    ``(B, M, dim)`` gather. Only dims whose removal leaves the broadcast shape
    unchanged are narrowed, so the result is the same.
    """
    for dim in range(users.ndim):
        if users.stride(dim) == 0 and users.shape[dim] > 1:
            narrowed = users.narrow(dim, 0, 1)
            if _broadcast_shapes(narrowed.shape, items_shape) == shape:
                users = narrowed
    return users


def _norms(vectors: torch.Tensor) -> torch.Tensor:
    """The L2 norms along the last dim, at least ``F.normalize``'s ``eps`` (1e-12)."""
    norms: torch.Tensor = torch.linalg.vector_norm(vectors, dim=-1)
    return norms.clamp_min(1e-12)


_NORMALIZE_EPS = 1e-12  # F.normalize's


def _plain_embedding(table: nn.Module) -> bool:
    """Whether ``table(ids)`` is a plain lookup of ``table.weight`` (what :class:`_NormalizedRows` does)."""
    return (
        type(table) is nn.Embedding
        and table.padding_idx is None
        and table.max_norm is None
        and not table.sparse
    )


# Rows of at most this many items per user are scored by a broadcast multiply and sum
# (BPR's few negatives), longer ones by a batched matrix-vector product.
_ROW_PRODUCT_MIN_ITEMS = 8


class _NormalizedRows(torch.autograd.Function):
    """``F.normalize(F.embedding(ids, weight), dim=-1)`` with a backward of fewer passes.

    Autograd's backward of the composite (a division by the clamped norms, the
    clamp, the norm) makes about ten passes over the ``(M, dim)`` vectors; with
    the normalised rows ``u`` and norms ``n`` kept, the gradient of the rows is
    ``(g - u <u, g>) / n`` (``g / eps`` where the norm was clamped to ``eps``),
    two fused passes. Under ``create_graph=True`` the backward differentiates
    the composite itself, so higher orders are exact.
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        vectors = weight.index_select(0, flat)
        norms = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
        # F.normalize divides by max(|v|, eps); the clamp passes no gradient below eps.
        free = norms >= _NORMALIZE_EPS
        norms = norms.clamp_min(_NORMALIZE_EPS)
        rows = vectors.div_(norms)
        ctx.save_for_backward(weight, flat, rows, norms, free)
        return rows.view(*ids.shape, weight.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        weight, flat, rows, norms, free = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        grad = grad.reshape(-1, weight.shape[1])
        if torch.is_grad_enabled():
            # create_graph=True: differentiate the composite, for exact higher orders.
            again = F.normalize(F.embedding(flat, weight), dim=-1)
            (grad_weight,) = torch.autograd.grad(again, weight, grad, create_graph=True)
            return grad_weight, None
        along = torch.linalg.vecdot(rows, grad, dim=-1).unsqueeze(-1)
        along = torch.where(free, along, torch.zeros_like(along))
        grad_rows = torch.addcmul(grad, rows, along, value=-1).div_(norms)
        grad_weight = torch.ops.aten.embedding_dense_backward(
            grad_rows, flat, weight.shape[0], -1, False
        )
        return grad_weight, None


class CandidateVectors(NamedTuple):
    """What :meth:`negsample.MFModel.candidate_vectors` returns, in the order ``from_vectors`` takes it."""

    pos_scores: torch.Tensor
    """``(B,)`` scores of the positives."""
    user_vectors: torch.Tensor
    """``(B, d)`` one per row."""
    item_vectors: torch.Tensor
    """``(K, d)`` of the items shared by every row."""
    row_vectors: torch.Tensor | None
    """``(B, n, d)`` of each row's own items, or ``None``."""


class PairwiseTerms(NamedTuple):
    """What :meth:`negsample.MFModel.scores_and_l2` returns."""

    pos_scores: torch.Tensor
    """``(B,)`` scores of the positives."""
    neg_scores: torch.Tensor
    """Scores of the negatives, in the shape of ``neg_items``."""
    l2: torch.Tensor
    """The scalar :meth:`~negsample.MFModel.l2_regularization` of the batch."""


class MFModel(nn.Module):
    """Matrix factorisation: ``score(u, i) = <e_u, e_i> (+ b_i)``, or the cosine of the two.

    Users and items get ``dim``-dimensional embeddings drawn from
    ``N(0, init_std**2)`` (seed with ``torch.manual_seed`` for a reproducible
    start). With ``bias=True`` each item also gets a bias, initialised to zero.
    There is no user bias: it would add the same constant to all of a user's
    scores, which changes no ranking and no pairwise (BPR) loss.

    With ``similarity="cosine"`` the score is ``<e_u, e_i> / (|e_u| |e_i|)``
    (plus the bias), in ``[-1, 1]``: the scoring that softmax losses with a
    temperature use (see :class:`~negsample.SampledSoftmaxLoss`). ``forward``,
    :meth:`score_all` and :meth:`recommend` all score the same way.

    The model is a scorer for the samplers: ``model(users, items)`` scores
    pairs elementwise, broadcasting ``users`` against ``items``.

    Starting values (the per-loss defaults of the ``negsample train`` job,
    ``dim=64``, batches of 2048 pairs): for :class:`~negsample.BPRLoss` (or
    :class:`~negsample.BCELoss`), ``similarity="dot"``, ``init_std=0.1``,
    ``torch.optim.Adam(lr=5e-3)`` and ``2e-2 * model.l2_regularization(...)``
    added to the loss; for :class:`~negsample.SampledSoftmaxLoss` (temperature
    0.1, ``neg_weight=1.22, include_positive=False`` or the plain form),
    ``similarity="cosine"``, ``init_std=1e-2``, Adam ``lr=1e-3`` and no L2
    penalty. With BPR, ``lr=1e-3`` and a weight of ``1e-4`` left Recall@20
    near that of a random ranking after 3 epochs in one user's report.

    Args:
        num_users: Number of users (rows of ``user_embedding``).
        num_items: Number of items (rows of ``item_embedding``).
        dim: Embedding size.
        bias: Learn a per-item bias ``item_bias`` of shape ``(num_items,)``.
        init_std: Standard deviation of the initial embeddings, a finite float ``>= 0``.
        validate: Check at every call that ids are in range. That reads values
            back to the host (a GPU synchronisation); set ``False`` (here or later
            through the ``validate`` attribute) in a hot loop once the data is
            known good. Dtype, shape and device checks always run.
        dtype: Floating dtype of the parameters (default: torch's default dtype).
        device: Device of the parameters.
        similarity: ``"dot"`` (the inner product) or ``"cosine"`` (the inner
            product of the L2-normalised embeddings; a zero embedding scores 0).

    Attributes:
        user_embedding: ``nn.Embedding(num_users, dim)``.
        item_embedding: ``nn.Embedding(num_items, dim)``.
        item_bias: ``nn.Parameter`` of shape ``(num_items,)``, or ``None``.
        validate: Whether calls check id ranges.
        similarity: ``"dot"`` or ``"cosine"``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = MFModel(num_users=3, num_items=5, dim=4, bias=True)
        >>> model(torch.tensor([0, 2]), torch.tensor([1, 4])).shape
        torch.Size([2])
        >>> model(torch.tensor([[0], [2]]), torch.tensor([[1, 3, 4], [0, 1, 2]])).shape
        torch.Size([2, 3])
        >>> model.recommend(torch.tensor([0, 1]), k=2).shape
        torch.Size([2, 2])
        >>> cosine = MFModel(num_users=3, num_items=5, dim=4, similarity="cosine")
        >>> bool(cosine(torch.tensor([0, 1, 2]), torch.tensor([1, 4, 0])).abs().max() <= 1)
        True
    """

    item_bias: nn.Parameter | None

    # A hard sampler calls the model on this many candidates at a time on the CPU
    # (its default, 2**13, keeps gathered vectors in the cache; this model's rows
    # of scores gather none, and with cosine scores each call reads the whole
    # table's norms once).
    _cpu_scores_per_call = 2**22

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        *,
        bias: bool = False,
        init_std: float = 0.1,
        validate: bool = True,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        similarity: Similarity = "dot",
    ) -> None:
        super().__init__()
        if not isinstance(similarity, str) or similarity not in _SIMILARITIES:
            raise ValueError(f"similarity must be one of {_SIMILARITIES}, got {_short(similarity)}")
        self.similarity: Similarity = similarity
        num_users = check_int("num_users", num_users, minimum=1)
        num_items = check_int("num_items", num_items, minimum=1)
        dim = check_int("dim", dim, minimum=1)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {_short(bias)}")
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be a bool, got {_short(validate)}")
        self.init_std = _check_init_std(init_std)
        if dtype is not None and (
            not isinstance(dtype, torch.dtype) or not dtype.is_floating_point
        ):
            raise TypeError(f"dtype must be None or a floating torch.dtype, got {_short(dtype)}")
        self.validate = validate
        self.user_embedding = nn.Embedding(num_users, dim, dtype=dtype, device=device)
        self.item_embedding = nn.Embedding(num_items, dim, dtype=dtype, device=device)
        nn.init.normal_(self.user_embedding.weight, mean=0.0, std=self.init_std)
        nn.init.normal_(self.item_embedding.weight, mean=0.0, std=self.init_std)
        if bias:
            self.item_bias = nn.Parameter(torch.zeros(num_items, dtype=dtype, device=device))
        else:
            self.register_parameter("item_bias", None)

    # ------------------------------------------------------------------ properties

    @property
    def num_users(self) -> int:
        """Number of users."""
        return self.user_embedding.num_embeddings

    @property
    def num_items(self) -> int:
        """Number of items."""
        return self.item_embedding.num_embeddings

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self.user_embedding.embedding_dim

    def extra_repr(self) -> str:
        """Show the sizes and options in the module's repr."""
        return (
            f"num_users={self.num_users}, num_items={self.num_items}, dim={self.dim}, "
            f"bias={self.item_bias is not None}, validate={self.validate}"
            + (f", similarity={self.similarity!r}" if self.similarity != "dot" else "")
        )

    # ------------------------------------------------------------------ checks

    def _check_on_device(self, name: str, ids: torch.Tensor) -> None:
        device = self.item_embedding.weight.device
        if ids.device != device:
            raise ValueError(f"{name} are on {ids.device} but the model is on {device}")

    def _user_ids(self, users: Any) -> torch.Tensor:
        """Checked ``int64`` user ids (indexing with a ``uint8`` tensor would mask)."""
        users_t = _ids("users", users)
        self._check_on_device("users", users_t)
        if self.validate:
            self._check_range("users", users_t, self.num_users, "user")
        return users_t.long()

    def _item_ids(self, name: str, items: Any) -> torch.Tensor:
        """Checked ``int64`` item ids."""
        items_t = _ids(name, items)
        self._check_on_device(name, items_t)
        if self.validate:
            self._check_range(name, items_t, self.num_items, "item")
        return items_t.long()

    def _check_range(self, name: str, ids: torch.Tensor, upper: int, what: str) -> None:
        """``check_ids_in_range``, its message naming the model's size.

        The usual cause is a model built with fewer users or items than the index
        that produced the ids, e.g. the sampler's.
        """
        try:
            check_ids_in_range(name, ids, upper, what)
        except ValueError as err:
            raise ValueError(
                f"MFModel has num_{what}s={upper}; {err} (build the model with at least the "
                f"num_{what}s of the index the ids come from)"
            ) from None

    # ------------------------------------------------------------------ scoring

    def _vectors(self, table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``ids``, L2-normalised for cosine similarity."""
        if self.similarity == "cosine":
            if _plain_embedding(table):
                normalized: torch.Tensor = _NormalizedRows.apply(table.weight, ids)  # type: ignore[no-untyped-call]
                return normalized
            return F.normalize(table(ids), dim=-1)
        vectors: torch.Tensor = table(ids)
        return vectors

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Score ``(user, item)`` pairs elementwise, broadcasting ``users`` against ``items``.

        ``(B,)`` with ``(B,)`` gives ``(B,)``; ``(B, 1)`` with ``(B, N)`` gives
        ``(B, N)``. Each user's embedding is looked up once, not once per item.

        Args:
            users: Integer tensor of user ids.
            items: Integer tensor of item ids, broadcastable with ``users``.

        Returns:
            Scores of the broadcast shape, in the parameters' dtype.

        Raises:
            TypeError: If ``users`` or ``items`` is not an integer tensor.
            ValueError: If the shapes do not broadcast, a tensor is on another
                device, or (with ``validate``) an id is out of range.

        Example:
            >>> model = MFModel(2, 3, dim=2)
            >>> model(torch.tensor([[0], [1]]), torch.tensor([[0, 1, 2], [2, 1, 0]])).shape
            torch.Size([2, 3])
        """
        users_t = self._user_ids(users)
        items_t = self._item_ids("items", items)
        try:
            shape = _broadcast_shapes(users_t.shape, items_t.shape)
        except ValueError as err:
            raise ValueError(
                f"users and items must broadcast together, got shapes {tuple(users_t.shape)} "
                f"and {tuple(items_t.shape)}"
            ) from err
        users_t = _unexpand(users_t, items_t.shape, shape)
        user_vectors = self._vectors(self.user_embedding, users_t)
        if users_t.ndim == 2 and items_t.ndim == 2 and users_t.shape[1] == items_t.shape[0] == 1:
            # Every user against one shared row of items: one matrix product.
            item_vectors = self._vectors(self.item_embedding, items_t)
            scores = user_vectors[:, 0] @ item_vectors[0].T
        elif self._sparse_row_scores(users_t, items_t):
            # Each user against a row of items, without gradients, on the CPU: the
            # dot products only, never the (B, N, dim) gathered vectors.
            scores = self._row_scores(user_vectors[:, 0], items_t)
        elif (
            users_t.ndim
            and users_t.shape[-1] == 1
            and items_t.ndim
            and items_t.shape[-1] > _ROW_PRODUCT_MIN_ITEMS
        ):
            # One user against a long row of items: a batched matrix-vector product
            # beats a broadcast multiply and sum (with gradients on the CPU, about 1.3x
            # at 64 items; at 4 items the product is half as fast). For cosine the
            # products are divided by the item norms, not the (B, N, dim) vectors.
            item_vectors = self.item_embedding(items_t)
            scores = torch.matmul(item_vectors, user_vectors.transpose(-1, -2)).squeeze(-1)
            if self.similarity == "cosine":
                scores = scores / _norms(item_vectors)
        else:
            item_vectors = self._vectors(self.item_embedding, items_t)
            scores = (user_vectors * item_vectors).sum(dim=-1)
        if self.item_bias is not None:
            scores = scores + self.item_bias[items_t]
        return scores

    def _sparse_row_scores(self, users: torch.Tensor, items: torch.Tensor) -> bool:
        """Whether :meth:`_row_scores` scores ``(B, 1)`` users against ``(B, n)`` items.

        On the CPU, with no gradient asked for: a sampled matrix product (one
        dot product per pair, each user's and item's vector read in place) is
        about three times as fast as gathering the ``(B, n, dim)`` item vectors
        for a batched product. For cosine scores the item norms come from the
        whole table, so only where the pairs are at least half as many as the
        items.
        """
        weight = self.item_embedding.weight
        return (
            items.device.type == "cpu"
            # Its id check reads values, and sparse tensors do not trace: eager only.
            and not torch.compiler.is_compiling()
            and items.ndim == 2
            # torch's sampled product refuses more pairs per row than columns.
            and 1 < items.shape[1] <= self.num_items
            and users.shape == (items.shape[0], 1)
            and weight.dtype in (torch.float32, torch.float64)
            and not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()))
            and (self.similarity == "dot" or 2 * items.numel() >= self.num_items)
        )

    def _row_scores(self, user_vectors: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, n)`` of each of the ``B`` users against its row of ``items``.

        ``user_vectors`` are the rows' ``(B, dim)`` (normalised) vectors; the item
        bias is added by the caller.
        """
        if items.numel():
            low, high = torch.aminmax(items)
            if int(low) < 0 or int(high) >= self.num_items:
                raise IndexError(
                    f"items holds ids outside [0, {self.num_items}): from {int(low)} to {int(high)}"
                )
        table = self.item_embedding.weight
        batch, width = items.shape
        crow = torch.arange(0, batch * width + 1, width, device=items.device)
        with warnings.catch_warnings():
            # "Sparse CSR tensor support is in beta state": sampled_addmm is all we use.
            warnings.simplefilter("ignore", UserWarning)
            # The ids were range-checked above: the kernel does not check them.
            pattern = torch.sparse_csr_tensor(
                crow,
                items.reshape(-1),
                table.new_zeros(batch * width),
                size=(batch, self.num_items),
                check_invariants=False,
            )
            sampled = torch.sparse.sampled_addmm(
                pattern, user_vectors.contiguous(), table.T, beta=0.0
            )
        scores: torch.Tensor = sampled.values().view(batch, width)
        if self.similarity == "cosine":
            # index_select, not [items]: the same gather, about 4x as fast on the CPU.
            scores = scores / _norms(table).index_select(0, items.reshape(-1)).view(batch, width)
        return scores

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """The users' vectors whose inner products with :meth:`item_vectors` are the scores.

        The embeddings, L2-normalised for ``similarity="cosine"``; a score is
        ``<user_vectors(u), item_vectors(i)>`` plus ``item_bias[i]`` when the
        model has biases. For
        :func:`~negsample.functional.sampled_softmax_loss_from_vectors`, which
        scores many candidates per row without a score matrix of their own.

        Args:
            users: Integer tensor of user ids, any shape.

        Returns:
            ``users.shape + (dim,)``, differentiable with respect to the embeddings.

        Raises:
            TypeError: If ``users`` is not an integer tensor.
            ValueError: If ``users`` is on another device or (with ``validate``)
                holds an out-of-range id.

        Example:
            >>> model = MFModel(3, 5, dim=4, similarity="cosine")
            >>> users, items = torch.tensor([0, 2]), torch.tensor([1, 4])
            >>> scores = (model.user_vectors(users) * model.item_vectors(items)).sum(-1)
            >>> torch.allclose(scores, model(users, items))
            True
        """
        return self._vectors(self.user_embedding, self._user_ids(users))

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """The items' vectors whose inner products with :meth:`user_vectors` are the scores.

        See :meth:`user_vectors`; the item bias, if any, is not in them.

        Args:
            items: Integer tensor of item ids, any shape.

        Returns:
            ``items.shape + (dim,)``, differentiable with respect to the embeddings.

        Raises:
            TypeError: If ``items`` is not an integer tensor.
            ValueError: If ``items`` is on another device or (with ``validate``)
                holds an out-of-range id.
        """
        return self._vectors(self.item_embedding, self._item_ids("items", items))

    def candidate_vectors(
        self,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        items: torch.Tensor,
        row_items: torch.Tensor | None = None,
        *,
        user_vectors: torch.Tensor | None = None,
    ) -> CandidateVectors:
        """What :meth:`negsample.SampledSoftmaxLoss.from_vectors` takes, for a batch's candidates.

        The positives' scores and the vectors of the users, of the ``K`` items
        shared by every row and of each row's own ``n`` items, such that a
        candidate's score is the inner product of its row's user vector with its
        vector. Every item is looked up at once (one gradient of the item table
        in the backward, not one per kind of candidate). With item biases each
        vector gets one more coordinate: 1 for the users, the bias for the items.

        Args:
            users: 1-D integer tensor of the ``B`` rows' users.
            pos_items: 1-D integer tensor of the ``B`` positives.
            items: 1-D integer tensor of the ``K`` shared items (``K`` may be 0).
            row_items: ``(B, n)`` integer tensor of each row's own items, or ``None``.
            user_vectors: The ``(B, dim)`` user vectors to use instead of
                :meth:`user_vectors` (e.g. after dropout).

        Returns:
            :class:`~negsample.models.CandidateVectors` ``(pos_scores, user_vectors, item_vectors,
            row_vectors)``, ``row_vectors`` ``None`` without ``row_items``.

        Raises:
            TypeError: If an id tensor is not an integer tensor.
            ValueError: For wrong shapes, tensors on another device or (with
                ``validate``) ids out of range.

        Example:
            >>> from negsample import SampledSoftmaxLoss
            >>> _ = torch.manual_seed(0)
            >>> model = MFModel(3, 10, dim=4, bias=True)
            >>> users, pos_items = torch.tensor([0, 2]), torch.tensor([1, 3])
            >>> shared, own = torch.tensor([5, 6, 7]), torch.tensor([[8], [9]])
            >>> vectors = model.candidate_vectors(users, pos_items, shared, own)
            >>> torch.allclose(vectors.user_vectors @ vectors.item_vectors.T,
            ...                model(users[:, None], shared[None, :]))
            True
            >>> loss = SampledSoftmaxLoss(0.1).from_vectors(*vectors)
        """
        users_t = self._user_ids(users)
        pos_t = self._item_ids("pos_items", pos_items)
        items_t = self._item_ids("items", items)
        if users_t.ndim != 1 or pos_t.shape != users_t.shape:
            raise ValueError(
                f"users and pos_items must be 1-D of one length, got shapes "
                f"{tuple(users_t.shape)} and {tuple(pos_t.shape)}"
            )
        if items_t.ndim != 1:
            raise ValueError(f"items must be 1-D, got shape {tuple(items_t.shape)}")
        ids = [pos_t, items_t]
        if row_items is not None:
            rows_t = self._item_ids("row_items", row_items)
            if rows_t.ndim != 2 or rows_t.shape[0] != users_t.shape[0]:
                raise ValueError(
                    f"row_items must have shape (B, n) with B={users_t.shape[0]}, "
                    f"got shape {tuple(rows_t.shape)}"
                )
            ids.append(rows_t.reshape(-1))
        flat = torch.cat(ids)
        vectors = self._vectors(self.item_embedding, flat)
        if user_vectors is None:
            user_vectors = self._vectors(self.user_embedding, users_t)
        elif user_vectors.shape != (users_t.shape[0], self.dim):
            raise ValueError(
                f"user_vectors must have shape (B, dim) = {(users_t.shape[0], self.dim)}, "
                f"got shape {tuple(user_vectors.shape)}"
            )
        if self.item_bias is not None:
            ones = user_vectors.new_ones((user_vectors.shape[0], 1))
            user_vectors = torch.cat([user_vectors, ones], dim=1)
            vectors = torch.cat([vectors, self.item_bias[flat][:, None]], dim=1)
        parts = torch.split(vectors, [i.numel() for i in ids])
        pos_scores = (user_vectors * parts[0]).sum(dim=1)
        row_vectors = None
        if row_items is not None:
            row_vectors = parts[2].view(users_t.shape[0], -1, vectors.shape[1])
        return CandidateVectors(pos_scores, user_vectors, parts[1], row_vectors)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Score every item for each user: a ``(B, num_items)`` matrix.

        Row ``b``, column ``i`` equals ``model(users[b], i)`` up to rounding.

        Args:
            users: 1-D integer tensor of user ids.

        Returns:
            Scores of shape ``(len(users), num_items)``.

        Raises:
            TypeError: If ``users`` is not an integer tensor.
            ValueError: If ``users`` is not 1-D, is on another device, or (with
                ``validate``) holds an out-of-range id.

        Example:
            >>> model = MFModel(2, 3, dim=2)
            >>> users = torch.tensor([1, 0])
            >>> torch.allclose(model.score_all(users), model(users[:, None], torch.arange(3)))
            True
        """
        users_t = self._user_ids(users)
        if users_t.ndim != 1:
            raise ValueError(f"users must be 1-D, got shape {tuple(users_t.shape)}")
        user_vectors = self._vectors(self.user_embedding, users_t)
        item_vectors = self.item_embedding.weight
        if self.similarity == "cosine":
            item_vectors = F.normalize(item_vectors, dim=-1)
        scores = user_vectors @ item_vectors.T
        if self.item_bias is not None:
            scores = scores + self.item_bias
        return scores

    @torch.no_grad()
    def recommend(
        self, users: torch.Tensor, k: int, exclude: PositiveIndex | None = None
    ) -> torch.Tensor:
        """The ``k`` highest-scored items of each user, highest first.

        Ties go to the lower item id. With ``exclude``, a user's known positives in
        that index are never returned. A user with fewer than ``k`` items left
        after exclusion gets all of them, best first, and the remaining slots at
        the end of its row are filled with ``-1``.

        NaN scores rank below every other score (below ``-inf`` too, but above
        excluded items); with ``validate`` they raise instead. Runs without
        gradients and synchronises with the device (the exclusion lists vary in
        length). Users are scored in chunks of about ``2**24`` scores.

        Args:
            users: 1-D integer tensor of user ids.
            k: Items per user, ``1 <= k <= num_items``.
            exclude: Items never to recommend, typically the training positives;
                it must have ``num_items`` items, be on the model's device and
                hold a row for every user in ``users``.

        Returns:
            ``int64`` tensor of shape ``(len(users), k)``: item ids, then ``-1``
            padding where a user ran out of items.

        Raises:
            TypeError: If ``users`` is not an integer tensor, ``k`` not an int or
                ``exclude`` not a :class:`~negsample.PositiveIndex`.
            ValueError: If ``k`` is out of range, ``users`` is not 1-D or on
                another device, ``exclude`` does not match the model, or (with
                ``validate``) an id is out of range or a score is NaN.

        Example:
            >>> model = MFModel(2, 4, dim=1, init_std=0.0, bias=True)
            >>> with torch.no_grad():
            ...     _ = model.item_bias.copy_(torch.tensor([0.5, 2.0, 1.0, 2.0]))
            >>> model.recommend(torch.tensor([0, 1]), k=3).tolist()
            [[1, 3, 2], [1, 3, 2]]
            >>> index = PositiveIndex.from_dict({0: [1], 1: [0, 1, 3]}, num_items=4)
            >>> model.recommend(torch.tensor([0, 1]), k=3, exclude=index).tolist()
            [[3, 2, 0], [2, -1, -1]]
        """
        users_t = self._user_ids(users)
        if users_t.ndim != 1:
            raise ValueError(f"users must be 1-D, got shape {tuple(users_t.shape)}")
        k = check_int("k", k, minimum=1)
        if k > self.num_items:
            raise ValueError(f"k must be <= num_items={self.num_items}, got {k}")
        if exclude is not None:
            self._check_exclude(exclude, users_t)
        chunk = max(1, _RECOMMEND_CHUNK_SCORES // self.num_items)
        parts = [
            self._recommend_chunk(users_t[start : start + chunk], k, exclude)
            for start in range(0, users_t.numel(), chunk)
        ]
        if not parts:
            return torch.empty((0, k), dtype=torch.int64, device=users_t.device)
        return torch.cat(parts)

    def _check_exclude(self, exclude: Any, users: torch.Tensor) -> None:
        if not isinstance(exclude, PositiveIndex):
            raise TypeError(
                f"exclude must be None or a PositiveIndex, got {type(exclude).__name__}"
            )
        if exclude.num_items != self.num_items:
            raise ValueError(
                f"exclude must index the model's {self.num_items} items, "
                f"got an index with num_items={exclude.num_items}"
            )
        if exclude.device != users.device:
            raise ValueError(
                f"exclude is on {exclude.device} but the users are on {users.device}; "
                f"use exclude.to({str(users.device)!r})"
            )
        if self.validate and users.numel():
            beyond = users >= exclude.num_users
            if bool(beyond.any()):
                raise ValueError(
                    f"exclude has no row for user {int(users[beyond][0])}: "
                    f"it has num_users={exclude.num_users}"
                )

    def _recommend_chunk(
        self, users: torch.Tensor, k: int, exclude: PositiveIndex | None
    ) -> torch.Tensor:
        """:meth:`recommend` for valid ``int64`` users, all scored at once."""
        scores = self.score_all(users)
        if self.validate:
            check_no_nan(scores, users, "the model scores")
        return top_k_items(scores, k, exclude=exclude, users=users, overwrite=True)

    # ------------------------------------------------------------------ regularisation

    def l2_regularization(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
    ) -> torch.Tensor:
        """The BPR L2 penalty on the embeddings a batch touches (LightGCN style).

        With ``B = len(users)``::

            0.5 * (sum_b ||e_{users[b]}||^2
                   + sum_b ||e_{pos_items[b]}||^2
                   + sum_{b, j} ||e_{neg_items[b, j]}||^2) / B

        Every occurrence counts: an id that appears twice in the batch adds its
        squared norm twice. Item biases are not penalised. Multiply by your
        regularisation weight and add it to the loss.

        Args:
            users: 1-D integer tensor of ``B`` user ids.
            pos_items: Integer tensor of positive items, shape ``(B,)`` or ``(B, 1)``.
            neg_items: Integer tensor of negative items, shape ``(B, N)`` or ``(B,)``.

        Returns:
            A scalar tensor, differentiable with respect to the embeddings.

        Raises:
            TypeError: If an argument is not an integer tensor.
            ValueError: For an empty batch, mismatched or wrong shapes, a tensor on
                another device, or (with ``validate``) an out-of-range id.

        Example:
            >>> model = MFModel(2, 3, dim=2, init_std=0.0)
            >>> with torch.no_grad():
            ...     _ = model.user_embedding.weight.fill_(1.0)
            ...     _ = model.item_embedding.weight.fill_(2.0)
            >>> users, pos_items = torch.tensor([0, 1]), torch.tensor([0, 1])
            >>> model.l2_regularization(users, pos_items, torch.tensor([[1, 2], [2, 0]]))
            tensor(13., grad_fn=<DivBackward0>)
        """
        users_t, items, _ = self._pairwise_ids(users, pos_items, neg_items)
        # One lookup of the positives and negatives together: each lookup's gradient is
        # a dense (num_items, dim) tensor, so two would cost two passes over the table.
        return _l2_penalty(self.user_embedding(users_t), self.item_embedding(items))

    def scores_and_l2(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
    ) -> PairwiseTerms:
        """A pairwise (BPR or BCE) step's scores and L2 penalty, each embedding looked up once.

        The same values as ``model(users, pos_items)``,
        ``model(users[:, None], neg_items)`` and
        :meth:`l2_regularization` ``(users, pos_items, neg_items)`` (equal up to
        float rounding), from one lookup of each table instead of two: the
        gradient of each lookup is a dense ``(rows, dim)`` tensor, so on the
        CPU that halves the backward's passes over the tables (a BPR epoch of
        the ``negsample train`` demo about 1.2x as fast). For cosine scores the
        penalty is on the embeddings, as in :meth:`l2_regularization`.

        Args:
            users: 1-D integer tensor of ``B`` user ids.
            pos_items: Integer tensor of positive items, shape ``(B,)`` or ``(B, 1)``.
            neg_items: Integer tensor of negative items, shape ``(B, N)`` or ``(B,)``.

        Returns:
            :class:`~negsample.models.PairwiseTerms`: ``pos_scores`` ``(B,)``, ``neg_scores`` of
            ``neg_items``' shape, and the scalar ``l2``.

        Raises:
            TypeError: If an argument is not an integer tensor.
            ValueError: As :meth:`l2_regularization`.

        Example:
            >>> _ = torch.manual_seed(0)
            >>> model = MFModel(3, 5, dim=4)
            >>> users, pos_items = torch.tensor([0, 2]), torch.tensor([1, 4])
            >>> neg_items = torch.tensor([[0, 3], [2, 1]])
            >>> pos, neg, l2 = model.scores_and_l2(users, pos_items, neg_items)
            >>> torch.allclose(neg, model(users[:, None], neg_items))
            True
            >>> torch.allclose(l2, model.l2_regularization(users, pos_items, neg_items))
            True
        """
        users_t, items, neg_shape = self._pairwise_ids(users, pos_items, neg_items)
        user_vectors: torch.Tensor = self.user_embedding(users_t)
        item_vectors: torch.Tensor = self.item_embedding(items)
        penalty = _l2_penalty(user_vectors, item_vectors)
        if self.similarity == "cosine":
            user_vectors = F.normalize(user_vectors, dim=-1)
            item_vectors = F.normalize(item_vectors, dim=-1)
        if items.shape[1] > _ROW_PRODUCT_MIN_ITEMS:
            scores = torch.bmm(item_vectors, user_vectors.unsqueeze(2)).squeeze(2)
        else:
            scores = (user_vectors.unsqueeze(1) * item_vectors).sum(dim=-1)
        if self.item_bias is not None:
            scores = scores + self.item_bias[items]
        return PairwiseTerms(scores[:, 0], scores[:, 1:].reshape(neg_shape), penalty)

    def _pairwise_ids(
        self, users: Any, pos_items: Any, neg_items: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
        """Checked ids of a pairwise batch: ``users`` ``(B,)``, then ``(B, 1 + N)`` items.

        The items are each row's positive, then its negatives; the last value is
        the shape of ``neg_items``.
        """
        users_t = self._user_ids(users)
        pos_t = self._item_ids("pos_items", pos_items)
        neg_t = self._item_ids("neg_items", neg_items)
        if users_t.ndim != 1:
            raise ValueError(f"users must be 1-D, got shape {tuple(users_t.shape)}")
        batch = users_t.shape[0]
        if batch == 0:
            raise ValueError("users is empty: the penalty is an average over the batch")
        if not (pos_t.ndim == 1 or (pos_t.ndim == 2 and pos_t.shape[1] == 1)):
            raise ValueError(
                f"pos_items must have shape (B,) or (B, 1), got shape {tuple(pos_t.shape)}"
            )
        if neg_t.ndim not in (1, 2):
            raise ValueError(
                f"neg_items must have shape (B, N) or (B,), got shape {tuple(neg_t.shape)}"
            )
        for name, tensor in (("pos_items", pos_t), ("neg_items", neg_t)):
            if tensor.shape[0] != batch:
                raise ValueError(
                    f"{name} must have B={batch} rows like users, got shape {tuple(tensor.shape)}"
                )
        items = torch.cat([pos_t.reshape(batch, -1), neg_t.reshape(batch, -1)], dim=1)
        return users_t, items, neg_t.shape


def _l2_penalty(user_vectors: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
    """``0.5 * (sum of squares of both) / B``: :meth:`MFModel.l2_regularization`'s value."""
    total = user_vectors.pow(2).sum() + item_vectors.pow(2).sum()
    return 0.5 * total / user_vectors.shape[0]
