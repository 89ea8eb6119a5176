"""Readout oversampling removal: keep the central part of the readout field of view.

Scanners sample the readout with oversampling (typically 2x) to keep aliasing out of the
image; the header says so with an encoded field of view in x larger than the recon one.
Per readout line: inverse FFT to the image domain along x (``mrzero.core.ops.fft.ifftc``), keep
the ``n_out`` central pixels, forward FFT back to k-space. Both transforms are orthonormal, so
the result equals cropping the orthonormal image of the full readout.
"""

from __future__ import annotations

import torch

from mrzero.core.ops.fft import fftc, ifftc


def crop_center(x: torch.Tensor, size: int, dim: int = -1) -> torch.Tensor:
    """The ``size`` central entries of ``x`` along ``dim`` (centre index ``n//2`` stays centre)."""
    n = x.shape[dim]
    if not 0 < size <= n:
        raise ValueError(f"cannot crop {size} entries from an axis of {n}")
    start = n // 2 - size // 2
    return x.narrow(dim, start, size)


def remove_readout_oversampling(lines: torch.Tensor, n_out: int) -> torch.Tensor:
    """Readout lines ``[..., n_samples]`` to ``[..., n_out]`` covering the central FOV."""
    if n_out == lines.shape[-1]:
        return lines
    return fftc(crop_center(ifftc(lines, ndim=1), n_out), ndim=1)
