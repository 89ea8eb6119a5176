"""Pulses as played out: off-resonant hard pulses against a Bloch integration, fat, fat saturation.

The reference integrates the Bloch equation without relaxation through the pulse shape with one
closed-form rotation per time step (numpy, float64): free precession is a rotation by
``-2 pi d dt`` about z and the RF one by ``-2 pi |B1| dt`` about its transverse axis
(``core/units.py``: equilibrium -> ``Mxy = i sin(a) e^{i phi}``). The engines' signals are compared
as complex numbers, so a sign error in the detuning or the phase fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from engine_cases import ENGINE_OPTIONS, build

from mrzero.sequences.engines.rf import played_coefficients
from mrzero.sequences.phantom import FatSpecies, Phantom
from mrzero.sequences.sequence import RfOffsets
from mrzero.sequences.simulate import simulate

FAT_HZ = FatSpecies(torch.zeros(1, 1)).shift_hz  # -3.4 ppm at 3 T, about -434 Hz


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Right-handed rotation matrix by ``angle`` about ``axis`` (Rodrigues)."""
    norm = np.linalg.norm(axis)
    if norm == 0:
        return np.eye(3)
    n = axis / norm
    k = np.array([[0, -n[2], n[1]], [n[2], 0, -n[0]], [-n[1], n[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def bloch(b1: np.ndarray, dt: float, detuning: float, m: np.ndarray | None = None) -> np.ndarray:
    """Magnetisation after the complex B1 samples ``b1`` (Hz, each held for ``dt``) at ``detuning`` Hz."""
    m = np.array([0.0, 0.0, 1.0]) if m is None else m
    for b in b1:
        field = (
            2 * math.pi * np.array([abs(b) * math.cos(np.angle(b)), abs(b) * math.sin(np.angle(b)), detuning])
        )
        m = rotation(field, -np.linalg.norm(field) * dt) @ m
    return m


def hard(flip: float, phase: float, duration: float, n: int = 2000) -> tuple[np.ndarray, float]:
    """A rectangular pulse of ``flip`` rad as ``n`` samples."""
    return np.full(n, flip / (2 * math.pi * duration) * np.exp(1j * phase)), duration / n


def gauss(flip: float, duration: float, bandwidth: float, n: int = 4096) -> tuple[np.ndarray, float]:
    """A Gaussian pulse (time-bandwidth as pypulseq's make_gauss_pulse: sigma_f = bandwidth / 2.355)."""
    dt = duration / n
    t = (np.arange(n) + 0.5) * dt - duration / 2
    sigma = 1 / (2 * math.pi * bandwidth / (2 * math.sqrt(2 * math.log(2))))
    shape = np.exp(-0.5 * (t / sigma) ** 2)
    return shape * flip / (2 * math.pi * shape.sum() * dt), dt


def fid_after(b1: np.ndarray, dt: float, b0: float, frequency: float, times: np.ndarray) -> np.ndarray:
    """Complex Mxy in the receiver's frame at ``times`` after the pulse centre (all after its end).

    The integration runs in the pulse's frame (detuning ``b0 - frequency``), which turns by
    ``-2 pi frequency t`` against the receiver's from the pulse centre on."""
    detuning = b0 - frequency
    m = bloch(b1, dt, detuning)
    half = len(b1) * dt / 2
    return (m[0] + 1j * m[1]) * np.exp(-2j * math.pi * (detuning * (times - half) + frequency * times))


def one_voxel_fid(flip: float, phase: float, frequency: float, duration: float, times: list[float]):
    """Sequence: one pulse played at ``frequency`` for ``duration``, then ADC samples at ``times``."""
    events = [(t - prev, (0.0, 0.0, 0.0), True) for prev, t in zip([0.0, *times[:-1]], times, strict=True)]
    seq = build([(flip, phase, events)], adc_phase=[0.0], dtype=torch.float64)
    seq.rf_offsets = RfOffsets(
        torch.tensor([frequency], dtype=torch.float64), torch.tensor([duration], dtype=torch.float64)
    )
    return seq


def voxel(b0: float, fat_pd: float = 0.0, water_pd: float = 1.0) -> Phantom:
    full = lambda v: torch.full((1, 1), float(v), dtype=torch.float64)  # noqa: E731
    fat = FatSpecies(full(fat_pd), t1=1e6, t2=1e6) if fat_pd else None
    return Phantom(
        pd=full(water_pd), t1=full(1e6), t2=full(1e6), t2dash=full(0.0), b0=full(b0), b1=full(1.0), fat=fat
    )


@pytest.mark.parametrize("engine", ["fast", "isochromat"])
@pytest.mark.parametrize(
    "b0, frequency",
    [(0.0, 0.0), (150.0, 0.0), (-150.0, 0.0), (0.0, 300.0), (300.0, 300.0), (-300.0, 300.0), (120.0, -80.0)],
)
def test_hard_pulse_off_resonance_matches_the_bloch_integration(engine, b0, frequency):
    flip, phase, duration = math.radians(70), 0.6, 2e-3
    times = [1.5e-3, 2.0e-3, 3.1e-3]
    seq = one_voxel_fid(flip, phase, frequency, duration, times)
    signal = simulate(seq, voxel(b0), engine=engine, **ENGINE_OPTIONS[engine])[0].numpy()
    b1, dt = hard(flip, phase, duration)
    expected = fid_after(b1, dt, b0, frequency, np.array(times))
    np.testing.assert_allclose(signal, expected, atol=2e-4 if engine == "isochromat" else 1e-6)


def test_a_pulse_excites_the_spins_at_its_own_frequency_not_the_mirror():
    """Sign: a pulse at +300 Hz tips the voxel at +300 Hz fully, the one at -300 Hz by a few degrees."""
    seq = one_voxel_fid(math.pi / 2, 0.0, 300.0, 4e-3, [2.5e-3])
    on = simulate(seq, voxel(300.0))[0, 0]
    mirror = simulate(seq, voxel(-300.0))[0, 0]
    assert float(abs(on)) == pytest.approx(1.0, abs=1e-6) and float(abs(mirror)) < 0.25


def step_weights(b1: np.ndarray, steps: int) -> torch.Tensor:
    """The pulse's share of its area in each of ``steps`` equal steps (complex, summing to 1)."""
    return torch.tensor(b1.reshape(steps, -1).sum(1) / b1.sum(), dtype=torch.complex128)


@pytest.mark.parametrize("detuning", [0.0, FAT_HZ / 2, -FAT_HZ, 250.0])
def test_shaped_pulse_in_steps_matches_the_bloch_integration(detuning):
    """A Gaussian fat-saturation pulse (110 deg, 8 ms, bandwidth |fat shift|) in 64 steps agrees
    with the 4096-sample integration to 2e-3 of M0 at every detuning."""
    steps, tolerance = 64, 2e-3
    flip = math.radians(110)
    b1, dt = gauss(flip, 8e-3, abs(FAT_HZ))
    reference = bloch(b1, dt, detuning)
    reference = rotation(np.array([0, 0, 1.0]), 2 * math.pi * detuning * 4e-3) @ reference  # to the centre
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    c = played_coefficients(f64(flip), f64(0.0), f64(detuning), f64(8e-3), step_weights(b1, steps))
    mxy, mz = complex(c.excite), float(c.cos)  # acting on equilibrium
    error = max(abs(mz - reference[2]), abs(mxy - complex(reference[0], reference[1])))
    assert error < tolerance
    if detuning == 0.0:
        assert error < 1e-9  # on its own resonance any shape is the rotation by its area


@pytest.mark.parametrize("engine", ["fast", "isochromat"])
def test_water_and_fat_go_out_of_and_back_into_phase(engine):
    """A 90 deg pulse and a free induction decay: S(t) = i (W + F exp(-2 pi i f_fat t)), phase included."""
    water, fat = 0.7, 0.3
    times = [0.5 / abs(FAT_HZ), 1.0 / abs(FAT_HZ), 1.3 / abs(FAT_HZ)]
    seq = one_voxel_fid(math.pi / 2, 0.0, 0.0, 0.0, times)
    signal = simulate(seq, voxel(0.0, fat_pd=fat, water_pd=water), engine=engine, **ENGINE_OPTIONS[engine])[0]
    t = np.array(times)
    expected = 1j * (water + fat * np.exp(-2j * math.pi * FAT_HZ * t))
    np.testing.assert_allclose(signal.numpy(), expected, atol=1e-6)
    assert abs(signal[0]) == pytest.approx(water - fat, abs=1e-6)  # opposed phase
    assert abs(signal[1]) == pytest.approx(water + fat, abs=1e-6)  # in phase


@pytest.mark.parametrize("engine", ["fast", "isochromat"])
def test_fat_saturation_removes_fat_and_keeps_water(engine):
    """Fat-sat (110 deg hard pulse at the fat frequency), a spoiler, then a 90 deg excitation: the
    FID holds water times its Mz after the fat-sat pulse (Bloch reference) and fat times cos(110)."""
    flip, duration = math.radians(110), 2.2e-3
    spoil = (1e-3, (8.0, 0.0, 0.0), False)
    seq = build(
        [(flip, 0.0, [spoil]), (math.pi / 2, 0.0, [(1e-4, (0.0, 0.0, 0.0), True)])],
        adc_phase=[0.0, 0.0],
        dtype=torch.float64,
    )
    seq.rf_offsets = RfOffsets(
        torch.tensor([FAT_HZ, 0.0], dtype=torch.float64), torch.tensor([duration, 0.0], dtype=torch.float64)
    )
    water, fat = 0.6, 0.4
    signal = complex(
        simulate(seq, voxel(0.0, fat_pd=fat, water_pd=water), engine=engine, **ENGINE_OPTIONS[engine])[0, 0]
    )
    b1, dt = hard(flip, 0.0, duration)
    mz_water = bloch(b1, dt, -FAT_HZ)[2]
    mz_fat = bloch(b1, dt, 0.0)[2]
    expected = 1j * (water * mz_water + fat * mz_fat * np.exp(-2j * math.pi * FAT_HZ * 1e-4))
    assert abs(signal - expected) < (1e-3 if engine == "isochromat" else 1e-6)
    assert mz_water > 0.99 and mz_fat == pytest.approx(math.cos(flip), abs=1e-9)
    # without the offset the same pulse would hit water: what the import did before
    seq.rf_offsets = None
    on_water = complex(simulate(seq, voxel(0.0, fat_pd=fat, water_pd=water))[0, 0])
    assert abs(on_water - expected) > 0.3


def test_played_coefficients_gradcheck():
    def f(flip, phase, detuning, duration):
        c = played_coefficients(flip, phase, detuning, duration)
        return tuple(torch.view_as_real(getattr(c, k)) for k in ("keep", "conj", "excite", "store")) + (
            c.cos,
        )

    args = [
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in ([0.4, 2.0], [0.3, -1.0], [120.0, -40.0], [1e-3, 3e-3])
    ]
    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize("engine", ["fast", "isochromat"])
def test_gradients_through_a_played_out_pulse(engine):
    """float64 gradcheck in flip, phase and duration through a shaped off-resonant pulse and an
    excitation, on a voxel with water and fat."""
    shape = torch.tensor([0.1, 0.4, 0.4, 0.1], dtype=torch.complex128)
    spoil = (1e-3, (0.3, 0.0, 0.0), False)
    base = build(
        [(1.2, 0.0, [spoil]), (0.8, 0.3, [(1e-3, (0.1, 0.0, 0.0), True), (1e-3, (0.1, 0.0, 0.0), True)])],
        dtype=torch.float64,
    )
    phantom = voxel(30.0, fat_pd=0.4, water_pd=0.6)
    options = {"spins": 16} if engine == "isochromat" else {}

    def signal(flip, phase, duration):
        seq = base.clone()
        seq.flip, seq.rf_phase = flip, phase
        seq.rf_offsets = RfOffsets(
            torch.tensor([FAT_HZ, 0.0], dtype=torch.float64), duration, torch.stack([shape, shape])
        )
        return torch.view_as_real(simulate(seq, phantom, engine=engine, **options))

    args = (
        base.flip.clone().requires_grad_(),
        base.rf_phase.clone().requires_grad_(),
        torch.tensor([4e-3, 1e-3], dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(signal, args)
