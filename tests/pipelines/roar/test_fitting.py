"""Voxel-wise baselines on synthetic voxels with known truth."""

import pytest
import torch

from mrzero.pipelines.roar.fitting import fit_arlo, fit_loglinear, fit_nlls
from mrzero.pipelines.roar.signal_model import echo_times, f_sinc, mgre_magnitude


def _voxels(n: int = 4000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s0 = 0.5 + torch.rand(n, generator=g)
    r2 = 5.0 + 40.0 * torch.rand(n, generator=g)
    df = 8.0 * torch.randn(n, generator=g).clamp(-2, 2)  # keeps df * 40 ms below the first zero of sinc
    te = echo_times()
    f = f_sinc(df, te)
    return s0, r2, te, f, mgre_magnitude(s0, r2, te, f), g


@pytest.mark.parametrize("fit", [fit_nlls, fit_arlo, fit_loglinear])
def test_noise_free_recovery_with_f(fit):
    s0, r2, te, f, y, _ = _voxels()
    a, b = fit(y, te, f)
    assert torch.allclose(b, r2, atol=2e-3, rtol=1e-4)
    assert torch.allclose(a, s0, rtol=1e-4)


def test_nlls_without_f_is_biased_by_b0_and_with_f_is_not():
    s0, r2, te, f, y, _ = _voxels()
    _, without = fit_nlls(y, te)
    _, with_f = fit_nlls(y, te, f)
    assert (without - r2).mean() > 1.0  # macroscopic dephasing inflates the apparent R2*
    assert (with_f - r2).abs().max() < 1e-2


def test_nlls_is_unbiased_at_high_snr():
    s0, r2, te, f, y, g = _voxels(20000, seed=1)
    sigma = s0.mean() / 200.0
    _, b = fit_nlls(y + sigma * torch.randn(y.shape, generator=g), te, f)
    err = b - r2
    # the mean error is well inside its standard error band and far below the spread
    assert abs(err.mean().item()) < 4 * err.std().item() / len(err) ** 0.5 + 0.02
    assert err.std().item() < 1.0


def test_nlls_noise_error_shrinks_with_snr_and_beats_loglinear():
    s0, r2, te, f, y, g = _voxels(8000, seed=2)
    res = {}
    for snr in (5, 15):
        noisy = y + s0.mean() / snr * torch.randn(y.shape, generator=g)
        res[snr] = [
            ((fit(noisy, te, f)[1] - r2).norm() / r2.norm()).item() for fit in (fit_nlls, fit_loglinear)
        ]
    assert res[15][0] < res[5][0] / 2
    assert res[5][0] < res[5][1]


def test_maps_keep_their_shape_and_chunks_agree():
    s0, r2, te, f, y, _ = _voxels(600)
    a, b = fit_nlls(y.reshape(10, 20, 30), te, f.reshape(10, 20, 30), chunk=77)
    assert a.shape == (20, 30)
    assert torch.allclose(b.flatten(), r2, atol=2e-3)


def test_bad_inputs_are_named():
    te = echo_times()
    with pytest.raises(ValueError, match="echo first"):
        fit_nlls(torch.ones(5, 10), te)
    with pytest.raises(ValueError, match="equally spaced"):
        fit_arlo(torch.ones(3, 4), torch.tensor([0.004, 0.008, 0.02]))
    with pytest.raises(ValueError, match="magnitudes"):
        fit_loglinear(torch.ones(10, 4, dtype=torch.complex64), te)
    with pytest.raises(ValueError, match="F has shape"):
        fit_nlls(torch.ones(10, 4), te, torch.ones(10, 5))
