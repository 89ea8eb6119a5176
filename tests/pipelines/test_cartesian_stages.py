"""The Cartesian stages one by one: line selection, accumulation and its triggers, FFT, combine,
crop, scaling, and the pipeline's parameter errors."""

import math

import ismrmrd
import numpy as np
import pytest
import torch
from mrd_builders import acquisition, context, header

from mrzero.core.ops.fft import ifftc
from mrzero.pipelines.base import PipelineError
from mrzero.pipelines.cartesian import cartesian
from mrzero.pipelines.stages.accumulate import accumulate_stage
from mrzero.pipelines.stages.buffer import ReconBuffer
from mrzero.pipelines.stages.combine import combine_stage
from mrzero.pipelines.stages.crop import crop_stage
from mrzero.pipelines.stages.lines import imaging_lines_stage
from mrzero.pipelines.stages.scale import AUTO_TARGET, scale_stage
from mrzero.pipelines.stages.transform import kspace_to_image_stage

SQUARE = header(enc=(8, 8, 1), rec=(8, 8, 1), enc_fov_mm=(300, 300, 5))


def _line(e1, value=1.0, coils=1, n=8, **kw):
    return acquisition(np.full((coils, n), value), e1=e1, **kw)


def _emitted_after(items, ctx):
    """For each buffer the accumulator yields, how many lines it had consumed at that moment."""
    consumed = []

    def feed():
        for item in items:
            consumed.append(item)
            yield item

    return [(len(consumed), buf) for buf in accumulate_stage(feed(), ctx)]


def test_last_in_slice_flag_emits_that_slice_at_once():
    lines = [
        _line(e1, slice=s, flags=[ismrmrd.ACQ_LAST_IN_SLICE] if e1 == 7 else [])
        for e1 in range(8)
        for s in (0, 1)
    ]  # interleaved slices
    out = _emitted_after(lines, context(SQUARE))
    assert [(n, buf.key[0]) for n, buf in out] == [(15, 0), (16, 1)]


def test_repetition_change_and_end_of_stream_trigger():
    lines = [_line(e1, repetition=r) for r in (0, 1) for e1 in range(8)]
    out = _emitted_after(lines, context(SQUARE))
    # repetition 0 leaves when the first line of repetition 1 arrives; repetition 1 at the end
    assert [(n, buf.key[3]) for n, buf in out] == [(9, 0), (16, 1)]
    assert [n for n, _ in _emitted_after(lines, context(SQUARE, trigger="none"))] == [16, 16]


def test_last_in_repetition_flushes_every_open_buffer():
    lines = [
        _line(e1, contrast=c, flags=[ismrmrd.ACQ_LAST_IN_REPETITION] if (e1, c) == (7, 1) else [])
        for e1 in range(8)
        for c in (0, 1)
    ]
    lines.append(_line(0, contrast=0, repetition=1))
    out = _emitted_after(lines, context(SQUARE, trigger="none"))
    assert [(n, buf.key[1]) for n, buf in out] == [(16, 0), (16, 1), (17, 0)]
    # a line of an image that was already emitted would split it: refused
    with pytest.raises(PipelineError, match="already emitted"):
        list(accumulate_stage([*lines[:-1], _line(0, contrast=0, repetition=0)], context(SQUARE)))


def test_unknown_trigger_is_named():
    with pytest.raises(PipelineError, match=r"JSON parameter trigger: expected one of .*'none', got 'echo'"):
        list(accumulate_stage([_line(0)], context(SQUARE, trigger="echo")))


def test_placement_partial_fourier_asymmetric_echo_and_averages():
    hdr = header(enc=(8, 8, 1), rec=(8, 8, 1), enc_fov_mm=(300, 300, 5), center_e1=2)
    lines = [
        acquisition(np.arange(1, 6)[None], e1=2, center=1),  # k-space centre line, echo centre at 1
        _line(5, 2.0),
        _line(5, 4.0, average=1),  # measured twice: averaged
    ]
    (buf,) = accumulate_stage(lines, context(hdr))
    k = buf.data[0, 0]
    assert k.shape == (8, 8)
    # e1 = centre 2 -> row 4; sample 1 (the echo centre) -> column 4: samples 1..5 at columns 3..7
    assert k[4].real.tolist() == [0, 0, 0, 1, 2, 3, 4, 5]
    assert k[7].real.tolist() == [3.0] * 8  # e1 = 5 -> row 7, mean of 2 and 4
    assert k[[0, 1, 2, 3, 5, 6]].abs().sum() == 0  # partial Fourier: unmeasured rows stay zero


def test_reference_is_the_line_nearest_the_centre_and_misfits_are_named():
    lines = [_line(e1, position=(0.0, 0.0, float(e1))) for e1 in (0, 3, 4, 6)]
    (buf,) = accumulate_stage(lines, context(SQUARE))
    assert buf.reference.idx.kspace_encode_step_1 == 4 and tuple(buf.reference.position) == (0, 0, 4)
    with pytest.raises(PipelineError, match=r"encode steps \(9, 0\) fall outside"):
        list(accumulate_stage([_line(9)], context(SQUARE)))
    with pytest.raises(PipelineError, match="2 coils, earlier lines had 1"):
        list(accumulate_stage([_line(0), _line(1, coils=2)], context(SQUARE)))


def test_line_selection_drops_waveforms_and_non_imaging_lines_and_rejects_bad_data():
    wave = ismrmrd.Waveform.from_array(np.zeros((1, 4), np.uint32))
    nav = _line(0, flags=[ismrmrd.ACQ_IS_NAVIGATION_DATA])
    calib = _line(1, flags=[ismrmrd.ACQ_IS_PARALLEL_CALIBRATION])
    assert list(imaging_lines_stage([wave, nav, calib, _line(2)], context(SQUARE)))[0] is calib
    nan = _line(3, value=float("nan"))
    with pytest.raises(PipelineError, match="NaN"):
        list(imaging_lines_stage([nan], context(SQUARE)))
    empty = acquisition(np.zeros((0, 8)))
    with pytest.raises(PipelineError, match="0 coils"):
        list(imaging_lines_stage([empty], context(SQUARE)))


def _buffer(data):
    return ReconBuffer(data, _line(0).getHead(), (0, 0, 0, 0, 0))


def test_fft_combine_crop_stages():
    rng = np.random.default_rng(0)
    k = torch.from_numpy(rng.standard_normal((3, 1, 8, 8)) + 1j * rng.standard_normal((3, 1, 8, 8)))
    (img,) = kspace_to_image_stage([_buffer(k.to(torch.complex64))], context(SQUARE))
    torch.testing.assert_close(img.data, ifftc(k, 2).to(torch.complex64))
    (comb,) = combine_stage([img], context(SQUARE))
    torch.testing.assert_close(comb.data, img.data.abs().pow(2).sum(0).sqrt())
    (adapt,) = combine_stage([img], context(SQUARE, combine="adaptive", adaptive_kernel=3))
    assert adapt.data.shape == (1, 8, 8) and adapt.data.is_complex()
    hdr = header(enc=(8, 8, 1), rec=(4, 6, 1), enc_fov_mm=(300, 300, 5), rec_fov_mm=(150, 225, 5))
    (crop,) = crop_stage([comb], context(hdr))
    torch.testing.assert_close(crop.data, comb.data[:, 1:7, 2:6])
    with pytest.raises(
        PipelineError, match="JSON parameter combine: expected one of 'rss', 'adaptive', got 'sum'"
    ):
        list(combine_stage([img], context(SQUARE, combine="sum")))


def test_scaling_auto_dft_and_fixed():
    first = _buffer(torch.linspace(0, 100, 101).reshape(1, 1, 101))
    second = _buffer(torch.full((1, 1, 3), 10.0))
    out = list(scale_stage([first, second], context(SQUARE)))  # uint16 output: auto
    factor = AUTO_TARGET / 99.0  # 99th percentile of 0..100
    torch.testing.assert_close(out[1].data, second.data * factor)  # the first image's factor is kept
    (dft,) = scale_stage([second], context(header(), output="float", scale="dft"))
    torch.testing.assert_close(dft.data, second.data * math.sqrt(16 * 8))
    (fixed,) = scale_stage([second], context(SQUARE, output="float"))
    torch.testing.assert_close(fixed.data, second.data)
    for bad in (0, -1, "big", True, float("nan")):
        with pytest.raises(PipelineError, match="JSON parameter scale: expected "):
            list(scale_stage([second], context(SQUARE, scale=bad)))


def test_pipeline_end_to_end_on_a_point_object_and_bad_output_parameter():
    # A point at the image centre: every k-space sample equal; the image is one bright pixel.
    lines = [_line(e1, coils=2) for e1 in range(8)]
    (image,) = cartesian(lines, context(SQUARE, output="float"))
    data = image.data[0, 0]
    assert data.shape == (8, 8) and data.dtype == np.float32
    assert data[4, 4] == pytest.approx(math.sqrt(2) * 8) and np.delete(data.ravel(), 36).max() < 1e-5
    with pytest.raises(
        PipelineError, match="JSON parameter output: expected one of 'uint16', 'float', got 'png'"
    ):
        list(cartesian(lines, context(SQUARE, output="png")))


def test_3d_encoding_gives_one_volume():
    hdr = header(enc=(8, 4, 4), rec=(8, 4, 4), enc_fov_mm=(300, 150, 150), rec_fov_mm=(300, 150, 150))
    # A point at the volume centre shifted by one partition: k-space phase ramp along kz.
    lines = [_line(e1, value=np.exp(-2j * np.pi * (e2 - 2) / 4), e2=e2) for e2 in range(4) for e1 in range(4)]
    (image,) = cartesian(lines, context(hdr, output="float"))
    data = image.data[0]
    assert tuple(image.matrix_size) == (8, 4, 4) and data.shape == (4, 4, 8)
    assert np.unravel_index(np.argmax(data), data.shape) == (3, 2, 4)  # z = centre 2 + 1
    assert data.max() == pytest.approx(math.sqrt(8 * 4 * 4), rel=1e-5)
