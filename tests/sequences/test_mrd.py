"""MRD export of simulated scans: header, counters and flags, HDF5 round trip, upright reconstruction.

The signal here is the exact Fourier encoding of a known object (``s(k) = sum_x c(x) m(x)
exp(-i 2 pi k.x)``, the convention of ``core/units.py``), so these tests check the
export and its readers without depending on a simulation engine.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import ismrmrd
import numpy as np
import pytest
import torch

from mrzero.pipelines.mrd_header import geometry, parse_header
from mrzero.sequences.builders import flash, inversion_gre, mgre, radial_gre, rare
from mrzero.sequences.mrd import (
    MRDExportError,
    ScanInfo,
    acquisitions,
    add_noise,
    mrd_header,
    noise_acquisitions,
    sequence_timing,
    simulated_to_mrd,
    write_mrd,
)
from mrzero.sequences.phantoms import coil_sensitivities


def asymmetric_object(n: int) -> torch.Tensor:
    """A block in the top-left quadrant plus a dot at the bottom right: shows any flip."""
    m = torch.zeros(n, n, dtype=torch.complex128)
    m[2 : n // 2 - 1, 1 : n // 3] = 1.0
    m[n - 3, n - 2] = 2.0
    return m


def encode(seq, obj: torch.Tensor, coils: torch.Tensor | None = None) -> torch.Tensor:
    """Exact signal ``[coil, samples]`` of ``obj`` (``[ny, nx]``) for ``seq``'s trajectory."""
    n_y, n_x = obj.shape
    y = (torch.arange(n_y, dtype=torch.float64) - n_y // 2) / n_y
    x = (torch.arange(n_x, dtype=torch.float64) - n_x // 2) / n_x
    k = seq.trajectory().double()
    phase = k[:, 0:1] * x.repeat(n_y)[None, :] + k[:, 1:2] * y.repeat_interleave(n_x)[None, :]
    enc = torch.exp(-2j * math.pi * phase)
    weighted = obj[None] if coils is None else coils.to(torch.complex128) * obj
    weights = weighted.reshape(weighted.shape[0], -1)
    return (weights @ enc.T).to(torch.complex64)


def read_back(path):
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        header = parse_header(ds.read_xml_header())
        acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    finally:
        ds.close()
    return header, acqs


def test_header_parses_with_ismrmrd_and_carries_geometry_timing_and_coils():
    seq = flash(matrix=16, te=3e-3, tr=20e-3, flip=math.radians(12), fov=0.22)
    header = parse_header(ismrmrd.xsd.ToXML(mrd_header(seq, 4, ScanInfo(protocol_name="twin gre"))))
    g = geometry(header)
    assert g.encoded_matrix == (16, 16, 1) and g.recon_matrix == (16, 16, 1)
    assert g.encoded_fov_m == pytest.approx((0.22, 0.22, 0.005)) and g.center_e1 == 8
    enc = header.encoding[0]
    assert enc.trajectory.value == "cartesian"
    params = header.sequenceParameters
    assert params.TR == [pytest.approx(20.0)] and params.TE == [pytest.approx(3.0)]
    assert params.flipAngle_deg == [pytest.approx(12.0, abs=1e-3)]
    assert header.acquisitionSystemInformation.receiverChannels == 4
    assert header.measurementInformation.protocolName == "twin gre"
    assert header.experimentalConditions.H1resonanceFrequency_Hz == pytest.approx(127.73e6, rel=1e-3)


def test_timing_of_each_family_is_measured_on_the_sequence():
    t = sequence_timing(mgre(matrix=8, n_echoes=4))
    assert t.te == pytest.approx((4e-3, 8e-3, 12e-3, 16e-3), abs=1e-8) and t.tr == pytest.approx(50e-3)
    assert t.echo_spacing == pytest.approx(4e-3, abs=1e-8)
    r = sequence_timing(rare(matrix=8, echo_spacing=6e-3))
    assert r.te == pytest.approx((5 * 6e-3,), abs=1e-8)  # linear order: centre line is echo 5
    assert r.echo_spacing == pytest.approx(6e-3, abs=1e-8) and r.flip == pytest.approx((math.pi / 2,))
    i = sequence_timing(inversion_gre(matrix=8, ti=[0.1, 0.7], te=3e-3, tr=6e-3))
    assert i.ti == pytest.approx((0.1, 0.7), abs=1e-6) and i.tr == pytest.approx(6e-3, abs=1e-8)


def test_counters_and_flags_of_a_multi_echo_scan():
    n, echoes = 8, 3
    seq = mgre(matrix=n, n_echoes=echoes)
    acqs = list(acquisitions(seq, torch.zeros(2, seq.n_samples, dtype=torch.complex64)))
    assert len(acqs) == n * echoes
    assert [a.idx.contrast for a in acqs] == list(range(echoes)) * n
    assert [a.idx.kspace_encode_step_1 for a in acqs[::echoes]] == list(range(n))
    assert all(a.center_sample == n // 2 and a.number_of_samples == n for a in acqs)
    assert all(a.active_channels == 2 for a in acqs)
    assert acqs[0].sample_time_us == pytest.approx(30.0, rel=1e-5)
    first = [i for i, a in enumerate(acqs) if a.is_flag_set(ismrmrd.ACQ_FIRST_IN_SLICE)]
    last = [i for i, a in enumerate(acqs) if a.is_flag_set(ismrmrd.ACQ_LAST_IN_ENCODE_STEP1)]
    assert first == [0, 1, 2] and last == [len(acqs) - 3, len(acqs) - 2, len(acqs) - 1]
    final = [i for i, a in enumerate(acqs) if a.is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)]
    assert final == [len(acqs) - 1]
    stamps = [a.acquisition_time_stamp for a in acqs[::echoes]]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] == round((n - 1) * 50e-3 / 2.5e-3)


def test_inversion_blocks_become_repetitions():
    seq = inversion_gre(matrix=4, ti=[0.1, 0.2, 0.3], te=3e-3, tr=6e-3)
    acqs = list(acquisitions(seq, torch.zeros(1, seq.n_samples, dtype=torch.complex64)))
    assert [a.idx.repetition for a in acqs] == [0] * 4 + [1] * 4 + [2] * 4
    last_rep = [i for i, a in enumerate(acqs) if a.is_flag_set(ismrmrd.ACQ_LAST_IN_REPETITION)]
    assert last_rep == [3, 7, 11]
    assert mrd_header(seq, 1).encoding[0].encodingLimits.repetition.maximum == 2


def test_radial_acquisitions_carry_their_trajectory_and_the_file_round_trips(tmp_path):
    seq = radial_gre(matrix=8, spokes=5)
    signal = torch.randn(3, seq.n_samples, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "radial.h5"
    assert simulated_to_mrd(path, seq, signal) == 5
    header, acqs = read_back(path)
    enc = header.encoding[0]
    assert enc.trajectory.value == "radial" and enc.encodingLimits.kspace_encoding_step_1.maximum == 4
    assert enc.trajectoryDescription.userParameterString[0].value == "cycles/FOV"
    traj = seq.trajectory()[:, :2].numpy()
    for i, a in enumerate(acqs):
        assert a.trajectory_dimensions == 2 and a.idx.kspace_encode_step_1 == i
        np.testing.assert_allclose(a.traj, traj[8 * i : 8 * (i + 1)], atol=1e-6)
        np.testing.assert_array_equal(a.data, signal[:, 8 * i : 8 * (i + 1)].numpy())
    with pytest.raises(MRDExportError, match="exists; pass overwrite=True"):
        simulated_to_mrd(path, seq, signal)


def test_noise_scans_come_first_and_have_the_requested_statistics(tmp_path):
    seq = flash(matrix=8, te=2e-3, tr=5e-3)
    path = tmp_path / "noisy.h5"
    simulated_to_mrd(
        path, seq, torch.zeros(2, seq.n_samples, dtype=torch.complex64), noise_std=0.5, noise_samples=1024
    )
    _, acqs = read_back(path)
    noise_scans = 1024 // 512
    assert all(a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) for a in acqs[:noise_scans])
    assert not acqs[noise_scans].is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    assert len(acqs) == noise_scans + 8 and [a.scan_counter for a in acqs] == list(range(len(acqs)))
    cov = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.complex128)
    noise = noise_acquisitions(2, 20000, 50e-6, covariance=cov)[0].data
    measured = noise @ noise.conj().T / noise.shape[1]
    np.testing.assert_allclose(measured, cov.numpy(), atol=0.05)
    noisy = add_noise(torch.zeros(1, 20000, dtype=torch.complex64), 0.3)
    assert float((noisy.abs() ** 2).mean()) == pytest.approx(0.09, rel=0.05)


def test_bad_input_is_refused_with_a_clear_message(tmp_path):
    seq = flash(matrix=8, te=2e-3, tr=5e-3)
    with pytest.raises(MRDExportError, match=r"signal must be \[coil, 64\]"):
        list(acquisitions(seq, torch.zeros(1, 63, dtype=torch.complex64)))
    with pytest.raises(MRDExportError, match="n_coils must be at least 1"):
        mrd_header(seq, 0)


@pytest.mark.parametrize("order", ["linear", "centric"])
def test_cartesian_pipeline_reconstructs_the_exported_gre_upright(tmp_path, order):
    import mrzero.pipelines.catalog  # noqa: F401  (registers the mrzero.pipelines)
    from mrzero.pipelines.offline import reconstruct_file

    n = 16
    obj = asymmetric_object(n)
    coils = coil_sensitivities((n, n), n_coils=4)
    seq = flash(matrix=n, te=2e-3, tr=5e-3, order=order)
    path = tmp_path / "gre.h5"
    simulated_to_mrd(path, seq, encode(seq, obj, coils), noise_std=1e-4)
    images = reconstruct_file(path, "cartesian", {"output": "float"})
    assert len(images) == 1
    image = np.abs(images[0].data.squeeze())
    expected = obj.abs().numpy()  # coils are RSS-normalised, so RSS returns the object
    assert np.corrcoef(image.ravel(), expected.ravel())[0, 1] > 0.999
    assert np.unravel_index(image.argmax(), image.shape) == (n - 3, n - 2)


@pytest.mark.needs_ismrmrd_tools
@pytest.mark.skipif(shutil.which("ismrmrd_recon_cartesian_2d") is None, reason="Debian ismrmrd-tools absent")
def test_debians_ismrmrd_reconstruction_agrees(tmp_path):
    n = 16
    obj = asymmetric_object(n)
    seq = flash(matrix=n, te=2e-3, tr=5e-3)
    path = tmp_path / "gre_cpp.h5"
    header = mrd_header(seq, 2)
    coils = coil_sensitivities((n, n), n_coils=2)
    write_mrd(path, header, acquisitions(seq, encode(seq, obj, coils)))
    subprocess.run(
        ["ismrmrd_recon_cartesian_2d", str(path), "dataset"], check=True, capture_output=True, timeout=60
    )
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        image = np.abs(ds.read_image("cpp", 0).data.squeeze())
    finally:
        ds.close()
    expected = obj.abs().numpy()
    assert image.shape == (n, n)
    assert np.corrcoef(image.ravel(), expected.ravel())[0, 1] > 0.999
    assert np.unravel_index(image.argmax(), image.shape) == (n - 3, n - 2)
