"""Diffusion in the configuration engine: each state damped by its own dephasing history.

Extended phase graphs with diffusion (Weigel, "Extended phase graphs: dephasing, RF pulses, and
echoes - pure and simple", JMRI 41:266 (2015), eqs. 23-25): free diffusion with coefficient
``D`` (m^2/s) damps a configuration state whose wave vector ``k(t)`` (rad/m) runs along a path by
``exp(-D integral |k(t)|^2 dt)``. Each event's moment is played as a constant gradient over the
event's duration (a rectangular lobe), so during event ``e`` a transverse state goes linearly
from ``k`` to ``k + dk`` and is damped by ``exp(-D dt (|k|^2 + k . dk + |dk|^2 / 3))``, exactly;
a longitudinal state does not move and is damped by ``exp(-D dt |k|^2)``. RF pulses are
instantaneous (no diffusion during them).

Keys are cycles per *sequence* FOV, so ``k = 2 pi key / fov`` per axis (rad/m). Summed over the
events since the pulse, a transverse state that left the pulse at ``q`` (rad/m) has

    b(q) = T |q|^2 + 2 q . A + C,     A = sum dt (K_prev + dk / 2),
                                      C = sum dt (|K_prev|^2 + K_prev . dk + |dk|^2 / 3)

with ``T`` the elapsed time and ``K_prev`` the cumulative moment since the pulse before each
event; a longitudinal state has ``b = T |q|^2``. These coefficients are computed for all
repetitions at once, so damping the states is one ``[J, V]`` exponential per use
(:class:`RepetitionDiffusion`), and nothing at all when no voxel diffuses.

**Within a readout** the samples of a repetition are one matrix product over states, so they
share the states' damping up to the repetition's *first* ADC sample (exact for single-sample
readouts and for everything before the readout). What a state diffuses between the first
sample and sample ``n`` is left out. For the state at the k-space centre at sample ``n`` (the
one that dominates it) that is ``b_ro(n) = integral_{t_1}^{t_n} |K(t) - K(t_n)|^2 dt``;
``readout_bound`` gives the largest ``b_ro`` of a sequence (``D_max b_ro`` bounds the relative
error of that state's contribution) and the engine warns when ``D_max b_ro`` exceeds
``READOUT_TOLERANCE``; ``one_event_per_repetition`` gives the exact reference. A 64x64 Cartesian
readout over 200 mm in 5.1 ms (80 us dwell) has ``b_ro`` = 6.6e-3 s/mm^2, i.e. 2e-5 for CSF.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from mrzero.sequences.engines.voxels import VoxelSet
from mrzero.sequences.sequence import INVERSION, Sequence

#: Largest relative error of a sample from the diffusion left out within a readout before the
#: engine warns (see the module docstring).
READOUT_TOLERANCE = 1e-3


@dataclass
class BValue:
    """``b(q) = time |q|^2 + 2 q . linear + constant`` (s/m^2 for ``q`` in rad/m), float64."""

    time: torch.Tensor  # scalar, s
    linear: torch.Tensor  # [3], s rad/m
    constant: torch.Tensor  # scalar, s rad^2/m^2

    def __sub__(self, other: BValue) -> BValue:
        return BValue(self.time - other.time, self.linear - other.linear, self.constant - other.constant)

    def of(self, q: torch.Tensor) -> torch.Tensor:
        """``b`` of the states ``q`` ``[J, 3]`` (rad/m): ``[J]``."""
        return self.time * (q * q).sum(1) + 2 * (q @ self.linear) + self.constant


Damped = tuple[torch.Tensor, torch.Tensor | None]


def _damped(
    x: torch.Tensor,
    g: torch.Tensor | None,
    dims: tuple[int, ...],
    b: BValue,
    q: torch.Tensor,
    scale: torch.Tensor,
    d: torch.Tensor,
) -> Damped:
    """Amplitudes ``x [J, V]`` and their dual amplitudes ``g [len(dims), J, V]`` (or None) times
    ``E = exp(-b(q) D)``, for states at ``q`` ``[J, 3]`` (rad/m, ``scale`` rad/m per key unit).

    The duals (zero-valued; their derivative is ``sum_i f_i dk_i`` over a merged state's members,
    ``sequences/engines/mixing.py``) carry the members' key derivatives, which ``E`` depends on
    too: ``x' = x E + sum_c g_c dE/dk_c`` (adds zero, and the product rule's missing term to the
    derivative) and ``g' = E g``. ``E`` does not depend on tau (column 3).
    """
    e = torch.exp(-b.of(q).to(d.dtype)[:, None] * d[None])
    out = x * e
    if g is None:
        return out, None
    with torch.no_grad():  # only the duals' derivative matters in these products
        e_fixed = e.detach()
        d_e = d[None] * e_fixed  # -dE/db
        slope = (2 * (b.time * q + b.linear) * scale).to(d.dtype)  # db/dk per key column, [J, 3]
    for i, column in enumerate(dims):
        if column < 3:
            out = out - g[i] * (slope[:, column, None] * d_e)
    return out, g * e_fixed


@dataclass
class RepetitionDiffusion:
    """One repetition's diffusion from its pulse: up to its first ADC sample and to its end."""

    to_readout: BValue | None  # None without ADC
    to_end: BValue
    scale: torch.Tensor  # [3] rad/m per cycle/FOV

    def damp(
        self,
        f: torch.Tensor,
        g_f: torch.Tensor | None,
        z: torch.Tensor,
        g_z: torch.Tensor | None,
        key: torch.Tensor,
        dims: tuple[int, ...],
        d: torch.Tensor,
    ) -> tuple[Damped, Damped, Damped]:
        """States right after the pulse (``f``, ``z`` and their duals ``g_f``, ``g_z`` of the key
        columns ``dims``, at the shared keys ``key`` ``[J, 4]``) damped for the readout, and
        ``f`` and ``z`` damped to the repetition's end: ``(f_read, g_read), (f_end, g_end),
        (z_end, gz_end)``. Longitudinal states do not move: ``b = T |q|^2``."""
        q = key[:, :3] * self.scale
        read = (f, g_f)
        if self.to_readout is None:
            end = _damped(f, g_f, dims, self.to_end, q, self.scale, d)
        else:
            read = _damped(f, g_f, dims, self.to_readout, q, self.scale, d)
            end = _damped(*read, dims, self.to_end - self.to_readout, q, self.scale, d)
        still = BValue(
            self.to_end.time, torch.zeros_like(self.to_end.linear), torch.zeros_like(self.to_end.constant)
        )
        return read, end, _damped(z, g_z, dims, still, q, self.scale, d)


def _integrals(
    seq: Sequence, moment: torch.Tensor, duration: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per repetition and event ``[R, E]``, cumulative over the events: time, the integral of
    ``K(t)`` (``[R, E, 3]``) and of ``|K(t)|^2`` (exact for rectangular lobes), and ``K`` at the
    event's end (``[R, E, 3]``, rad/m); ``K`` is the moment since the pulse, float64."""
    dk = moment.double() * _scale(seq)
    dt = duration.double()
    k_end = torch.cumsum(dk, 1)
    k_prev = k_end - dk
    square = (k_prev * k_prev).sum(-1) + (k_prev * dk).sum(-1) + (dk * dk).sum(-1) / 3
    return (
        torch.cumsum(dt, 1),
        torch.cumsum(dt[..., None] * (k_prev + dk / 2), 1),
        torch.cumsum(dt * square, 1),
        k_end,
    )


def _scale(seq: Sequence) -> torch.Tensor:
    """rad/m per cycle/FOV of ``seq``, per axis (float64 ``[3]``)."""
    return 2 * math.pi / torch.tensor(seq.fov, dtype=torch.float64, device=seq.device)


def diffusion_schedule(seq: Sequence, vox: VoxelSet) -> list[RepetitionDiffusion] | None:
    """:class:`RepetitionDiffusion` of every repetition, or None when no voxel diffuses.

    Warns when the diffusion left out within a readout may change a sample by more than
    ``READOUT_TOLERANCE`` (relative; see the module docstring). Refuses sequences marked
    ``joined_gradients``, whose events are not the rectangular lobes this model plays.
    """
    if vox.diffusion is None:
        return None
    if seq.joined_gradients:
        raise ValueError(
            f"{seq.name}: cannot simulate diffusion: its events join the gradient waveforms between "
            "RF centres and samples (a Pulseq import without split_gradients), so its b-values would "
            "be wrong; import with split_gradients=True (mrzero simulate --diffusion) or drop the "
            "phantom's diffusion map"
        )
    worst = readout_bound(seq) * float(vox.diffusion.detach().max())
    if worst > READOUT_TOLERANCE:
        warnings.warn(
            "diffusion within a readout is approximated (samples see each state's damping up to "
            f"the readout's first sample): up to {worst:.1e} relative error here; shorten the "
            "readouts or split them into repetitions to reduce it",
            stacklevel=3,
        )
    time, linear, constant, _ = _integrals(seq, seq.moment, seq.duration)
    has_adc = seq.adc.any(1).tolist()
    first = seq.adc.to(torch.int64).argmax(1).tolist()  # the first ADC event (0 without ADC)
    scale = _scale(seq)

    def at(r: int, e: int) -> BValue:
        return BValue(time[r, e], linear[r, e], constant[r, e])

    return [
        RepetitionDiffusion(at(r, first[r]) if has_adc[r] else None, at(r, -1), scale)
        for r in range(seq.n_rep)
    ]


def readout_bound(seq: Sequence) -> float:
    """Largest ``b_ro`` (s/m^2) of ``seq``: what the state at the k-space centre at an ADC sample
    diffuses between its repetition's first sample and that sample (module docstring)."""
    if not bool(seq.adc.any()):
        return 0.0
    first = seq.adc.to(torch.int64).argmax(1)
    after_first = torch.arange(seq.n_event, device=seq.device)[None] > first[:, None]
    duration = torch.where(after_first, seq.duration.detach(), 0.0)  # time from the first sample on
    time, linear, square, k = _integrals(seq, seq.moment.detach(), duration)
    b = time * (k * k).sum(-1) - 2 * (k * linear).sum(-1) + square  # the state q = -K(t_n)
    return float(torch.where(seq.adc, b, 0.0).max())


def one_event_per_repetition(seq: Sequence) -> Sequence:
    """``seq`` with every event in its own repetition, joined by zero-flip pulses (identities).

    The same signal, but every sample is the first of its repetition, where the damping is
    exact: the reference for the within-readout approximation (slower: one repetition per event).
    """
    if seq.rf_offsets is not None:
        raise ValueError(
            "one_event_per_repetition: sequences with played-out pulses (rf_offsets) are not supported"
        )
    r, e = seq.n_rep, seq.n_event
    flip = torch.zeros(r, e, dtype=seq.flip.dtype, device=seq.device)
    flip[:, 0] = seq.flip
    kind = torch.full((r, e), INVERSION, dtype=torch.int64, device=seq.device)
    kind[:, 0] = seq.rf_kind
    return Sequence(
        flip=flip.reshape(-1),
        rf_phase=seq.rf_phase.repeat_interleave(e),
        duration=seq.duration.reshape(r * e, 1),
        moment=seq.moment.reshape(r * e, 1, 3),
        adc=seq.adc.reshape(r * e, 1),
        adc_phase=seq.adc_phase.repeat_interleave(e),
        rf_kind=kind.reshape(-1),
        fov=seq.fov,
        matrix=seq.matrix,
        name=f"{seq.name}, one event per repetition",
        joined_gradients=seq.joined_gradients,
    )
