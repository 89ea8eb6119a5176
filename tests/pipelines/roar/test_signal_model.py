"""The RoAR signal model: S(t) = S0 exp(-R2* t) F(t) with F = |sinc(df t)|."""

import math

import pytest
import torch

from mrzero.pipelines.roar.signal_model import (
    PUBLISHED_TE_S,
    clean_f,
    echo_times,
    f_sinc,
    mgre_magnitude,
    slice_gradient_hz,
)


def test_published_echo_times_are_4_to_40_ms():
    te = echo_times()
    assert te.shape == (10,)
    assert te[0].item() == pytest.approx(4e-3) and te[-1].item() == pytest.approx(40e-3)
    assert len(PUBLISHED_TE_S) == 10


def test_echo_times_in_ms_are_refused():
    with pytest.raises(ValueError, match="milliseconds"):
        echo_times([4.0, 8.0, 12.0])


def test_f_matches_linear_gradient_dephasing_integral():
    # A field varying linearly by df across the voxel: F(t) = |mean over the voxel of exp(i 2 pi f t)|.
    df = torch.tensor([0.0, 10.0, 20.0])
    te = echo_times()
    f = f_sinc(df, te)
    z = torch.linspace(-0.5, 0.5, 20001, dtype=torch.float64)
    for j, d in enumerate(df.tolist()):
        for e, t in enumerate(te.tolist()):
            ref = torch.exp(2j * math.pi * d * z * t).mean().abs().item()
            assert f[e, j].item() == pytest.approx(ref, abs=1e-4)
    assert torch.all(f[:, 0] == 1)


def test_f_values_above_1p3_become_one():
    f = torch.tensor([0.5, 1.0, 1.2, 1.31, 7.0])
    assert clean_f(f).tolist() == pytest.approx([0.5, 1.0, 1.2, 1.0, 1.0])


def test_slice_gradient_is_central_difference():
    z = torch.arange(5, dtype=torch.float32)
    b0 = (3.0 * z**2).reshape(5, 1, 1).expand(5, 2, 2)
    df = slice_gradient_hz(b0)
    # central difference of 3 z^2 at z = 1..3 is 6 z
    assert df[1:4, 0, 0].tolist() == pytest.approx([6.0, 12.0, 18.0])


def test_model_values_and_gradients():
    s0 = torch.tensor([2.0], requires_grad=True)
    r2 = torch.tensor([20.0], requires_grad=True)
    te = echo_times()
    f = torch.full((10, 1), 0.5)
    s = mgre_magnitude(s0, r2, te, f)
    assert s[0, 0].item() == pytest.approx(2.0 * math.exp(-20 * 4e-3) * 0.5, rel=1e-6)
    s.sum().backward()
    assert r2.grad.item() < 0 < s0.grad.item()


def test_model_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="F has shape"):
        mgre_magnitude(torch.ones(3), torch.ones(3), echo_times(), torch.ones(9, 3))
    with pytest.raises(ValueError, match="S0 shape"):
        mgre_magnitude(torch.ones(3), torch.ones(4), echo_times())
