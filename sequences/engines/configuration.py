"""Engine 2 ("fast"): configuration states with 3D moments (extended phase graphs).

Following the configuration-state picture of Hennig (1988) and the EPG formalism of Weigel
(2015), the magnetisation of every voxel is a sum of dephasing states. A state is labelled by a
*key* ``(kx, ky, kz, tau)``: its accumulated gradient moment (cycles/FOV, arbitrary 3D values,
since learned sequences have arbitrary moments) and its time ``tau`` (s) since the last
refocusing of off-resonance. Its basis function over spins at position ``x`` with off-resonance
``f`` is ``exp(-i 2 pi (k . x + f tau))``; amplitudes are held relative to the basis value at the
voxel centre, so they carry only relaxation and RF mixing, and the same keys serve all voxels.

* RF mixes the transverse amplitude ``F`` at key ``q``, the conjugate of ``F`` at ``-q`` and
  the longitudinal amplitude ``Z`` at ``q`` (``sequences/engines/rf.py``). All keys are put in
  one list, states with equal keys (on a fine grid) are merged with ``index_add`` and states
  whose amplitude is below ``tolerance`` (relative to the largest PD) in every voxel are pruned,
  so the state count stays bounded.
* Within a repetition nothing mixes: transverse keys move by the cumulative moment and time,
  ``F`` decays with T2, ``Z`` with T1 and recovers towards PD in the zero state.
* Each ADC sample sums over voxels and states, with the voxel centre phase
  ``exp(-i 2 pi (k . x_v + b0_v tau))``, the intravoxel dephasing of a uniformly filled box
  ``prod_axes sinc(k w)`` and the Lorentzian T2' decay ``exp(-|tau|/T2')``, all analytic. The
  samples of a repetition are one pair of matrix products (states before and after their T2'
  echo, so that ``|tau|`` splits into factors of state and of sample).

A merged state's key is the amplitude-weighted mean of its members' keys: its value is exact
(the members agree to the grid), and its derivative is the weighted mean of theirs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from sequences.engines.rf import RfCoefficients, rf_coefficients
from sequences.engines.timeline import Repetition, repetitions
from sequences.engines.voxels import VoxelSet
from sequences.sequence import Sequence

#: Grid on which keys count as equal: cycles/FOV for moments, seconds for tau.
KEY_GRID = (1e-3, 1e-3, 1e-3, 1e-7)
#: Exponents of the T2' factors are clamped here to stay finite (only reached when a readout
#: spans more than 60 T2').
MAX_EXPONENT = 60.0


@dataclass
class States:
    """Transverse states (keys ``[J, 4]``, ``f`` ``[J, V]``) and longitudinal ones (``z``)."""

    key_f: torch.Tensor
    f: torch.Tensor
    key_z: torch.Tensor
    z: torch.Tensor
    zero: int  # row of the zero key in key_z, where T1 recovery goes


def _key_groups(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Group index of every key on the ``KEY_GRID`` and, per group, whether it is the zero key.

    Columns are ranked one by one and the ranks combined into one integer, which is much
    faster than a row-wise ``unique``. Rounding is ``int(x + 1/2 + 2^40) - 2^40`` in float64
    (exact here): torch's ``round``/``floor`` run a parallel kernel that is slow for small
    tensors on a busy CPU.
    """
    grid = torch.tensor(KEY_GRID, dtype=torch.float64, device=keys.device)
    shift = 2.0**40
    code = (keys.detach().double() / grid + (0.5 + shift)).to(torch.int64) - int(shift)
    rows = code.shape[0]
    if rows ** 4 >= 2**62:
        uniq, inv = torch.unique(code, dim=0, return_inverse=True)
        return inv, (uniq == 0).all(1)
    combined = torch.zeros(rows, dtype=torch.int64, device=keys.device)
    for col in code.unbind(1):
        combined = combined * rows + torch.unique(col, return_inverse=True)[1]
    uniq, inv = torch.unique(combined, return_inverse=True)
    zero_rows = (code == 0).all(1)
    is_zero = torch.zeros(uniq.shape[0], dtype=torch.bool, device=keys.device)
    is_zero[inv[zero_rows]] = True
    return inv, is_zero


def _merge(keys: torch.Tensor, f: torch.Tensor, z: torch.Tensor, keep_floor: float,
           max_states: int) -> States:
    """Merge rows with equal keys, prune negligible ones; the zero key always survives."""
    inv, is_zero = _key_groups(keys)
    n = is_zero.shape[0]
    weight = (f.detach().abs() + z.detach().abs()).sum(1) + 1e-30
    f_m = f.new_zeros(n, f.shape[1]).index_add(0, inv, f)
    z_m = z.new_zeros(n, z.shape[1]).index_add(0, inv, z)
    w_m = weight.new_zeros(n).index_add(0, inv, weight)
    key_m = keys.new_zeros(n, 4).index_add(0, inv, weight[:, None] * keys) / w_m[:, None]
    amp = torch.maximum(f_m.detach().abs().amax(1), z_m.detach().abs().amax(1))
    amp = torch.where(is_zero, torch.full_like(amp, math.inf), amp)
    keep = torch.nonzero(amp > keep_floor).reshape(-1)
    if keep.numel() > max_states:
        keep = keep[torch.topk(amp[keep], max_states).indices]
    zero = int(torch.nonzero(is_zero[keep]).reshape(-1)[0])
    key = key_m[keep]
    return States(key_f=key, f=f_m[keep], key_z=key, z=z_m[keep], zero=zero)


def _pulse(st: States, c: RfCoefficients, keep_floor: float, max_states: int) -> States:
    """Apply the RF rotation; afterwards transverse and longitudinal states share keys."""
    keys = torch.cat([st.key_f, -st.key_f, st.key_z])
    f = torch.cat([c.keep * st.f, c.conj * st.f.conj(), c.excite * st.z])
    z = torch.cat([c.store * st.f, c.store.conj() * st.f.conj(), c.cos * st.z])
    return _merge(keys, f, z, keep_floor, max_states)


def _samples(st: States, rep: Repetition, vox: VoxelSet, keep_floor: float) -> torch.Tensor:
    """All ADC samples of a repetition, ``[C, n]``, from the states right after its pulse."""
    live = torch.nonzero(st.f.detach().abs().amax(1) > keep_floor).reshape(-1)
    key, f = st.key_f[live], st.f[live]
    k, tau = key[:, :3], key[:, 3]
    moment, time = rep.moment, rep.time
    total_k = k[:, None, :] + moment[None]  # [J, n, 3]
    sinc = torch.sinc(total_k * vox.size).prod(-1)  # [J, n]
    since_echo = tau[:, None] + time[None]  # [J, n]
    two_pi = 2 * math.pi
    state_part = f * torch.polar(torch.ones_like(f.real), -two_pi * (k @ vox.pos.T + tau[:, None] * vox.b0))
    sample_phase = -two_pi * (moment @ vox.pos.T + time[:, None] * vox.b0)  # [n, V]
    sample_decay = -time[:, None] / vox.t2  # [n, V]
    if bool((vox.r2dash > 0).any()):
        groups = ((1.0, time[0], since_echo >= 0), (-1.0, time[-1], since_echo < 0))
    else:
        groups = ((0.0, time[0], torch.ones_like(since_echo, dtype=torch.bool)),)
    summed = torch.zeros(time.shape[0], vox.pd.shape[0], dtype=f.dtype, device=f.device)  # no live state: 0
    for sign, t_ref, mask in groups:
        if not bool(mask.any()):
            continue
        a = state_part * torch.exp((-sign * (tau[:, None] + t_ref) * vox.r2dash).clamp(max=MAX_EXPONENT))
        weights = torch.where(mask, sinc, torch.zeros_like(sinc)).T.to(f.dtype)  # [n, J]
        b = torch.polar(torch.exp(sample_decay - sign * (time - t_ref)[:, None] * vox.r2dash), sample_phase)
        summed = summed + b * (weights @ a)
    demod = torch.polar(torch.ones_like(rep.adc_phase), -rep.adc_phase)
    return (vox.coil @ summed.T) * demod


def _relax(st: States, rep: Repetition, vox: VoxelSet) -> States:
    """Free evolution to the end of the repetition: move transverse keys, relax, recover."""
    shift = torch.cat([rep.end_moment, rep.end_time[None]])
    e1 = torch.exp(-rep.end_time / vox.t1)
    recovery = (vox.pd * (1 - e1)).to(st.z.dtype)[None]
    z = (st.z * e1).index_add(0, torch.tensor([st.zero], device=st.z.device), recovery)
    return States(key_f=st.key_f + shift, f=st.f * torch.exp(-rep.end_time / vox.t2), key_z=st.key_z,
                  z=z, zero=st.zero)


def simulate_configurations(seq: Sequence, vox: VoxelSet, *, tolerance: float = 1e-5,
                            max_states: int = 4096, progress: bool = False) -> torch.Tensor:
    """Signal ``[C, n_samples]`` of ``seq`` on ``vox`` from configuration states.

    ``tolerance``: states whose amplitude is below ``tolerance * max(pd)`` in every voxel are
    dropped; ``max_states``: hard bound on the state count (the largest are kept).
    """
    if tolerance < 0 or max_states < 1:
        raise ValueError(f"tolerance must be >= 0 and max_states >= 1, got {tolerance}, {max_states}")
    keep_floor = tolerance * float(vox.pd.detach().max())
    n_vox, dtype = vox.n_voxels, vox.coil.dtype
    zero_key = torch.zeros(1, 4, dtype=seq.flip.dtype, device=seq.device)
    st = States(key_f=zero_key[:0], f=torch.zeros(0, n_vox, dtype=dtype, device=seq.device),
                key_z=zero_key, z=vox.pd[None].to(dtype), zero=0)
    out = []
    bar = tqdm(repetitions(seq), desc="configuration states", unit="rep", disable=not progress)
    for rep in bar:
        st = _pulse(st, rf_coefficients(rep.flip * vox.b1, rep.rf_phase), keep_floor, max_states)
        if rep.n_adc:
            out.append(_samples(st, rep, vox, keep_floor))
        st = _relax(st, rep, vox)
        bar.set_postfix(states=st.f.shape[0])
    if not out:
        return torch.zeros(vox.coil.shape[0], 0, dtype=dtype, device=seq.device)
    return torch.cat(out, dim=1)
