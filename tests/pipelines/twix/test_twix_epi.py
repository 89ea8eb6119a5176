"""A synthetic Siemens EPI twix file (ramp sampling, reflected lines, three navigators, a known
odd/even error; written by twixtools' writer from a closed-form k-space of a known image):
``mrzero convert`` carries the readout trapezoid into the MRD header as siemens_to_ismrmrd writes
it and the REFLECT/PHASCOR flags into the acquisitions, and ``mrzero recon`` (the registered
``cartesian`` pipeline, from the ``.dat`` and from the converted ``.h5``) gives the known image
without a Nyquist ghost. Without the regridding fields the reconstruction refuses, naming why."""

import ismrmrd
import numpy as np
import pytest
import twix_writer as tw
from epi_kspace import RAMP_READOUT, ellipse_object, ghost_ratio, nrmse
from epi_twix_writer import write_epi_twix

from mrzero.pipelines.base import PipelineError
from mrzero.pipelines.offline import reconstruct_file
from mrzero.pipelines.reprocess import reconstruct_images
from mrzero.pipelines.twix import convert_twix, load_twix

CONSTANT, SHIFT = 0.6, 0.8  # odd/even error of the reflected lines: radians, k grid steps


@pytest.fixture(scope="module")
def images():
    return ellipse_object(tw.LINES, 2 * tw.BASE, tw.CHANNELS)


@pytest.fixture(scope="module")
def epi_file(tmp_path_factory, images):
    path = tmp_path_factory.mktemp("epi") / "epi.dat"
    readouts = write_epi_twix(path, images, CONSTANT, SHIFT)
    return path, readouts


def _truth(images: np.ndarray) -> np.ndarray:
    n = images.shape[-1]
    return np.sqrt((np.abs(images) ** 2).sum(0))[:, n // 4 : 3 * n // 4]


def test_the_header_carries_the_readout_trapezoid_as_siemens_to_ismrmrd_writes_it(epi_file):
    path, _ = epi_file
    encoding = load_twix(path).header.encoding[0]
    assert encoding.trajectory == ismrmrd.xsd.trajectoryType.EPI
    desc = encoding.trajectoryDescription
    assert desc.identifier == "ConventionalEPI"
    assert {p.name: p.value for p in desc.userParameterLong} == {
        "rampUpTime": 100,
        "flatTopTime": 300,
        "rampDownTime": 100,
        "acqDelayTime": 10,
        "numSamples": RAMP_READOUT.n_samples,
    }
    assert [(p.name, p.value) for p in desc.userParameterDouble] == [("dwellTime", pytest.approx(5.0))]
    # the regridded readout, not the ramp-sampled one, is the encoded matrix (2x oversampled)
    assert (encoding.encodedSpace.matrixSize.x, encoding.reconSpace.matrixSize.x) == (2 * tw.BASE, tw.BASE)


def test_reflect_and_phascor_become_mrd_flags(epi_file):
    path, readouts = epi_file
    acqs = list(load_twix(path).acquisitions())
    assert len(acqs) == len(readouts)
    for acq, r in zip(acqs, readouts, strict=True):
        assert acq.is_flag_set(ismrmrd.ACQ_IS_REVERSE) == r.reflected
        assert acq.is_flag_set(ismrmrd.ACQ_IS_PHASECORR_DATA) == r.navigator
        assert acq.idx.kspace_encode_step_1 == r.line
        np.testing.assert_array_equal(acq.data, r.data)


def test_recon_of_the_dat_and_of_the_converted_file_gives_the_image_without_ghost(epi_file, images, tmp_path):
    path, _ = epi_file
    truth = _truth(images)
    mask = truth > 0.2 * truth.max()
    h5 = convert_twix(path, tmp_path / "epi.h5").output
    from_dat, _ = reconstruct_images(path, "cartesian", {"output": "float"})
    from_h5 = reconstruct_file(h5, "cartesian", {"output": "float"})
    for result in (from_dat, from_h5):
        assert len(result) == 1
        image = result[0].data[0, 0]
        assert image.shape == (tw.LINES, tw.BASE)
        assert nrmse(image, truth) < 0.01
        assert ghost_ratio(image, mask) < 0.005


def test_without_the_regridding_fields_recon_refuses_and_says_why(tmp_path, images):
    path = tmp_path / "no_regrid.dat"
    write_epi_twix(path, images, CONSTANT, SHIFT, with_regrid_fields=False)
    encoding = load_twix(path).header.encoding[0]
    assert encoding.trajectory == ismrmrd.xsd.trajectoryType.EPI and encoding.trajectoryDescription is None
    with pytest.raises(PipelineError, match="trajectoryDescription"):
        reconstruct_images(path, "cartesian", {"output": "float"})
