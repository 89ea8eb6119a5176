"""Radial trajectories and Shepp-Logan-like test images shared by the reconstruction tests."""

from __future__ import annotations

import math

import torch

GOLDEN_ANGLE = math.pi * (math.sqrt(5) - 1) / 2


def radial_trajectory(n: int, spokes: int, golden: bool = False, oversampling: int = 2) -> torch.Tensor:
    """``[spokes * oversampling * n, 3]`` k positions (cycles/FOV) of radial spokes, readout fastest."""
    angles = torch.arange(spokes, dtype=torch.float64)
    angles = angles * GOLDEN_ANGLE if golden else angles * math.pi / spokes
    radius = (torch.arange(oversampling * n, dtype=torch.float64) - oversampling * n // 2) / oversampling
    k = torch.stack(
        [
            radius[None] * torch.cos(angles)[:, None],
            radius[None] * torch.sin(angles)[:, None],
            torch.zeros(spokes, oversampling * n, dtype=torch.float64),
        ],
        dim=-1,
    )
    return k.reshape(-1, 3).float()


def cartesian_trajectory(shape: tuple[int, ...]) -> torch.Tensor:
    """Every point of a Cartesian grid, in the row-major order of ``[..., ky, kx]`` k-space."""
    axes = [torch.arange(n, dtype=torch.float32) - n // 2 for n in shape]
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(grids[::-1], dim=-1).reshape(-1, len(shape))


def random_trajectory(samples: int, shape: tuple[int, ...], seed: int, dtype=torch.float64) -> torch.Tensor:
    """Uniformly random k positions inside the Nyquist box of ``shape`` (columns kx, ky[, kz])."""
    generator = torch.Generator().manual_seed(seed)
    box = torch.tensor(shape[::-1], dtype=dtype)
    return (torch.rand(samples, len(shape), generator=generator, dtype=dtype) - 0.5) * box


def random_image(*shape: int, seed: int, dtype=torch.complex128) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=dtype)
