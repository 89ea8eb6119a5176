"""The sequence diagram shows what pypulseq's own waveforms say about the file."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pypulseq as pp
import pytest

from mrzero.cli import main
from mrzero.sequences.pulseq.diagram import plot_sequence

DATA = Path(__file__).resolve().parents[2] / "data" / "pulseq"
GAMMA = 42.577478e6

pytestmark = pytest.mark.filterwarnings("ignore:File version 1.5.1 is higher")


def pypulseq_peaks(path: Path, start: float, end: float) -> tuple[float, list[float]]:
    """Peak |B1| (uT) and peak |G| per axis (mT/m) in [start, end] s, from ``waveforms_and_times``."""
    seq = pp.Sequence()
    seq.read(str(path))
    waves, *_ = seq.waveforms_and_times(append_RF=True)
    peaks = []
    for w in waves[:3]:
        inside = (w[0] >= start) & (w[0] <= end)
        peaks.append(float(np.max(np.abs(w[1][inside]), initial=0.0)) / GAMMA * 1e3)
    rf = waves[3]
    inside = (rf[0].real >= start) & (rf[0].real <= end)
    return float(np.max(np.abs(rf[1][inside]))) / GAMMA * 1e6, peaks


def test_matlab_gre_diagram_peaks_match_pypulseq(tmp_path):
    summary = plot_sequence(DATA / "gre_matlab.seq", tmp_path / "gre.png", (0.0, 30.0))
    b1, grads = pypulseq_peaks(DATA / "gre_matlab.seq", 0.0, 30e-3)
    assert summary.peak_b1_ut == pytest.approx(b1, rel=1e-3)
    assert summary.peak_grad_mt_m == pytest.approx(grads, rel=1e-3, abs=1e-3)
    assert summary.n_pulses == 1 and summary.n_samples == 64  # one TR: one line of the 64x64 scan
    picture = matplotlib.image.imread(tmp_path / "gre.png")
    assert picture.shape[0] > 400 and picture.shape[1] > 800
    assert picture[..., :3].std() > 0.05  # something is drawn


def test_plot_command_writes_the_png_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "fid.png"
    assert main(["plot", str(DATA / "fid_matlab.seq"), "-o", str(out)]) == 0
    assert out.is_file() and "16 RF pulse(s)" in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "missing.seq")]) == 2
    assert capsys.readouterr().err.strip() == f"mrzero plot: {tmp_path / 'missing.seq'}: no such file"
    assert main(["plot", str(DATA / "fid_matlab.seq"), "-o", str(out), "--time-range", "5", "1"]) == 2
    assert "is empty; give START < END" in capsys.readouterr().err
