"""A synthetic multi-RAID twix file written by twixtools' own writer (noise-adjust measurement,
two slices, two echoes, R=2 with integrated GRAPPA reference lines, phase correction) converts
with every counter, flag, header field and geometry right, and its noise drives prewhitening."""

import ismrmrd
import numpy as np
import pytest
import torch
import twix_writer as tw

from mrzero.core.ops.prewhiten import noise_covariance
from mrzero.pipelines.base import Context
from mrzero.pipelines.stages.noise import prewhiten_stage
from mrzero.pipelines.twix import convert_twix, load_twix
from mrzero.pipelines.twix.acquisitions import COUNTERS, acquisition_headers, header_table, siemens_flags
from mrzero.pipelines.twix.header_builder import SIEMENS_RELATIVE_NOISE_BANDWIDTH
from mrzero.pipelines.twix.protocol_fields import Protocol

#: Siemens flag -> the MRD flag the converter must set for it.
EXPECTED_FLAG = {
    "NOISEADJSCAN": ismrmrd.ACQ_IS_NOISE_MEASUREMENT,
    "PHASCOR": ismrmrd.ACQ_IS_PHASECORR_DATA,
    "REFLECT": ismrmrd.ACQ_IS_REVERSE,
    "FIRSTSCANINSLICE": ismrmrd.ACQ_FIRST_IN_SLICE,
    "LASTSCANINSLICE": ismrmrd.ACQ_LAST_IN_SLICE,
    "LASTSCANINMEAS": ismrmrd.ACQ_LAST_IN_MEASUREMENT,
}
ALL_MRD_FLAGS = [
    getattr(ismrmrd, n)
    for n in dir(ismrmrd)
    if n.startswith("ACQ_") and not n.startswith(("ACQ_USER", "ACQ_COMPRESSION"))
]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("twix") / "synthetic.dat"
    scan = tw.write_synthetic(path)
    measurement = load_twix(path)
    return path, scan, measurement, list(measurement.acquisitions())


def _expected_flags(readout: tw.Readout) -> set[int]:
    flags = {EXPECTED_FLAG[f] for f in readout.flags if f in EXPECTED_FLAG}
    if "PATREFANDIMASCAN" in readout.flags:
        flags.add(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    elif "PATREFSCAN" in readout.flags:
        flags.add(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
    return flags


def _loop_flags(readouts: list[tw.Readout]) -> list[set[int]]:
    """First/last flags of the encode-step loops (one pass per slice and echo in this 2D scan) and
    of the repetition, over the imaging readouts (not phase correction, not calibration-only)."""
    expected = [set() for _ in readouts]
    imaging = [
        k
        for k, r in enumerate(readouts)
        if "PHASCOR" not in r.flags and ("PATREFSCAN" not in r.flags or "PATREFANDIMASCAN" in r.flags)
    ]
    passes: dict[tuple, list[int]] = {}
    for k in imaging:
        passes.setdefault((readouts[k].counters["Sli"], readouts[k].counters["Eco"]), []).append(k)
    for members in passes.values():
        expected[members[0]] |= {ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1, ismrmrd.ACQ_FIRST_IN_ENCODE_STEP2}
        expected[members[-1]] |= {ismrmrd.ACQ_LAST_IN_ENCODE_STEP1, ismrmrd.ACQ_LAST_IN_ENCODE_STEP2}
    expected[imaging[0]].add(ismrmrd.ACQ_FIRST_IN_REPETITION)
    expected[imaging[-1]].add(ismrmrd.ACQ_LAST_IN_REPETITION)
    return expected


def test_noise_of_the_earlier_measurement_comes_first(synthetic):
    _, scan, measurement, acqs = synthetic
    assert len(acqs) == len(scan.noise) + len(scan.image) == len(measurement)
    assert measurement.noise_count == len(scan.noise)
    for acq in acqs[: len(scan.noise)]:
        assert acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        assert acq.data.shape == (tw.CHANNELS, 256)
    assert not any(a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) for a in acqs[len(scan.noise) :])


def test_every_counter_and_flag_of_the_image_readouts(synthetic):
    _, scan, _, acqs = synthetic
    image = acqs[len(scan.noise) :]
    loops = _loop_flags(scan.image)
    for acq, readout, loop in zip(image, scan.image, loops, strict=True):
        for mrd_name, siemens_name in COUNTERS.items():
            assert getattr(acq.idx, mrd_name) == readout.counters.get(siemens_name, 0), (mrd_name, readout)
        set_flags = {f for f in ALL_MRD_FLAGS if acq.is_flag_set(f)}
        assert set_flags == _expected_flags(readout) | loop, readout
        assert acq.center_sample == tw.BASE
        assert acq.number_of_samples == 2 * tw.BASE and acq.active_channels == tw.CHANNELS
        assert all(acq.isChannelActive(c) for c in range(tw.CHANNELS))
        assert acq.sample_time_us == pytest.approx(tw.DWELL_NS / 1000 / 2)


def test_calibration_lines_with_and_without_imaging(synthetic):
    _, scan, _, acqs = synthetic
    image = acqs[len(scan.noise) :]
    cal = {a.idx.kspace_encode_step_1 for a in image if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)}
    both = {
        a.idx.kspace_encode_step_1
        for a in image
        if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    }
    assert cal == {13, 15, 17, 19} and both == {12, 14, 16, 18}
    imaging = {
        a.idx.kspace_encode_step_1
        for a in image
        if not a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
        and not a.is_flag_set(ismrmrd.ACQ_IS_PHASECORR_DATA)
    }
    assert imaging == set(range(0, tw.LINES, 2))  # R = 2


def test_slice_geometry_from_the_quaternion(synthetic):
    _, scan, _, acqs = synthetic
    for acq, readout in zip(acqs[len(scan.noise) :], scan.image, strict=True):
        np.testing.assert_allclose(acq.position[:], tw.SLICE_POSITIONS[readout.slice_index], atol=1e-5)
        np.testing.assert_allclose(acq.read_dir[:], tw.READ, atol=1e-6)
        np.testing.assert_allclose(acq.phase_dir[:], tw.PHASE, atol=1e-6)
        np.testing.assert_allclose(acq.slice_dir[:], tw.NORMAL, atol=1e-6)


def test_header_from_the_protocol(synthetic):
    _, _, measurement, _ = synthetic
    h = measurement.header
    enc = h.encoding[0]
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y, enc.encodedSpace.matrixSize.z) == (
        2 * tw.BASE,
        tw.LINES,
        1,
    )
    fov = enc.encodedSpace.fieldOfView_mm
    assert (fov.x, fov.y) == (2 * tw.FOV_MM[0], tw.FOV_MM[1])
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y) == (tw.BASE, tw.BASE)
    assert (enc.reconSpace.fieldOfView_mm.x, enc.reconSpace.fieldOfView_mm.z) == (tw.FOV_MM[0], tw.FOV_MM[2])
    assert enc.trajectory == ismrmrd.xsd.trajectoryType.CARTESIAN
    assert enc.encodingLimits.kspace_encoding_step_1.center == tw.LINES // 2
    assert enc.encodingLimits.slice.maximum == 1 and enc.encodingLimits.contrast.maximum == 1
    assert enc.parallelImaging.accelerationFactor.kspace_encoding_step_1 == 2
    assert enc.parallelImaging.calibrationMode == ismrmrd.xsd.calibrationModeType.EMBEDDED
    seq = h.sequenceParameters
    assert seq.TR == [20.0] and seq.TE == [3.0, 7.0] and seq.TI == [500.0] and seq.flipAngle_deg == [12.0]
    system = h.acquisitionSystemInformation
    assert [c.coilName for c in system.coilLabel] == ["H1", "H2", "H3", "H4"]  # sorted by ADC channel
    assert system.receiverChannels == tw.CHANNELS and system.systemFieldStrength_T == pytest.approx(2.89)
    assert system.relativeReceiverNoiseBandwidth == pytest.approx(SIEMENS_RELATIVE_NOISE_BANDWIDTH)
    info = h.measurementInformation
    assert (info.protocolName, info.sequenceName) == ("synth_gre", "gre")
    assert info.patientPosition == ismrmrd.xsd.patientPositionType.HFS
    assert h.experimentalConditions.H1resonanceFrequency_Hz == 123200000


def test_noise_lines_give_the_noise_covariance_and_drive_prewhitening(synthetic):
    _, scan, measurement, acqs = synthetic
    noise = torch.cat([torch.from_numpy(a.data) for a in acqs[: len(scan.noise)]], dim=1).to(torch.complex128)
    np.testing.assert_allclose(noise_covariance(noise).numpy(), tw.noise_covariance(), atol=0.1)

    image = torch.cat([torch.from_numpy(a.data) for a in acqs[len(scan.noise) :]], dim=1).to(torch.complex128)
    raw = noise_covariance(image).numpy()
    np.testing.assert_allclose(raw, tw.noise_covariance(), atol=0.15)  # correlated before

    ctx = Context(header=measurement.header)
    whitened = list(prewhiten_stage(measurement.acquisitions(), ctx))
    assert len(whitened) == len(scan.image)  # the noise readouts were consumed by the stage
    data = torch.cat([torch.from_numpy(a.data) for a in whitened], dim=1).to(torch.complex128)
    white = noise_covariance(data).numpy()
    # same dwell time for noise and image: whitened noise has covariance 2 * bandwidth * I
    np.testing.assert_allclose(white, 2 * SIEMENS_RELATIVE_NOISE_BANDWIDTH * np.eye(tw.CHANNELS), atol=0.12)


def test_the_cartesian_pipeline_makes_one_image_per_slice_and_echo(synthetic, tmp_path):
    path, _, _, _ = synthetic
    h5 = convert_twix(path, tmp_path / "synthetic.h5").output
    from mrzero.pipelines.offline import reconstruct_file

    images = reconstruct_file(h5, "cartesian", {"output": "float"})
    assert sorted((im.slice, im.contrast) for im in images) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for im in images:
        assert im.data.shape == (1, 1, tw.BASE, tw.BASE)
        np.testing.assert_allclose(im.position[:], tw.SLICE_POSITIONS[im.slice], atol=1e-5)
        np.testing.assert_allclose(im.read_dir[:], tw.READ, atol=1e-6)


def _converted(mdb, tmp_path) -> ismrmrd.Acquisition:
    """One readout through the converter's header code, with the synthetic protocol."""
    prot = Protocol({"MeasYaps": tw.parsed_yaps()}, tmp_path / "x.dat")
    table = header_table([mdb])
    (head,) = acquisition_headers(table, siemens_flags(table), 2.5, prot)
    return ismrmrd.Acquisition(head=head.tobytes(), data=np.ascontiguousarray(mdb.data))


def test_every_counter_of_one_readout_maps(tmp_path):
    counters = {
        "Lin": 3,
        "Par": 4,
        "Sli": 5,
        "Eco": 6,
        "Phs": 7,
        "Rep": 8,
        "Set": 9,
        "Seg": 10,
        "Ave": 11,
        "Ida": 12,
        "Idb": 13,
        "Idc": 14,
        "Idd": 15,
        "Ide": 16,
    }
    flags = ["PATREFSCAN", "REFLECT", "PHASESTABSCAN", "RTFEEDBACK", "LASTSCANINSLICE"]
    mdb = tw.make_mdb(np.ones((2, 8)), tw.Readout(counters, flags), tw.SLICE_POSITIONS[0])
    acq = _converted(mdb, tmp_path)
    assert {name: getattr(acq.idx, name) for name in COUNTERS} == {
        "kspace_encode_step_1": 3,
        "kspace_encode_step_2": 4,
        "slice": 5,
        "contrast": 6,
        "phase": 7,
        "repetition": 8,
        "set": 9,
        "segment": 10,
        "average": 11,
    }
    assert list(acq.idx.user[:5]) == [12, 13, 14, 15, 16]
    assert {f for f in ALL_MRD_FLAGS if acq.is_flag_set(f)} == {
        ismrmrd.ACQ_IS_PARALLEL_CALIBRATION,
        ismrmrd.ACQ_IS_REVERSE,
        ismrmrd.ACQ_IS_PHASE_STABILIZATION,
        ismrmrd.ACQ_IS_RTFEEDBACK_DATA,
        ismrmrd.ACQ_LAST_IN_SLICE,
    }
    assert acq.sample_time_us == 2.5 and acq.data.shape == (2, 8)


def test_a_readout_without_quaternion_takes_the_slice_array_geometry(tmp_path):
    acq = _converted(tw.make_mdb(np.ones((2, 8)), tw.Readout({"Sli": 1}, ["NOISEADJSCAN"]), None), tmp_path)
    read, phase, normal = (np.array(v[:]) for v in (acq.read_dir, acq.phase_dir, acq.slice_dir))
    np.testing.assert_allclose(acq.position[:], tw.SLICE_POSITIONS[1])
    np.testing.assert_allclose(normal, tw.NORMAL, atol=1e-6)
    assert abs(read @ normal) < 1e-6 and abs(phase @ normal) < 1e-6
    np.testing.assert_allclose(np.cross(phase, read), normal, atol=1e-6)  # the quaternion's handedness


def test_a_vb_file_converts(tmp_path):
    readouts, data = tw.write_vb(tmp_path / "vb.dat")
    measurement = load_twix(tmp_path / "vb.dat")
    acqs = list(measurement.acquisitions())
    assert len(acqs) == len(readouts) and measurement.noise_count == 4
    for acq, readout, samples in zip(acqs, readouts, data, strict=True):
        np.testing.assert_array_equal(acq.data, samples)
        assert acq.idx.kspace_encode_step_1 == readout.counters["Lin"]
        assert acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) == ("NOISEADJSCAN" in readout.flags)
    np.testing.assert_allclose(acqs[-1].read_dir[:], tw.READ, atol=1e-6)
    assert acqs[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE) and acqs[4].is_flag_set(ismrmrd.ACQ_FIRST_IN_SLICE)
    from mrzero.pipelines.offline import reconstruct_file

    h5 = convert_twix(tmp_path / "vb.dat", tmp_path / "vb.h5").output
    (image,) = reconstruct_file(h5, "cartesian", {"output": "float"})
    assert image.data.shape == (1, 1, tw.BASE, tw.BASE)
