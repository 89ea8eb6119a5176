"""Centred orthonormal FFT and inverse FFT over the last 1, 2 or 3 dimensions.

With the sign convention of ``core/units.py`` (the signal is the forward Fourier
transform of the magnetisation, pixel ``i`` of ``n`` at ``(i - n//2)/n``), ``ifftc`` is the
adjoint ``E^H`` of a fully sampled Cartesian encoding and ``fftc`` its forward ``E``: both are
``ifftshift -> (i)fft(norm="ortho") -> fftshift`` over the chosen axes. They are plain torch
functions, so they are differentiable and run on any device.
"""

from __future__ import annotations

import torch


def _axes(x: torch.Tensor, ndim: int) -> tuple[int, ...]:
    if ndim not in (1, 2, 3):
        raise ValueError(f"centred FFT works over the last 1, 2 or 3 dimensions, not {ndim}")
    if x.dim() < ndim:
        raise ValueError(f"a tensor of shape {tuple(x.shape)} has fewer than {ndim} dimensions")
    return tuple(range(-ndim, 0))


def fftc(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Image -> k-space: centred orthonormal forward FFT over the last ``ndim`` dimensions."""
    axes = _axes(x, ndim)
    x = torch.fft.ifftshift(x, dim=axes)
    return torch.fft.fftshift(torch.fft.fftn(x, dim=axes, norm="ortho"), dim=axes)


def ifftc(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """k-space -> image: centred orthonormal inverse FFT over the last ``ndim`` dimensions."""
    axes = _axes(x, ndim)
    x = torch.fft.ifftshift(x, dim=axes)
    return torch.fft.fftshift(torch.fft.ifftn(x, dim=axes, norm="ortho"), dim=axes)
