"""Smooth synthetic receive-coil sensitivities for simulated multi-coil data.

Two models on a 2D grid (positions in FOV units, see ``core/units.py``):

``loops``     each coil is a rectangular loop parallel to the slice normal, seen in-plane as
              two antiparallel wires on a ring around the object; the in-plane Biot-Savart
              field of a wire at ``c`` is ``i / conj(p - c)`` (complex ``Bx + i By``, falling
              as 1/r), and the receive sensitivity is its complex conjugate;
``gaussian``  a birdcage-like ring of Gaussian magnitude profiles with a phase equal to the
              coil's angle.

Maps are normalised to unit root-sum-of-squares in every voxel, so an RSS coil combination
returns the object itself and the total received power does not depend on ``n_coils``.
"""

from __future__ import annotations

import math

import torch

KINDS = ("loops", "gaussian")


def coil_sensitivities(
    shape: tuple[int, int],
    n_coils: int = 8,
    kind: str = "loops",
    radius: float = 0.8,
    width: float = 0.25,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.complex64,
) -> torch.Tensor:
    """Complex sensitivities ``[n_coils, ny, nx]`` of coils spaced evenly on a ring of ``radius`` (FOV units).

    ``width`` is the loop width (``loops``) or the Gaussian's standard deviation
    (``gaussian``), in FOV units. The first coil sits at the top of the image (anterior).
    """
    if n_coils < 1:
        raise ValueError(f"n_coils must be at least 1, got {n_coils}")
    if kind not in KINDS:
        raise ValueError(f"coil kind {kind!r} unknown; choose one of {KINDS}")
    if radius <= 0 or width <= 0:
        raise ValueError(f"radius and width must be positive (FOV units), got {radius}, {width}")
    ny, nx = shape
    y = (torch.arange(ny, dtype=torch.float64, device=device) - ny // 2) / ny
    x = (torch.arange(nx, dtype=torch.float64, device=device) - nx // 2) / nx
    p = torch.complex(x[None, :].expand(ny, nx), y[:, None].expand(ny, nx))  # x + i y
    angles = -math.pi / 2 + 2 * math.pi * torch.arange(n_coils, dtype=torch.float64, device=device) / n_coils
    centre = radius * torch.exp(1j * angles)[:, None, None]
    if kind == "loops":
        tangent = 1j * torch.exp(1j * angles)[:, None, None] * width / 2
        field = 1j / torch.conj(p - (centre + tangent)) - 1j / torch.conj(p - (centre - tangent))
        sens = torch.conj(field)
    else:
        magnitude = torch.exp(-((p - centre).abs() ** 2) / (2 * width**2))
        sens = magnitude * torch.exp(1j * angles)[:, None, None]
    sens = sens / torch.sqrt((sens.abs() ** 2).sum(0, keepdim=True))
    return sens.to(dtype)
