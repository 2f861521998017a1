"""Where every random number of the library comes from.

All samplers draw raw ``int64`` bits with :func:`draw_bits` and turn them into
choices deterministically, so two implementations that are given the same bits
must return the same tensors. Randomness only ever comes from a
``torch.Generator`` (or torch's default one): never Python's ``random`` or NumPy.
"""

from __future__ import annotations

import torch

RANDOM_BITS_HIGH = 2**62
"""Draws are uniform in ``[0, 2**62)``; ``bits % n`` is uniform on ``0..n-1`` up to a bias below ``n / 2**62``."""


def resolve_generator(
    generator: torch.Generator | int | None, device: torch.device
) -> torch.Generator | None:
    """Turn a validated ``generator`` argument into a generator for ``device``."""
    if generator is None:
        return None
    if isinstance(generator, int):
        gen = torch.Generator(device=device)
        gen.manual_seed(generator)
        return gen
    if generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the users are on {device}; "
            f"pass a generator on {device} or an int seed"
        )
    return generator


def draw_bits(
    generator: torch.Generator | None, shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Uniform ``int64`` draws in ``[0, 2**62)``: the raw randomness of every sampler."""
    return torch.randint(
        0, RANDOM_BITS_HIGH, shape, generator=generator, device=device, dtype=torch.int64
    )
