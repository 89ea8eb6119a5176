"""Import of real .seq files: the MATLAB reference files, our own exports, the ROTATIONS fallback."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pypulseq as pp
import pytest
import torch
from pulseq_samples import cartesian_gre, disc_phantom, radial_gre

from mrzero.sequences.pulseq.export import ExportOptions, export
from mrzero.sequences.pulseq.import_ import PulseqReadError, echo_and_repetition_time, import_seq
from mrzero.sequences.sequence import EXCITATION, INVERSION, REFOCUSING
from mrzero.sequences.simulate import simulate

DATA = Path(__file__).resolve().parents[2] / "data" / "pulseq"


def matlab_report(name: str) -> dict[str, float]:
    """Block count, duration, TE and TR from the MATLAB toolbox's own test report."""
    text = (DATA / f"{name}.testreport.txt").read_text()
    number = {
        key: float(re.search(rf"^{key}:\s*([0-9.]+)", text, re.MULTILINE).group(1))
        for key in ("Number of blocks", "Sequence duration", "TE", "TR")
    }
    return number


@pytest.mark.parametrize("name, reps, samples", [("gre_matlab", 64, 4096), ("fid_matlab", 16, 4096)])
def test_matlab_files_match_their_test_reports(name, reps, samples):
    imported = import_seq(DATA / f"{name}.seq")
    report = matlab_report(name)
    assert imported.n_blocks == report["Number of blocks"]
    assert imported.duration == pytest.approx(report["Sequence duration"], abs=1e-6)
    assert imported.te == pytest.approx(report["TE"], abs=1e-6)
    assert imported.tr == pytest.approx(report["TR"], abs=1e-6)
    seq = imported.sequence
    assert (seq.n_rep, seq.n_samples) == (reps, samples)
    # Timing is preserved: the model spans the file from the first RF centre on.
    assert float(seq.total_duration()) == pytest.approx(imported.duration - imported.lead_in, abs=1e-5)


def test_matlab_gre_is_the_cartesian_64x64_scan_it_claims():
    seq = import_seq(DATA / "gre_matlab.seq").sequence
    assert seq.matrix == (64, 64, 1)
    assert seq.fov == pytest.approx((0.25, 0.25, 0.003))
    k = seq.trajectory().numpy()
    # Readout along x in unit steps, 64 phase-encode lines at integer ky, no kz left after the rephaser.
    np.testing.assert_allclose(np.diff(k[:64, 0]), 1.0, atol=2e-3)
    np.testing.assert_allclose(np.unique(np.round(k[:, 1])), np.arange(-32, 32))
    np.testing.assert_allclose(k[:, 1], np.round(k[:, 1]), atol=2e-3)
    np.testing.assert_allclose(k[:, 2], 0.0, atol=0.05)
    np.testing.assert_allclose(np.degrees(seq.flip.numpy()), 10.0, rtol=1e-4)
    assert seq.hints.rf_shape == "sinc" and seq.hints.readout_dwell == pytest.approx(1e-4)


def test_matlab_fid_flip_and_timing():
    seq = import_seq(DATA / "fid_matlab.seq").sequence
    np.testing.assert_allclose(np.degrees(seq.flip.numpy()), 90.0, rtol=1e-4)
    assert seq.hints.rf_shape == "block" and seq.hints.rf_duration == pytest.approx(300e-6)
    assert float(seq.trajectory().abs().max()) == 0.0  # a FID has no gradients
    assert seq.sample_times()[0].item() == pytest.approx(0.020206, abs=1e-6)


def test_matlab_files_simulate():
    gre = import_seq(DATA / "gre_matlab.seq").sequence
    signal = simulate(gre, disc_phantom(16))
    assert signal.shape == (1, 4096) and bool(torch.isfinite(signal).all())
    k = gre.trajectory()
    assert float(k[signal[0].abs().argmax()].norm()) <= 1.0  # the echo is at the k-space centre
    fid = simulate(import_seq(DATA / "fid_matlab.seq").sequence, disc_phantom(16))[0].reshape(16, 256)
    # 90 deg every 1.02 s with T2 << TR: every FID after the first is the same steady-state FID.
    torch.testing.assert_close(fid[2:], fid[1:2].expand(14, -1), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(fid[0], fid[1], rtol=1e-2)


@pytest.mark.parametrize("make", [cartesian_gre, radial_gre])
@pytest.mark.parametrize("shape", ["block", "sinc"])
def test_export_then_import_preserves_trajectory_timing_and_rf(tmp_path, make, shape):
    seq = make()
    export(seq, tmp_path / "x.seq", options=ExportOptions(rf_shape=shape))
    back = import_seq(tmp_path / "x.seq").sequence
    np.testing.assert_allclose(back.trajectory().numpy(), seq.trajectory().numpy(), atol=1e-4)
    np.testing.assert_allclose(back.sample_times().numpy(), seq.sample_times().numpy(), atol=1e-6)
    np.testing.assert_allclose(back.flip.numpy(), seq.flip.numpy(), rtol=1e-4)
    wrapped = np.angle(np.exp(1j * (back.rf_phase.numpy() - seq.rf_phase.numpy())))
    np.testing.assert_allclose(wrapped, 0.0, atol=5e-5)
    assert echo_and_repetition_time(back) == pytest.approx(echo_and_repetition_time(seq), abs=1e-6)
    assert back.hints.rf_shape == shape


def test_rf_use_maps_to_rf_kind(tmp_path):
    seq = cartesian_gre(n=4)
    seq.rf_kind = torch.tensor([INVERSION, EXCITATION, REFOCUSING, EXCITATION])
    seq.flip[0], seq.flip[2] = math.pi, math.pi
    export(seq, tmp_path / "kinds.seq")
    back = import_seq(tmp_path / "kinds.seq").sequence
    assert back.rf_kind.tolist() == [INVERSION, EXCITATION, REFOCUSING, EXCITATION]


def add_rotation_to_every_block(text: str, quaternion: tuple[float, float, float, float]) -> str:
    """Insert a v1.5.1 ROTATIONS extension (type 9) chained in front of each block's extensions."""
    blocks = re.search(r"^\[BLOCKS\]\s*\n(.*?)(?=^\s*$)", text, re.MULTILINE | re.DOTALL)
    rows = blocks.group(1).splitlines()
    ext = re.search(r"^\[EXTENSIONS\]\s*\n", text, re.MULTILINE)
    first_free = 1 + max(int(m.group(1)) for m in re.finditer(r"^(\d+) \d+ \d+ \d+$", text, re.MULTILINE))
    new_rows, new_ext = [], []
    for i, row in enumerate(rows):
        fields = row.split()
        eid = first_free + i
        new_ext.append(f"{eid} 9 1 {fields[7]}\n")
        fields[7] = str(eid)
        new_rows.append(" ".join(fields))
    text = text[: blocks.start(1)] + "\n".join(new_rows) + "\n" + text[blocks.end(1) :]
    ext = re.search(r"^\[EXTENSIONS\]\s*\n", text, re.MULTILINE)
    text = text[: ext.end()] + "".join(new_ext) + text[ext.end() :]
    rotation = "extension ROTATIONS 9\n1 " + " ".join(f"{q:.9f}" for q in quaternion) + "\n\n"
    shapes = text.index("[SHAPES]") if "[SHAPES]" in text else text.index("[SIGNATURE]")
    return text[:shapes] + rotation + text[shapes:]


def test_rotations_extension_is_applied_where_pypulseq_fails(tmp_path):
    seq = cartesian_gre(n=8)
    export(seq, tmp_path / "plain.seq")
    rotated = tmp_path / "rotated.seq"
    half = math.radians(30) / 2  # 30 degrees about z
    rotated.write_text(
        add_rotation_to_every_block(
            (tmp_path / "plain.seq").read_text(), (math.cos(half), 0.0, 0.0, math.sin(half))
        )
    )
    with pytest.raises(ValueError, match="Unknown section code: extension ROTATIONS"):
        pp.Sequence().read(str(rotated))
    imported = import_seq(rotated)
    assert imported.rotated_blocks == imported.n_blocks
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    k = seq.trajectory().numpy()
    expected = np.stack([c * k[:, 0] - s * k[:, 1], s * k[:, 0] + c * k[:, 1], k[:, 2]], axis=1)
    np.testing.assert_allclose(imported.sequence.trajectory().numpy(), expected, atol=1e-4)
    # Labels (the other extension) survive the re-linking.
    assert imported.n_blocks == import_seq(tmp_path / "plain.seq").n_blocks


@pytest.mark.filterwarnings("ignore:File version 1.5.1 is higher")
def test_matlab_rotations_file_rotates_each_spoke():
    """The Pulseq project's own v1.5.1 ROTATIONS output: one trapezoid rotated per block."""
    with pytest.raises(ValueError, match="Unknown section code: extension ROTATIONS"):
        pp.Sequence().read(str(DATA / "radial_rotations_matlab.seq"))
    imported = import_seq(DATA / "radial_rotations_matlab.seq", fov=(1.0, 1.0, 1.0))
    assert imported.rotated_blocks == 6 and imported.n_blocks == 12
    moments = imported.sequence.moment.sum(1).numpy()  # 1/m, one spoke per repetition
    area = 1.69492e6 * (240 + 350) * 1e-6  # the trapezoid's area along its logical x axis
    angles = np.radians([0, 30, 45, 60, 90, 0])
    expected = area * np.stack([np.cos(angles), np.sin(angles), np.zeros(6)], axis=1)
    np.testing.assert_allclose(moments, expected, atol=1e-3 * area)


def test_bad_files_are_refused_with_a_reason(tmp_path):
    with pytest.raises(PulseqReadError, match="no such Pulseq file"):
        import_seq(tmp_path / "missing.seq")
    (tmp_path / "text.seq").write_text("hello\n")
    with pytest.raises(PulseqReadError, match=r"not a Pulseq file \(no \[BLOCKS\] section\)"):
        import_seq(tmp_path / "text.seq")
    export(cartesian_gre(n=4), tmp_path / "ok.seq")
    broken = (tmp_path / "ok.seq").read_text().replace("[RF]", "[RFX]")
    (tmp_path / "broken.seq").write_text(broken)
    with pytest.raises(PulseqReadError, match=r"line \d+: block 1 refers to RF event 1, which the \[RF\]"):
        import_seq(tmp_path / "broken.seq")
    no_fov = re.sub(r"^FOV .*\n", "", (tmp_path / "ok.seq").read_text(), flags=re.MULTILINE)
    (tmp_path / "nofov.seq").write_text(no_fov)
    with pytest.raises(PulseqReadError, match="defines no FOV"):
        import_seq(tmp_path / "nofov.seq")
    assert import_seq(tmp_path / "nofov.seq", fov=(0.2, 0.2, 0.005)).sequence.n_samples == 16
