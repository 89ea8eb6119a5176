"""Parallel imaging and partial Fourier in the ``cartesian`` chain, on in-memory scans of a known
multi-coil object (``coil_phantoms``): calibration captured in each arrival mode and calibrated
the moment it is complete, GRAPPA and SENSE, 3D, coil compression, phase partial Fourier and an
asymmetric echo with readout oversampling."""

import ismrmrd
import numpy as np
import pytest
import torch
from cartesian_scans import header_xml, image_data, line, nrmse, truth
from coil_phantoms import multicoil_kspace

from mrzero.pipelines.base import Context
from mrzero.pipelines.cartesian import cartesian
from mrzero.pipelines.mrd_header import parse_header
from mrzero.pipelines.stages.accumulate import calibrating_accumulate_stage
from mrzero.pipelines.stages.buffer import CalibrationBuffer, ReconBuffer

CAL = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION
CAL_IMG = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
FLOAT = {"output": "float", "prewhiten": False}


def _ctx(xml: str, **parameters) -> Context:
    return Context(header=parse_header(xml), parameters={**FLOAT, **parameters}, pipeline_name="cartesian")


def _embedded(kspace, accel: int = 2, acs: int = 16, offset: int = 0, **counters):
    """Linear order: lattice lines ``offset::accel``, every line of the central ``acs`` block,
    lattice lines inside it flagged CALIBRATION_AND_IMAGING, the others CALIBRATION."""
    ny = kspace.shape[2]
    lo, hi = ny // 2 - acs // 2, ny // 2 + acs // 2
    lines = []
    for ky in range(ny):
        on_lattice = (ky - offset) % accel == 0
        if lo <= ky < hi:
            lines.append(line(kspace, 0, ky, flags=[CAL_IMG if on_lattice else CAL], **counters))
        elif on_lattice:
            lines.append(line(kspace, 0, ky, **counters))
    return lines


def _arrivals(lines, ctx):
    """(number of lines consumed, item) for each item the accumulation stage yields."""
    consumed = []

    def feed():
        for acq in lines:
            consumed.append(acq)
            yield acq

    return [(len(consumed), item) for item in calibrating_accumulate_stage(feed(), ctx)]


@pytest.mark.parametrize("method", ["grappa", "sense"])
def test_embedded_calibration_is_used_as_soon_as_the_acs_block_is_complete(method):
    kspace, _, _ = multicoil_kspace(8, (1, 64, 64))
    xml = header_xml(64, 64, accel=(2, 1), calibration="embedded")
    lines = _embedded(kspace)
    out = _arrivals(lines, _ctx(xml))
    first_after_acs = next(i for i, acq in enumerate(lines) if acq.idx.kspace_encode_step_1 == 40)
    (n_cal, block), (n_img, image) = out
    assert isinstance(block, CalibrationBuffer) and isinstance(image, ReconBuffer)
    assert n_cal == first_after_acs + 1  # calibrated while the rest of the scan streams in
    assert block.data.shape == (8, 1, 16, 64) and block.origin == (0, 24) and n_img == len(lines)
    # embedded calibration-only lines are measured data of the image too
    assert (
        image.sampled[0, 24:40].all()
        and image.sampled[0, 0:24:2].all()
        and not image.sampled[0, 1:24:2].any()
    )
    (result,) = cartesian(iter(lines), _ctx(xml, parallel_imaging=method))
    assert nrmse(image_data(result)[0], truth(kspace)[0]) < 0.03
    history = ismrmrd.Meta.deserialize(result.attribute_string)["ImageProcessingHistory"]
    assert history[2] == method.upper()


def test_separate_reference_scan_before_multislice_imaging_data():
    # Siemens: the reference scan of every slice first (calibration only, kept out of the images),
    # then the R = 3 imaging lines with the slices interleaved line by line.
    slices = [multicoil_kspace(8, (1, 48, 48), seed=s)[0] * (1 + 0.5 * s) for s in range(3)]
    xml = header_xml(48, 48, accel=(3, 1), calibration="separate", counters={"slice": 3})
    reference = [line(k, 0, ky, flags=[CAL], slice=s) for s, k in enumerate(slices) for ky in range(12, 36)]
    imaging = [
        line(slices[s], 0, ky, slice=s, flags=[ismrmrd.ACQ_LAST_IN_SLICE] if ky == 45 else [])
        for ky in range(0, 48, 3)
        for s in range(3)
    ]
    out = _arrivals(reference + imaging, _ctx(xml))
    blocks = [(n, item.key[1]) for n, item in out if isinstance(item, CalibrationBuffer)]
    # each slice's block is complete when its first imaging line arrives
    assert blocks == [(len(reference) + 1, 0), (len(reference) + 2, 1), (len(reference) + 3, 2)]
    images = [item for _, item in out if isinstance(item, ReconBuffer)]
    assert all(int(im.sampled.sum()) == 16 for im in images)  # the reference lines are not image data
    results = sorted(cartesian(iter(reference + imaging), _ctx(xml)), key=lambda im: im.slice)
    for s, result in enumerate(results):
        assert nrmse(image_data(result)[0], truth(slices[s])[0]) < 0.05


def test_interleaved_calibration_from_the_union_of_repetitions():
    kspace, _, _ = multicoil_kspace(8, (1, 64, 64))
    xml = header_xml(64, 64, accel=(2, 1), calibration="interleaved", counters={"repetition": 2})
    lines = [line(kspace, 0, ky, repetition=r) for r in (0, 1) for ky in range(r, 64, 2)]
    out = _arrivals(lines, _ctx(xml))
    assert [(n, type(item).__name__) for n, item in out] == [
        (33, "ReconBuffer"),
        (64, "CalibrationBuffer"),
        (64, "ReconBuffer"),
    ]
    assert out[1][1].source == "interleaved" and out[1][1].data.shape == (8, 1, 32, 64)
    results = list(cartesian(iter(lines), _ctx(xml)))
    assert [im.repetition for im in results] == [0, 1] and [im.image_index for im in results] == [1, 2]
    for result in results:
        assert nrmse(image_data(result)[0], truth(kspace)[0]) < 0.03


def test_3d_accelerated_in_ky_and_kz_with_an_embedded_acs_block():
    kspace, _, _ = multicoil_kspace(12, (16, 32, 32))
    xml = header_xml(32, 32, 16, coils=12, accel=(2, 2), calibration="embedded")
    lines = []
    for kz in range(16):
        for ky in range(32):
            lattice = ky % 2 == 0 and kz % 2 == 0
            acs = 4 <= kz < 12 and 8 <= ky < 24
            if acs or lattice:
                lines.append(line(kspace, kz, ky, flags=[CAL_IMG if lattice else CAL] if acs else []))
    out = _arrivals(lines, _ctx(xml))
    n_cal, block = out[0]
    assert isinstance(block, CalibrationBuffer) and block.data.shape == (12, 8, 16, 32)
    assert n_cal < len(lines)  # before the last partitions arrive
    (result,) = cartesian(iter(lines), _ctx(xml))
    assert result.data.shape == (1, 16, 32, 32)
    assert nrmse(image_data(result), truth(kspace)) < 0.08  # R = 4 on a 32 x 32 x 16 matrix


@pytest.mark.parametrize("method", ["grappa", "sense"])
def test_coil_compression_keeps_the_image(method):
    kspace, _, _ = multicoil_kspace(16, (1, 64, 64))
    xml = header_xml(64, 64, coils=16, accel=(2, 1), calibration="embedded")
    lines = _embedded(kspace, acs=24)
    (full,) = cartesian(iter(lines), _ctx(xml, parallel_imaging=method))
    (compressed,) = cartesian(iter(lines), _ctx(xml, parallel_imaging=method, coil_compression=8))
    reference = truth(kspace)[0]
    assert nrmse(image_data(compressed)[0], reference) < 0.05
    assert nrmse(image_data(compressed)[0], reference) < nrmse(image_data(full)[0], reference) + 0.02
    (unaccelerated,) = cartesian(
        iter([line(kspace, 0, ky) for ky in range(64)]),
        _ctx(header_xml(64, 64, coils=16), coil_compression=6),
    )
    assert nrmse(image_data(unaccelerated)[0], reference) < 0.02


def test_phase_partial_fourier_with_grappa_and_an_asymmetric_oversampled_echo():
    kspace, _, _ = multicoil_kspace(8, (1, 64, 64), noise=1e-3)
    reference = truth(kspace)[0]
    # 5/8 in ky (lines 24..63 of 64), R = 2 with an embedded ACS block
    xml = header_xml(64, 64, accel=(2, 1), calibration="embedded", e1=(24, 63))
    lines = [acq for acq in _embedded(kspace, acs=16) if acq.idx.kspace_encode_step_1 >= 24]
    errors = {}
    for method in ("zero_fill", "pocs", "homodyne"):
        (result,) = cartesian(iter(lines), _ctx(xml, partial_fourier=method))
        errors[method] = nrmse(image_data(result)[0], reference)
    assert errors["pocs"] < errors["zero_fill"] / 2 and errors["homodyne"] < errors["zero_fill"] / 2
    # an asymmetric echo (the first 20 of 128 oversampled readout points missing), no undersampling
    over = torch.from_numpy(
        np.fft.fftshift(
            np.fft.fft(
                np.fft.ifftshift(
                    np.pad(
                        np.fft.fftshift(
                            np.fft.ifft(np.fft.ifftshift(kspace.numpy(), axes=-1), axis=-1, norm="ortho"),
                            axes=-1,
                        ),
                        ((0, 0), (0, 0), (0, 0), (32, 32)),
                    ),
                    axes=-1,
                ),
                axis=-1,
                norm="ortho",
            ),
            axes=-1,
        ).astype(np.complex64)
    )
    xml_os = header_xml(64, 64, readout_oversampling=2)
    echo = []
    for ky in range(64):
        acq = line(over, 0, ky)
        echo.append(
            ismrmrd.Acquisition.from_array(
                np.ascontiguousarray(acq.data[:, 20:]), center_sample=44, sample_time_us=5.0
            )
        )
        echo[-1].idx.kspace_encode_step_1 = ky
    (zero,) = cartesian(iter(echo), _ctx(xml_os, partial_fourier="zero_fill"))
    (pocs,) = cartesian(iter(echo), _ctx(xml_os))
    assert nrmse(image_data(pocs)[0], reference) < nrmse(image_data(zero)[0], reference) / 2
