"""Top-k ranking metrics for implicit feedback, and a full-catalogue evaluation loop.

The metric functions score a ranking that the caller has already made: a
``(B, K)`` tensor ``ranked`` of item ids, best first, where ``-1`` marks an
empty slot (padding) that never counts as a hit. Row ``b`` belongs to user
``users[b]``, whose relevant (test) items ``T_u`` come from a
:class:`~negsample.PositiveIndex`. Only the first ``k`` columns count.

With ``rel_j = 1`` if the item in slot ``j`` (``j = 1..k``) is in ``T_u`` and
``0`` otherwise (binary relevance; the LightGCN / NGCF protocol)::

    Recall@k    = (sum_{j=1..k} rel_j) / |T_u|
    Precision@k = (sum_{j=1..k} rel_j) / k
    DCG@k       = sum_{j=1..k} rel_j / log2(j + 1)
    IDCG@k      = sum_{j=1..min(|T_u|, k)} 1 / log2(j + 1)
    NDCG@k      = DCG@k / IDCG@k
    P@j         = (sum_{i=1..j} rel_i) / j
    AP@k        = (sum_{j=1..k} P@j * rel_j) / min(|T_u|, k)

Recall divides by ``|T_u|``, not ``min(|T_u|, k)``, so a user with more than
``k`` relevant items cannot reach a recall of 1. MAP@k is the mean of AP@k over
users (the course competition's ``MAP@50`` with ``k = 50``).

Excluding each user's training positives from the ranking is part of making
the ranking; :func:`evaluate` does it and then averages the metrics over users.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import torch
from torch import nn

from negsample._checks import (
    _short,
    as_index_tensor,
    check_ids_in_range,
    check_int,
    is_integer_dtype,
)
from negsample._ranking import check_no_nan, top_k_items
from negsample.index import PositiveIndex
from negsample.typing import AllItemScorer, IdsLike, Recommender

__all__ = ["evaluate", "map_at_k", "ndcg_at_k", "precision_at_k", "recall_at_k"]


# ---------------------------------------------------------------------- metrics from hits
#
# Each takes ``hits``, a (B, k) boolean tensor (slot j of row b holds a relevant
# item), ``num_relevant``, the (B,) int64 count |T_u|, and a float ``dtype``, and
# returns (B,) values of ``dtype``. A row with no relevant item gives 0 / 0 = NaN
# in all but precision.


def _recall(hits: torch.Tensor, num_relevant: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return hits.sum(dim=1).to(dtype) / num_relevant.to(dtype)


def _precision(hits: torch.Tensor, num_relevant: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return hits.sum(dim=1).to(dtype) / hits.shape[1]


def _ndcg(hits: torch.Tensor, num_relevant: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    k = hits.shape[1]
    positions = torch.arange(1, k + 1, device=hits.device, dtype=dtype)
    discounts = 1.0 / torch.log2(positions + 1)
    dcg = (hits.to(dtype) * discounts).sum(dim=1)
    # ideal[n] is the DCG of n hits in the first n slots; ideal[0] = 0.
    ideal = torch.cat([discounts.new_zeros(1), discounts.cumsum(dim=0)])
    return dcg / ideal[num_relevant.clamp(max=k)]


def _average_precision(
    hits: torch.Tensor, num_relevant: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    k = hits.shape[1]
    hits_f = hits.to(dtype)
    positions = torch.arange(1, k + 1, device=hits.device, dtype=dtype)
    precision_at_j = hits_f.cumsum(dim=1) / positions
    return (precision_at_j * hits_f).sum(dim=1) / num_relevant.clamp(max=k).to(dtype)


_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.dtype], torch.Tensor]] = {
    "recall": _recall,
    "ndcg": _ndcg,
    "map": _average_precision,
    "precision": _precision,
}


def _hits(
    ranked: IdsLike, relevant: Any, users: IdsLike, k: Any, validate: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the arguments of a metric; return ``hits`` (B, k) and ``|T_u|`` (B,)."""
    if not isinstance(relevant, PositiveIndex):
        raise TypeError(f"relevant must be a PositiveIndex, got {type(relevant).__name__}")
    k = check_int("k", k, minimum=1)
    if not isinstance(validate, bool):
        raise TypeError(f"validate must be a bool, got {_short(validate)}")
    ranked_t = as_index_tensor("ranked", ranked)
    users_t = as_index_tensor("users", users)
    if ranked_t.ndim != 2:
        raise ValueError(f"ranked must be 2-D (B, K), got shape {tuple(ranked_t.shape)}")
    if users_t.ndim != 1 or users_t.shape[0] != ranked_t.shape[0]:
        raise ValueError(
            f"users must be 1-D with one user per row of ranked (B={ranked_t.shape[0]}), "
            f"got shape {tuple(users_t.shape)}"
        )
    if k > ranked_t.shape[1]:
        raise ValueError(
            f"k must be <= the number of ranked columns K={ranked_t.shape[1]}, got {k}"
        )
    for name, tensor in (("ranked", ranked_t), ("users", users_t)):
        if tensor.device != relevant.device:
            raise ValueError(
                f"{name} is on {tensor.device} but relevant is on {relevant.device}; "
                f"move one of them (relevant.to(device))"
            )
    top = ranked_t[:, :k].long()
    users_t = users_t.long()
    if validate:
        _check_ranked(top, relevant.num_items)
        check_ids_in_range("users", users_t, relevant.num_users, "user")
    num_relevant = relevant.degree(users_t, validate=False)
    if validate and users_t.numel() and bool((num_relevant == 0).any()):
        row = int((num_relevant == 0).nonzero()[0, 0])
        raise ValueError(
            f"users must all have at least one relevant item, but user {int(users_t[row])} "
            f"(row {row}) has none in relevant; leave such users out"
        )
    hits = relevant.contains(users_t[:, None], top.clamp(min=0), validate=False) & (top >= 0)
    return hits, num_relevant


def _check_ranked(top: torch.Tensor, num_items: int) -> None:
    """Raise unless ``top`` holds item ids or ``-1``, with no item twice in a row."""
    if top.numel() == 0:
        return
    bad = (top < -1) | (top >= num_items)
    if bool(bad.any()):
        raise ValueError(
            f"ranked must hold item ids in [0, {num_items}) or -1 (padding), got {int(top[bad][0])}"
        )
    repeat = _first_repeat(top)
    if repeat is not None:
        row, item = repeat
        raise ValueError(
            f"ranked must not repeat an item within the top k of a row: row {row} "
            f"holds item {item} twice"
        )


def _first_repeat(top: torch.Tensor) -> tuple[int, int] | None:
    """``(row, item)`` of the first item that a row of ``top`` holds twice (``-1`` aside)."""
    ordered = top.sort(dim=1).values
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if not bool(repeated.any()):
        return None
    row, col = repeated.nonzero()[0].tolist()
    return row, int(ordered[row, col])


def recall_at_k(
    ranked: IdsLike, relevant: PositiveIndex, users: IdsLike, k: int, *, validate: bool = True
) -> torch.Tensor:
    """Recall@k of each row: the share of the user's relevant items in the top ``k``.

    ``Recall@k = |top-k ∩ T_u| / |T_u|`` (LightGCN / NGCF protocol): the
    denominator is ``|T_u|``, not ``min(|T_u|, k)``.

    Args:
        ranked: ``(B, K)`` integer tensor of item ids, best first, ``K >= k``;
            ``-1`` marks an empty slot, which never counts as a hit. An item may
            appear at most once in a row's first ``k`` slots.
        relevant: Each user's relevant (test) items.
        users: ``(B,)`` integer tensor: the user of each row of ``ranked``.
        k: Cut-off, ``1 <= k <= K``.
        validate: Check ids, repeats and that every user has a relevant item
            (reads values back to the host). With ``False`` these checks are
            skipped and a user with no relevant item gets NaN.

    Returns:
        ``(B,)`` tensor of the default float dtype: one value per row.

    Raises:
        TypeError: If ``relevant`` is not a :class:`~negsample.PositiveIndex`,
            ``k`` is not an int or ids are not integers.
        ValueError: For bad shapes, ``k`` out of range, tensors on another device
            than ``relevant``, or (with ``validate``) an out-of-range id, an item
            repeated within the top ``k`` or a user with no relevant item.

    Example:
        >>> test = PositiveIndex.from_dict({0: [1, 4, 7], 1: [2]}, num_items=8)
        >>> ranked = torch.tensor([[3, 1, -1, 4], [2, 0, 5, 6]])
        >>> recall_at_k(ranked, test, torch.tensor([0, 1]), k=4)
        tensor([0.6667, 1.0000])
    """
    hits, num_relevant = _hits(ranked, relevant, users, k, validate)
    return _recall(hits, num_relevant, torch.get_default_dtype())


def precision_at_k(
    ranked: IdsLike, relevant: PositiveIndex, users: IdsLike, k: int, *, validate: bool = True
) -> torch.Tensor:
    """Precision@k of each row: the share of the top ``k`` slots holding a relevant item.

    ``Precision@k = |top-k ∩ T_u| / k``; empty (``-1``) slots count in ``k``.

    Args:
        ranked: ``(B, K)`` integer tensor of item ids, best first, ``K >= k``;
            ``-1`` marks an empty slot, which never counts as a hit. An item may
            appear at most once in a row's first ``k`` slots.
        relevant: Each user's relevant (test) items.
        users: ``(B,)`` integer tensor: the user of each row of ``ranked``.
        k: Cut-off, ``1 <= k <= K``.
        validate: Check ids, repeats and that every user has a relevant item
            (reads values back to the host). With ``False`` these checks are
            skipped and a user with no relevant item gets NaN (precision: 0).

    Returns:
        ``(B,)`` tensor of the default float dtype: one value per row.

    Raises:
        TypeError: If ``relevant`` is not a :class:`~negsample.PositiveIndex`,
            ``k`` is not an int or ids are not integers.
        ValueError: For bad shapes, ``k`` out of range, tensors on another device
            than ``relevant``, or (with ``validate``) an out-of-range id, an item
            repeated within the top ``k`` or a user with no relevant item.

    Example:
        >>> test = PositiveIndex.from_dict({0: [1, 4, 7], 1: [2]}, num_items=8)
        >>> ranked = torch.tensor([[3, 1, -1, 4], [2, 0, 5, 6]])
        >>> precision_at_k(ranked, test, torch.tensor([0, 1]), k=4)
        tensor([0.5000, 0.2500])
    """
    hits, num_relevant = _hits(ranked, relevant, users, k, validate)
    return _precision(hits, num_relevant, torch.get_default_dtype())


def ndcg_at_k(
    ranked: IdsLike, relevant: PositiveIndex, users: IdsLike, k: int, *, validate: bool = True
) -> torch.Tensor:
    """NDCG@k of each row, with binary relevance (LightGCN protocol).

    ``DCG@k = sum_{j=1..k} rel_j / log2(j + 1)``, where ``rel_j`` is 1 if slot
    ``j`` holds a relevant item; ``IDCG@k = sum_{j=1..min(|T_u|, k)} 1 / log2(j + 1)``,
    the DCG of a ranking with every slot it can fill relevant;
    ``NDCG@k = DCG@k / IDCG@k``.

    Args:
        ranked: ``(B, K)`` integer tensor of item ids, best first, ``K >= k``;
            ``-1`` marks an empty slot, which never counts as a hit. An item may
            appear at most once in a row's first ``k`` slots.
        relevant: Each user's relevant (test) items.
        users: ``(B,)`` integer tensor: the user of each row of ``ranked``.
        k: Cut-off, ``1 <= k <= K``.
        validate: Check ids, repeats and that every user has a relevant item
            (reads values back to the host). With ``False`` these checks are
            skipped and a user with no relevant item gets NaN.

    Returns:
        ``(B,)`` tensor of the default float dtype: one value per row.

    Raises:
        TypeError: If ``relevant`` is not a :class:`~negsample.PositiveIndex`,
            ``k`` is not an int or ids are not integers.
        ValueError: For bad shapes, ``k`` out of range, tensors on another device
            than ``relevant``, or (with ``validate``) an out-of-range id, an item
            repeated within the top ``k`` or a user with no relevant item.

    Example:
        >>> test = PositiveIndex.from_dict({0: [1, 4, 7], 1: [2]}, num_items=8)
        >>> ranked = torch.tensor([[3, 1, -1, 4], [2, 0, 5, 6]])
        >>> ndcg_at_k(ranked, test, torch.tensor([0, 1]), k=4)
        tensor([0.4982, 1.0000])
    """
    hits, num_relevant = _hits(ranked, relevant, users, k, validate)
    return _ndcg(hits, num_relevant, torch.get_default_dtype())


def map_at_k(
    ranked: IdsLike, relevant: PositiveIndex, users: IdsLike, k: int, *, validate: bool = True
) -> torch.Tensor:
    """AP@k of each row; their mean over users is MAP@k (the course competition's ``MAP@50``).

    ``AP@k = (1 / min(|T_u|, k)) * sum_{j=1..k} P@j * rel_j``, where ``rel_j`` is
    1 if slot ``j`` holds a relevant item and ``P@j`` is the number of relevant
    items in the first ``j`` slots divided by ``j``.

    Args:
        ranked: ``(B, K)`` integer tensor of item ids, best first, ``K >= k``;
            ``-1`` marks an empty slot, which never counts as a hit. An item may
            appear at most once in a row's first ``k`` slots.
        relevant: Each user's relevant (test) items.
        users: ``(B,)`` integer tensor: the user of each row of ``ranked``.
        k: Cut-off, ``1 <= k <= K``.
        validate: Check ids, repeats and that every user has a relevant item
            (reads values back to the host). With ``False`` these checks are
            skipped and a user with no relevant item gets NaN.

    Returns:
        ``(B,)`` tensor of the default float dtype: one value per row.

    Raises:
        TypeError: If ``relevant`` is not a :class:`~negsample.PositiveIndex`,
            ``k`` is not an int or ids are not integers.
        ValueError: For bad shapes, ``k`` out of range, tensors on another device
            than ``relevant``, or (with ``validate``) an out-of-range id, an item
            repeated within the top ``k`` or a user with no relevant item.

    Example:
        >>> test = PositiveIndex.from_dict({0: [1, 4, 7], 1: [2]}, num_items=8)
        >>> ranked = torch.tensor([[3, 1, -1, 4], [2, 0, 5, 6]])
        >>> map_at_k(ranked, test, torch.tensor([0, 1]), k=4)
        tensor([0.3333, 1.0000])
        >>> map_at_k(ranked, test, torch.tensor([0, 1]), k=4).mean()
        tensor(0.6667)
    """
    hits, num_relevant = _hits(ranked, relevant, users, k, validate)
    return _average_precision(hits, num_relevant, torch.get_default_dtype())


# ---------------------------------------------------------------------- ranking


# ---------------------------------------------------------------------- evaluate


def _check_ks(ks: Any, num_items: int) -> tuple[int, ...]:
    values = [ks] if isinstance(ks, int) and not isinstance(ks, bool) else ks
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"ks must be an int or a sequence of ints, got {_short(ks)}") from None
    if not values:
        raise ValueError("ks must name at least one cut-off, got an empty sequence")
    checked = tuple(check_int("each of ks", k, minimum=1) for k in values)
    if max(checked) > num_items:
        raise ValueError(f"ks must all be <= num_items={num_items}, got {max(checked)}")
    if len(set(checked)) != len(checked):
        raise ValueError(f"ks must not repeat a cut-off, got {list(checked)}")
    return checked


def _check_metrics(metrics: Any) -> tuple[str, ...]:
    values = [metrics] if isinstance(metrics, str) else metrics
    try:
        values = list(values)
    except TypeError:
        raise TypeError(
            f"metrics must be a name or a sequence of names, got {_short(metrics)}"
        ) from None
    if not values:
        raise ValueError(f"metrics must name at least one of {sorted(_METRICS)}, got none")
    for name in values:
        if name not in _METRICS:
            raise ValueError(f"metrics must be names from {sorted(_METRICS)}, got {_short(name)}")
    if len(set(values)) != len(values):
        raise ValueError(f"metrics must not repeat a name, got {values}")
    return tuple(values)


def _model_device(model: Any, default: torch.device) -> torch.device:
    """Device of the model's first parameter or buffer, else ``default``."""
    if isinstance(model, nn.Module):
        for tensor in chain(model.parameters(), model.buffers()):
            return tensor.device
    return default


def _eval_users(users: IdsLike | None, train: PositiveIndex, test: PositiveIndex) -> torch.Tensor:
    """The ``int64`` users to evaluate, on the indexes' device, checked."""
    has_test = test.indptr[1:] > test.indptr[:-1]
    if users is None:
        users_t = has_test.nonzero()[:, 0]
        if users_t.numel() == 0:
            raise ValueError("test_index has no user with a test item: nothing to evaluate")
    else:
        users_t = as_index_tensor("users", users).to(test.device)
        if users_t.ndim != 1 or users_t.numel() == 0:
            raise ValueError(
                f"users must be a non-empty 1-D tensor of user ids, got shape {tuple(users_t.shape)}"
            )
        users_t = users_t.long()
        check_ids_in_range("users", users_t, test.num_users, "user")
        without = ~has_test[users_t]
        if bool(without.any()):
            raise ValueError(
                f"users must all have at least one item in test_index, but user "
                f"{int(users_t[without][0])} has none ({int(without.sum())} such users)"
            )
    beyond = users_t >= train.num_users
    if bool(beyond.any()):
        raise ValueError(
            f"train_index has no row for user {int(users_t[beyond][0])} (it has "
            f"num_users={train.num_users}); build both indexes with the same num_users="
        )
    return users_t


def evaluate(
    model: Recommender | AllItemScorer,
    train_index: PositiveIndex,
    test_index: PositiveIndex,
    ks: int | Sequence[int] = (20, 50),
    *,
    users: IdsLike | None = None,
    batch_size: int = 1024,
    metrics: str | Sequence[str] = ("recall", "ndcg", "map"),
) -> dict[str, float]:
    """Rank the whole catalogue for each test user and average top-k metrics over users.

    For each evaluated user the model ranks every item except the user's
    training positives (``train_index``), highest score first, ties to the lower
    item id. A user with fewer than ``max(ks)`` items left gets ``-1`` padding,
    which never counts as a hit. The metrics
    (see :func:`recall_at_k`, :func:`ndcg_at_k`, :func:`map_at_k`,
    :func:`precision_at_k`) of each ranking against the user's items in
    ``test_index`` are then averaged over users, each user weighing the same.

    An item in both indexes for a user is never ranked for that user, so it is
    never a hit, but it still counts in ``|T_u|``.

    The model ranks in one of two ways, both called with a 1-D ``int64`` tensor
    ``users`` of ``B`` user ids on the model's device:

    * ``model.recommend(users, k, exclude=train_index)``, used when the model
      has it (:meth:`~negsample.MFModel.recommend` does), must return a ``(B, k)``
      integer tensor of item ids, best first, never an item of ``exclude`` nor
      the same item twice in a row, with ``-1`` padding at the end of a row that
      runs out of items;
    * otherwise ``model.score_all(users)`` must return a floating
      ``(B, num_items)`` tensor whose column ``i`` scores item ``i``, without
      NaN; ``evaluate`` masks the training positives and ranks the rest itself.

    For an :class:`~negsample.MFModel` the two give the same ranking. The
    evaluation runs on the device of the model's first parameter or buffer (on
    ``train_index``'s device for a model without any); the indexes are copied
    there as needed. Ranking runs under :class:`torch.no_grad`, and an
    ``nn.Module`` is switched to ``eval()`` mode for the call and restored
    afterwards. Peak memory is a few ``batch_size x num_items`` tensors.

    The number of users evaluated is not part of the result: it is
    ``len(users)``, or by default the number of users with a test item,
    ``int((test_index.degree(torch.arange(test_index.num_users)) > 0).sum())``.

    Args:
        model: An object with ``recommend`` or ``score_all`` as above, e.g. an
            :class:`~negsample.MFModel`.
        train_index: Each user's training positives, excluded from the ranking.
            It must have a row for every evaluated user.
        test_index: Each user's relevant (test) items; same ``num_items`` as
            ``train_index``.
        ks: One cut-off or a sequence of distinct cut-offs, each in
            ``[1, num_items]``.
        users: User ids to evaluate (a repeated id counts again), each with at
            least one test item; by default every user with a test item, in
            increasing order.
        batch_size: Users scored at once.
        metrics: Names from ``"recall"``, ``"ndcg"``, ``"map"`` and
            ``"precision"``.

    Returns:
        ``{f"{metric}@{k}": mean}`` as Python floats, ordered by ``k`` (in the
        order of ``ks``), then by metric (in the order of ``metrics``): e.g.
        ``"recall@20"``, ``"ndcg@20"``, ``"map@20"``, ``"recall@50"``, ...

    Raises:
        TypeError: If ``model`` has neither ``recommend`` nor ``score_all``, an
            index is not a :class:`~negsample.PositiveIndex`, ``ks`` or
            ``batch_size`` is not an int, or the model returns a tensor of the
            wrong kind (integer ids from ``recommend``, floating scores from
            ``score_all``).
        ValueError: If the indexes' ``num_items`` differ, ``ks``, ``metrics`` or
            ``batch_size`` is out of range, a user is out of range or has no
            test item, there is no user to evaluate, ``train_index`` has no row
            for a user, or the model returns the wrong shape, another device, an
            item id out of range, an item twice for a user or NaN scores.

    Example:
        >>> from negsample import MFModel, PositiveIndex
        >>> train = PositiveIndex.from_dict({0: [0], 1: [1, 2]}, num_items=6)
        >>> test = PositiveIndex.from_dict({0: [1, 4], 1: [4, 5]}, num_items=6)
        >>> model = MFModel(2, 6, dim=1, init_std=0.0, bias=True)
        >>> with torch.no_grad():  # every user ranks the items 0 > 1 > ... > 5
        ...     _ = model.item_bias.copy_(torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0]))
        >>> evaluate(model, train, test, ks=(2, 4), metrics=("recall", "map"))
        {'recall@2': 0.25, 'map@2': 0.25, 'recall@4': 1.0, 'map@4': 0.5833333333333333}
    """
    if not (
        callable(getattr(model, "recommend", None)) or callable(getattr(model, "score_all", None))
    ):
        raise TypeError(
            f"model must have a recommend(users, k, exclude=...) or a score_all(users) method, "
            f"got {type(model).__name__} without either"
        )
    for name, index in (("train_index", train_index), ("test_index", test_index)):
        if not isinstance(index, PositiveIndex):
            raise TypeError(f"{name} must be a PositiveIndex, got {type(index).__name__}")
    num_items = test_index.num_items
    if train_index.num_items != num_items:
        raise ValueError(
            f"train_index and test_index must have the same num_items, got "
            f"{train_index.num_items} and {num_items}; build the test index with "
            f"num_items=train.num_items (or load its file with like= the training "
            f"Interactions) so that both share one item id space"
        )
    cutoffs = _check_ks(ks, num_items)
    names = _check_metrics(metrics)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    device = _model_device(model, train_index.device)
    train = train_index.to(device)
    test = test_index.to(device)
    users_t = _eval_users(users, train, test)

    max_k = max(cutoffs)
    totals = dict.fromkeys((f"{name}@{k}" for k in cutoffs for name in names), 0.0)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            for start in range(0, users_t.numel(), batch_size):
                batch = users_t[start : start + batch_size]
                ranked = _rank(model, batch, train, max_k, device)
                hits = test.contains(batch[:, None], ranked.clamp(min=0), validate=False)
                hits &= ranked >= 0
                num_relevant = test.degree(batch, validate=False)
                # The (B, max_k) hits are small: sum them up in float64 on the CPU,
                # which every device can hand them to.
                hits, num_relevant = hits.cpu(), num_relevant.cpu()
                for k in cutoffs:
                    for name in names:
                        values = _METRICS[name](hits[:, :k], num_relevant, torch.float64)
                        totals[f"{name}@{k}"] += float(values.sum())
    finally:
        if was_training and isinstance(model, nn.Module):
            model.train()
    return {key: total / users_t.numel() for key, total in totals.items()}


def _rank(
    model: Any, batch: torch.Tensor, train: PositiveIndex, k: int, device: torch.device
) -> torch.Tensor:
    """Each user's top ``k`` items without its training positives, ``-1`` padded."""
    recommend = getattr(model, "recommend", None)
    if callable(recommend):
        returned: torch.Tensor = recommend(batch, k, exclude=train)
        _check_output("recommend", returned, (batch.numel(), k), device, floating=False)
        # Compared in int64: in a narrower dtype num_items could wrap (2**15 in int16).
        ranked = returned.long()
        bad = (ranked < -1) | (ranked >= train.num_items)
        if bool(bad.any()):
            raise ValueError(
                f"model.recommend must return item ids in [0, {train.num_items}) or -1, "
                f"got {int(ranked[bad][0])}"
            )
        # A repeated item would count as a hit twice (recall@2 of 2.0).
        repeat = _first_repeat(ranked)
        if repeat is not None:
            row, item = repeat
            raise ValueError(
                f"model.recommend must not return an item twice for a user, got item {item} "
                f"twice for user {int(batch[row])}"
            )
        return ranked
    scores: torch.Tensor = model.score_all(batch)
    _check_output("score_all", scores, (batch.numel(), train.num_items), device, floating=True)
    check_no_nan(scores, batch, "model.score_all scores")
    return top_k_items(scores, k, exclude=train, users=batch)


def _check_output(
    method: str, value: Any, shape: tuple[int, int], device: torch.device, *, floating: bool
) -> None:
    """Check the dtype, shape and device of what ``model.<method>`` returned."""
    wanted = "a floating tensor of scores" if floating else "an integer tensor of item ids"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"model.{method} must return {wanted}, got {type(value).__name__}")
    right_kind = value.dtype.is_floating_point if floating else is_integer_dtype(value.dtype)
    if not right_kind:
        raise TypeError(f"model.{method} must return {wanted}, got dtype {value.dtype}")
    if tuple(value.shape) != shape:
        raise ValueError(
            f"model.{method} returned shape {tuple(value.shape)} for {shape[0]} users; "
            f"expected {shape}"
        )
    if value.device != device:
        raise ValueError(
            f"model.{method} returned a tensor on {value.device}, but the evaluation runs on "
            f"{device} (the device of the model's parameters)"
        )
