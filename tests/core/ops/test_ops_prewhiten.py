"""Noise prewhitening: the matrix by hand, decorrelation of correlated noise, dwell-time scaling."""

import math

import ismrmrd
import numpy as np
import pytest
import torch
from mrd_builders import acquisition, context, header

from mrzero.core.ops.prewhiten import (
    DEFAULT_RECEIVER_NOISE_BANDWIDTH,
    bandwidth_scale,
    noise_covariance,
    prewhiten,
    prewhitening_matrix,
)
from mrzero.pipelines.base import PipelineError
from mrzero.pipelines.stages.noise import prewhiten_stage

MIXING = np.array([[1.0, 0.0], [0.6 + 0.3j, 0.5]])  # coil 2 shares 45 % of its noise power with coil 1


def _noise(n: int, seed: int, mixing=MIXING) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (mixing.shape[1], n)
    white = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / math.sqrt(2)
    return mixing @ white  # covariance mixing @ mixing^H


def test_matrix_of_a_hand_computed_cholesky():
    # [[4, 2], [2, 5]] = L L^H with L = [[2, 0], [1, 2]], so L^-1 = [[1/2, 0], [-1/4, 1/2]]
    cov = torch.tensor([[4, 2], [2, 5]], dtype=torch.complex128)
    expected = torch.tensor([[0.5, 0], [-0.25, 0.5]], dtype=torch.complex128)
    torch.testing.assert_close(prewhitening_matrix(cov), expected)
    torch.testing.assert_close(prewhitening_matrix(cov, 3.0), 3.0 * expected)


def test_covariance_is_the_unbiased_sample_covariance():
    x = torch.tensor([[1, -1, 1j, -1j]], dtype=torch.complex128)
    torch.testing.assert_close(noise_covariance(x), torch.tensor([[4 / 3]], dtype=torch.complex128))


def test_correlated_two_coil_noise_becomes_white():
    cov = noise_covariance(torch.from_numpy(_noise(20000, 1)))
    torch.testing.assert_close(cov, torch.from_numpy(MIXING @ MIXING.conj().T), atol=0.04, rtol=0)
    w = prewhitening_matrix(cov)
    white = prewhiten(torch.from_numpy(_noise(20000, 2)), w)  # fresh samples of the same noise
    torch.testing.assert_close(
        noise_covariance(white), torch.eye(2, dtype=torch.complex128), atol=0.04, rtol=0
    )


def test_bandwidth_scale_is_gadgetrons_formula():
    assert bandwidth_scale(10e-6, 5e-6, 0.793) == pytest.approx(math.sqrt(2 * 2 * 0.793))
    assert bandwidth_scale(5e-6, 5e-6) == pytest.approx(math.sqrt(2 * DEFAULT_RECEIVER_NOISE_BANDWIDTH))
    assert bandwidth_scale(0.0, 5e-6) == 1.0  # unknown dwell: no scaling
    with pytest.raises(ValueError, match="bandwidth"):
        bandwidth_scale(1e-6, 1e-6, 0.0)


def test_singular_covariance_and_coil_mismatch_are_named():
    with pytest.raises(ValueError, match="positive definite"):
        prewhitening_matrix(torch.zeros(2, 2, dtype=torch.complex128))
    with pytest.raises(ValueError, match="3 coils but the noise had 2"):
        prewhiten(torch.zeros(3, 4, dtype=torch.complex64), torch.eye(2, dtype=torch.complex64))


def test_stage_scales_for_dwell_times_and_drops_noise_lines():
    # Noise sampled at 2 us has twice the variance of the same receiver's noise at 4 us.
    t_noise, t_image, bw = 2.0, 4.0, 0.8
    noise = [
        acquisition(_noise(256, 10 + i), dwell_us=t_noise, flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT])
        for i in range(40)
    ]
    image_noise = _noise(256 * 40, 99) * math.sqrt(t_noise / t_image)
    lines = [acquisition(image_noise[:, i * 256 : (i + 1) * 256], e1=i, dwell_us=t_image) for i in range(40)]
    out = list(prewhiten_stage([*noise, *lines], context(header(bandwidth=bw))))
    assert len(out) == len(lines) and not any(a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) for a in out)
    white = torch.from_numpy(np.concatenate([a.data for a in out], axis=1)).to(torch.complex128)
    # Gadgetron's convention: covariance 2 * bandwidth * I after prewhitening.
    torch.testing.assert_close(
        noise_covariance(white), 2 * bw * torch.eye(2, dtype=torch.complex128), atol=0.06, rtol=0
    )


def test_stage_passes_data_unchanged_without_noise_or_when_disabled():
    line = acquisition(_noise(16, 3), e1=1)
    noise = acquisition(_noise(64, 4), flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT])
    for items, params in (([line], {}), ([noise, line], {"prewhiten": False})):
        out = list(prewhiten_stage(items, context(**params)))
        assert len(out) == 1
        np.testing.assert_array_equal(out[0].data, line.data)


def test_stage_names_a_coil_count_mismatch():
    noise = acquisition(_noise(64, 4), flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT])
    three = acquisition(np.ones((3, 8)))
    with pytest.raises(PipelineError, match="3 coils, the noise scans had 2"):
        list(prewhiten_stage([noise, three], context()))
    with pytest.raises(PipelineError, match="JSON parameter prewhiten: expected bool, got 'no'"):
        list(prewhiten_stage([noise, three], context(prewhiten="no")))
