"""Noise prewhitening: decorrelate and normalise the receiver channels.

From noise-only samples ``n`` ([coil, samples], e.g. the noise-adjust scans) the noise
covariance is ``C = n n^H / (N - 1)``. With its Cholesky factor ``C = L L^H`` the prewhitening
matrix is ``W = s L^{-1}``; applying ``W`` to every sample vector of the image data makes the
channel noise uncorrelated. The scale ``s`` follows Gadgetron's NoiseAdjust convention::

    s = sqrt(2 * dwell_image / dwell_noise * bandwidth)

Noise measured with dwell time ``dwell_noise`` has a variance proportional to its bandwidth
``1 / dwell_noise``; the image data were sampled with ``dwell_image``, so their noise
variance differs by ``dwell_noise / dwell_image``, which ``s`` undoes. ``bandwidth`` is the
relative receiver noise bandwidth (``acquisitionSystemInformation/
relativeReceiverNoiseBandwidth`` in the MRD header, 0.793 when absent, as Gadgetron assumes).
After prewhitening, the image data's noise covariance is ``2 * bandwidth * I`` (variance
``bandwidth`` in each of the real and imaginary parts).
"""

from __future__ import annotations

import math

import torch

#: Relative receiver noise bandwidth assumed when the header does not give one (Gadgetron's value).
DEFAULT_RECEIVER_NOISE_BANDWIDTH = 0.793


def noise_covariance(noise: torch.Tensor) -> torch.Tensor:
    """Sample covariance ``n n^H / (N - 1)`` of noise samples ``[coil, samples]``."""
    if noise.dim() != 2 or noise.shape[1] < 2:
        raise ValueError(f"noise must be [coil, samples] with at least 2 samples, got {tuple(noise.shape)}")
    return noise @ noise.conj().transpose(0, 1) / (noise.shape[1] - 1)


def bandwidth_scale(
    dwell_image_s: float, dwell_noise_s: float, bandwidth: float = DEFAULT_RECEIVER_NOISE_BANDWIDTH
) -> float:
    """Gadgetron's scale ``sqrt(2 * dwell_image / dwell_noise * bandwidth)`` (1 if a dwell is unknown)."""
    if dwell_image_s <= 0 or dwell_noise_s <= 0:
        return 1.0
    if bandwidth <= 0:
        raise ValueError(f"relative receiver noise bandwidth must be positive, got {bandwidth}")
    return math.sqrt(2.0 * dwell_image_s / dwell_noise_s * bandwidth)


def prewhitening_matrix(covariance: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale * L^{-1}`` for the Cholesky factor ``L`` of a noise covariance ``[coil, coil]``."""
    try:
        chol = torch.linalg.cholesky(covariance)
    except RuntimeError as err:  # torch raises LinAlgError (a RuntimeError) for singular input
        raise ValueError("noise covariance is not positive definite (a dead or duplicated channel?)") from err
    eye = torch.eye(covariance.shape[0], dtype=covariance.dtype, device=covariance.device)
    return scale * torch.linalg.solve_triangular(chol, eye, upper=False)


def prewhiten(data: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a prewhitening matrix to data ``[coil, ...]`` (the coil axis first)."""
    if data.shape[0] != matrix.shape[1]:
        raise ValueError(f"data has {data.shape[0]} coils but the noise had {matrix.shape[1]}")
    flat = data.reshape(data.shape[0], -1)
    return (matrix.to(flat.dtype) @ flat).reshape(data.shape)
