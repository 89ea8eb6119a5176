"""The encoding prior: how far a sequence's ADC samples are from an orthonormal encoding of the image grid.

Training is noise-free, so the image loss never sees what an ill-conditioned sampling costs: a
sampling whose encoding vectors overlap amplifies noise and turns every inconsistency of the data
(transients, off-resonance) into artefacts once reconstructed. The *frame potential* of the samples
measures exactly that. With ``e_i`` the encoding vector of sample ``k_i`` on the ``n x n`` grid
(``e_i(x) = exp(-2 pi i k_i . x / n) / n``) and ``G_ij = <e_i, e_j>``,

    FP = (sum_ij |G_ij|^2 - M) / M  >=  M / n^2 - 1,

which is 0 exactly when the ``M = n^2`` samples form an orthonormal basis (the Nyquist grid, or any
shift of it) and ``M - 1`` when all samples coincide (the collapsed start of a sequence learned from
zero). ``|G_ij|^2`` is the product over the two axes of the Fejer kernel
``sin^2(pi d) / (n sin(pi d / n))^2`` of the sample distance ``d``, so the double sum is computed
through the samples' Fourier sums on the difference grid ``a, b in -(n-1) .. n-1``:
``sum_ij |G_ij|^2 = n^-4 sum_ab (n - |a|)(n - |b|) |P_ab|^2`` with ``P = A^T B``,
``A_ia = exp(2 pi i kx_i a / n)``, ``B_ib = exp(2 pi i ky_i b / n)``: two ``M x (2n - 1)`` tables and
one matrix product instead of ``M^2`` pairs.

The kernel is periodic in ``n`` (a sample at ``k + n`` encodes the grid as ``k`` does), so the prior
adds a wall: the mean squared distance by which samples lie beyond ``|k| = n/2`` on either axis.
Its weight falls linearly to 0 at a fraction ``until`` of the iterations: it guides the descent
from a collapsed start and then leaves the image loss alone (docs/training.md, "Starting from zero").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def frame_potential(trajectory: torch.Tensor, matrix: int) -> torch.Tensor:
    """``(sum_ij |G_ij|^2 - M) / M`` of the samples ``trajectory[:, :2]`` (cycles/FOV) on the
    ``matrix x matrix`` grid; differentiable, in the trajectory's real dtype."""
    k = trajectory[:, :2]
    m = k.shape[0]
    if m == 0:
        raise ValueError("frame potential of no samples")
    a = torch.arange(-(matrix - 1), matrix, dtype=k.dtype, device=k.device)
    count = matrix - a.abs()
    ones = torch.ones(m, a.numel(), dtype=k.dtype, device=k.device)
    ax = torch.polar(ones, 2 * math.pi * k[:, 0:1] * a / matrix)
    ay = torch.polar(ones, 2 * math.pi * k[:, 1:2] * a / matrix)
    sums = ax.transpose(0, 1) @ ay
    total = (count[:, None] * count[None, :] * sums.abs().pow(2)).sum() / matrix**4
    return (total - m) / m


def beyond_grid(trajectory: torch.Tensor, matrix: int) -> torch.Tensor:
    """Mean over samples of the squared distance (cycles/FOV) by which ``|kx|`` and ``|ky|`` exceed
    ``matrix / 2``: the frame potential cannot tell a sample from its alias one grid width away."""
    k = trajectory[:, :2]
    return torch.relu(k.abs() - matrix / 2).pow(2).sum(1).mean()


@dataclass(frozen=True)
class EncodingPrior:
    """``weight x (frame potential + wall)`` of a sequence's samples, the weight falling linearly from
    ``weight`` at the first iteration to 0 at the fraction ``until`` of the run."""

    weight: float
    until: float
    matrix: int

    def weight_at(self, fraction: float) -> float:
        """The weight at ``fraction`` (0..1) of the iterations."""
        return self.weight * max(0.0, 1.0 - fraction / self.until)

    def __call__(self, trajectory: torch.Tensor, fraction: float) -> torch.Tensor:
        w = self.weight_at(fraction)
        if w == 0.0:
            return torch.zeros((), dtype=trajectory.dtype, device=trajectory.device)
        return w * (frame_potential(trajectory, self.matrix) + beyond_grid(trajectory, self.matrix))
