"""The instantaneous RF rotation in the sign convention of ``core/units.py``.

A pulse of flip ``a`` (already scaled by B1) and phase ``phi`` rotates M about
``(cos phi, sin phi, 0)`` so that equilibrium becomes ``Mxy = i sin(a) e^{i phi}``. Written on
the complex transverse magnetisation (Rodrigues' formula with angle ``-a``):

    Mxy' = cos^2(a/2) Mxy + e^{2 i phi} sin^2(a/2) conj(Mxy) + i e^{i phi} sin(a) Mz
    Mz'  = cos(a) Mz - sin(a) Im(e^{-i phi} Mxy)

The same coefficients act on configuration-state amplitudes, where ``conj(Mxy)`` is the state
with negated dephasing.

**Pulses as played out** (``Sequence.rf_offsets``): a pulse of frequency ``f`` (Hz, relative to
the receiver) acts on a voxel precessing at ``b0`` (Hz, chemical shift included) with the
detuning ``d = b0 - f``. Its shape (``S`` steps of ``T / S``; one step: a hard pulse) is
integrated with one closed-form rotation per step: free precession is a rotation by
``-2 pi d dt`` about z and the RF one by ``-a_s`` about ``(cos phi_s, sin phi_s, 0)``, so a step
rotates by ``-|v|`` about ``v = (a_s cos phi_s, a_s sin phi_s, 2 pi d dt)`` (Rodrigues). Relaxation,
T2' spreads and gradients during the pulse are ignored. The engines place the pulse at its
centre and apply free precession up to and from the centre themselves, so the instantaneous
rotation is ``M = P(T/2)^-1 R P(T/2)^-1``: with ``psi = pi d T`` and the 3x3 matrix ``R``,

    keep   = (R00 + R11 + i (R10 - R01)) e^{2 i psi} / 2     conj  = (R00 - R11 + i (R10 + R01)) / 2
    excite = (R02 + i R12) e^{i psi}                         store = (R20 - i R21) e^{i psi} / 2
    cos    = R22

which is the formula above for ``d = 0`` (or ``T = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from mrzero.sequences.engines.voxels import VoxelSet
from mrzero.sequences.sequence import Sequence


@dataclass
class RfCoefficients:
    """Complex coefficients of the rotation, each broadcastable to the magnetisation."""

    keep: torch.Tensor  # cos^2(a/2)                    Mxy -> Mxy
    conj: torch.Tensor  # e^{2i phi} sin^2(a/2)          conj(Mxy) -> Mxy
    excite: torch.Tensor  # i e^{i phi} sin(a)           Mz -> Mxy
    store: torch.Tensor  # (i/2) e^{-i phi} sin(a)       Mxy -> Mz (and its conjugate for conj(Mxy))
    cos: torch.Tensor  # cos(a)                          Mz -> Mz


def rf_coefficients(flip: torch.Tensor, phase: torch.Tensor) -> RfCoefficients:
    """Coefficients for flips ``flip`` (rad, any shape) with phase ``phase`` (rad, broadcastable)."""
    half = 0.5 * flip
    sin = torch.sin(flip)
    e = torch.polar(torch.ones_like(phase), phase)
    return RfCoefficients(
        keep=(torch.cos(half) ** 2).to(e.dtype),
        conj=e * e * torch.sin(half) ** 2,
        excite=1j * e * sin,
        store=0.5j * e.conj() * sin,
        cos=torch.cos(flip),
    )


def _step_rotation(vx: torch.Tensor, vy: torch.Tensor, vz: torch.Tensor) -> list[list[torch.Tensor]]:
    """Rows of the rotation by ``-|v|`` about ``v`` (right-handed), elementwise over broadcast tensors."""
    norm = torch.sqrt(vx * vx + vy * vy + vz * vz + 1e-30)
    nx, ny, nz = vx / norm, vy / norm, vz / norm
    c, s = torch.cos(norm), -torch.sin(norm)
    big_c = 1 - c
    return [
        [c + nx * nx * big_c, nx * ny * big_c - nz * s, nx * nz * big_c + ny * s],
        [ny * nx * big_c + nz * s, c + ny * ny * big_c, ny * nz * big_c - nx * s],
        [nz * nx * big_c - ny * s, nz * ny * big_c + nx * s, c + nz * nz * big_c],
    ]


def _product(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    return [[a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j] for j in range(3)] for i in range(3)]


def played_coefficients(
    flip: torch.Tensor,
    phase: torch.Tensor,
    detuning: torch.Tensor,
    duration: torch.Tensor,
    shape: torch.Tensor | None = None,
) -> RfCoefficients:
    """Coefficients of a pulse of ``duration`` (s) at ``detuning`` (Hz), broadcast together; see the
    module docstring. ``shape``: ``[..., S]`` complex step weights summing to 1 (the share of the
    pulse's area in each of ``S`` equal steps), broadcast like the others without the last axis;
    None: a hard pulse. A duration of 0 is the instantaneous, on-resonance rotation."""
    weights = [None] if shape is None else list(shape.unbind(-1))
    dt = duration / len(weights)
    vz = 2 * torch.pi * detuning * dt
    total = None
    for w in weights:
        angle = flip if w is None else flip * w.abs()
        step_phase = phase if w is None else phase + torch.angle(w)
        step = _step_rotation(angle * torch.cos(step_phase), angle * torch.sin(step_phase), vz)
        total = step if total is None else _product(step, total)
    r = total
    psi = torch.polar(torch.ones_like(vz), torch.pi * detuning * duration)
    return RfCoefficients(
        keep=torch.complex(r[0][0] + r[1][1], r[1][0] - r[0][1]) * psi * psi / 2,
        conj=torch.complex(r[0][0] - r[1][1], r[1][0] + r[0][1]) / 2,
        excite=torch.complex(r[0][2], r[1][2]) * psi,
        store=torch.complex(r[2][0], -r[2][1]) * psi / 2,
        cos=r[2][2],
    )


def sequence_coefficients(seq: Sequence, vox: VoxelSet) -> RfCoefficients:
    """Coefficients ``[R, V]`` of every pulse of ``seq`` in every voxel (flip scaled by B1; the
    pulses of non-zero duration in ``seq.rf_offsets`` played out at each voxel's off-resonance,
    the others instantaneous)."""
    flip, phase = seq.flip[:, None] * vox.b1[None], seq.rf_phase[:, None]
    instantaneous = rf_coefficients(flip, phase.expand_as(flip))
    if seq.rf_offsets is None:
        return instantaneous
    offsets = seq.rf_offsets.to(seq.device, seq.flip.dtype)
    rows = torch.nonzero(offsets.duration > 0).reshape(-1)
    if rows.numel() == 0:
        return instantaneous
    detuning = vox.b0[None] - offsets.frequency[rows, None]
    shape = None if offsets.shape is None else offsets.shape[rows, None, :]
    played = played_coefficients(flip[rows], phase[rows], detuning, offsets.duration[rows, None], shape)
    merged = {}
    for f in fields(RfCoefficients):
        base, value = getattr(instantaneous, f.name), getattr(played, f.name)
        merged[f.name] = base.to(value.dtype).index_put((rows,), value.expand(len(rows), -1))
    return RfCoefficients(**merged)


def row(c: RfCoefficients, r: int) -> RfCoefficients:
    """Repetition ``r`` of ``[R, V]`` coefficients as ``[V, 1]`` (broadcast over spins)."""
    return RfCoefficients(*(getattr(c, f.name)[r, :, None] for f in fields(RfCoefficients)))


def rotate(mxy: torch.Tensor, mz: torch.Tensor, c: RfCoefficients) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate isochromats: complex ``mxy`` and real ``mz`` of the same shape."""
    new_xy = c.keep * mxy + c.conj * mxy.conj() + c.excite * mz
    # Mz' = cos Mz - sin Im(e^{-i phi} Mxy) = cos Mz + 2 Re(store * Mxy)
    new_z = c.cos * mz + 2.0 * (c.store * mxy).real
    return new_xy, new_z
