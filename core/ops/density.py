"""Sampling-density compensation weights for non-Cartesian trajectories.

Radial and spiral trajectories sample the k-space centre densely, so the plain adjoint
``E^H s`` is blurred and the iterations of ``iterative.py`` converge slowly. Weighting each
sample by the inverse local sampling density (``E^H W s``) fixes the first and preconditions
the second. Pipe and Menon's (1999) fixed-point iteration ``w <- w / (C C^T w)``, with ``C``
the gridding kernel's interpolation from ``nufft.py``, needs nothing but the trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence as SequenceABC

import torch

from mrzero.core.ops.encoding import check_trajectory, normalize_shape
from mrzero.core.ops.nufft import (
    DEFAULT_OVERSAMPLING,
    DEFAULT_WIDTH,
    grid_size,
    interpolation_tables,
    kaiser_bessel_beta,
)


def pipe_menon_density(
    trajectory: torch.Tensor, matrix: int | SequenceABC[int], iterations: int = 10
) -> torch.Tensor:
    """Density compensation weights ``[n_samples]`` (real, same dtype as the trajectory).

    Scaled so that the weights sum to the number of pixels: then the weighted point-spread
    function ``E^H W E`` has a unit peak, and a fully sampled Cartesian trajectory gets weight 1.
    """
    shape = normalize_shape(matrix)
    check_trajectory(trajectory, len(shape))
    if iterations < 1:
        raise ValueError(f"density iterations must be at least 1, got {iterations}")
    grid = tuple(grid_size(n, DEFAULT_OVERSAMPLING) for n in shape)
    beta = kaiser_bessel_beta(DEFAULT_WIDTH, DEFAULT_OVERSAMPLING)
    dtype = torch.float64 if trajectory.dtype == torch.float64 else torch.float32
    index, kernel = interpolation_tables(trajectory.detach(), shape, grid, DEFAULT_WIDTH, beta, dtype)
    weights = torch.ones(trajectory.shape[0], dtype=dtype, device=trajectory.device)
    for _ in range(iterations):
        gridded = torch.zeros(math.prod(grid), dtype=dtype, device=trajectory.device)
        gridded.index_add_(0, index.reshape(-1), (weights[:, None] * kernel).reshape(-1))
        weights = weights / (gridded[index] * kernel).sum(dim=1)
    return (weights * (math.prod(shape) / weights.sum())).to(trajectory.dtype)
