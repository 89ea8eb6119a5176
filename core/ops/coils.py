"""Coil combination: root-sum-of-squares and adaptive (Walsh) combination.

Coil images are ``[coil, ...spatial]``. Root-sum-of-squares gives the magnitude
``sqrt(sum_c |x_c|^2)``. Adaptive combination (Walsh, Gmitro and Marcellin, MRM 2000) uses,
at every pixel, the dominant eigenvector ``v`` of the coil covariance ``R = sum_window x x^H``
smoothed over a small neighbourhood as the coil sensitivity estimate and returns
``v^H x``, the matched filter that maximises SNR for white (prewhitened) noise. The arbitrary
phase of each eigenvector is fixed so that its component on the strongest coil is real and
positive, which keeps the combined phase smooth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rss(images: torch.Tensor) -> torch.Tensor:
    """Root-sum-of-squares over the coil axis (first): real, ``[...spatial]``."""
    return torch.sqrt(torch.sum(images.real**2 + images.imag**2, dim=0))


def _smooth(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Box filter of width ``kernel`` over the last two dims of a real tensor ``[b, y, x]``."""
    pad = kernel // 2
    y = F.avg_pool2d(x.unsqueeze(1), kernel, stride=1, padding=pad, count_include_pad=False)
    return y.squeeze(1)[..., : x.shape[-2], : x.shape[-1]]


def _dominant_eigenvectors(x: torch.Tensor, kernel: int, iterations: int, start: int) -> torch.Tensor:
    """Per pixel, the dominant eigenvector of the window-averaged covariance of ``x`` [c, b, y, x]."""
    nc = x.shape[0]
    i, j = torch.triu_indices(nc, nc, device=x.device)  # the covariance is Hermitian: smooth half
    pairs = (x[i] * x[j].conj()).reshape(-1, *x.shape[-2:])
    pairs = torch.complex(_smooth(pairs.real, kernel), _smooth(pairs.imag, kernel)).reshape(len(i), -1)
    cov = torch.zeros(pairs.shape[1], nc, nc, dtype=x.dtype, device=x.device)  # [pixel, c, c]
    cov[:, j, i] = pairs.conj().T
    cov[:, i, j] = pairs.T
    v = torch.zeros(pairs.shape[1], nc, 1, dtype=x.dtype, device=x.device)
    v[:, start] = 1.0
    for _ in range(iterations):
        v = cov @ v
        v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(torch.finfo(v.real.dtype).tiny)
    return v.squeeze(-1).T.reshape(x.shape)


def coil_sensitivities(
    images: torch.Tensor, kernel: int = 7, iterations: int = 10, max_elements: int = 2**23
) -> torch.Tensor:
    """Walsh sensitivities ``[coil, ..., y, x]`` (unit norm per pixel) from coil images.

    The smoothing is 2D (in-plane); extra spatial dims (z) are treated as independent slices.
    The dominant eigenvector is found by power iteration on the smoothed covariance, which is
    built for blocks of rows (plus the window's halo) of at most ``max_elements`` entries, so
    that 32 coils do not need a covariance of 32 x 32 full images at once.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"adaptive combine kernel must be a positive odd number, got {kernel}")
    nc, ny, nx = images.shape[0], images.shape[-2], images.shape[-1]
    x = images.reshape(nc, -1, ny, nx)  # [c, b, y, x]
    strongest = int(torch.argmax(torch.sum(x.real**2 + x.imag**2, dim=(1, 2, 3))))
    halo = kernel // 2
    rows = max(1, max_elements // max(1, nc * nc * x.shape[1] * nx))
    blocks = []
    for first in range(0, ny, rows):
        lo, hi = max(0, first - halo), min(ny, first + rows + halo)
        v = _dominant_eigenvectors(x[:, :, lo:hi], kernel, iterations, strongest)
        blocks.append(v[:, :, first - lo : first - lo + min(rows, ny - first)])
    v = torch.cat(blocks, dim=2)
    v = v * torch.exp(-1j * torch.angle(v[strongest])).to(v.dtype)
    return v.reshape(images.shape)


def adaptive_combine(images: torch.Tensor, kernel: int = 7) -> torch.Tensor:
    """Adaptive (Walsh) combination ``sum_c conj(v_c) x_c``: complex, ``[...spatial]``."""
    if images.dim() < 3:
        raise ValueError(f"coil images must be [coil, ..., y, x], got shape {tuple(images.shape)}")
    v = coil_sensitivities(images, kernel)
    return torch.sum(v.conj() * images, dim=0)
