"""Cartesian spoiled gradient echo (FLASH) with gradient and RF spoiling."""

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


def flash(
    matrix: int = 48,
    te: float = 3e-3,
    tr: float = 20e-3,
    flip: float = math.radians(5),
    order: str = "linear",
    dwell: float = 50e-6,
    spoiler: float = 1.5,
    rf_spoiling: bool = True,
    rf_increment: float = RF_SPOIL_INCREMENT,
    fov: float = 0.2,
    slice_thickness: float = 5e-3,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Sequence:
    """2D Cartesian spoiled GRE: ``matrix`` x ``matrix`` over ``fov`` (m), one line per repetition.

    Defaults are the seed's GRE target (MRzero Fig. 2/6): matrix 48, TE 3 ms, TR 20 ms, flip 5 deg
    (``flip`` in rad), FOV 200 mm, 5 mm slice, readout dwell 50 us (20 kHz per FOV). Each
    repetition: RF (quadratic RF-spoiling phase with ``rf_increment``, ADC phase following it,
    or phase 0 with ``rf_spoiling=False``); prewinder to (-matrix/2 - 1, ky); ``matrix`` ADC events
    of one cycle/FOV each, the echo centre (k = 0) at TE; rewinder of ky and of the readout plus a
    readout-axis spoiler of ``spoiler`` cycles per pixel (``spoiler * matrix`` cycles/FOV), lasting
    until TR. ``order`` is ``linear`` or ``centric`` (see ``blocks.phase_order``).
    """
    check_matrix("flash", matrix, dwell, fov)
    lines = phase_order(matrix, order)
    draft = Draft(matrix, matrix + 2)
    phases = rf_spoil_phases(matrix, rf_increment) if rf_spoiling else torch.zeros(matrix)
    for r, ky in enumerate(lines):
        draft.rf(r, flip, float(phases[r]))
        gre_echoes(
            draft,
            "flash",
            r,
            matrix,
            dwell,
            [te],
            tr,
            k0=(0.0, float(ky)),
            spoiler=spoiler * matrix,
            line=ky + matrix // 2,
        )
    return draft.build(
        f"flash {matrix}x{matrix}", fov, matrix, slice_thickness, dwell, "cartesian", dtype, device
    )
