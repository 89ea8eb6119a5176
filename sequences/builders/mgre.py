"""Multi-echo spoiled gradient echo (mGRE) for R2* mapping (RoAR), monopolar readouts."""

from __future__ import annotations

import math

import torch

from mrzero.sequences.builders.blocks import (
    RF_SPOIL_INCREMENT,
    Draft,
    check_matrix,
    gre_echoes,
    phase_order,
    rf_spoil_phases,
)
from mrzero.sequences.sequence import Sequence


def mgre(
    matrix: int = 64,
    n_echoes: int = 10,
    te_first: float = 4e-3,
    echo_spacing: float = 4e-3,
    tr: float = 50e-3,
    flip: float = math.radians(30),
    order: str = "linear",
    dwell: float = 30e-6,
    spoiler: float = 1.5,
    rf_spoiling: bool = True,
    rf_increment: float = RF_SPOIL_INCREMENT,
    fov: float = 0.2,
    slice_thickness: float = 2e-3,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Sequence:
    """2D Cartesian multi-gradient-echo: per line ``n_echoes`` readouts at TE = te_first + j * echo_spacing.

    Defaults are RoAR's protocol: 10 echoes, TE 4, 8, ..., 40 ms, TR 50 ms, flip 30 deg
    (``flip`` in rad), monopolar readouts (a flyback of ``-matrix`` cycles/FOV between echoes),
    here 2D with matrix 64, FOV 200 mm, 2 mm slice and dwell 30 us (so a 128-sample readout
    still fits the 4 ms spacing). Echo ``j`` of every line is ``contrast = j`` in the readout
    layout; the rest (prewinder, spoiling, order) is as in ``flash``.
    """
    check_matrix("mgre", matrix, dwell, fov)
    if n_echoes < 1:
        raise ValueError(f"mgre: n_echoes must be at least 1, got {n_echoes}")
    tes = [te_first + j * echo_spacing for j in range(n_echoes)]
    lines = phase_order(matrix, order)
    draft = Draft(matrix, n_echoes * (matrix + 1) + 1)
    phases = rf_spoil_phases(matrix, rf_increment) if rf_spoiling else torch.zeros(matrix)
    for r, ky in enumerate(lines):
        draft.rf(r, flip, float(phases[r]))
        gre_echoes(
            draft,
            "mgre",
            r,
            matrix,
            dwell,
            tes,
            tr,
            k0=(0.0, float(ky)),
            spoiler=spoiler * matrix,
            line=ky + matrix // 2,
        )
    return draft.build(
        f"mgre {matrix}x{matrix} {n_echoes} echoes",
        fov,
        matrix,
        slice_thickness,
        dwell,
        "cartesian",
        dtype,
        device,
    )
