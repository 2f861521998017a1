"""The shared argument checks: id ranges for every integer dtype at every bound."""

from __future__ import annotations

import pytest
import torch

from negsample._checks import check_ids_in_range
from tests.helpers import NARROW_ID_DTYPES, one_past_max

ALL_ID_DTYPES = [*NARROW_ID_DTYPES, torch.int64]


@pytest.mark.parametrize("dtype", ALL_ID_DTYPES)
def test_ids_up_to_the_dtype_max_pass_a_bound_the_dtype_cannot_hold(dtype: torch.dtype) -> None:
    # Compared in the ids' dtype, the bound would wrap (2**15 -> -2**15 in int16).
    for upper in (one_past_max(dtype), 2 * one_past_max(dtype)):
        check_ids_in_range(
            "ids", torch.tensor([0, 1, torch.iinfo(dtype).max], dtype=dtype), upper, "item"
        )


@pytest.mark.parametrize("dtype", ALL_ID_DTYPES)
def test_ids_at_or_past_a_small_bound_are_refused_in_every_dtype(dtype: torch.dtype) -> None:
    check_ids_in_range("ids", torch.tensor([0, 2, 1], dtype=dtype), 3, "item")
    with pytest.raises(
        ValueError, match=r"ids must be item ids in \[0, 3\), got 3 \(and 1 more out of range\)"
    ):
        check_ids_in_range("ids", torch.tensor([0, 3, 1, 100], dtype=dtype), 3, "item")


@pytest.mark.parametrize("dtype", [d for d in ALL_ID_DTYPES if d.is_signed])
def test_negative_ids_are_refused_whatever_the_bound(dtype: torch.dtype) -> None:
    for upper in (3, one_past_max(dtype)):
        with pytest.raises(ValueError, match=r"users must be user ids in \[0, \d+\), got -1$"):
            check_ids_in_range("users", torch.tensor([0, -1], dtype=dtype), upper, "user")


def test_an_empty_bound_refuses_every_id() -> None:
    with pytest.raises(ValueError, match=r"in \[0, 0\), got 0"):
        check_ids_in_range("users", torch.tensor([0], dtype=torch.uint8), 0, "user")
