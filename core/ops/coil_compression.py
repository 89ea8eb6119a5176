"""SVD coil compression (Buehrer et al., MRM 2007; Huang et al., MRI 2008).

Many-channel receive arrays (32-64 channels) carry far fewer independent spatial profiles than
channels. The left singular vectors of the calibration data ``[coil, samples]`` ordered by
singular value give the linear combinations of channels ("virtual coils") that hold the most
energy; keeping the first ``n_virtual`` shrinks every later operation (GRAPPA kernel size,
SENSE FFTs) by ``coil / n_virtual`` at a small loss. The rows of the matrix are orthonormal, so
white noise stays white and of the same variance (prewhiten before compressing).
"""

from __future__ import annotations

import torch

__all__ = ["compression_matrix", "compress", "retained_energy"]


def _check_data(name: str, data: torch.Tensor) -> None:
    if not isinstance(data, torch.Tensor) or not data.is_complex() or data.dim() < 2:
        raise ValueError(f"{name} must be a complex tensor [coil, ...] with at least 2 dims")


def compression_matrix(calibration: torch.Tensor, n_virtual: int) -> torch.Tensor:
    """The ``[n_virtual, coil]`` matrix with orthonormal rows from the SVD of ``calibration`` ``[coil, ...]``.

    Each row's phase is fixed so that its largest entry is real and positive (deterministic
    output for identical input).
    """
    _check_data("calibration", calibration)
    nc = calibration.shape[0]
    if not isinstance(n_virtual, int) or not 1 <= n_virtual <= nc:
        raise ValueError(f"n_virtual must be an integer between 1 and the {nc} coils, got {n_virtual!r}")
    flat = calibration.reshape(nc, -1)
    if flat.shape[1] < n_virtual:
        raise ValueError(
            f"the calibration data have {flat.shape[1]} samples per coil, fewer than "
            f"the {n_virtual} virtual coils asked for"
        )
    cov = (flat @ flat.conj().T).to(torch.complex128)
    evals, evecs = torch.linalg.eigh(cov)  # ascending; covariance = U S^2 U^H
    if not float(evals[-1]) > 0:
        raise ValueError("the calibration data are zero: no compression can be computed")
    u = evecs.flip(1)[:, :n_virtual]  # [coil, n_virtual]
    peak = u.gather(0, u.abs().argmax(dim=0, keepdim=True))
    u = u * (peak.conj() / peak.abs())
    return u.conj().T.to(calibration.dtype)


def compress(data: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``matrix @ data`` along dim 0: ``[coil, ...]`` -> ``[n_virtual, ...]``."""
    _check_data("data", data)
    if matrix.dim() != 2 or matrix.shape[1] != data.shape[0]:
        raise ValueError(
            f"matrix must be [n_virtual, {data.shape[0]}] for data of {data.shape[0]} coils, "
            f"got {list(matrix.shape)}"
        )
    out = matrix.to(device=data.device, dtype=data.dtype) @ data.reshape(data.shape[0], -1)
    return out.reshape(matrix.shape[0], *data.shape[1:])


def retained_energy(calibration: torch.Tensor, n_virtual: int) -> float:
    """Fraction of the calibration data's energy in its first ``n_virtual`` virtual coils."""
    _check_data("calibration", calibration)
    flat = calibration.reshape(calibration.shape[0], -1)
    s2 = torch.linalg.svdvals(flat.to(torch.complex128)) ** 2
    return float(s2[:n_virtual].sum() / s2.sum())
