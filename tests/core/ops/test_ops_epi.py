"""EPI operators against closed forms: the trapezoid's k positions, ramp-sampling regridding of
the exact Fourier transform of a known object, line reversal, and the navigator phase
correction's constant and linear term."""

import numpy as np
import pytest
import torch

from mrzero.core.ops.epi import (
    EpiError,
    PhaseCorrection,
    Regridder,
    TrapezoidReadout,
    grid_positions,
    navigator_correction,
    reverse_readout,
)
from mrzero.core.ops.fft import ifftc

N = 128
READOUTS = {
    "ramps_and_flat_top": TrapezoidReadout(100e-6, 320e-6, 100e-6, 0.0, 520e-6 / 160, 160),
    "triangle_like": TrapezoidReadout(200e-6, 200e-6, 200e-6, 0.0, 3e-6, 200),
    "delayed_adc": TrapezoidReadout(200e-6, 200e-6, 200e-6, 30e-6, 3e-6, 180),
    "flat": TrapezoidReadout(0.0, 640e-6, 0.0, 0.0, 5e-6, N),
}


def _object(seed: int = 0) -> np.ndarray:
    """Random point sources in the central half of the FOV (the readout is 2x oversampled)."""
    rng = np.random.default_rng(seed)
    a = np.zeros(N, complex)
    a[N // 4 : 3 * N // 4] = rng.standard_normal(N // 2) + 1j * rng.standard_normal(N // 2)
    return a


def _ft(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The exact transform ``s(k) = sum_x a(x) exp(-2 pi i k x)`` (``core/units.py``)."""
    _, x = grid_positions(len(a))
    return np.exp(-2j * np.pi * np.outer(k, x)) @ a


def test_trapezoid_k_positions_follow_the_gradient_area():
    r = READOUTS["ramps_and_flat_top"]
    k = r.sample_k(N)
    np.testing.assert_allclose(k, -k[::-1], atol=1e-9)  # symmetric ADC: k = 0 mid-readout
    t = (np.arange(r.n_samples) + 0.5) * r.dwell_s
    flat = (t > r.ramp_up_s) & (t < r.ramp_up_s + r.flat_top_s)
    step = np.diff(k)[flat[1:] & flat[:-1]]
    # on the flat top the area grows by one dwell per sample: N / (window area) * dwell
    np.testing.assert_allclose(step, N * r.dwell_s / (r.flat_top_s + 0.5 * (r.ramp_up_s + r.ramp_down_s)))
    assert np.all(np.diff(k) > 0) and np.diff(k)[0] < step[0] / 4  # slow on the ramps
    # the ADC covers the whole lobe here: its area is the trapezoid's, 420 us at amplitude 1
    assert r.window_area() == pytest.approx(420e-6)


@pytest.mark.parametrize("name", list(READOUTS))
@pytest.mark.parametrize("reflected", [False, True])
def test_regridding_reproduces_the_exact_transform_on_the_grid(name, reflected):
    r = READOUTS[name]
    a = _object()
    k = -r.sample_k(N) if reflected else r.sample_k(N)
    grid, _ = grid_positions(N)
    out = Regridder(r, N)(torch.from_numpy(_ft(a, k)[None].astype(np.complex64)), reflected)[0].numpy()
    truth = _ft(a, grid)
    error = np.linalg.norm(out - truth) / np.linalg.norm(truth)
    assert error < (1e-5 if name == "flat" else 5e-3), error
    # without regridding (samples taken as if on the grid) the line is far off
    if name != "flat":
        samples = _ft(a, k)
        start = (len(samples) - N) // 2
        naive = samples[start : start + N][:: -1 if reflected else 1]
        assert np.linalg.norm(naive - truth) / np.linalg.norm(truth) > 0.3


def test_regridding_refuses_a_line_of_another_length():
    with pytest.raises(EpiError, match="samples"):
        Regridder(READOUTS["flat"], N)(torch.zeros(1, N + 2, dtype=torch.complex64), False)


def test_an_adc_longer_than_the_lobe_is_refused():
    with pytest.raises(EpiError, match="after the readout lobe"):
        TrapezoidReadout(100e-6, 300e-6, 100e-6, 10e-6, 5e-6, 120)


def test_reverse_readout_keeps_the_echo_centre():
    a = _object(1)
    grid, _ = grid_positions(N)
    forward = _ft(a, grid)
    acquired = _ft(a, -grid)  # the same grid traversed backwards: sample i at k = -(i - N/2)
    out = reverse_readout(torch.from_numpy(acquired[None]), N // 2)[0].numpy()
    np.testing.assert_allclose(out[1:], forward[1:], atol=1e-9)
    assert out[0] == 0  # k = -N/2 was not acquired backwards


@pytest.mark.parametrize(("constant", "shift"), [(0.0, 0.0), (0.9, 0.6), (-2.5, -1.4)])
def test_navigator_correction_recovers_constant_and_linear_term(constant, shift):
    grid, _ = grid_positions(N)
    rng = np.random.default_rng(2)
    coils = np.stack([_object(s) * np.exp(1j * rng.uniform(0, 6.3)) for s in range(3)])
    nav_forward = np.stack([_ft(c, grid) for c in coils])
    nav_reflected = np.exp(1j * constant) * np.stack([_ft(c, grid + shift) for c in coils])
    navigators = [
        (torch.from_numpy(nav_forward), False),
        (torch.from_numpy(nav_reflected), True),
        (torch.from_numpy(nav_forward), False),
    ]
    corr = navigator_correction(navigators)
    assert corr.constant == pytest.approx(constant, abs=1e-6)
    assert corr.slope == pytest.approx(-2 * np.pi * shift / N, abs=1e-8)
    # corrected, both polarities have the same image along x
    fwd = ifftc(corr(torch.from_numpy(nav_forward), reflected=False), ndim=1)
    rev = ifftc(corr(torch.from_numpy(nav_reflected), reflected=True), ndim=1)
    torch.testing.assert_close(rev, fwd, atol=1e-4, rtol=0)


def test_navigators_of_one_polarity_are_refused():
    line = torch.ones(1, N, dtype=torch.complex64)
    with pytest.raises(EpiError, match="both polarities"):
        navigator_correction([(line, False), (line, False)])


def test_phase_correction_halves_the_difference():
    corr = PhaseCorrection(constant=0.8, slope=0.0)
    line = torch.zeros(1, N, dtype=torch.complex64)
    line[0, N // 2] = 1.0  # a constant image
    assert torch.angle(corr(line, reflected=True)[0, N // 2]).item() == pytest.approx(-0.4, abs=1e-6)
    assert torch.angle(corr(line, reflected=False)[0, N // 2]).item() == pytest.approx(0.4, abs=1e-6)
