"""A temperature per user for the softmax recipe's negatives (``--user-temperature``).

After the scheme of Adap-tau (Chen et al., WWW 2023, as its authors' code
computes it): the positive keeps the loss's temperature ``T``; the negatives
of user ``u`` are scored at ``T / r_u``, where ``r_u = exp(-W(x_u))``, ``W``
the principal branch of the Lambert W function and
``x_u = max((l_u - l_q) / s, -1/e)``, with ``l_u`` the user's mean loss at
temperature 1 over the previous epoch, ``l_q`` the ``q``-quantile of those
means over the users and ``s`` a scale. Users whose loss is below the
quantile get sharper negatives (``r_u`` up to ``e``), users above it softer
ones (``r_u < 1``). Every ``r_u`` is 1 in the first epoch.
"""

from __future__ import annotations

import math

import torch

# Adap-tau's settings for MF on Gowalla (its log's file name: t1 0.9, t2 0.25).
QUANTILE, SCALE = 0.9, 0.25


def lambert_w(x: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """The principal branch ``W0`` of the Lambert W function (``W e^W = x``), in float64.

    Defined for ``x >= -1/e`` (``W0(-1/e) = -1``; values within float32
    rounding of it count as it); smaller values give NaN, ``+inf`` gives
    ``+inf``. Halley's iteration from a series at the branch point
    (``x < 0``) or ``log1p(x)``, for ``x <= e``; above, where ``e^W`` would
    overflow for ``x`` past about ``1e305``, Newton's iteration on
    ``W + log W = log x`` from its asymptotic series.
    """
    x = x.to(torch.float64)
    below = x < -(1.0 + 1e-6) / math.e
    # Within float32 rounding of -1/e counts as the branch point.
    x = x.clamp(min=-1.0 / math.e)
    large = x > math.e
    small = torch.where(large, torch.zeros_like(x), x)
    p = torch.sqrt(2.0 * (math.e * small + 1.0))
    w = torch.where(
        small < 0, -1.0 + p - p * p / 3.0 + 11.0 / 72.0 * p**3, torch.log1p(small.clamp(min=0))
    )
    for _ in range(iterations):
        ew = torch.exp(w)
        f = w * ew - small
        denominator = ew * (w + 1.0) - (w + 2.0) * f / (2.0 * w + 2.0)
        update = f / denominator
        # At the branch point (w = -1) the step is 0 / 0: W is already exact there.
        w = w - torch.where(torch.isfinite(update), update, torch.zeros_like(update))
    # log x > 1 here (1 where x is not large, to keep the unused lanes finite).
    log_x = torch.log(torch.where(large, x, torch.full_like(x, math.e)))
    log_log_x = torch.log(log_x)
    v = log_x - log_log_x + log_log_x / log_x
    for _ in range(iterations):
        v = v - (v + torch.log(v) - log_x) / (1.0 + 1.0 / v)
    w = torch.where(large, v, w)
    w = torch.where(x == math.inf, x, w)
    return torch.where(below, torch.full_like(w, math.nan), w)


class UserTemperature:
    """Per-user scale ``r_u`` of the negatives' inverse temperature, updated every epoch.

    Call :meth:`record` with each batch's users and their losses at
    temperature 1 (detached); after ``steps_per_epoch`` calls the scales are
    recomputed from each user's mean loss over those steps (users not seen
    keep theirs). :meth:`__call__` gives the scales of a batch's users.
    """

    def __init__(
        self,
        num_users: int,
        steps_per_epoch: int,
        device: torch.device,
        *,
        quantile: float = QUANTILE,
        scale: float = SCALE,
    ) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.quantile, self.scale = quantile, scale
        self.factor = torch.ones(num_users, device=device)
        self._sum = torch.zeros(num_users, dtype=torch.float64, device=device)
        self._count = torch.zeros(num_users, dtype=torch.float64, device=device)
        self._steps = 0

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        return self.factor[users]

    def record(self, users: torch.Tensor, losses: torch.Tensor) -> None:
        """Add one batch's per-row losses (at temperature 1) to its users' means."""
        self._sum.index_add_(0, users, losses.detach().to(torch.float64))
        self._count.index_add_(0, users, users.new_ones(users.shape, dtype=torch.float64))
        self._steps += 1
        if self._steps % self.steps_per_epoch == 0:
            self._update()

    def _update(self) -> None:
        seen = self._count > 0
        finite = seen & torch.isfinite(self._sum)
        if bool(finite.any()):
            mean = self._sum[finite] / self._count[finite]
            base = torch.quantile(mean, self.quantile)
            x = ((mean - base) / self.scale).clamp(min=-1.0 / math.e)
            self.factor[finite] = torch.exp(-lambert_w(x)).to(self.factor.dtype)
        self._sum.zero_()
        self._count.zero_()
