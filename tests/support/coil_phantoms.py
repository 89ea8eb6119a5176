"""Synthetic multi-coil Cartesian data: an object of ellipses/ellipsoids and smooth coil maps.

k-space is the closed-form centred orthonormal FFT of ``maps * image`` (``numpy.fft``, not the
code under test), optionally with complex white noise. Coils sit on a ring (2D) or on rings of a
cylinder (3D: 2 rings, 3 from 12 coils) around the object; each map is a smooth complex Gaussian
of the distance to its coil with a linear phase, so that the maps are band-limited enough for a
small calibration region.
"""

from __future__ import annotations

import numpy as np
import torch

#: (centre z, y, x, semi-axes z, y, x, value) in FOV units, a 3D Shepp-Logan-like object.
ELLIPSOIDS = (
    (0.0, 0.0, 0.0, 0.40, 0.45, 0.34, 1.0),
    (0.0, 0.0, 0.0, 0.36, 0.41, 0.31, -0.6),
    (0.05, -0.12, 0.11, 0.15, 0.10, 0.06, 0.3),
    (-0.05, 0.10, -0.12, 0.12, 0.08, 0.10, 0.4),
    (0.0, 0.25, 0.0, 0.10, 0.05, 0.05, 0.2),
    (0.1, -0.2, -0.05, 0.05, 0.04, 0.08, 0.5),
)


def positions(n: int) -> np.ndarray:
    """Pixel centres of an ``n``-pixel axis in FOV units, ``(i - n//2) / n`` (``core/units.py``)."""
    return (np.arange(n) - n // 2) / n


def phantom(shape: tuple[int, int, int]) -> np.ndarray:
    """Complex object ``[nz, ny, nx]`` (for nz = 1 the central slice) with a smooth phase."""
    z, y, x = np.meshgrid(*(positions(n) for n in shape), indexing="ij")
    if shape[0] == 1:
        z = np.zeros_like(z)
    image = np.zeros(shape)
    for cz, cy, cx, az, ay, ax, value in ELLIPSOIDS:
        image += value * ((((z - cz) / az) ** 2 + ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2) <= 1)
    return image * np.exp(1j * np.pi * (0.4 * x - 0.3 * y + 0.2 * z))


def coil_maps(
    coils: int, shape: tuple[int, int, int], radius: float = 0.6, width: float = 0.45
) -> np.ndarray:
    """Smooth complex maps ``[coils, nz, ny, nx]``, normalised so that their rss peaks at 1."""
    z, y, x = np.meshgrid(*(positions(n) for n in shape), indexing="ij")
    rings = 1 if shape[0] == 1 else (3 if coils >= 12 else 2)
    per_ring = -(-coils // rings)
    maps = []
    for c in range(coils):
        ring, k = divmod(c, per_ring)
        angle = 2 * np.pi * (k + 0.5 * ring) / per_ring
        cz = (ring - (rings - 1) / 2) * 0.5
        d2 = (y - radius * np.sin(angle)) ** 2 + (x - radius * np.cos(angle)) ** 2 + (z - cz) ** 2
        phase = angle + np.pi * (0.5 * np.cos(angle) * x + 0.5 * np.sin(angle) * y)
        maps.append(np.exp(-d2 / (2 * width**2)) * np.exp(1j * phase))
    maps = np.stack(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0)).max()


def fftc(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Centred orthonormal forward FFT with NumPy (the reference forward model)."""
    x = np.fft.ifftshift(x, axes=axes)
    return np.fft.fftshift(np.fft.fftn(x, axes=axes, norm="ortho"), axes=axes)


def multicoil_kspace(
    coils: int, shape: tuple[int, int, int], noise: float = 0.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(kspace [coil, nz, ny, nx], image [nz, ny, nx], maps)`` as complex64 torch tensors.

    ``noise`` is the standard deviation of the complex white noise per sample (real and
    imaginary parts each ``noise / sqrt(2)``).
    """
    image, maps = phantom(shape), coil_maps(coils, shape)
    axes = (1, 2, 3) if shape[0] > 1 else (2, 3)
    kspace = fftc(maps * image, axes)
    if noise:
        rng = np.random.default_rng(seed)
        kspace = kspace + noise / np.sqrt(2) * (
            rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
        )
    as_torch = lambda a: torch.from_numpy(a.astype(np.complex64))  # noqa: E731
    return as_torch(kspace), as_torch(image), as_torch(maps)
