"""Single-shot RARE / turbo spin echo with CPMG phases."""

from __future__ import annotations

import math

import torch

from mrzero.sequences.builders.blocks import Draft, check_matrix, phase_order
from mrzero.sequences.sequence import REFOCUSING, Sequence


def rare(
    matrix: int = 96,
    echo_spacing: float = 6e-3,
    flip_excitation: float = math.pi / 2,
    flip_refocusing: float = math.pi,
    order: str = "linear",
    dwell: float = 50e-6,
    fov: float = 0.2,
    slice_thickness: float = 5e-3,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Sequence:
    """2D single-shot RARE: one excitation, then ``matrix`` refocusing pulses, one phase-encoded line each.

    Defaults are the seed's RARE target (MRzero Fig. 4/5): matrix 96, echo spacing 6 ms
    (TA = 96 x 6 ms ~ 0.59 s), excitation 90 deg, refocusing 180 deg (flips in rad), FOV 200 mm,
    dwell 50 us. CPMG: the excitation has phase 0 (M along +y), the refocusing pulses phase
    90 deg (about +y, parallel to M) and ``rf_kind`` REFOCUSING; the ADC phase is 90 deg so
    an on-resonance echo is real and positive.

    Repetition 0 (excitation) lasts ``echo_spacing / 2`` with a readout pre-phaser of
    ``matrix/2 + 1`` cycles/FOV, which the first refocusing pulse negates. Repetition ``j + 1``
    holds echo ``j`` at TE = (j + 1) * echo_spacing: phase encoding, ``matrix`` samples with
    k = 0 (the spin echo) ``echo_spacing / 2`` after the pulse, then rewinding of ky and a
    readout moment that restores the pre-phaser for the next pulse. ``order``: ``linear`` or
    ``centric`` (then the first echo, TE = echo_spacing, sets the contrast).
    """
    check_matrix("rare", matrix, dwell, fov)
    n, half = matrix, matrix // 2
    lead = echo_spacing / 2 - (half + 1) * dwell
    trail = echo_spacing / 2 - (n - 1 - half) * dwell
    if min(lead, trail) < 0:
        raise ValueError(
            f"rare: echo spacing {echo_spacing * 1e3:.2f} ms cannot hold a {n}-sample readout "
            f"of {dwell * 1e6:.0f} us dwell around its centre; raise it to at least "
            f"{2 * (half + 1) * dwell * 1e3:.2f} ms or shorten the dwell time"
        )
    draft = Draft(n + 1, n + 2)
    draft.rf(0, flip_excitation, 0.0)
    draft.event(0, 0, echo_spacing / 2, (half + 1.0, 0.0))
    for j, ky in enumerate(phase_order(n, order)):
        r = j + 1
        draft.rf(r, flip_refocusing, math.pi / 2, REFOCUSING)
        draft.adc_phase[r] = math.pi / 2
        draft.event(r, 0, lead, (0.0, float(ky)))
        draft.readout(r, 1, n, dwell, (1.0, 0.0), line=ky + half)
        draft.event(r, n + 1, trail, (2 * (half + 1.0) - n, -float(ky)))
    return draft.build(f"rare {n}x{n}", fov, matrix, slice_thickness, dwell, "cartesian", dtype, device)
