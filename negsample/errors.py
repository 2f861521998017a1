"""The library's one error class."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["EmptyComplementError"]


class EmptyComplementError(ValueError):
    """A user whose positives cover the whole catalogue has no negative to draw.

    Also raised, with a ``reason`` saying so, when the user's non-positives all
    have weight 0 under a weighted candidate distribution. A ``ValueError``, so
    ``except ValueError`` catches it too. ``users`` lists the
    offending user ids (sorted, unique) so a caller can drop them from its batches.

    Example:
        >>> err = EmptyComplementError([4], num_items=3)
        >>> err.users
        [4]
        >>> isinstance(err, ValueError)
        True
    """

    def __init__(self, users: Sequence[int], num_items: int, *, reason: str | None = None) -> None:
        self.users = list(users)
        self.num_items = num_items
        if reason is None:
            reason = f"has every one of the {num_items} items as a positive"
        more = (
            f" ({len(self.users)} such users in the batch: {self.users[:10]})"
            if len(self.users) > 1
            else ""
        )
        super().__init__(f"user {self.users[0]} {reason}, so no negative can be drawn for it{more}")
