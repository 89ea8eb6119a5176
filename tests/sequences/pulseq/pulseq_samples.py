"""Small sequences and phantoms for the Pulseq tests, built directly from the Sequence model."""

from __future__ import annotations

import math

import torch

from mrzero.sequences.phantom import Phantom
from mrzero.sequences.sequence import Sequence


def cartesian_gre(
    n: int = 16, dwell: float = 80e-6, te_fill: float = 2e-3, tr_fill: float = 3e-3
) -> Sequence:
    """RF-spoiled Cartesian GRE: prephase+phase-encode, n readout samples, rewind+spoil, TR fill."""
    r, e = n, n + 3
    dur = torch.zeros(r, e)
    mom = torch.zeros(r, e, 3)
    adc = torch.zeros(r, e, dtype=torch.bool)
    lines = torch.arange(r, dtype=torch.float32) - n // 2
    dur[:, 0], mom[:, 0, 0], mom[:, 0, 1] = te_fill, -(n // 2), lines
    dur[:, 1 : n + 1], mom[:, 1 : n + 1, 0], adc[:, 1 : n + 1] = dwell, 1.0, True
    dur[:, n + 1], mom[:, n + 1, 0], mom[:, n + 1, 1] = 2e-3, 1.5 * n, -lines
    dur[:, n + 2] = tr_fill
    phase = 0.5 * math.radians(117) * torch.arange(r, dtype=torch.float32) ** 2
    return Sequence(
        flip=torch.full((r,), math.radians(15)),
        rf_phase=phase,
        duration=dur,
        moment=mom,
        adc=adc,
        adc_phase=phase.clone(),
        matrix=(n, n, 1),
        name="gre_test",
    )


def radial_gre(n: int = 16, spokes: int = 12, dwell: float = 80e-6) -> Sequence:
    """Radial GRE: oblique readouts (moments on x and y at once) through the k-space centre."""
    e = n + 2
    angle = torch.arange(spokes, dtype=torch.float32) * math.pi / spokes
    direction = torch.stack([torch.cos(angle), torch.sin(angle), torch.zeros(spokes)], dim=-1)
    dur = torch.zeros(spokes, e)
    mom = torch.zeros(spokes, e, 3)
    adc = torch.zeros(spokes, e, dtype=torch.bool)
    dur[:, 0], mom[:, 0] = 2e-3, -(n // 2) * direction
    dur[:, 1 : n + 1], mom[:, 1 : n + 1], adc[:, 1 : n + 1] = dwell, direction[:, None, :], True
    dur[:, n + 1], mom[:, n + 1, 2] = 4e-3, 2.0  # z spoiler: 2 cycles across the 5 mm slab
    return Sequence(
        flip=torch.full((spokes,), math.radians(10)),
        rf_phase=torch.zeros(spokes),
        duration=dur,
        moment=mom,
        adc=adc,
        adc_phase=torch.zeros(spokes),
        matrix=(n, n, 1),
        name="radial_test",
    )


def disc_phantom(n: int = 16) -> Phantom:
    """An off-centre disc with two tissues and a B0 ramp, so that timing and k-space errors show."""
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    inside = ((xx - n / 2) ** 2 + (yy - n / 2 + 1) ** 2) < (0.35 * n) ** 2
    right = xx > n // 2
    pd = inside.float() * (1 + 0.5 * right.float())
    t2 = torch.where(right, 0.05, 0.1)
    return Phantom(
        pd=pd,
        t1=torch.where(right, 0.8, 1.4),
        t2=t2,
        t2dash=torch.full((n, n), 0.04),
        b0=(xx - n // 2).float() * 5.0,
        b1=torch.ones(n, n),
        name="disc",
    )
