"""The EPI stage on closed-form EPI scans (``epi_kspace``: ramp sampling, reflected lines, three
navigators per shot, a known odd/even error): single- and multi-shot images match the known object
without a Nyquist ghost, output lines are ordinary Cartesian lines, other data pass untouched, and
what cannot be reconstructed is refused with the reason."""

import ismrmrd
import numpy as np
import pytest
import torch
from epi_kspace import (
    RAMP_READOUT,
    ellipse_object,
    epi_acquisitions,
    epi_header,
    epi_readouts,
    ghost_ratio,
    nrmse,
)
from mrd_builders import acquisition, header

from mrzero.core.ops.epi import Regridder
from mrzero.core.ops.fft import ifftc
from mrzero.pipelines.base import Context, PipelineError, chain
from mrzero.pipelines.stages.accumulate import accumulate_stage
from mrzero.pipelines.stages.combine import combine_stage
from mrzero.pipelines.stages.crop import crop_stage
from mrzero.pipelines.stages.epi import epi_stage
from mrzero.pipelines.stages.lines import imaging_lines_stage
from mrzero.pipelines.stages.oversampling import oversampling_stage
from mrzero.pipelines.stages.transform import kspace_to_image_stage

NY, NX, COILS = 32, 64, 4
RECON = chain(
    epi_stage,
    imaging_lines_stage,
    oversampling_stage,
    accumulate_stage,
    kspace_to_image_stage,
    combine_stage,
    crop_stage,
)


@pytest.fixture(scope="module")
def images():
    return ellipse_object(NY, NX, COILS)


def _truth(images):
    return np.sqrt((np.abs(images) ** 2).sum(0))[:, NX // 4 : 3 * NX // 4]


def _recon(acqs, hdr=None):
    out = list(RECON(acqs, Context(header=hdr or epi_header(NY, NX))))
    assert len(out) == 1
    return out[0].data[0].numpy()


@pytest.mark.parametrize(
    ("shots", "constant", "shift"), [(1, 0.0, 0.0), (1, 0.7, 0.8), (2, -1.0, -1.3), (4, 0.3, 0.5)]
)
def test_single_and_multi_shot_epi_match_the_object_without_ghost(images, shots, constant, shift):
    truth = _truth(images)
    mask = truth > 0.2 * truth.max()
    image = _recon(epi_acquisitions(epi_readouts(images, shots=shots, constant=constant, shift=shift)))
    assert nrmse(image, truth) < 0.005
    assert ghost_ratio(image, mask) < 0.005


def test_without_the_navigator_correction_the_same_scan_has_a_ghost(images):
    """The reference point: regridding alone leaves the odd/even error's half-FOV ghost."""
    truth = _truth(images)
    mask = truth > 0.2 * truth.max()
    regrid = Regridder(RAMP_READOUT, NX)
    kspace = torch.zeros(COILS, NY, NX, dtype=torch.complex64)
    for r in epi_readouts(images, constant=0.7, shift=0.8):
        if not r.navigator:
            kspace[:, r.line] = regrid(torch.from_numpy(r.data), r.reflected)
    image = ifftc(kspace).abs().pow(2).sum(0).sqrt()[:, NX // 4 : 3 * NX // 4].numpy()
    assert ghost_ratio(image, mask) > 0.1


def test_output_lines_are_forward_cartesian_lines_with_their_counters_and_flags(images):
    acqs = epi_acquisitions(epi_readouts(images, constant=0.4, shift=0.3))
    acqs[5].set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    out = list(epi_stage(acqs, Context(header=epi_header(NY, NX))))
    assert len(out) == NY  # the three navigators are consumed
    for acq, source in zip(out, acqs[3:], strict=True):
        assert acq.idx.kspace_encode_step_1 == source.idx.kspace_encode_step_1
        assert not acq.is_flag_set(ismrmrd.ACQ_IS_REVERSE)
        assert (acq.number_of_samples, acq.center_sample, acq.discard_pre, acq.discard_post) == (
            NX,
            NX // 2,
            0,
            0,
        )
    assert out[2].is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    assert out[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)
    assert out[0].sample_time_us == pytest.approx(RAMP_READOUT.grid_dwell_s(NX) * 1e6)


def test_navigators_apply_per_slice(images):
    """Two slices, each with its own navigators and its own odd/even error, interleaved."""
    truth = _truth(images)
    slices = [
        epi_acquisitions(epi_readouts(images, constant=c, shift=s), slice=k)
        for k, (c, s) in enumerate([(0.5, 0.4), (-0.9, -1.1)])
    ]
    interleaved = [a for pair in zip(*slices, strict=True) for a in pair]
    out = list(RECON(interleaved, Context(header=epi_header(NY, NX))))
    assert len(out) == 2
    for buf in out:
        assert nrmse(buf.data[0].numpy(), truth) < 0.005


def test_non_epi_data_pass_untouched_and_reflected_cartesian_lines_are_reversed():
    hdr = header(enc=(8, 4, 1), rec=(8, 4, 1), enc_fov_mm=(300, 300, 5))
    data = np.arange(8, dtype=np.complex64)[None] + 1j
    plain = acquisition(data, e1=1)
    nav = acquisition(data, e1=2, flags=[ismrmrd.ACQ_IS_PHASECORR_DATA])
    reflected = acquisition(data, e1=3, flags=[ismrmrd.ACQ_IS_REVERSE])
    out = list(epi_stage([plain, nav, reflected], Context(header=hdr)))
    assert out[0] is plain and out[1] is nav
    assert not out[2].is_flag_set(ismrmrd.ACQ_IS_REVERSE)
    np.testing.assert_array_equal(out[2].data[0, 1:], data[0, ::-1][:-1])  # about the centre sample 4
    assert out[2].data[0, 0] == 0


def test_epi_without_the_trajectory_description_is_refused(images):
    acqs = epi_acquisitions(epi_readouts(images))
    with pytest.raises(PipelineError, match="no trajectoryDescription"):
        list(epi_stage(acqs, Context(header=epi_header(NY, NX, readout=None))))


def test_a_missing_ramp_parameter_is_named(images):
    hdr = epi_header(NY, NX)
    desc = hdr.encoding[0].trajectoryDescription
    desc.userParameterLong = [p for p in desc.userParameterLong if p.name != "rampDownTime"]
    with pytest.raises(PipelineError, match="lacks rampDownTime"):
        list(epi_stage(epi_acquisitions(epi_readouts(images)), Context(header=hdr)))


def test_reflected_lines_without_navigators_are_refused(images):
    acqs = epi_acquisitions(epi_readouts(images, navigators=0))
    with pytest.raises(PipelineError, match="no phase-correction navigators"):
        list(epi_stage(acqs, Context(header=epi_header(NY, NX))))


def test_navigators_of_one_polarity_are_refused(images):
    acqs = epi_acquisitions(epi_readouts(images, navigators=1))
    with pytest.raises(PipelineError, match="both polarities"):
        list(epi_stage(acqs, Context(header=epi_header(NY, NX))))


def test_lines_whose_length_disagrees_with_the_trajectory_are_refused(images):
    acqs = epi_acquisitions(epi_readouts(images))
    acqs[4] = acquisition(np.ones((COILS, 64)), e1=1, flags=[ismrmrd.ACQ_IS_REVERSE])
    with pytest.raises(PipelineError, match="96"):
        list(epi_stage(acqs, Context(header=epi_header(NY, NX))))
