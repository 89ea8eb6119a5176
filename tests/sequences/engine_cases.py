"""Small sequences and phantoms for the engine tests, built directly from event lists."""

from __future__ import annotations

import math

import torch

from mrzero.sequences.phantom import Phantom
from mrzero.sequences.sequence import Sequence

#: Per-engine options that make a one-voxel isochromat simulation converged enough.
ENGINE_OPTIONS = {"fast": {}, "isochromat": {"spins": 1024}}

Event = tuple[float, tuple[float, float, float], bool]  # duration (s), moment (cycles/FOV), adc


def one_voxel(
    pd: float = 1.0, t1: float = 1.0, t2: float = 0.1, t2dash: float = 0.0, b0: float = 0.0, b1: float = 1.0
) -> Phantom:
    """A 1x1 phantom: its voxel spans the whole FOV, so m cycles/FOV dephase it by m cycles."""

    def full(v: float) -> torch.Tensor:
        return torch.full((1, 1), float(v))

    return Phantom(pd=full(pd), t1=full(t1), t2=full(t2), t2dash=full(t2dash), b0=full(b0), b1=full(b1))


def build(
    reps: list[tuple[float, float, list[Event]]],
    adc_phase: list[float] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Sequence:
    """A sequence from ``(flip rad, rf phase rad, events)`` per repetition, padded with empty events."""
    n_event = max(len(ev) for _, _, ev in reps)
    r = len(reps)
    duration = torch.zeros(r, n_event, dtype=torch.float64)
    moment = torch.zeros(r, n_event, 3, dtype=torch.float64)
    adc = torch.zeros(r, n_event, dtype=torch.bool)
    for i, (_, _, events) in enumerate(reps):
        for e, (d, m, a) in enumerate(events):
            duration[i, e], moment[i, e], adc[i, e] = d, torch.tensor(m, dtype=torch.float64), a
    flip = torch.tensor([f for f, _, _ in reps], dtype=torch.float64)
    phase = torch.tensor([p for _, p, _ in reps], dtype=torch.float64)
    adc_ph = phase.clone() if adc_phase is None else torch.tensor(adc_phase, dtype=torch.float64)
    return Sequence(
        flip=flip.to(dtype),
        rf_phase=phase.to(dtype),
        duration=duration.to(dtype),
        moment=moment.to(dtype),
        adc=adc,
        adc_phase=adc_ph.to(dtype),
    )


def spoiled_gre_fid(n: int, flip: float, tr: float, increment_deg: float = 117.0) -> Sequence:
    """RF-spoiled FID sampling: sample right after each pulse, then a 1 cycle/FOV spoiler over TR."""
    phases = [math.radians(increment_deg) * k * (k + 1) / 2 for k in range(n)]
    reps = [(flip, p, [(0.0, (0.0, 0.0, 0.0), True), (tr, (1.0, 0.0, 0.0), False)]) for p in phases]
    return build(reps)


def bssfp(n: int, flip: float, tr: float) -> Sequence:
    """Balanced SSFP, alternating RF phase, sample at TE = TR/2, after an alpha/2 - TR/2 start."""
    reps = [(flip / 2, math.pi, [(tr / 2, (0.0, 0.0, 0.0), False)])]
    reps += [
        (flip, math.pi * (k % 2), [(tr / 2, (0.0, 0.0, 0.0), True), (tr / 2, (0.0, 0.0, 0.0), False)])
        for k in range(n)
    ]
    return build(reps)


def cartesian_gre(
    n: int,
    flip: float = math.radians(15),
    tr: float = 10e-3,
    te: float = 5e-3,
    dwell: float = 50e-6,
    dtype: torch.dtype = torch.float32,
) -> Sequence:
    """2D Cartesian RF- and gradient-spoiled GRE, ``n`` lines of ``n`` samples, linear order.

    Events: prewinder (to kx = -n/2 - 1, ky), ``n`` samples of one cycle/FOV each (TE at the
    k-space centre), then the rewinder of ky with a spoiler of ``n`` cycles/FOV (one cycle per
    voxel) along x over the rest of TR.
    """
    pre = te - (n // 2 + 1) * dwell
    post = tr - te - (n - n // 2 - 1) * dwell
    if pre < 0 or post < 0:
        raise ValueError("TE/TR too short for the readout")
    reps = []
    for line in range(n):
        ky = float(line - n // 2)
        phase = math.radians(117.0) * line * (line + 1) / 2
        events = [(pre, (-(n // 2 + 1.0), ky, 0.0), False)] + [(dwell, (1.0, 0.0, 0.0), True)] * n
        events.append((post, (float(n), -ky, 0.0), False))
        reps.append((flip, phase, events))
    return build(reps, dtype=dtype)
