"""Engine 2 ("fast"): configuration states with 3D moments (extended phase graphs).

Following the configuration-state picture of Hennig (1988) and the EPG formalism of Weigel
(2015), the magnetisation of every voxel is a sum of dephasing states. A state is labelled by a
*key* ``(kx, ky, kz, tau)``: its accumulated gradient moment (cycles/FOV, arbitrary 3D values,
since learned sequences have arbitrary moments) and its time ``tau`` (s) since the last
refocusing of off-resonance. Its basis function over the spins of a voxel, at offset ``d`` from
the voxel centre with T2' off-resonance ``f``, is ``exp(-i 2 pi (k . d + f tau))``; its amplitude
per voxel (``[J, V]``) carries relaxation, RF mixing and the voxel-centre phase of gradients and
B0. The same keys serve all voxels.

* RF mixes the transverse amplitude ``F`` at key ``q``, the conjugate of ``F`` at ``-q`` and
  the longitudinal amplitude ``Z`` at ``q`` (``sequences/engines/rf.py``). All keys are put in
  one list, states with equal keys (on a fine grid) are merged (``sequences/engines/mixing.py``)
  and states whose amplitude is below ``tolerance`` (relative to the largest PD) in every voxel
  are pruned, so the state count stays bounded.
* Within a repetition nothing mixes: transverse keys move by the cumulative moment and time,
  ``F`` decays with T2 and precesses at the voxel centre, ``Z`` decays with T1 and recovers
  towards PD in the zero state. These per-voxel factors are computed for all repetitions at once
  and applied by the next pulse (:class:`PulseFactors`).
* Each ADC sample sums over voxels and states, with the sample's own evolution since the pulse
  (T2, gradient and B0 phase at the voxel centre), the intravoxel dephasing of a uniformly
  filled box ``prod_axes sinc(k w)`` and the Lorentzian T2' decay ``exp(-|tau|/T2')``, all
  analytic. The samples of a repetition are one pair of matrix products (states before and
  after their T2' echo, so that ``|tau|`` splits into factors of state and of sample;
  ``sequences/engines/readout.py``).

* Ideal spoiling (``ideal_spoiling=True``, the textbook "perfect spoiling" of a spoiled GRE): at
  the end of every repetition every transverse state and every dephased longitudinal state is
  dropped, so each pulse sees only the recovered longitudinal magnetisation. What a spoiled GRE
  is meant to image; a real spoiler and RF spoiling leave echo pathways that this removes.
  Refused for sequences with refocusing pulses, whose echoes are the signal.

* Diffusion (phantoms with an ADC map): each state is damped by its own dephasing history
  within the repetition (EPG with diffusion, Weigel 2015), before the samples and at the
  repetition's end, its dual amplitudes (below) with it (``sequences/engines/diffusion.py``);
  skipped when no voxel diffuses.

A merged state's key (which only enters the sinc, the T2' factor and the diffusion damping) has
the amplitude-weighted mean of its members' keys as its value (exact: the members agree to the
grid) and no derivative of its own; its members' key derivatives, which differ (a transverse
member's moves with the free evolution, its conjugate's the other way, a longitudinal member's
not at all) and weigh differently in every voxel, are carried by the state's zero-valued *dual
amplitudes* (``sequences/engines/mixing.py``), which the readout turns into the exact gradient.
Later shifts of the key (free evolution) are common to all members and keep their path on the key.
Dual amplitudes exist only for the key columns whose derivative is asked for (:func:`key_dims`:
the moment axes the sequence uses when ``seq.moment`` requires grad, tau when ``seq.duration``
does and a voxel has T2'), so training only flips costs nothing extra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from mrzero.sequences.engines.diffusion import RepetitionDiffusion, diffusion_schedule
from mrzero.sequences.engines.mixing import key_mix, rf_mix
from mrzero.sequences.engines.readout import Group, readout, voxel_phase
from mrzero.sequences.engines.rf import RfCoefficients, sequence_coefficients
from mrzero.sequences.engines.timeline import Repetition, repetitions
from mrzero.sequences.engines.voxels import VoxelSet
from mrzero.sequences.sequence import REFOCUSING, Sequence

#: Grid on which keys count as equal: cycles/FOV for moments, seconds for tau.
KEY_GRID = (1e-3, 1e-3, 1e-3, 1e-7)
#: Bytes of intermediates (estimated by :func:`_kept_bytes`) the backward pass keeps by default
#: before the remaining repetitions are recomputed instead (``checkpointing=None``).
AUTO_CHECKPOINT_BYTES = 2 * 2**30


@dataclass
class PulseFactors:
    """One pulse's per-voxel factors (``[V]``), computed for all repetitions at once.

    ``mix`` holds the RF coefficients already multiplied by the free evolution since the
    previous pulse (T2 decay and voxel-centre phase on ``F``, T1 decay on ``Z``), so that the
    state arrays are rewritten once per repetition, by the mixing; ``recovered_f``/``recovered_z``
    are the zero state's T1 recovery sent through the pulse (None before the first pulse);
    ``scales`` (detached, float64) weigh the three sources when merged keys are averaged.
    """

    mix: RfCoefficients
    recovered_f: torch.Tensor | None
    recovered_z: torch.Tensor | None
    scales: torch.Tensor
    recovery_amp: torch.Tensor  # detached bound of the recovery after this repetition (scalar)


def _pulse_factors(seq: Sequence, vox: VoxelSet) -> list[PulseFactors]:
    """:class:`PulseFactors` of every repetition, from ``[R, V]`` tensor expressions."""
    c = sequence_coefficients(seq, vox)  # [R, V]
    end_moment, end_time = seq.moment.sum(1), seq.duration.sum(1)  # [R, 3], [R]
    evolve = voxel_phase(end_moment, end_time, vox) * torch.exp(-end_time[:, None] / vox.t2[None])
    e1 = torch.exp(-end_time[:, None] / vox.t1[None])
    recovery = vox.pd[None] * (1 - e1)
    # the relaxation of repetition r - 1 acts before pulse r (nothing before the first)
    before = lambda x, first: torch.cat([torch.full_like(x[:1], first), x[:-1]])  # noqa: E731
    evolve_b, e1_b, recovery_b = before(evolve, 1.0), before(e1, 1.0), before(recovery, 0.0)
    mix = [c.keep * evolve_b, c.conj * evolve_b.conj(), c.excite * e1_b, c.store * evolve_b, c.cos * e1_b]
    recovered = [c.excite * recovery_b, c.cos * recovery_b]

    def mean_abs(x: torch.Tensor) -> torch.Tensor:
        return x.detach().abs().mean(1).double()

    scales = torch.stack(
        [
            mean_abs(c.keep) + mean_abs(c.store),
            mean_abs(c.conj) + mean_abs(c.store),
            mean_abs(c.excite) + mean_abs(c.cos),
        ],
        1,
    )
    rows = zip(
        *(x.unbind(0) for x in mix),
        *(x.unbind(0) for x in recovered),
        scales.unbind(0),
        recovery.detach().abs().amax(1).unbind(0),
        strict=True,
    )
    return [
        PulseFactors(RfCoefficients(*r[:5]), r[5] if i else None, r[6] if i else None, r[7], r[8])
        for i, r in enumerate(rows)
    ]


@dataclass
class States:
    """Transverse states (keys ``[J, 4]`` float64, ``f`` ``[J, V]``) and longitudinal ones (``z``).

    ``f_amp``/``z_amp`` (``[J]``, detached) bound each state's amplitude over voxels by
    ``max(|re|, |im|)``, computed once per pulse and reused for pruning, readout selection and
    the key-averaging weights. ``g_f``/``g_z`` (``[d, J, V]``, zero-valued; None when no key
    derivative is asked for, or before the first pulse) are the dual amplitudes of the key
    columns ``dims`` (module docstring). Keys carry no derivative from before the last pulse:
    that of every transverse key is the one of ``moved`` (``[4]``, the free evolution's shift
    since the last pulse; None before the first), longitudinal keys have none.
    """

    key_f: torch.Tensor
    f: torch.Tensor
    key_z: torch.Tensor
    z: torch.Tensor
    zero: int  # row of the zero key in key_z, where T1 recovery goes
    f_amp: torch.Tensor
    z_amp: torch.Tensor
    dims: tuple[int, ...] = ()
    g_f: torch.Tensor | None = None
    g_z: torch.Tensor | None = None
    moved: torch.Tensor | None = None


def key_dims(seq: Sequence, vox: VoxelSet) -> tuple[int, ...]:
    """The key columns whose derivative the readout needs: the moment axes (0-2) when
    ``seq.moment`` requires grad, except an axis without any moment (its keys and samples stay at
    0, where the sinc's slope is 0: e.g. z of a 2D sequence); tau (3) when ``seq.duration``
    requires grad and some voxel has T2' (tau enters only the T2' factor; B0 is in the amplitudes)."""
    if not torch.is_grad_enabled():
        return ()
    moments = ()
    if seq.moment.requires_grad:
        used = seq.moment.detach().reshape(-1, 3).ne(0).any(0).tolist()
        moments = tuple(axis for axis in range(3) if used[axis])
    tau = (3,) if seq.duration.requires_grad and bool((vox.r2dash > 0).any()) else ()
    return moments + tau


def _amplitude(x: torch.Tensor) -> torch.Tensor:
    """Per row, the largest ``max(|re|, |im|)`` over voxels (cheaper than ``abs`` of complex)."""
    if x.shape[1] == 0:
        return x.new_zeros(x.shape[0], dtype=x.real.dtype)
    parts = torch.view_as_real(x.detach()).reshape(x.shape[0], -1)
    return torch.maximum(parts.amax(1), -parts.amin(1))  # (torch.aminmax is 20x slower on CPU)


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
    if rows**4 >= 2**62:
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


def _pulse(st: States, pf: PulseFactors, keep_floor: float, max_states: int) -> States:
    """Apply the RF rotation, merge equal keys and prune; afterwards F and Z share keys.

    The three sources (``F`` at its keys, ``conj F`` at the negated keys, ``Z`` at its keys)
    are mixed into their merged rows by ``sequences/engines/mixing.py``, after the free
    evolution since the previous pulse (folded into ``pf``).
    """
    keys = torch.cat([st.key_f, -st.key_f, st.key_z])
    inv, is_zero = _key_groups(keys)
    n = is_zero.shape[0]
    recovered = None
    if pf.recovered_f is not None:  # into the merged row of the zero Z state
        recovered = (int(inv[2 * st.key_f.shape[0] + st.zero]), pf.recovered_f, pf.recovered_z)
    f_m, z_m = rf_mix(st.f, st.z, inv, n, pf.mix, recovered)
    # merged key: amplitude-weighted mean of its members (exact value); the members' own
    # derivatives go to the dual amplitudes
    f_amp, z_amp = st.f_amp.double(), st.z_amp.double()
    weight = torch.cat([f_amp * pf.scales[0], f_amp * pf.scales[1], z_amp * pf.scales[2]]) + 1e-30
    w_m = weight.new_zeros(n).index_add_(0, inv, weight)
    key_m = keys.new_zeros(n, 4).index_add_(0, inv, weight[:, None] * keys.detach()) / w_m[:, None]
    f_amp, z_amp = _amplitude(f_m), _amplitude(z_m)
    amp = torch.where(is_zero, torch.full_like(f_amp, math.inf), torch.maximum(f_amp, z_amp))
    keep = torch.nonzero(amp > keep_floor).reshape(-1)
    if keep.numel() > max_states:
        keep = keep[torch.topk(amp[keep], max_states).indices]
    zero = int(torch.nonzero(is_zero[keep]).reshape(-1)[0])
    key = key_m[keep]
    g_f = g_z = None
    if st.dims and st.moved is not None:
        kept = keep if keep.numel() < n else None
        g_f, g_z = key_mix(st.moved[list(st.dims)], st.f, st.g_f, st.g_z, inv, n, kept, pf.mix)
    if keep.numel() < n:
        f_m, z_m = f_m[keep], z_m[keep]
    return States(key, f_m, key, z_m, zero, f_amp[keep], z_amp[keep], st.dims, g_f, g_z)


def _samples(
    st: States, rep: Repetition, vox: VoxelSet, keep_floor: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All ADC samples of a repetition, ``[C, n]``, from the transverse states after its pulse,
    and the states' dual amplitudes passed on through the readout (:func:`readout`).

    States whose contribution is below ``keep_floor`` at every sample (amplitude times the
    largest intravoxel sinc over the readout) are skipped. States are split by the sign of
    their time since the T2' echo, ``tau + t``: after it the Lorentzian factor is
    ``exp(-(tau + t_first)/T2') exp(-(t - t_first)/T2')``, before it the mirror image around the
    last sample, so each group is one matrix product (``sequences/engines/readout.py``); a state
    crossing its echo during the readout belongs to both with complementary sample masks.
    """
    k_all, tau_all = st.key_f[:, :3], st.key_f[:, 3]  # float64
    moment, time = rep.moment, rep.time
    with torch.no_grad():
        u = (k_all[:, None, :] + moment[None].double()) * vox.size.double()
        sinc_all = torch.sinc(u).prod(-1)  # [J, n]
        bound = st.f_amp.double() * sinc_all.abs().amax(1)
        live = torch.nonzero(bound > keep_floor).reshape(-1)
        since_echo = tau_all[live, None] + time[None].double()  # [J, n]
    if bool((vox.r2dash > 0).any()):
        sides = ((1.0, time[0], since_echo >= 0), (-1.0, time[-1], since_echo < 0))
    else:
        sides = ((0.0, time[0], torch.ones_like(since_echo, dtype=torch.bool)),)
    groups = []
    for sign, t_ref, mask in sides:
        chosen = torch.nonzero(mask.any(1)).reshape(-1)
        if chosen.numel() == 0:
            continue
        rows = live[chosen]
        groups.append(Group(sign, rows, tau_all[rows], t_ref, k_all[rows], mask[chosen].T))
    if not groups:  # nothing measurable
        zeros = torch.zeros(vox.coil.shape[0], rep.n_adc, dtype=vox.coil.dtype, device=vox.coil.device)
        return zeros, st.g_f
    summed, g_f = readout(st.f, st.g_f, st.dims, moment, time, groups, vox)
    return summed * torch.polar(torch.ones_like(rep.adc_phase), -rep.adc_phase), g_f


def _relax(st: States, rep: Repetition, pf: PulseFactors) -> States:
    """Free evolution to the end of the repetition: move transverse keys (moment and time, for
    the intravoxel sinc and T2'); the amplitudes' decay, phase and recovery are applied by the
    next pulse (:class:`PulseFactors`)."""
    shift = torch.cat([rep.end_moment, rep.end_time[None]]).double()
    zero = torch.tensor([st.zero], device=st.z.device)
    z_amp = st.z_amp.index_add(0, zero, pf.recovery_amp[None].to(st.z_amp.dtype))
    return replace(st, key_f=st.key_f + shift, z_amp=z_amp, moved=shift)


def _repetition(
    st: States,
    rep: Repetition,
    pf: PulseFactors,
    vox: VoxelSet,
    keep_floor: float,
    max_states: int,
    diffusion: RepetitionDiffusion | None = None,
    ideal_spoiling: bool = False,
) -> tuple[torch.Tensor | None, States]:
    """One repetition: pulse, its samples (None without ADC), free evolution to its end (and, with
    ``ideal_spoiling``, only the zero longitudinal state kept)."""
    st = _pulse(st, pf, keep_floor, max_states)
    read = st
    if diffusion is not None:  # damping up to the readout and to the end (amplitude bounds stay bounds)
        (f_read, g_read), (f_end, g_end), (z_end, gz_end) = diffusion.damp(
            st.f, st.g_f, st.z, st.g_z, st.key_f, st.dims, vox.diffusion
        )
        read, st = replace(st, f=f_read, g_f=g_read), replace(st, f=f_end, g_f=g_end, z=z_end, g_z=gz_end)
    samples = None
    if rep.n_adc:
        samples, g_f = _samples(read, rep, vox, keep_floor)
        if read is st:  # the next pulse takes the duals through the readout (readout())
            st = replace(st, g_f=g_f)
    st = _relax(st, rep, pf)
    return samples, _spoil(st) if ideal_spoiling else st


def _spoil(st: States) -> States:
    """Ideal spoiling: no transverse state, and of the longitudinal ones only the zero key's."""
    row = slice(st.zero, st.zero + 1)
    g_z = None if st.g_z is None else st.g_z[:, row]
    g_f = None if st.g_f is None else st.g_f[:, :0]
    return replace(
        st,
        key_f=st.key_f[:0],
        f=st.f[:0],
        f_amp=st.f_amp[:0],
        key_z=st.key_z[row],
        z=st.z[row],
        z_amp=st.z_amp[row],
        zero=0,
        g_f=g_f,
        g_z=g_z,
    )


def _kept_bytes(st: States, rep: Repetition) -> int:
    """Estimated bytes a repetition keeps for the backward pass when it is not recomputed:
    about four complex ``[states, voxels]`` arrays (the states, their T2' factors and the
    readout's decayed copies) and three complex ``[samples, voxels]`` (the readout's phase and
    sums). For the 96x96 GRE of ``bench/simulate.py`` at tolerance 1e-2 this gives 1.7 GB, the
    measured peak resident size grew by 1.4 GB."""
    return (4 * st.f.shape[0] + 3 * rep.n_adc) * st.f.shape[1] * st.f.element_size()


def simulate_configurations(
    seq: Sequence,
    vox: VoxelSet,
    *,
    tolerance: float = 1e-5,
    max_states: int = 4096,
    ideal_spoiling: bool = False,
    checkpointing: bool | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Signal ``[C, n_samples]`` of ``seq`` on ``vox`` from configuration states.

    ``tolerance``: states whose amplitude is below ``tolerance * max(pd)`` in every voxel are
    dropped (and skipped at readouts where they contribute less); ``max_states``: hard bound on
    the state count (the largest are kept); ``ideal_spoiling``: keep only the zero longitudinal
    state at the end of every repetition (module docstring); ``checkpointing``: keep only each repetition's
    starting states for the backward pass and recompute the rest (less memory, a second forward
    pass in the backward); ``None`` keeps everything of the first repetitions until about
    ``AUTO_CHECKPOINT_BYTES`` are kept and recomputes the repetitions after them (the brain GRE
    recomputes nothing at 64x64, its last 7 of 96 repetitions at 96x96, 74 of 128 at 128x128).
    """
    if tolerance < 0 or max_states < 1:
        raise ValueError(f"tolerance must be >= 0 and max_states >= 1, got {tolerance}, {max_states}")
    if ideal_spoiling and bool((seq.rf_kind == REFOCUSING).any()):
        raise ValueError(
            "ideal_spoiling drops every transverse state after each repetition; a sequence with "
            "refocusing pulses lives on those echoes"
        )
    keep_floor = tolerance * float(vox.pd.detach().max())
    n_vox, dtype = vox.n_voxels, vox.coil.dtype
    # keys are float64 whatever the sequence's precision: float32 sums of durations along
    # different pathways would differ in the last bits and stop equal states from merging
    zero_key = torch.zeros(1, 4, dtype=torch.float64, device=seq.device)
    z0 = vox.pd[None].to(dtype)
    st = States(
        key_f=zero_key[:0],
        f=torch.zeros(0, n_vox, dtype=dtype, device=seq.device),
        key_z=zero_key,
        z=z0,
        zero=0,
        f_amp=vox.pd.new_zeros(0),
        z_amp=_amplitude(z0),
        dims=key_dims(seq, vox),
    )
    out = []
    held = AUTO_CHECKPOINT_BYTES + 1 if checkpointing else 0  # estimated bytes kept for the backward pass
    grad = torch.is_grad_enabled()
    factors = _pulse_factors(seq, vox)
    schedule = diffusion_schedule(seq, vox) or [None] * seq.n_rep
    bar = tqdm(
        zip(repetitions(seq), factors, schedule, strict=True),
        desc="configuration states",
        unit="rep",
        total=seq.n_rep,
        disable=not progress,
    )
    for rep, pf, diffusion in bar:
        if grad and checkpointing is not False and held > AUTO_CHECKPOINT_BYTES:
            samples, st = checkpoint(
                _repetition,
                st,
                rep,
                pf,
                vox,
                keep_floor,
                max_states,
                diffusion,
                ideal_spoiling,
                use_reentrant=False,
            )
        else:
            samples, st = _repetition(st, rep, pf, vox, keep_floor, max_states, diffusion, ideal_spoiling)
            held += _kept_bytes(st, rep)
        if samples is not None:
            out.append(samples)
        bar.set_postfix(states=st.f.shape[0])
    if not out:
        return torch.zeros(vox.coil.shape[0], 0, dtype=dtype, device=seq.device)
    return torch.cat(out, dim=1)
