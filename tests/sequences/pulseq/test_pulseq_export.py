"""Export to real .seq files: timing, k-space, labels, limits, refusals, stretches."""

from __future__ import annotations

import math

import numpy as np
import pypulseq as pp
import pytest
import torch
from pulseq_samples import cartesian_gre, radial_gre

from mrzero.sequences.pulseq.export import ExportError, ExportOptions, export, limit_violations
from mrzero.sequences.pulseq.signature import verified_signature
from mrzero.sequences.pulseq.system import hardware


def read(path) -> pp.Sequence:
    seq = pp.Sequence()
    seq.read(str(path))
    return seq


def file_trajectory(path, fov) -> tuple[np.ndarray, np.ndarray]:
    """pypulseq's own k-space (cycles/FOV) and sample times (s from the first excitation)."""
    k_adc, _, t_ex, _, t_adc = read(path).calculate_kspace()
    return k_adc.T * np.array(fov), t_adc - t_ex[0]


@pytest.mark.parametrize("shape", ["block", "sinc"])
def test_cartesian_gre_file_matches_the_model(tmp_path, shape):
    seq = cartesian_gre()
    result = export(seq, tmp_path / "gre.seq", options=ExportOptions(rf_shape=shape))
    assert result.path.is_file() and result.report_path.is_file()
    assert "Event timing check passed successfully" in result.report_path.read_text()
    assert verified_signature(result.path) == result.signature
    k, t = file_trajectory(result.path, seq.fov)
    np.testing.assert_allclose(k, seq.trajectory().numpy(), atol=1e-4)
    np.testing.assert_allclose(t, seq.sample_times().numpy(), atol=1e-6)
    ok, errors = read(result.path).check_timing()
    assert ok, errors
    assert result.stretches == []
    # The file starts one RF half-block before the model's first RF centre, nothing else differs.
    assert result.duration == pytest.approx(result.model_duration + 1e-3, abs=1e-6)
    assert result.sar_proxy == pytest.approx(16 * math.radians(15) ** 2, rel=1e-5)
    assert result.rf_energy > 0


def test_block_durations_are_on_the_raster(tmp_path):
    result = export(cartesian_gre(dwell=77.3e-6, te_fill=2.0037e-3), tmp_path / "odd.seq")
    durations = np.array(list(read(result.path).block_durations.values()))
    np.testing.assert_allclose(durations / 10e-6, np.round(durations / 10e-6), atol=1e-6)


def test_labels_definitions_and_signature_are_written(tmp_path):
    seq = cartesian_gre(n=8)
    result = export(seq, tmp_path / "gre.seq")
    written = read(result.path)
    labels = written.evaluate_labels(evolution="adc")
    np.testing.assert_array_equal(labels["LIN"], np.arange(8))  # line = ky + n//2, in scan order
    for name in ("PAR", "SLC", "ECO", "REP", "SET"):
        np.testing.assert_array_equal(labels[name], 0)
    np.testing.assert_allclose(written.definitions["FOV"], seq.fov)
    assert written.definitions["Name"] == "gre_test"
    assert int(written.definitions["kSpaceCenterLine"]) == 4


def test_radial_readouts_are_oblique_trapezoids(tmp_path):
    seq = radial_gre()
    result = export(seq, tmp_path / "radial.seq")
    assert result.stretches == []
    k, t = file_trajectory(result.path, seq.fov)
    np.testing.assert_allclose(k, seq.trajectory().numpy(), atol=1e-4)
    np.testing.assert_allclose(t, seq.sample_times().numpy(), atol=1e-6)
    labels = read(result.path).evaluate_labels(evolution="adc")
    np.testing.assert_array_equal(labels["LIN"], np.arange(12))  # non-Cartesian: readout counter


def test_multi_echo_readouts_get_echo_labels(tmp_path):
    seq = cartesian_gre(n=8)
    seq.moment[:, -1] = 0  # no spoiler: a second echo follows, read with the same polarity
    seq.moment[:, -2, 0] = -8
    seq.moment[:, -2, 1] = 0
    seq.adc[:, -1] = True
    seq.duration[:, -1] = 80e-6
    seq.moment[:, -1, 0] = 1.0
    result = export(seq, tmp_path / "me.seq")
    labels = read(result.path).evaluate_labels(evolution="adc")
    assert set(labels["ECO"].tolist()) == {0, 1}


def test_too_short_gaps_are_stretched_and_reported(tmp_path):
    seq = cartesian_gre(te_fill=0.0)
    result = export(seq, tmp_path / "short.seq")
    assert len(result.stretches) == 16
    assert "rep 0, event 0 (gap)" in str(result.stretches[0])
    assert all(s.needed > s.given for s in result.stretches)
    ok, _ = read(result.path).check_timing()
    assert ok
    # Stretching only ever adds time.
    _, t = file_trajectory(result.path, seq.fov)
    assert np.all(t > seq.sample_times().numpy())


def test_readout_above_max_grad_is_refused_with_event_and_excess(tmp_path):
    seq = cartesian_gre()
    seq.moment[3, 5, 0] = 40.0  # one sample's moment needs 58.7 mT/m over 80 us
    path = tmp_path / "bad.seq"
    message = (
        r"rep 3, event 5 \(readout of events 1-16\): readout gradient 58.72 mT/m on x exceeds "
        r"max_grad 28.00 mT/m by 109\.\d %"
    )
    with pytest.raises(ExportError, match=message):
        export(seq, path)
    assert not path.exists()
    seq.moment[3, 5, 0] = 1.5  # 2.2 mT/m: fine on the default system
    assert export(seq, path).path.is_file()


def test_prisma_limits_allow_what_the_conservative_default_refuses(tmp_path):
    seq = cartesian_gre(n=16, dwell=2.5e-6)  # 1 cycle/FOV (5 /m) per 2.5 us: 47 mT/m readout
    with pytest.raises(ExportError, match="exceeds max_grad"):
        export(seq, tmp_path / "fast.seq")
    result = export(seq, tmp_path / "fast.seq", limits=hardware("prisma"))
    assert limit_violations(read(result.path), hardware("prisma")) == []


def test_rf_above_max_b1_is_refused(tmp_path):
    seq = cartesian_gre()
    seq.flip[2] = math.radians(720)
    message = r"rep 2 \(RF, flip 720.0 deg\): RF peak 46.97 uT exceeds max_b1 20.00 uT by 134.9 %"
    with pytest.raises(ExportError, match=message):
        export(seq, tmp_path / "b1.seq")


def test_bad_options_and_limits_are_named():
    with pytest.raises(ExportError, match="rf_shape must be 'block' or 'sinc'"):
        ExportOptions(rf_shape="gauss").resolved(cartesian_gre())
    with pytest.raises(ExportError, match="rf_block must be positive"):
        ExportOptions(rf_block=0.0).resolved(cartesian_gre())
    with pytest.raises(ValueError, match="unknown hardware limit"):
        hardware("prisma", max_gradient=1.0)
    with pytest.raises(ValueError, match="unknown hardware preset 'trio'"):
        hardware("trio")
    with pytest.raises(ValueError, match="max_slew must be positive"):
        hardware(max_slew=0.0)


def test_sequence_without_adc_is_refused(tmp_path):
    seq = cartesian_gre(n=4)
    seq.adc = torch.zeros_like(seq.adc)
    with pytest.raises(ExportError, match="no ADC event"):
        export(seq, tmp_path / "none.seq")
