"""Radial spoiled gradient echo: full spokes through the k-space centre, golden-angle or uniform."""

from __future__ import annotations

import math

import torch

from mrzero.sequences.builders.blocks import (
    GOLDEN_ANGLE,
    RF_SPOIL_INCREMENT,
    Draft,
    check_matrix,
    gre_echoes,
    rf_spoil_phases,
)
from mrzero.sequences.sequence import Sequence

ANGLE_SCHEMES = ("golden", "uniform")


def spoke_angles(spokes: int, scheme: str = "golden") -> torch.Tensor:
    """Spoke angles (rad, from +x towards +y): ``golden`` steps of 180 deg / golden ratio (~111.25 deg),
    ``uniform`` ``pi * j / spokes`` (full spokes cover 180 deg)."""
    if scheme not in ANGLE_SCHEMES:
        raise ValueError(f"spoke angle scheme {scheme!r} unknown; choose one of {ANGLE_SCHEMES}")
    j = torch.arange(spokes, dtype=torch.float64)
    step = GOLDEN_ANGLE if scheme == "golden" else math.pi / spokes
    return torch.remainder(j * step, 2 * math.pi)


def radial_gre(
    matrix: int = 48,
    spokes: int | None = None,
    angles: str = "golden",
    te: float = 3e-3,
    tr: float = 20e-3,
    flip: float = math.radians(25),
    dwell: float = 50e-6,
    spoiler: float = 1.5,
    rf_spoiling: bool = True,
    rf_increment: float = RF_SPOIL_INCREMENT,
    fov: float = 0.2,
    slice_thickness: float = 5e-3,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Sequence:
    """2D radial spoiled GRE: ``spokes`` (default ``matrix``) spokes of ``matrix`` samples over ``fov`` (m).

    Defaults follow the seed's radial target (MRzero Fig. S2): matrix 48, TE 3 ms, TR 20 ms,
    flip 25 deg (``flip`` in rad); readout dwell 50 us. Spoke ``j`` samples ``(i - matrix/2) u_j``
    cycles/FOV with ``u_j = (cos a_j, sin a_j)`` (``spoke_angles``), k = 0 at sample ``matrix/2``
    and TE; RF spoiling and the ``spoiler`` (cycles per pixel, along x, the same every TR) as in
    ``flash``. The readout layout numbers spokes as lines.
    """
    check_matrix("radial_gre", matrix, dwell, fov)
    spokes = matrix if spokes is None else int(spokes)
    if spokes < 1:
        raise ValueError(f"radial_gre: spokes must be at least 1, got {spokes}")
    theta = spoke_angles(spokes, angles)
    draft = Draft(spokes, matrix + 2)
    phases = rf_spoil_phases(spokes, rf_increment) if rf_spoiling else torch.zeros(spokes)
    for r in range(spokes):
        draft.rf(r, flip, float(phases[r]))
        u = (math.cos(float(theta[r])), math.sin(float(theta[r])))
        gre_echoes(draft, "radial_gre", r, matrix, dwell, [te], tr, u=u, spoiler=spoiler * matrix, line=r)
    return draft.build(
        f"radial {spokes} spokes x {matrix}", fov, matrix, slice_thickness, dwell, "radial", dtype, device
    )
