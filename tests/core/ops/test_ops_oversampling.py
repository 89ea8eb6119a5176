"""Readout oversampling removal against values computed by hand and with the written-out DFT."""

import math

import numpy as np
import pytest
import torch
from mrd_builders import acquisition, centered_dft, context, header

from mrzero.core.ops.oversampling import crop_center, remove_readout_oversampling
from mrzero.pipelines.base import PipelineError
from mrzero.pipelines.stages.oversampling import oversampling_stage


def test_dc_sample_by_hand():
    # k = [0, 0, 1, 0] (only k = 0) is a flat image of 1/2 in each of 4 pixels; its central
    # 2 pixels (1/2 each) transform back to k = [0, 2 * (1/2) / sqrt(2)] = [0, sqrt(1/2)].
    line = torch.tensor([0, 0, 1, 0], dtype=torch.complex64)
    torch.testing.assert_close(
        remove_readout_oversampling(line, 2), torch.tensor([0, math.sqrt(0.5)], dtype=torch.complex64)
    )


def test_equals_cropping_the_image_of_the_full_readout():
    rng = np.random.default_rng(0)
    image = np.zeros(16, complex)
    image[4:12] = rng.standard_normal(8) + 1j * rng.standard_normal(8)  # object inside the central FOV
    kspace = centered_dft(16) @ image
    expected = centered_dft(8) @ image[4:12]
    out = remove_readout_oversampling(torch.from_numpy(np.stack([kspace, 2 * kspace])), 8)
    np.testing.assert_allclose(out.numpy(), np.stack([expected, 2 * expected]), atol=1e-12)


def test_crop_center_keeps_the_centre_index():
    x = torch.arange(7)
    assert crop_center(x, 3).tolist() == [2, 3, 4]  # centre 3 of 7 -> centre 1 of 3
    assert crop_center(torch.arange(8), 4).tolist() == [2, 3, 4, 5]  # centre 4 of 8 -> centre 2 of 4
    with pytest.raises(ValueError, match="cannot crop 9"):
        crop_center(x, 9)


def test_stage_handles_an_asymmetric_echo_and_discards():
    hdr = header(enc=(16, 8, 1), rec=(8, 8, 1))  # 2x oversampling in x
    rng = np.random.default_rng(1)
    full = rng.standard_normal((2, 16)) + 1j * rng.standard_normal((2, 16))
    # measured: samples 3..15 of the full echo (asymmetric, centre at 8 - 3 = 5) plus one
    # junk sample at each end marked as discards
    measured = np.concatenate([np.full((2, 1), 99.0), full[:, 3:], np.full((2, 1), 99.0)], axis=1)
    acq = acquisition(measured, center=6, discard_pre=1, discard_post=1, dwell_us=2.5)
    (out,) = oversampling_stage([acq], context(hdr))
    zero_filled = full.copy()
    zero_filled[:, :3] = 0
    expected = remove_readout_oversampling(torch.from_numpy(zero_filled), 8).numpy()
    np.testing.assert_allclose(out.data, expected, atol=1e-5)
    # the first 3 of 16 oversampled samples were not measured: 1.5 of 8, so 2 samples are marked
    assert (out.number_of_samples, out.center_sample, out.discard_pre, out.discard_post) == (8, 4, 2, 0)
    assert out.sample_time_us == pytest.approx(5.0)


def test_stage_passes_lines_without_oversampling_and_names_misfits():
    hdr = header(enc=(8, 8, 1), rec=(8, 8, 1), enc_fov_mm=(300, 300, 5))
    acq = acquisition(np.ones((1, 8)))
    assert next(oversampling_stage([acq], context(hdr))) is acq
    too_long = acquisition(np.ones((1, 20)), center=10)
    with pytest.raises(PipelineError, match="do not fit the header's readout of 16"):
        list(oversampling_stage([too_long], context(header())))
