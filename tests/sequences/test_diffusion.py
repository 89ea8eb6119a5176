"""Diffusion in the fast engine against closed forms, on the complex signal (phase included).

* PGSE: the Stejskal-Tanner attenuation ``exp(-b D)``, ``b = gamma^2 G^2 delta^2 (Delta - delta/3)``
  (rectangular lobes, which is how the sequence model plays an event's moment);
* STEAM: the same ``b`` through a longitudinal storage (damping of Z states);
* CPMG in a constant gradient: echo ``n`` damped by ``exp(-gamma^2 G^2 D TE^2 t / 12)`` at
  ``t = n TE`` (Carr-Purcell; ideal refocusing, the only pathway);
* a phantom without diffusion (or an all-zero map) gives the bit-identical signal;
* a float64 gradcheck with respect to D, moments and durations.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from engine_cases import build

from mrzero.sequences.builders import flash, rare
from mrzero.sequences.engines import configuration
from mrzero.sequences.engines.diffusion import READOUT_TOLERANCE, one_event_per_repetition, readout_bound
from mrzero.sequences.phantom import GAMMA_HZ_PER_T, Phantom, PhantomError
from mrzero.sequences.phantoms import brain_phantom
from mrzero.sequences.phantoms.resample import resample_phantom
from mrzero.sequences.sequence import EXCITATION, INVERSION, REFOCUSING, Sequence
from mrzero.sequences.simulate import simulate

GAMMA = 2 * math.pi * GAMMA_HZ_PER_T  # rad/s/T
FOV = (0.2, 0.2, 0.005)  # m; the z axis 40x finer, so a unit error between axes shows
D_MAP = torch.tensor([[0.8e-9, 0.7e-9], [3.0e-9, 0.0]], dtype=torch.float64)  # GM, WM, CSF, none
MM2 = 1e6  # s/mm^2 -> s/m^2


def phantom(diffusion: torch.Tensor | None = D_MAP, t2dash: float = 0.02) -> Phantom:
    """2x2 voxels with their own PD, T2, B0 and diffusion coefficient (float64)."""
    t = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    return Phantom(
        pd=t([[0.8, 0.7], [1.0, 0.6]]),
        t1=t([[1.3, 0.8], [4.3, 1.0]]),
        t2=t([[0.11, 0.08], [2.0, 0.05]]),
        t2dash=torch.full((2, 2), t2dash, dtype=torch.float64),
        b0=t([[12.0, -7.0], [3.0, 25.0]]),
        b1=torch.ones(2, 2, dtype=torch.float64),
        fov=FOV,
        diffusion=diffusion,
    )


def report(case: str, error: float) -> float:
    """Print a measured relative error (``pytest -s`` shows the figures docs/simulation.md quotes)."""
    print(f"\n{case}: {error:.2e}")
    return error


def with_kinds(seq: Sequence, kinds: list[int]) -> Sequence:
    return replace(seq, fov=FOV, rf_kind=torch.tensor(kinds))


def moment(gradient: float, duration: float, direction: tuple[float, float, float]) -> tuple[float, ...]:
    """Cycles/FOV of a rectangular lobe of ``gradient`` T/m along the unit ``direction``."""
    return tuple(GAMMA_HZ_PER_T * gradient * duration * u * f for u, f in zip(direction, FOV, strict=True))


def pgse(
    b: float, direction: tuple[float, float, float], delta: float = 0.02, big_delta: float = 0.04
) -> Sequence:
    """90x - G(delta) - 180y at TE/2 - G(delta) - sample at the echo, lobes ``big_delta`` apart.

    Lobe 1 fills [0, delta], the refocusing pulse sits at TE/2, lobe 2 fills
    [big_delta, big_delta + delta] and the echo is at its end: TE = big_delta + delta."""
    te = big_delta + delta
    g = math.sqrt(b / (GAMMA**2 * delta**2 * (big_delta - delta / 3)))
    m = moment(g, delta, direction)
    reps = [
        (math.pi / 2, 0.0, [(delta, m, False), (te / 2 - delta, (0.0, 0.0, 0.0), False)]),
        (math.pi, math.pi / 2, [(big_delta - te / 2, (0.0, 0.0, 0.0), False), (delta, m, True)]),
    ]
    return with_kinds(build(reps, adc_phase=[0.0, 0.0], dtype=torch.float64), [EXCITATION, REFOCUSING])


def expected_echo(ph: Phantom, b: float, te: float) -> torch.Tensor:
    """``i sum_v PD e^{-TE/T2} e^{-b D}``: the 90x-180y echo is along +i in every voxel."""
    d = torch.zeros_like(ph.pd) if ph.diffusion is None else ph.diffusion
    return 1j * (ph.pd * torch.exp(-te / ph.t2) * torch.exp(-b * d)).sum()


@pytest.mark.parametrize("direction", [(1.0, 0.0, 0.0), (1 / 3, 2 / 3, 2 / 3)])
def test_pgse_follows_stejskal_tanner(direction):
    ph = phantom()
    for b in (0.0, 500 * MM2, 1000 * MM2, 2000 * MM2):
        seq = pgse(b, direction)
        signal = simulate(seq, ph, "fast", tolerance=0.0)[0, 0]
        truth = expected_echo(ph, b, 0.06)
        # b D reaches 6 in the CSF voxel: the attenuation is tested over e^-6 .. 1
        error = report(
            f"PGSE b {b / MM2:.0f} s/mm^2 along {[round(u, 2) for u in direction]}",
            float(abs(signal - truth) / abs(truth)),
        )
        assert error < 1e-3
        assert abs(signal - truth) < 1e-9


def test_stimulated_echo_diffuses_in_its_longitudinal_storage():
    """90x - G - 90x - TM (spoiler) - 90x - G - STE: ``-i/2 PD e^{-TE/T2} e^{-TM/T1} e^{-b D}``,
    ``b = (2 pi m / FOV)^2 (Delta - delta/3)``, Delta = TE/2 + TM spanning the Z storage.

    One voxel spanning the FOV with integer moments: every other pathway is dephased by a
    whole number of cycles across the voxel and cancels exactly."""
    delta, half_te, tm, m = 0.01, 0.015, 0.1, 2500.0  # m cycles/FOV along x (G = 29 mT/m)
    d, pd, t1, t2 = 2.0e-9, 1.0, 1.2, 0.09
    full = lambda v: torch.full((1, 1), v, dtype=torch.float64)  # noqa: E731
    ph = Phantom(
        pd=full(pd), t1=full(t1), t2=full(t2), t2dash=full(0.0), b0=full(0.0), b1=full(1.0), fov=FOV,
        diffusion=full(d),
    )  # fmt: skip
    reps = [
        (math.pi / 2, 0.0, [(delta, (m, 0.0, 0.0), False), (half_te - delta, (0.0, 0.0, 0.0), False)]),
        (math.pi / 2, 0.0, [(tm, (37.0, 0.0, 0.0), False), (0.0, (0.0, 0.0, 0.0), False)]),
        (math.pi / 2, 0.0, [(delta, (m, 0.0, 0.0), True), (0.0, (0.0, 0.0, 0.0), False)]),
    ]
    seq = with_kinds(
        build(reps, adc_phase=[0.0] * 3, dtype=torch.float64), [EXCITATION, INVERSION, INVERSION]
    )
    signal = simulate(seq, ph, "fast", tolerance=0.0)[0, 0]
    k = 2 * math.pi * m / FOV[0]
    b = k**2 * (half_te + tm - delta / 3)
    assert b * d > 1.0  # the storage carries most of the damping
    truth = -0.5j * pd * math.exp(-(half_te + delta) / t2) * math.exp(-tm / t1) * math.exp(-b * d)
    assert report("STEAM", abs(signal - truth) / abs(truth)) < 1e-3
    assert abs(signal - truth) < 1e-9


def test_cpmg_in_a_constant_gradient_follows_carr_purcell():
    """90x - (TE/2 - 180y - TE/2 - echo) x 8 with a constant gradient: echo ``n`` of a voxel is
    ``i PD e^{-t/T2} e^{-gamma^2 G^2 D TE^2 t / 12}``, ``t = n TE`` (ideal refocusing)."""
    te, g, n = 0.02, 0.04, 8
    direction = (0.0, 0.6, 0.8)
    half = moment(g, te / 2, direction)
    empty = (0.0, (0.0, 0.0, 0.0), False)
    reps = [(math.pi / 2, 0.0, [(te / 2, half, False), empty])]
    reps += [(math.pi, math.pi / 2, [(te / 2, half, True), (te / 2, half, False)])] * n
    seq = with_kinds(
        build(reps, adc_phase=[0.0] * (n + 1), dtype=torch.float64), [EXCITATION] + [REFOCUSING] * n
    )
    ph = phantom(t2dash=0.0)
    signal = simulate(seq, ph, "fast", tolerance=0.0)[0]
    t = te * torch.arange(1, n + 1, dtype=torch.float64)
    b = GAMMA**2 * g**2 * te**2 * t / 12  # [n]
    truth = 1j * (ph.pd.reshape(-1, 1) * torch.exp(-t / ph.t2.reshape(-1, 1) - b * D_MAP.reshape(-1, 1))).sum(
        0
    )
    assert float(b[-1]) * 3e-9 > 1.0  # CSF loses more than e^-1 by the last echo
    assert report("CPMG ideal", float(((signal - truth) / truth).abs().max())) < 1e-3
    assert (signal - truth).abs().max() < 1e-9


def epg_cpmg_reference(
    flips: list[float], te: float, k_unit: float, d: float, t1: float, t2: float
) -> list[complex]:
    """Echoes of a CPMG in a constant gradient from a textbook 1D EPG with diffusion, written
    independently of the engine: integer states ``F+[k]``, ``F-[k]`` (the conjugate partner at
    wave vector ``-k``) and ``Z[k]``, one unit ``k_unit`` (rad/m) per half echo spacing, shift by
    index, Weigel's (2015) damping per interval; RF in this project's convention (rf.py).
    ``flips[0]`` excites about x, the others refocus about y; echo ``n`` is ``F+[0]`` at n TE."""
    n = 2 * len(flips) + 2
    fp, fm, z = [0j] * n, [0j] * n, [0j] * n
    z[0] = 1.0 + 0j
    dt = te / 2
    e1, e2 = math.exp(-dt / t1), math.exp(-dt / t2)

    def rf(a: float, phi: float) -> None:
        c2, s2, sn, e = (
            math.cos(a / 2) ** 2,
            math.sin(a / 2) ** 2,
            math.sin(a),
            complex(math.cos(phi), math.sin(phi)),
        )
        for k in range(n):
            p, m, l = fp[k], fm[k], z[k]
            fp[k] = c2 * p + e * e * s2 * m + 1j * e * sn * l
            fm[k] = s2 * p / (e * e) + c2 * m - 1j * sn * l / e
            z[k] = 0.5j * sn * p / e - 0.5j * e * sn * m + math.cos(a) * l

    def interval() -> None:
        nonlocal fp, fm
        ku2 = k_unit**2
        fp = [fp[k] * e2 * math.exp(-d * dt * ku2 * (k * k + k + 1 / 3)) for k in range(n)]
        fm = [fm[k] * e2 * math.exp(-d * dt * ku2 * (k * k - k + 1 / 3)) for k in range(n)]
        for k in range(n):
            z[k] = z[k] * e1 * math.exp(-d * dt * ku2 * k * k) + (1 - e1 if k == 0 else 0.0)
        fp, fm = [0j] + fp[:-1], fm[1:] + [0j]
        fp[0] = fm[0].conjugate()

    rf(flips[0], 0.0)
    interval()
    echoes = []
    for a in flips[1:]:
        rf(a, math.pi / 2)
        interval()
        echoes.append(fp[0])
        interval()
    return echoes


def test_cpmg_with_imperfect_refocusing_matches_a_textbook_epg():
    """150 deg refocusing: stimulated and indirect echoes store magnetisation in Z states, which
    diffuse at their own wave vector; one voxel spanning the FOV with an integer moment per half
    echo spacing, so only the k = 0 state is seen at the echoes (the others cancel exactly)."""
    te, m, d, t1, t2, n = 0.02, 2000.0, 3.0e-9, 1.5, 0.2, 8
    flips = [math.pi / 2] + [math.radians(150)] * n
    half = (m, 0.0, 0.0)
    empty = (0.0, (0.0, 0.0, 0.0), False)
    reps = [(flips[0], 0.0, [(te / 2, half, False), empty])]
    reps += [(a, math.pi / 2, [(te / 2, half, True), (te / 2, half, False)]) for a in flips[1:]]
    seq = with_kinds(
        build(reps, adc_phase=[0.0] * (n + 1), dtype=torch.float64), [EXCITATION] + [REFOCUSING] * n
    )
    full = lambda v: torch.full((1, 1), v, dtype=torch.float64)  # noqa: E731
    ph = Phantom(
        pd=full(1.0), t1=full(t1), t2=full(t2), t2dash=full(0.0), b0=full(0.0), b1=full(1.0), fov=FOV,
        diffusion=full(d),
    )  # fmt: skip
    signal = simulate(seq, ph, "fast", tolerance=0.0)[0]
    truth = torch.tensor(
        epg_cpmg_reference(flips, te, 2 * math.pi * m / FOV[0], d, t1, t2), dtype=torch.complex128
    )
    plain = torch.tensor(epg_cpmg_reference(flips, te, 2 * math.pi * m / FOV[0], 0.0, t1, t2))
    assert (truth - plain).abs().max() > 0.1 * plain.abs().max()  # diffusion matters here
    assert report("CPMG 150 deg vs 1D EPG", float(((signal - truth) / truth).abs().max())) < 1e-3
    assert (signal - truth).abs().max() < 1e-9


def test_no_diffusion_is_bit_identical_and_skipped():
    seq = pgse(1000 * MM2, (1.0, 0.0, 0.0))
    without = simulate(seq, phantom(diffusion=None), "fast")
    assert torch.equal(
        simulate(seq, phantom(diffusion=torch.zeros(2, 2, dtype=torch.float64)), "fast"), without
    )
    assert not torch.equal(simulate(seq, phantom(), "fast"), without)


def test_isochromat_engine_refuses_diffusion():
    with pytest.raises(ValueError, match="isochromat engine cannot simulate diffusion"):
        simulate(pgse(1000 * MM2, (1.0, 0.0, 0.0)), phantom(), "isochromat", spins=16)


def gradcheck_case() -> tuple[Sequence, Phantom]:
    """3 repetitions of dephase / rephase-with-ADC pairs with arbitrary moments (tens of cycles
    over a 2 cm FOV) and durations, and a 2x2 phantom with D ~ 1e-6 m^2/s, so the damping
    exp(-b D) is of order one."""
    gen = torch.Generator().manual_seed(11)
    r = 3
    base = torch.tensor([[20.0, 5.0, 0.3], [-20.0, -5.0, -0.3], [8.0, -3.0, 0.1]], dtype=torch.float64)
    seq = Sequence(
        flip=torch.tensor([1.2, 2.1, 0.8], dtype=torch.float64),
        rf_phase=torch.tensor([0.0, 1.1, -0.4], dtype=torch.float64),
        duration=2e-3 + 3e-3 * torch.rand(r, 3, generator=gen, dtype=torch.float64),
        moment=base[None] + 0.7 * torch.randn(r, 3, 3, generator=gen, dtype=torch.float64),
        adc=torch.tensor([[False, True, True], [False, True, False], [True, True, False]]),
        adc_phase=torch.tensor([0.2, -0.4, 1.1], dtype=torch.float64),
        fov=(0.02, 0.02, 0.005),
    )
    ph = replace(phantom(), fov=(0.02, 0.02, 0.005))
    return seq, ph


@pytest.mark.filterwarnings("ignore:diffusion within a readout")  # D is 1000x tissue's here
@pytest.mark.parametrize("name", ["diffusion", "moment", "duration"])
def test_gradcheck_with_diffusion(name):
    seq, ph = gradcheck_case()
    d0 = torch.tensor([[0.5, 1.0], [2.0, 1.5]], dtype=torch.float64)  # x 1e-6 m^2/s
    x = (d0 if name == "diffusion" else getattr(seq, name)).clone().requires_grad_(True)

    def signal(value: torch.Tensor) -> torch.Tensor:
        if name == "diffusion":
            return simulate(seq, replace(ph, diffusion=1e-6 * value), "fast", tolerance=0.0)
        return simulate(
            replace(seq, **{name: value}), replace(ph, diffusion=1e-6 * d0), "fast", tolerance=0.0
        )

    out = signal(x)
    plain = simulate(seq, replace(ph, diffusion=None), "fast", tolerance=0.0)
    assert (out - plain).abs().max() > 0.05 * plain.abs().max()  # diffusion matters here
    assert torch.autograd.gradcheck(signal, (x,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.filterwarnings("ignore:diffusion within a readout")
def test_checkpointing_recomputes_the_same_damping():
    seq, ph = gradcheck_case()
    ph = replace(ph, diffusion=1e-6 * torch.ones(2, 2, dtype=torch.float64))
    results = []
    for checkpointing in (False, True):
        moment = seq.moment.clone().requires_grad_(True)
        out = simulate(replace(seq, moment=moment), ph, "fast", tolerance=0.0, checkpointing=checkpointing)
        out.abs().pow(2).sum().backward()
        results.append((out.detach(), moment.grad))
    (s0, g0), (s1, g1) = results
    assert torch.allclose(s0, s1, rtol=1e-12, atol=0) and torch.allclose(g0, g1, rtol=1e-10, atol=1e-14)


@pytest.mark.filterwarnings("ignore:diffusion within a readout")
def test_gradients_through_merged_diffusing_states_match_unmerged_finite_differences(monkeypatch):
    """The merged-state case of ``test_merged_gradients.py`` (equal spoilers re-meet pathways)
    scaled to a 2 mm FOV, so that its moments diffusion-weight (D = 3e-7 m^2/s changes the loss
    by 39 %; much more diffusion would kill the re-met pathways and with them what is tested):
    merged states stay exact with the damping, whose dependence on each member's key goes
    through the dual amplitudes (a third of the moment gradient here)."""
    from test_merged_gradients import (
        FIELDS,
        FINE_GRID,
        finite_differences,
        phantom,
        run,
        spoiled_gre,
        state_counts,
    )

    seq = replace(spoiled_gre(), fov=(0.002, 0.002, 0.00005))
    ph = replace(phantom(t2dash=True), fov=seq.fov, diffusion=torch.full((4, 4), 3e-7, dtype=torch.float64))
    merged = state_counts(monkeypatch, seq, ph)
    assert (run(seq, ph) - run(seq, replace(ph, diffusion=None))).abs() > 0.05 * run(seq, ph).abs()
    leaves = {name: getattr(seq, name).clone().requires_grad_(True) for name in FIELDS}
    run(replace(seq, **leaves), ph).backward()
    monkeypatch.setattr(configuration, "KEY_GRID", FINE_GRID)
    bumped = seq.moment.clone()
    bumped[1, 3, 0] += 1e-6
    assert merged[-1] < state_counts(monkeypatch, replace(seq, moment=bumped), ph)[-1]
    for name in FIELDS:
        reference = finite_differences(seq, ph, name)
        error = (leaves[name].grad - reference).abs().max() / reference.norm()
        assert report(f"merged gradient {name}", float(error)) < 0.01


def test_readout_bound_is_the_closed_form_and_warns():
    """A constant readout gradient of n samples: the state at the centre at the last sample has
    diffused ``g^2 T^3 / 3`` (rad/m/s ``g``, T = t_n - t_1) since the first sample."""
    n, dwell, step = 64, 80e-6, 1.0  # one cycle/FOV per sample
    events = [(dwell, (step, 0.0, 0.0), True)] * n
    seq = replace(build([(math.pi / 2, 0.0, events)], dtype=torch.float64), fov=FOV)
    rate = 2 * math.pi * step / FOV[0] / dwell
    span = (n - 1) * dwell
    assert readout_bound(seq) == pytest.approx(rate**2 * span**3 / 3, rel=1e-12)
    assert 3e-9 * readout_bound(seq) < READOUT_TOLERANCE  # an ordinary readout stays silent
    slow = replace(seq, duration=seq.duration * 20, moment=seq.moment * 4)  # 100 ms, 4x finer
    with pytest.warns(UserWarning, match="diffusion within a readout is approximated"):
        simulate(slow, phantom(), "fast")


@pytest.mark.filterwarnings("ignore:diffusion within a readout")  # D is 100x tissue's here
@pytest.mark.parametrize("builder", [flash, rare])
def test_within_readout_error_stays_below_the_bound(builder):
    """Imaging readouts on the brain with 100x tissue diffusion: the samples differ from the
    exact reference (every event its own repetition, so every sample is exact) by less than
    ``D_max b_ro`` of the largest signal, while diffusion itself changes them by more."""
    seq = builder(16, dtype=torch.float64)
    brain = brain_phantom((16, 16), dtype=torch.float64, diffusion=True)
    brain = replace(brain, diffusion=100 * brain.diffusion)
    s = simulate(seq, brain, tolerance=0.0)
    exact = simulate(one_event_per_repetition(seq), brain, tolerance=0.0)
    plain = simulate(seq, replace(brain, diffusion=None), tolerance=0.0)
    scale, bound = plain.abs().max(), readout_bound(seq) * float(brain.diffusion.max())
    error = report(
        f"{builder.__name__} readout error (bound {bound:.1e})", float((s - exact).abs().max() / scale)
    )
    assert error < bound
    assert (s - plain).abs().max() > 10 * bound * scale


def test_phantom_diffusion_maps():
    brain = brain_phantom((32, 32), diffusion=True)
    assert brain_phantom((32, 32)).diffusion is None  # opt in: the isochromat engine refuses it
    d = brain.diffusion[brain.pd > 0]
    assert float(d.min()) >= 0.7e-9 * (1 - 1e-6) and float(d.max()) <= 3.0e-9 * (1 + 1e-6)
    # PD-weighted mean: the total "PD x D" is kept by area resampling
    coarse = resample_phantom(brain, (16, 16))
    assert float((coarse.pd * coarse.diffusion).sum() * 4) == pytest.approx(
        float((brain.pd * brain.diffusion).sum())
    )
    with pytest.raises(PhantomError, match="diffusion must be a finite non-negative map"):
        phantom(diffusion=-D_MAP)


def test_nifti_adc_map_in_mm2_per_s(tmp_path):
    import json

    import nibabel as nib
    import numpy as np

    from mrzero.sequences.phantoms.nifti import NiftiPhantomError, load_nifti_phantom

    def write(units: list[str]) -> None:
        data = np.ones((4, 3, 2, 1, 4)) * np.array([1.0, 1.2, 0.09, 0.8e-3])  # m0, t1, t2, adc
        nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(tmp_path / "m.nii.gz"))
        side = {"quantities": ["m0", "t1", "t2", "adc"], "units": units}
        (tmp_path / "m.json").write_text(json.dumps(side))

    write(["", "s", "s", "mm^2/s"])
    assert torch.allclose(
        load_nifti_phantom(tmp_path / "m.nii.gz").diffusion, torch.tensor(0.8e-9), rtol=1e-6, atol=0
    )
    write(["", "s", "s", "um^2/ms"])
    with pytest.raises(NiftiPhantomError, match="diffusion has unit 'um2/ms'"):
        load_nifti_phantom(tmp_path / "m.nii.gz")
