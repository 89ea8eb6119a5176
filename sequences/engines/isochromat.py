"""Engine 1: isochromats, the seed's Algorithm 1 vectorised over voxels x spins.

Each voxel holds ``spins`` isochromats spread deterministically over the voxel's extent and over
a Lorentzian off-resonance distribution of half width ``1/(2 pi T2')`` (whose ensemble average
decays as ``exp(-|t|/T2')``). Per repetition: one instantaneous flip (scaled by B1), then every
event relaxes (T2, T1 recovery to PD), precesses by B0 + the spin's T2' offset, precesses by the
gradient moment at the spin's position, and samples. The events of a repetition are fused: all
samples come from one tensor expression over the cumulative moments and times.

Spin placement (chosen to converge fast, without random noise): the x offset is stratified,
``(s + 1/2)/S - 1/2``, so a dephasing of ``m`` whole cycles per voxel along x cancels exactly for
``0 < |m| < S``; the Lorentzian quantiles are stratified too (one per stratum of probability
``1/S``, shifted within the strata by a different amount in each voxel) and paired with x as a
Hammersley set (base-2 radical inverse); y and z come from the additive recurrence with the plastic number (a
low-discrepancy Kronecker sequence). The Lorentzian's heavy tails make one voxel's quantile sum
converge slowly (about 0.3 % of M0 with 4096 spins at t <= 5 T2'); the per-voxel shifts keep
those errors from adding up coherently across voxels in the signal.

Diffusion is not simulated: the spins sit at fixed positions, and a random walk would need
many more spins and time steps than the dephasing they resolve. A phantom whose diffusion map
is non-zero is refused with an error (the fast engine simulates it, ``diffusion.py``).
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from mrzero.sequences.engines.rf import RfCoefficients, rf_coefficients, rotate, row, sequence_coefficients
from mrzero.sequences.engines.timeline import Repetition, repetitions
from mrzero.sequences.engines.voxels import VoxelSet
from mrzero.sequences.sequence import Sequence

#: Largest number of (sample x voxel x spin) phases evaluated at once; bounds the memory.
CHUNK_ELEMENTS = 1 << 22


def spin_distribution(
    n: int, dtype: torch.dtype, device: torch.device, n_voxels: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets ``[n, 3]`` in voxel units (in [-1/2, 1/2)) and standard Cauchy quantiles ``[V, n]``.

    Each voxel's quantiles are its own rotation of the stratified set (shift within a stratum
    by a golden-ratio sequence over voxels): every voxel stays stratified and unbiased, and the
    voxels' residual T2' errors no longer add up coherently in the signal.
    """
    if n < 1:
        raise ValueError(f"spins must be a positive integer, got {n}")
    s = torch.arange(n, dtype=torch.float64, device=device)
    g = 1.0
    for _ in range(40):  # plastic number, root of g^3 = g + 1: golden ratio of two dimensions
        g = (1.0 + g) ** (1.0 / 3.0)
    u_yz = torch.frac(0.5 + s[:, None] * torch.tensor([1 / g, 1 / g**2], dtype=torch.float64, device=device))
    u_x = (s + 0.5) / n
    shift = torch.frac(torch.arange(1, n_voxels + 1, dtype=torch.float64, device=device) * 0.6180339887498949)
    u_f = (_radical_inverse_rank(n).to(s)[None, :] + shift[:, None]) / n  # [V, n]
    offsets = torch.stack([u_x, u_yz[:, 0], u_yz[:, 1]], dim=1) - 0.5
    cauchy = torch.tan(math.pi * (u_f - 0.5))
    return offsets.to(dtype), cauchy.to(dtype)


def _radical_inverse_rank(n: int) -> torch.Tensor:
    """Stratum of spin ``s``: rank of its base-2 radical inverse (van der Corput), so x and the
    quantile form a Hammersley-like set: every dyadic box of area ``>= 1/n`` holds its share."""
    values = []
    for s in range(n):
        v, f, k = 0.0, 0.5, s
        while k:
            v += f * (k & 1)
            k >>= 1
            f *= 0.5
        values.append(v)
    return torch.argsort(torch.argsort(torch.tensor(values)))


def _readout(
    mxy: torch.Tensor,
    vox: VoxelSet,
    offsets: torch.Tensor,
    cauchy: torch.Tensor,
    moment: torch.Tensor,
    time: torch.Tensor,
) -> torch.Tensor:
    """Transverse magnetisation averaged over spins at cumulative (moment, time): ``[n, V]``.

    Includes T2 decay; ``mxy`` is ``[V, S]`` right after the pulse. Chunked over voxels.
    """
    n, n_vox, n_spin = time.shape[0], mxy.shape[0], mxy.shape[1]
    chunk = max(1, CHUNK_ELEMENTS // max(1, n * n_spin))
    parts = []
    spin_k = offsets * vox.size  # [S, 3] spin offset in FOV units
    for v0 in range(0, n_vox, chunk):
        sl = slice(v0, v0 + chunk)
        centre = moment @ vox.pos[sl].T  # [n, v]
        freq = vox.b0[sl, None] + cauchy[sl] * (vox.r2dash[sl, None] / (2 * math.pi))  # [v, S]
        cycles = (
            centre[:, :, None] + (moment @ spin_k.T)[:, None, :] + time[:, None, None] * freq[None]
        )  # [n, v, S]
        rot = torch.polar(torch.ones_like(cycles), -2 * math.pi * cycles)
        decay = torch.exp(-time[:, None] / vox.t2[None, sl])  # [n, v]
        parts.append((rot * mxy[None, sl]).mean(-1) * decay)
    return torch.cat(parts, dim=1)


def _repetition(
    mxy: torch.Tensor,
    mz: torch.Tensor,
    rep: Repetition,
    vox: VoxelSet,
    offsets: torch.Tensor,
    cauchy: torch.Tensor,
    played: RfCoefficients | None = None,
) -> tuple[torch.Tensor, ...]:
    """One repetition: pulse, fused readout, state at the end. Returns (samples [C, n], mxy, mz).

    ``played``: the pulse's ``[V, 1]`` coefficients when the sequence plays pulses out
    (``Sequence.rf_offsets``); the spins of a voxel share its rotation (their T2' offsets are
    ignored during the pulse)."""
    c = played if played is not None else rf_coefficients(rep.flip * vox.b1[:, None], rep.rf_phase)
    mxy, mz = rotate(mxy, mz, c)
    moment = torch.cat([rep.moment, rep.end_moment[None]], dim=0)
    time = torch.cat([rep.time, rep.end_time[None]], dim=0)
    n = rep.n_adc
    # samples need only the spin mean; the end state needs every spin
    mean = _readout(mxy, vox, offsets, cauchy, moment[:n], time[:n]) if n else None
    end_phase = (
        (rep.end_moment @ vox.pos.T)[:, None]
        + offsets @ (vox.size * rep.end_moment)
        + rep.end_time * (vox.b0[:, None] + cauchy * (vox.r2dash[:, None] / (2 * math.pi)))
    )
    # magnitude times a unit phasor: torch.polar's backward is NaN for subnormal magnitudes
    mxy_end = (
        mxy
        * torch.exp(-rep.end_time / vox.t2)[:, None]
        * torch.polar(torch.ones_like(end_phase), -2 * math.pi * end_phase)
    )
    e1 = torch.exp(-rep.end_time / vox.t1)[:, None]
    mz_end = vox.pd[:, None] + (mz - vox.pd[:, None]) * e1
    if mean is None:
        samples = torch.zeros(vox.coil.shape[0], 0, dtype=mxy.dtype, device=mxy.device)
    else:
        demod = torch.polar(torch.ones_like(rep.adc_phase), -rep.adc_phase)
        samples = (vox.coil @ mean.T) * demod  # [C, n]
    return samples, mxy_end, mz_end


def simulate_isochromats(
    seq: Sequence, vox: VoxelSet, *, spins: int = 256, checkpointing: bool = True, progress: bool = False
) -> torch.Tensor:
    """Signal ``[C, n_samples]`` of ``seq`` on ``vox`` with ``spins`` isochromats per voxel.

    ``checkpointing`` recomputes each repetition in the backward pass instead of storing its
    ``samples x voxels x spins`` intermediates, which bounds memory by one repetition.
    Raises ``ValueError`` when a voxel diffuses (see the module docstring).
    """
    if vox.diffusion is not None:
        raise ValueError(
            "the isochromat engine cannot simulate diffusion (its spins do not move), and this "
            f"phantom has diffusion coefficients up to {float(vox.diffusion.max()):.3g} m^2/s; use "
            "engine='fast' or drop the phantom's diffusion map (Phantom.diffusion = None)"
        )
    offsets, cauchy = spin_distribution(spins, seq.flip.dtype, seq.device, vox.n_voxels)
    mxy = torch.zeros(vox.n_voxels, spins, dtype=vox.coil.dtype, device=seq.device)
    mz = vox.pd[:, None].expand(-1, spins).clone()
    out = []
    use_ckpt = checkpointing and torch.is_grad_enabled()
    played = None if seq.rf_offsets is None else sequence_coefficients(seq, vox)
    for r, rep in enumerate(tqdm(repetitions(seq), desc="isochromat", unit="rep", disable=not progress)):
        c = None if played is None else row(played, r)
        if use_ckpt:
            samples, mxy, mz = checkpoint(
                _repetition, mxy, mz, rep, vox, offsets, cauchy, c, use_reentrant=False
            )
        else:
            samples, mxy, mz = _repetition(mxy, mz, rep, vox, offsets, cauchy, c)
        out.append(samples)
    return torch.cat(out, dim=1)
