"""The Cartesian pipeline against Debian's ISMRMRD tools, and the offline file reader.

``ismrmrd_generate_cartesian_shepp_logan`` writes multi-coil data with 2x readout oversampling;
``ismrmrd_recon_cartesian_2d`` (the independent reference) skips noise scans, places every line
by ``kspace_encode_step_1`` into one zero-filled buffer (repetitions overwrite each other),
applies an unnormalised 2D inverse DFT, takes the root-sum-of-squares and crops the central
recon matrix in x. That is the ``cartesian`` pipeline with ``{"output": "float", "scale": "dft"}``
for fully sampled data (accelerated and partial-Fourier data: ``test_cartesian_generator.py``).
"""

import shutil
import subprocess

import h5py
import ismrmrd
import numpy as np
import pytest
from mrd_builders import header_xml

from mrzero.pipelines.mrd_header import HeaderError, fix_header_text, geometry, parse_header
from mrzero.pipelines.offline import (
    MRDFileError,
    read_acquisitions,
    read_header,
    read_waveforms,
    reconstruct_file,
)

pytestmark = pytest.mark.needs_ismrmrd_tools
AS_CPP = {"output": "float", "scale": "dft"}


def _generate(tmp_path, *options) -> str:
    path = tmp_path / "shepp.h5"
    subprocess.run(
        ["ismrmrd_generate_cartesian_shepp_logan", "-o", str(path), "-m", "128", "-c", "8", *options],
        check=True,
        capture_output=True,
    )
    return str(path)


def _cpp_recon(path: str, tmp_path) -> np.ndarray:
    """The C++ reference image ``[y, x]`` of a copy of ``path`` (the tool writes into the file)."""
    copy = tmp_path / "cpp.h5"
    shutil.copy(path, copy)
    subprocess.run(["ismrmrd_recon_cartesian_2d", str(copy), "dataset"], check=True, capture_output=True)
    with h5py.File(copy, "r") as f:
        return f["dataset/cpp/data"][0, 0, 0]


def _nrmse(image: ismrmrd.Image, reference: np.ndarray) -> float:
    return float(np.linalg.norm(image.data[0, 0] - reference) / np.linalg.norm(reference))


def test_multicoil_oversampled_recon_equals_the_cpp_reference(tmp_path):
    path = _generate(tmp_path)
    (image,) = reconstruct_file(path, "cartesian", AS_CPP)
    assert image.data.shape == (1, 1, 128, 128) and image.data.dtype == np.float32
    assert _nrmse(image, _cpp_recon(path, tmp_path)) < 1e-4


def test_noise_scans_are_dropped_before_the_recon(tmp_path):
    path = _generate(tmp_path, "-C")
    assert next(read_acquisitions(path)).is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    (image,) = reconstruct_file(path, "cartesian", {**AS_CPP, "prewhiten": False})
    assert _nrmse(image, _cpp_recon(path, tmp_path)) < 1e-4
    (whitened,) = reconstruct_file(path, "cartesian", AS_CPP)  # prewhitening changes the scale
    assert _nrmse(whitened, _cpp_recon(path, tmp_path)) > 1e-2


def test_prewhitened_background_noise_has_gadgetrons_variance(tmp_path):
    # The generator adds white noise of the same level to the noise scan and the data (equal dwell
    # times). After prewhitening each coil's noise has variance 2 * 0.793 (header gives no
    # bandwidth); orthonormal FFT, oversampling removal and crop keep it, so rss^2 in the empty
    # image corners averages 8 coils x 2 x 0.793, up to the error of a covariance from 256 samples.
    path = _generate(tmp_path, "-C")
    corners = (np.s_[:16, :16], np.s_[:16, -16:], np.s_[-16:, :16], np.s_[-16:, -16:])
    for parameters, expected in (({}, 8 * 2 * 0.793), ({"prewhiten": False}, 8 * 2 * 0.05**2)):
        (image,) = reconstruct_file(path, "cartesian", {**parameters, "output": "float"})
        power = np.mean([np.mean(image.data[0, 0][c] ** 2) for c in corners])
        assert power == pytest.approx(expected, rel=0.15)


def test_repetitions_give_one_image_each_and_uint16_by_default(tmp_path):
    path = _generate(tmp_path, "-r", "2")
    images = reconstruct_file(path, "", AS_CPP)  # "" selects the default pipeline
    assert [im.repetition for im in images] == [0, 1]
    assert _nrmse(images[1], _cpp_recon(path, tmp_path)) < 1e-4  # C++ keeps the last repetition
    ints = reconstruct_file(path, "cartesian", {})
    assert [im.data.dtype for im in ints] == [np.uint16, np.uint16]
    assert 1000 < ints[0].data.max() < 65535


def test_debian_header_and_geometry(tmp_path):
    path = _generate(tmp_path)
    with h5py.File(path, "r") as f:
        raw = f["dataset/xml"][0]
    assert b"<version>8</version>" in raw and "<version>" not in fix_header_text(raw + b"\x00\x00")
    geo = geometry(read_header(path))
    assert geo.encoded_matrix == (256, 128, 1) and geo.recon_matrix == (128, 128, 1)
    assert geo.readout_without_oversampling == 128 and geo.kspace_matrix == (128, 128, 1)
    assert geo.encoded_fov_m[0] == pytest.approx(2 * geo.recon_fov_m[0]) and geo.center_e1 == 64
    assert list(read_waveforms(path)) == []


def test_bad_files_and_headers_are_named(tmp_path):
    with pytest.raises(MRDFileError, match="no such file"):
        read_header(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(MRDFileError, match="not an HDF5 file"):
        read_header(junk)
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(MRDFileError, match="no MRD dataset 'dataset'"):
        list(read_acquisitions(empty))
    with pytest.raises(HeaderError, match="malformed MRD header"):
        parse_header("<ismrmrdHeader><encoding>")
    with pytest.raises(HeaderError, match="empty"):
        parse_header(b"\x00\x00")


def test_elements_outside_the_schema_are_ignored_with_a_warning(caplog):
    xml = header_xml(center_e1=3)
    vendor = xml.replace("<trajectory>", "<vendorExtension>7</vendorExtension><trajectory>")
    assert geometry(parse_header(vendor)) == geometry(parse_header(xml))
    assert "vendorExtension" in caplog.text
    with pytest.raises(HeaderError, match="malformed MRD header"):
        parse_header(xml.replace("</encoding>", "</encodingx>"))


def test_chunked_reader_equals_the_ismrmrd_dataset_reader(tmp_path):
    path = _generate(tmp_path, "-k", "-C")  # with k-space coordinates (trajectory) and a noise scan
    reference = ismrmrd.Dataset(path, "dataset", create_if_needed=False)
    acquisitions = list(read_acquisitions(path))
    assert len(acquisitions) == reference.number_of_acquisitions() == 129
    for i in (0, 1, 64, 128):
        expected = reference.read_acquisition(i)
        assert acquisitions[i].getHead() == expected.getHead()
        np.testing.assert_array_equal(acquisitions[i].data, expected.data)
        np.testing.assert_array_equal(acquisitions[i].traj, expected.traj)
    reference.close()
    assert acquisitions[64].traj.shape == (256, 2)  # imaging lines carry their k-space coordinates
