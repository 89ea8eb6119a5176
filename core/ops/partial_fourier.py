"""Partial Fourier: the unsampled part of an asymmetrically sampled k-space from its conjugate side.

A real object's k-space is conjugate symmetric, ``s(-k) = conj(s(k))``; MR images are real up
to a smooth phase. Both methods estimate that phase per coil from the *symmetric centre* (the
samples whose point reflection through k = 0 was sampled too), low-pass filtered with a Hann
window over the symmetric extent of each partially sampled axis, and use it to fill what was not
sampled. Works for phase partial Fourier in ky and kz and asymmetric echoes in kx, alone or
together.

Arrays are ``[coil, kz, ky, kx]`` with k = 0 at index ``n // 2`` of each axis (the centred FFT of
``fft.py``); ``sampled`` is a bool mask ``[kz, ky, kx]``, unsampled samples are zero. Both
functions return k-space with the acquired samples unchanged and the unsampled ones filled.

* ``pocs`` (projection onto convex sets; Haacke et al., JMR 1991): alternately impose the
  estimated phase on the image and the acquired samples on k-space.
* ``homodyne`` (Noll et al., IEEE TMI 1991): weight the samples without a sampled conjugate
  partner by 2 and the rest of the symmetric centre by 1, demodulate the phase and keep the
  real part; the filled samples come from that image, the acquired ones stay. It assumes a
  nearly real image after demodulation: with strong linear phase ramps (coil phases) its
  error is larger than POCS's (see the tests).
"""

from __future__ import annotations

import math

import torch

from mrzero.core.ops.fft import fftc, ifftc

__all__ = ["pocs", "homodyne", "reflect", "symmetric", "symmetric_phase"]


def _check(kspace: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    if not isinstance(kspace, torch.Tensor) or not kspace.is_complex() or kspace.dim() != 4:
        raise ValueError("kspace must be a complex tensor [coil, kz, ky, kx] (kz = 1 for 2D)")
    if not isinstance(sampled, torch.Tensor) or sampled.dtype != torch.bool:
        raise ValueError("sampled must be a bool tensor [kz, ky, kx]")
    if tuple(sampled.shape) != tuple(kspace.shape[1:]):
        raise ValueError(
            f"sampled must be [kz, ky, kx] = {list(kspace.shape[1:])}, got {list(sampled.shape)}"
        )
    sampled = sampled.to(kspace.device)
    centre = tuple(n // 2 for n in sampled.shape)
    if not bool(sampled[centre]):
        raise ValueError(
            "k = 0 (index n // 2 of each axis) is not sampled: there is no symmetric centre "
            "to estimate the phase from"
        )
    return sampled


def reflect(x: torch.Tensor) -> torch.Tensor:
    """Point reflection through k = 0 (index ``n // 2``) of the last three dims: ``i -> 2 (n//2) - i``.

    For an even axis the edge sample ``-n/2`` has no partner inside the array; it maps to itself
    (periodic k-space).
    """
    for dim in (-3, -2, -1):
        n = x.shape[dim]
        x = torch.roll(x.flip(dim), 1 - n % 2, dims=dim)
    return x


def _ndim(kspace: torch.Tensor) -> int:
    return 3 if kspace.shape[1] > 1 else 2


def symmetric(sampled: torch.Tensor) -> torch.Tensor:
    """Samples whose conjugate partner was sampled too (the edge ``-n/2`` of an even axis has none)."""
    both = sampled & reflect(sampled)
    for dim in (-3, -2, -1):
        if both.shape[dim] % 2 == 0:
            both = both.index_fill(dim, torch.tensor([0], device=both.device), False)
    return both


def symmetric_phase(kspace: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """Per-coil phase ``[coil, nz, ny, nx]`` of the Hann-filtered symmetric centre of k-space."""
    symmetric_part = symmetric(sampled)
    window = torch.ones(symmetric_part.shape, dtype=torch.float32, device=kspace.device)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        covered = symmetric_part.any(dim=others)
        n = int(covered.numel())
        width = int(covered.sum())
        if width == n:  # fully sampled axis: no filter
            continue
        k = torch.arange(n, device=kspace.device, dtype=torch.float32) - n // 2
        half = width / 2
        hann = torch.where(k.abs() < half, 0.5 * (1 + torch.cos(math.pi * k / half)), 0.0)
        shape = [1, 1, 1]
        shape[axis] = n
        window = window * hann.reshape(shape)
    low = ifftc(kspace * (symmetric_part * window).to(kspace.dtype)[None], _ndim(kspace))
    return torch.angle(low)


def pocs(kspace: torch.Tensor, sampled: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """POCS partial Fourier: ``kspace`` ``[coil, kz, ky, kx]`` with its unsampled part filled."""
    sampled = _check(kspace, sampled)
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    ndim = _ndim(kspace)
    measured = kspace * sampled[None].to(kspace.dtype)
    rotation = torch.polar(torch.ones_like(measured.real), symmetric_phase(measured, sampled))
    keep = sampled[None]
    current = measured
    for _ in range(iterations):
        image = ifftc(current, ndim)
        estimate = fftc(image.abs() * rotation, ndim)
        current = torch.where(keep, measured, estimate)
    return current


def homodyne(kspace: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """Homodyne partial Fourier: ``kspace`` ``[coil, kz, ky, kx]`` with its unsampled part filled."""
    sampled = _check(kspace, sampled)
    ndim = _ndim(kspace)
    measured = kspace * sampled[None].to(kspace.dtype)
    rotation = torch.polar(torch.ones_like(measured.real), symmetric_phase(measured, sampled))
    weight = sampled.to(torch.float32) * (2 - symmetric(sampled).to(torch.float32))
    image = ifftc(measured * weight[None].to(kspace.dtype), ndim)
    real = (image * rotation.conj()).real
    estimate = fftc(real * rotation, ndim)
    return torch.where(sampled[None], measured, estimate)
