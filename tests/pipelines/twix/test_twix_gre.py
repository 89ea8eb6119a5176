"""Real Siemens data (``tests/data/twix/gre.dat``: Skyra, VE11C, 2D GRE phantom, 2 coils, 160 lines,
320 samples with 2x readout oversampling): converted to MRD and reconstructed by the registered
``cartesian`` pipeline, it gives the image of a direct twixtools ``map_twix`` + numpy
reconstruction, the converted file gives the same image in ISMRMRD's own C++ reconstruction,
and the image is upright."""

import shutil
import subprocess
from pathlib import Path

import h5py
import ismrmrd
import matplotlib.image
import nibabel as nib
import numpy as np
import pytest
import twixtools

from mrzero.pipelines.image_files import preview_figure, read_images_h5
from mrzero.pipelines.offline import reconstruct_file
from mrzero.pipelines.reprocess import reprocess
from mrzero.pipelines.twix import convert_twix
from mrzero.pipelines.twix.geometry import directions_from_quaternions, directions_from_slice
from mrzero.pipelines.twix.protocol_fields import Protocol
from mrzero.pipelines.twix.reader import read_twix_file

GRE = Path(__file__).resolve().parents[2] / "data" / "twix" / "gre.dat"
FLOAT = {"output": "float", "scale": 1.0}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    return convert_twix(GRE, tmp_path_factory.mktemp("gre") / "gre.h5").output


@pytest.fixture(scope="module")
def float_image(converted) -> ismrmrd.Image:
    """The cartesian pipeline's float image of the converted file, read back from the .h5."""
    (image,) = reconstruct_file(converted, "cartesian", FLOAT)
    return image


@pytest.fixture(scope="module")
def reprocessed(tmp_path_factory) -> Path:
    """``mrzero recon``'s work on the .dat file itself (16-bit output, as at the scanner)."""
    out = tmp_path_factory.mktemp("recon")
    summary = reprocess(GRE, out, progress=False)
    assert not summary.failed, summary.report()
    return out / "gre"


@pytest.fixture(scope="module")
def twixtools_image() -> np.ndarray:
    """rss of the centred orthonormal 2D inverse FFT of twixtools' oversampling-removed k-space."""
    image = twixtools.map_twix(str(GRE), verbose=False)[-1]["image"]
    image.flags["remove_os"] = True
    image.flags["squeeze_singletons"] = True
    kspace = image[:]  # [line, channel, column]
    assert kspace.shape == (160, 2, 160)
    shifted = np.fft.ifftshift(kspace, axes=(0, 2))
    coil_images = np.fft.fftshift(np.fft.ifft2(shifted, axes=(0, 2), norm="ortho"), axes=(0, 2))
    return np.sqrt((np.abs(coil_images) ** 2).sum(axis=1))


def _nrmse(image: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(image - reference) / np.linalg.norm(reference))


#: twixtools removes oversampling with an unnormalised FFT pair, which scales k-space by
#: 160/320 relative to the 320-sample orthonormal transform the pipeline applies; after the
#: orthonormal 160-point inverse FFT that leaves the pipeline's image sqrt(320/160) larger.
OVERSAMPLING_SCALE = np.sqrt(320 / 160)


def test_the_cartesian_pipeline_reproduces_the_twixtools_reconstruction(float_image, twixtools_image):
    assert float_image.data.shape == (1, 1, 160, 160)
    assert _nrmse(float_image.data[0, 0] / OVERSAMPLING_SCALE, twixtools_image) < 1e-5


def test_reprocessing_the_dat_file_gives_the_same_image(reprocessed, float_image):
    (image,) = read_images_h5(reprocessed / "gre_images.h5")
    assert image.data.dtype == np.uint16
    scaled = float_image.data[0, 0] * (image.data.max() / float_image.data.max())
    assert np.abs(image.data[0, 0] - scaled).max() <= 1.0  # 16-bit rounding only


@pytest.mark.needs_ismrmrd_tools
def test_ismrmrds_own_reconstruction_of_the_converted_file_agrees(converted, float_image, tmp_path):
    copy = tmp_path / "cpp.h5"
    shutil.copy(converted, copy)
    subprocess.run(["ismrmrd_recon_cartesian_2d", str(copy), "dataset"], check=True, capture_output=True)
    with h5py.File(copy, "r") as f:
        cpp = f["dataset/cpp/data"][0, 0, 0]
    # the C++ tool's unnormalised inverse DFT is sqrt(number of encoded samples) times the orthonormal one
    assert _nrmse(float_image.data[0, 0] * np.sqrt(320 * 160), cpp) < 1e-4


def test_header_of_the_real_file(converted):
    with ismrmrd.Dataset(str(converted), "dataset", create_if_needed=False) as ds:
        header = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
        acquisitions = [ds.read_acquisition(k) for k in range(ds.number_of_acquisitions())]
    enc = header.encoding[0]
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (320, 160)
    assert (enc.encodedSpace.fieldOfView_mm.x, enc.reconSpace.fieldOfView_mm.x) == (400.0, 200.0)
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y, enc.reconSpace.fieldOfView_mm.z) == (
        160,
        160,
        4.0,
    )
    assert header.sequenceParameters.TR == [10.0] and header.sequenceParameters.TE == [3.0]
    assert header.sequenceParameters.flipAngle_deg == [15.0] and not header.sequenceParameters.TI
    system = header.acquisitionSystemInformation
    assert system.systemModel == "Skyra" and system.systemFieldStrength_T == pytest.approx(2.89362)
    assert [c.coilName for c in system.coilLabel] == ["BC2", "BC"]  # ADC channels 1 and 2
    assert header.measurementInformation.protocolName == "gre"
    assert len(acquisitions) == 160
    assert [a.idx.kspace_encode_step_1 for a in acquisitions] == list(range(160))
    assert acquisitions[0].is_flag_set(ismrmrd.ACQ_FIRST_IN_SLICE)
    assert acquisitions[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)
    assert acquisitions[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    assert acquisitions[80].center_sample == 160
    assert acquisitions[80].sample_time_us == pytest.approx(5.8)  # 11.6 us per image pixel / 2


def test_quaternion_and_slice_array_agree_on_the_real_file():
    scan = read_twix_file(GRE).image_scan
    *quat, valid = directions_from_quaternions(np.array([scan["mdb"][0].mdh.SliceData.Quaternion]))
    assert valid.all()
    normal = Protocol(scan["hdr"], GRE).get("MeasYaps.sSliceArray.asSlice.0.sNormal")
    array = directions_from_slice([normal.get(f"d{a}", 0.0) for a in ("Sag", "Cor", "Tra")])
    for from_quaternion, from_slice_array in zip(quat, array, strict=True):
        np.testing.assert_allclose(from_quaternion[0], from_slice_array, atol=1e-6)


def test_the_image_is_upright(reprocessed, float_image):
    """An axial slice (head first, supine) is upright when anterior is at the top: row 0 is the
    displayed top (docs/architecture.md), so the row axis (phase_dir) must point posterior (+y in LPS).
    The pixel array is the twixtools reconstruction's, unflipped (tests above); the PNG preview
    and the NIfTI file must keep that orientation."""
    (image,) = read_images_h5(reprocessed / "gre_images.h5")
    slice_dir, phase_dir = np.array(image.slice_dir[:]), np.array(image.phase_dir[:])
    assert slice_dir[2] > 0.99  # transverse
    assert phase_dir[1] > 0.99  # rows run anterior -> posterior: anterior at the top

    pixels = image.data[0, 0].astype(np.float64)
    (png,) = (reprocessed / "png").glob("*.png")
    assert matplotlib.image.imread(png).shape[0] > 160  # a titled figure of the image
    shown = preview_figure(image).axes[0].get_images()[0]  # what the PNG draws
    assert shown.origin == "upper"  # row 0 at the top
    np.testing.assert_array_equal(shown.get_array(), pixels)

    nifti = nib.load(reprocessed / "gre_s001.nii.gz")
    assert nib.aff2axcodes(nifti.affine) == ("R", "P", "S")  # voxel y runs towards posterior
    np.testing.assert_array_equal(np.asarray(nifti.dataobj)[:, :, 0], image.data[0, 0].T)
    centre_ras = nifti.affine @ [80, 80, 0, 1]
    np.testing.assert_allclose(centre_ras[:3], np.array(image.position[:]) * [-1, -1, 1], atol=1e-4)


def test_other_registered_pipelines_run_offline_too(reprocessed, tmp_path):
    """``--pipeline`` reaches any registered pipeline, with the bundle store the server would use:
    MRzero's adjoint on the scan's own Cartesian counters gives the cartesian pipeline's image."""
    store = tmp_path / "store"
    store.mkdir()
    summary = reprocess(GRE, tmp_path / "out", "adjoint", progress=False, bundle_store=store)
    assert not summary.failed, summary.report()
    (adjoint,) = read_images_h5(tmp_path / "out" / "gre" / "gre_images.h5")
    (cartesian,) = read_images_h5(reprocessed / "gre_images.h5")
    assert "ADJOINT" in ismrmrd.Meta.deserialize(adjoint.attribute_string)["ImageProcessingHistory"]
    pair = np.stack([adjoint.data.ravel(), cartesian.data.ravel()]).astype(np.float64)
    assert np.corrcoef(pair)[0, 1] > 0.999
    (failed,) = reprocess(GRE, tmp_path / "none", "savedataonly", progress=False).failed
    assert "made no images" in failed.error and not (tmp_path / "none" / "gre").exists()
