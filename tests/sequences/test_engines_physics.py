"""Both engines against closed forms: FID, spin echo, inversion recovery, stimulated echo,
spoiled-GRE steady state (Ernst) and bSSFP steady state, on one voxel."""

from __future__ import annotations

import math

import pytest
import torch
from engine_cases import ENGINE_OPTIONS, bssfp, build, one_voxel, spoiled_gre_fid

from mrzero.sequences.simulate import simulate

ENGINES = sorted(ENGINE_OPTIONS)
ZERO = (0.0, 0.0, 0.0)


def run(seq, phantom, engine):
    return simulate(seq, phantom, engine, **ENGINE_OPTIONS[engine])[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_fid_decays_with_t2_star_and_precesses_with_b0(engine):
    dt, n, t2, t2dash, b0, phase = 2e-3, 20, 0.1, 0.02, 10.0, 0.3
    seq = build([(math.pi / 2, phase, [(dt, ZERO, True)] * n)], adc_phase=[0.0])
    signal = run(seq, one_voxel(t2=t2, t2dash=t2dash, b0=b0), engine)
    t = dt * torch.arange(1, n + 1)
    expected = (
        1j * math.e ** (1j * phase) * torch.exp(-t / t2 - t / t2dash) * torch.exp(-2j * math.pi * b0 * t)
    )
    tol = 1e-5 if engine == "fast" else 0.02  # isochromats: Lorentzian quantiles converge slowly
    assert (signal - expected).abs().max() < tol


@pytest.mark.parametrize("engine", ENGINES)
def test_spin_echo_refocuses_t2_dash_and_b0_but_not_t2(engine):
    te, t2, t2dash, b0 = 40e-3, 0.08, 0.01, 25.0
    offsets = [-4e-3, -2e-3, 0.0, 2e-3, 4e-3]
    steps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
    events = [(te / 2 + offsets[0], ZERO, True)] + [(d, ZERO, True) for d in steps]
    seq = build(
        [(math.pi / 2, 0.0, [(te / 2, ZERO, False)]), (math.pi, math.pi / 2, events)], adc_phase=[0.0, 0.0]
    )
    signal = run(seq, one_voxel(t1=1.0, t2=t2, t2dash=t2dash, b0=b0), engine)
    d = torch.tensor(offsets)
    expected = 1j * torch.exp(-(te + d) / t2 - d.abs() / t2dash) * torch.exp(-2j * math.pi * b0 * d)
    tol = 1e-5 if engine == "fast" else 0.01
    assert (signal - expected).abs().max() < tol
    assert abs(abs(complex(signal[2])) - math.exp(-te / t2)) < tol  # the echo itself: T2 only


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ti", [0.05, 0.3, 0.8, 2.0])
def test_inversion_recovery(engine, ti):
    t1 = 0.9
    seq = build([(math.pi, 0.0, [(ti, (3.0, 0.0, 0.0), False)]), (math.pi / 2, 0.0, [(0.0, ZERO, True)])])
    signal = run(seq, one_voxel(pd=2.0, t1=t1, t2=0.05), engine)
    expected = 1j * 2.0 * (1 - 2 * math.exp(-ti / t1))
    assert abs(complex(signal[0]) - expected) < 1e-5


@pytest.mark.parametrize("engine", ENGINES)
def test_stimulated_echo_amplitude_is_half_m0_times_relaxation(engine):
    tau, tm, t1, t2 = 10e-3, 100e-3, 0.5, 0.06
    # third repetition: wait, then 8 samples 0.5 ms apart, each moving k by 1/4 cycle/FOV, so that
    # the stimulated pathway (dephased by -1 cycle) is refocused at the 4th sample, tau after the pulse
    read = [(tau - 2e-3, ZERO, False)] + [(0.5e-3, (0.25, 0.0, 0.0), True)] * 8
    seq = build(
        [
            (math.pi / 2, 0.0, [(tau, (1.0, 0.0, 0.0), False)]),
            (math.pi / 2, 0.0, [(tm, (5.0, 0.0, 0.0), False)]),  # crusher: no other pathway returns to 0
            (math.pi / 2, 0.0, read),
        ]
    )
    signal = run(seq, one_voxel(t1=t1, t2=t2, t2dash=0.0), engine)
    expected = 0.5 * math.exp(-2 * tau / t2) * math.exp(-tm / t1)
    assert abs(abs(complex(signal[3])) - expected) < 1e-4


@pytest.mark.parametrize("engine", ENGINES)
def test_spoiled_gre_reaches_ernst_steady_state_when_transverse_magnetisation_dies(engine):
    flip, tr, t1 = math.radians(30), 20e-3, 0.3
    seq = spoiled_gre_fid(150, flip, tr)
    signal = run(seq, one_voxel(t1=t1, t2=1e-3), engine)  # T2 << TR: ideal spoiling
    e1 = math.exp(-tr / t1)
    ernst = math.sin(flip) * (1 - e1) / (1 - math.cos(flip) * e1)
    assert abs(complex(signal[-1]) - 1j * ernst) < 1e-5  # ADC follows the RF phase


@pytest.mark.parametrize("engine", ENGINES)
def test_rf_and_gradient_spoiled_gre_is_close_to_ernst(engine):
    flip, tr, t1, t2 = math.radians(10), 10e-3, 1.0, 0.1
    signal = run(spoiled_gre_fid(400, flip, tr), one_voxel(t1=t1, t2=t2), engine)
    e1 = math.exp(-tr / t1)
    ernst = math.sin(flip) * (1 - e1) / (1 - math.cos(flip) * e1)
    late = signal[-50:].abs()
    # 117 deg RF spoiling is known to approximate Ernst within a few percent at low flip angles
    assert abs(float(late.mean()) / ernst - 1) < 0.05
    assert float(late.std()) / ernst < 0.02  # quasi steady state


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("flip_deg", [20.0, 60.0])
def test_bssfp_steady_state_matches_closed_form(engine, flip_deg):
    flip, tr, t1, t2 = math.radians(flip_deg), 10e-3, 0.3, 0.1
    signal = run(bssfp(300, flip, tr), one_voxel(t1=t1, t2=t2), engine)
    e1, e2 = math.exp(-tr / t1), math.exp(-tr / t2)
    ss = math.sin(flip) * (1 - e1) / (1 - (e1 - e2) * math.cos(flip) - e1 * e2) * math.exp(-tr / 2 / t2)
    assert abs(float(signal[-1].abs()) - ss) < 1e-4
    assert abs(float(signal[-2].abs()) - ss) < 1e-4


def test_bad_input_fails_with_a_message_naming_it():
    seq, phantom = build([(math.pi / 2, 0.0, [(1e-3, ZERO, True)])]), one_voxel()
    with pytest.raises(ValueError, match="unknown simulation engine 'bloch'"):
        simulate(seq, phantom, "bloch")
    with pytest.raises(TypeError, match=r"engine 'fast' has no option\(s\) \['spins'\]"):
        simulate(seq, phantom, "fast", spins=8)
    with pytest.raises(ValueError, match="spins must be a positive integer"):
        simulate(seq, phantom, "isochromat", spins=0)
    with pytest.raises(ValueError, match="no voxel with pd > 0"):
        simulate(seq, one_voxel(pd=0.0))
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        simulate(seq, phantom, "fast", tolerance=-1.0)


def test_ideal_spoiling_gives_the_closed_form_spoiled_gre_transient():
    """With ideal spoiling each pulse sees only the recovered Mz: line r samples
    M_r sin(a), M_0 = PD, M_{r+1} = M_r cos(a) E1 + PD (1 - E1) (the textbook transient), even with a
    T2 far beyond TR, where the played 117 deg RF spoiling and 1 cycle/FOV spoiler leave echoes that
    move the signal off it by percents."""
    flip, tr, t1, n = math.radians(30), 10e-3, 0.3, 60
    seq = spoiled_gre_fid(n, flip, tr)
    phantom = one_voxel(pd=1.5, t1=t1, t2=2.0)
    e1 = math.exp(-tr / t1)
    mz, expected = 1.5, []
    for _ in range(n):
        expected.append(mz * math.sin(flip))
        mz = mz * math.cos(flip) * e1 + 1.5 * (1 - e1)
    expected = 1j * torch.tensor(expected, dtype=torch.complex128)
    ideal = simulate(seq, phantom, "fast", ideal_spoiling=True, **ENGINE_OPTIONS["fast"])[0]
    assert (ideal.to(torch.complex128) - expected).abs().max() < 1e-5
    played = run(seq, phantom, "fast")
    assert float((played.to(torch.complex128) - expected).abs().max()) / abs(complex(expected[-1])) > 0.02


def test_ideal_spoiling_keeps_gradients_and_refuses_echo_trains():
    seq = spoiled_gre_fid(8, math.radians(20), 10e-3)
    seq.moment.requires_grad_(True)
    seq.flip.requires_grad_(True)
    phantom = one_voxel(t1=0.5, t2=0.5)
    simulate(seq, phantom, "fast", ideal_spoiling=True).abs().sum().backward()
    assert bool(torch.isfinite(seq.flip.grad).all()) and float(seq.flip.grad.abs().sum()) > 0
    assert bool(torch.isfinite(seq.moment.grad).all())
    echo = build([(math.pi / 2, 0.0, [(5e-3, ZERO, False)]), (math.pi, math.pi / 2, [(5e-3, ZERO, True)])])
    echo.rf_kind[1] = 1  # REFOCUSING
    with pytest.raises(ValueError, match="refocusing"):
        simulate(echo, phantom, "fast", ideal_spoiling=True)
