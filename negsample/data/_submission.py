"""Writing recommendations as the competition CSV."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from negsample._checks import as_index_tensor
from negsample.data._common import _CSV_HEADER, PathLike
from negsample.data._interactions import Interactions


def write_submission(
    path: PathLike, users: Any, recommendations: Any, interactions: Interactions
) -> None:
    """Write recommendations as the competition CSV, with raw ids.

    Header ``UserId,ItemId``, then one row per user in the order of ``users``:
    ``raw_user,raw_item raw_item ...``. Internal ids are mapped back through
    ``interactions``' id maps; ``-1`` entries (the padding of
    :meth:`MFModel.recommend <negsample.MFModel.recommend>`) are skipped.
    :func:`load_competition_csv` with ``like=interactions`` reads the lists back.

    Args:
        path: The file to write (overwritten).
        users: 1-D internal user ids (tensor, array or list), each at most once.
        recommendations: Internal item ids of shape ``(len(users), k)``, each
            at most once per row, ``-1`` for padding.
        interactions: Whose ``user_ids`` and ``item_ids`` give the raw ids.

    Raises:
        TypeError: If ids are not integers or ``interactions`` is not an
            :class:`Interactions`.
        ValueError: On shape mismatches, out-of-range or repeated users, an
            item repeated within a row, or a raw id whose text holds a comma,
            quote or whitespace.

    Example:
        >>> import pathlib, tempfile, torch
        >>> data = Interactions(
        ...     np.array([0]), np.array([0]), np.array([7, 8]), np.array([3, 4, 5])
        ... )
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp, "submission.csv")
        ...     top = torch.tensor([[2, 0], [1, -1]])
        ...     write_submission(path, torch.tensor([1, 0]), top, data)
        ...     print(path.read_text(), end="")
        UserId,ItemId
        8,5 3
        7,4
    """
    if not isinstance(interactions, Interactions):
        raise TypeError(f"interactions must be an Interactions, got {type(interactions).__name__}")
    user_array = as_index_tensor("users", users).cpu().numpy().astype(np.int64)
    recs = as_index_tensor("recommendations", recommendations).cpu().numpy().astype(np.int64)
    if user_array.ndim != 1:
        raise ValueError(f"users must be 1-D, got shape {user_array.shape}")
    if recs.ndim != 2 or recs.shape[0] != user_array.size:
        raise ValueError(
            f"recommendations must have shape (len(users), k) = ({user_array.size}, k), "
            f"got {recs.shape}"
        )
    _check_range("users", user_array, 0, interactions.num_users)
    _check_range("recommendations", recs, -1, interactions.num_items)
    ordered = np.sort(user_array)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        raise ValueError(f"users must not repeat, got user {int(repeated[0])} more than once")
    # A scorer would count a repeated item twice; the -1 padding may repeat.
    sorted_recs = np.sort(recs, axis=1)
    twice = (sorted_recs[:, 1:] == sorted_recs[:, :-1]) & (sorted_recs[:, 1:] >= 0)
    if twice.any():
        row, col = np.argwhere(twice)[0]
        raise ValueError(
            f"recommendations must not repeat an item within a row, got item "
            f"{int(sorted_recs[row, col])} twice in row {int(row)} (user {int(user_array[row])})"
        )
    user_text = _id_texts("user", interactions.user_ids, user_array)
    item_text = _id_texts("item", interactions.item_ids, recs[recs >= 0])
    rows = [_CSV_HEADER]
    offset = 0
    for row, user in zip(recs, user_text, strict=True):
        width = int((row >= 0).sum())
        rows.append(f"{user},{' '.join(item_text[offset : offset + width])}")
        offset += width
    with open(os.fspath(path), "w", encoding="utf-8", newline="\n") as file:
        file.write("\n".join(rows) + "\n")


def _check_range(name: str, ids: npt.NDArray[np.int64], low: int, high: int) -> None:
    bad = (ids < low) | (ids >= high)
    if bad.any():
        raise ValueError(f"{name} must be ids in [{low}, {high}), got {int(ids[bad][0])}")


def _id_texts(what: str, raw_ids: npt.NDArray[Any], internal: npt.NDArray[np.int64]) -> list[str]:
    texts: list[str] = [str(raw) for raw in raw_ids[internal].tolist()]
    if raw_ids.dtype.kind not in "iu":
        for text in texts:
            if text.split() != [text] or "," in text or '"' in text:
                raise ValueError(
                    f"{what} id {text!r} cannot be written to the CSV: it is empty or holds a "
                    f"comma, quote or whitespace"
                )
    return texts
