"""The instantaneous RF rotation in the sign convention of ``core/units.py``.

A pulse of flip ``a`` (already scaled by B1) and phase ``phi`` rotates M about
``(cos phi, sin phi, 0)`` so that equilibrium becomes ``Mxy = i sin(a) e^{i phi}``. Written on
the complex transverse magnetisation (Rodrigues' formula with angle ``-a``):

    Mxy' = cos^2(a/2) Mxy + e^{2 i phi} sin^2(a/2) conj(Mxy) + i e^{i phi} sin(a) Mz
    Mz'  = cos(a) Mz - sin(a) Im(e^{-i phi} Mxy)

The same coefficients act on configuration-state amplitudes, where ``conj(Mxy)`` is the state
with negated dephasing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


def rotate(mxy: torch.Tensor, mz: torch.Tensor, c: RfCoefficients) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate isochromats: complex ``mxy`` and real ``mz`` of the same shape."""
    new_xy = c.keep * mxy + c.conj * mxy.conj() + c.excite * mz
    # Mz' = cos Mz - sin Im(e^{-i phi} Mxy) = cos Mz + 2 Re(store * Mxy)
    new_z = c.cos * mz + 2.0 * (c.store * mxy).real
    return new_xy, new_z
