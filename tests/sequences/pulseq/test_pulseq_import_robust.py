"""Import of files that real scanners hold: old formats, what pypulseq's reader trips on,
broken and oversized files, navigators, soft delays and triggers."""

from __future__ import annotations

import math
import re

import numpy as np
import pypulseq as pp
import pytest
import torch
from old_formats import as_v141
from pulseq_samples import cartesian_gre

from mrzero.sequences.pulseq.export import export
from mrzero.sequences.pulseq.file_check import ImportLimits
from mrzero.sequences.pulseq.import_ import PulseqReadError, echo_and_repetition_time, import_seq
from mrzero.sequences.pulseq.rf_use import guess_rf_use
from mrzero.sequences.sequence import EXCITATION, INVERSION, REFOCUSING

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def gre_file(tmp_path):
    export(cartesian_gre(n=4), tmp_path / "gre.seq")
    return tmp_path / "gre.seq"


def test_v141_file_with_an_unused_arbitrary_gradient_is_read(gre_file, tmp_path):
    old = tmp_path / "old.seq"
    old.write_text(as_v141(gre_file.read_text(), unused_arbitrary_gradient=True))
    with pytest.raises(TypeError, match="NoneType doesn't define __round__"):
        pp.Sequence().read(str(old))
    imported = import_seq(old)
    reference = import_seq(gre_file).sequence
    assert imported.version == (1, 4, 1)
    np.testing.assert_allclose(
        imported.sequence.trajectory().numpy(), reference.trajectory().numpy(), atol=1e-5
    )
    np.testing.assert_allclose(imported.sequence.flip.numpy(), reference.flip.numpy(), rtol=1e-5)


def test_rf_use_of_old_files_is_guessed_from_flip_and_position(tmp_path):
    seq = cartesian_gre(n=4)
    seq.rf_kind = torch.tensor([INVERSION, EXCITATION, REFOCUSING, EXCITATION])
    seq.flip[0], seq.flip[2] = math.pi, math.pi
    seq.adc[0] = False  # an inversion is not read out
    export(seq, tmp_path / "kinds.seq")
    old = tmp_path / "kinds_v141.seq"
    old.write_text(as_v141((tmp_path / "kinds.seq").read_text()))
    plain = pp.Sequence()
    plain.read(str(old))  # pypulseq leaves the inversion pulse without a use
    assert plain.get_block(1).rf.use != "inversion"
    imported = import_seq(old)
    assert imported.sequence.rf_kind.tolist() == [INVERSION, EXCITATION, REFOCUSING, EXCITATION]
    assert any("use guessed" in n and "1 inversion" in n and "1 refocusing" in n for n in imported.notes)


def test_guess_rule_names_saturation_inversion_refocusing():
    flips = [100.0, 90.0, 180.0, 180.0, 15.0, 180.0, 180.0, 90.0]
    ppm = [-3.45, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None]
    sampled = [False, False, True, True, True, False, False, True]
    assert guess_rf_use(flips, ppm, sampled) == [
        "saturation",
        "excitation",
        "refocusing",
        "refocusing",
        "excitation",
        "refocusing",
        "inversion",
        "excitation",
    ]


def test_fat_frequency_pulse_in_an_old_file_becomes_saturation(tmp_path):
    seq = cartesian_gre(n=4)
    seq.adc[0] = False
    seq.flip[0] = math.radians(110)
    export(seq, tmp_path / "fs.seq")
    text = as_v141((tmp_path / "fs.seq").read_text())
    rows = re.search(r"^\[RF\]\n(.*?)^\s*$", text, re.MULTILINE | re.DOTALL)
    fields = rows.group(1).splitlines()[0].split()
    fields[6] = "-440.7"  # Hz: -3.45 ppm at 3 T
    new_row = " ".join(fields)
    # give the first block its own RF event at the fat frequency
    new_id = str(1 + len(rows.group(1).splitlines()))
    text = text.replace(rows.group(1), rows.group(1) + new_id + new_row[len(fields[0]) :] + "\n")
    text = re.sub(r"^(\s*1\s+\d+\s+)1(\s)", rf"\g<1>{new_id}\2", text, count=1, flags=re.MULTILINE)
    (tmp_path / "fs_v141.seq").write_text(text)
    imported = import_seq(tmp_path / "fs_v141.seq")
    assert imported.sequence.rf_kind.tolist()[0] == INVERSION
    assert imported.rf_frequency[0] == pytest.approx(-440.7)
    assert "1 saturation" in imported.notes[0]


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: re.sub(
                r"^(\s*2\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+)\s+\d+\s*$",
                r"\1",
                t,
                count=1,
                flags=re.MULTILINE,
            ),
            r"line \d+: \[BLOCKS\] row '2 .*' must be eight",
        ),
        (
            lambda t: re.sub(r"^(\s*3(\s+\d+){5}\s+)\d+", r"\g<1>77", t, count=1, flags=re.MULTILINE),
            r"line \d+: block 3 refers to ADC event 77, which the \[ADC\] section does not define",
        ),
        (
            lambda t: re.sub(r"^shape_id 1$", "shape_id 9", t, count=1, flags=re.MULTILINE),
            r"line \d+: RF event 1 refers to shape 1, which the \[SHAPES\] section does not define",
        ),
    ],
)
def test_broken_files_are_refused_naming_line_and_block(gre_file, tmp_path, edit, message):
    bad = tmp_path / "bad.seq"
    bad.write_text(edit(gre_file.read_text()))
    with pytest.raises(PulseqReadError, match=message):
        import_seq(bad)


@pytest.mark.parametrize(
    "limits, message",
    [
        (ImportLimits(max_blocks=5), r"has \d+ blocks, more than the import's limit of 5 .*--max-blocks"),
        (ImportLimits(max_samples=10), r"acquires 16 ADC samples, more than the import's limit of 10"),
        (ImportLimits(max_memory_gb=1e-9), r"needs about .* GB, more than the import's limit"),
    ],
)
def test_files_beyond_the_limits_are_refused_before_parsing(gre_file, limits, message):
    with pytest.raises(PulseqReadError, match=message):
        import_seq(gre_file, limits=limits)


def _navigator_epi_like(path, with_label: bool = True) -> tuple[float, float]:
    """RF, a navigator readout through k = 0 (NAV label), then an imaging readout through k = 0.

    Returns the navigator's and the imaging readout's k-space centre time after the RF centre.
    """
    system = pp.Opts(max_grad=30, grad_unit="mT/m", max_slew=120, slew_unit="T/m/s")
    seq = pp.Sequence(system)
    seq.set_definition("FOV", [0.2, 0.2, 0.005])
    rf = pp.make_block_pulse(math.pi / 2, duration=0.5e-3, system=system, use="excitation")
    n, dwell = 32, 20e-6
    read = pp.make_trapezoid("x", flat_area=n / 0.2, flat_time=n * dwell, system=system)
    adc = pp.make_adc(n, dwell=dwell, delay=read.rise_time, system=system)
    pre = pp.make_trapezoid("x", area=-read.area / 2, duration=1e-3, system=system)
    back = pp.scale_grad(read, -1)
    seq.add_block(rf)
    seq.add_block(pre)
    nav_block = [read, adc] + ([pp.make_label(label="NAV", type="SET", value=1)] if with_label else [])
    seq.add_block(*nav_block)
    seq.add_block(back, adc, *([pp.make_label(label="NAV", type="SET", value=0)] if with_label else []))
    seq.add_block(pp.make_delay(2e-3))
    seq.write(str(path), create_signature=False)
    rf_centre = rf.delay + rf.shape_dur / 2
    t_nav = pp.calc_duration(rf) + 1e-3 + read.rise_time + n * dwell / 2
    t_img = t_nav + pp.calc_duration(read)
    return t_nav - rf_centre, t_img - rf_centre


def test_te_comes_from_the_imaging_readout_not_the_navigator(tmp_path):
    te_nav, te_img = _navigator_epi_like(tmp_path / "nav.seq")
    imported = import_seq(tmp_path / "nav.seq")
    assert imported.te == pytest.approx(te_img, abs=1e-6)
    assert echo_and_repetition_time(imported.sequence)[0] == pytest.approx(te_nav, abs=1e-6)  # global k min
    assert imported.imaging.tolist() == [False] * 32 + [True] * 32
    assert any("NAV label" in n for n in imported.notes)


def test_te_of_a_multi_echo_file_is_the_first_echo(tmp_path):
    """A 4-echo flyback readout written by pypulseq whose rewinders miss the readout's area by 1e-5 of
    a k-space step (as rounded areas do): the echoes' k residuals are -1.5, -0.5, 0.5, 1.5 of that;
    TE is the first echo's centre (TE1, as the scanner reports it), not the one nearest k = 0."""
    system = pp.Opts(max_grad=30, grad_unit="mT/m", max_slew=120, slew_unit="T/m/s")
    seq = pp.Sequence(system)
    fov, n, dwell = 0.2, 32, 10e-6
    seq.set_definition("FOV", [fov, fov, 0.005])
    slip = 1e-5 / fov  # 1/m
    rf = pp.make_block_pulse(math.radians(30), duration=0.5e-3, system=system, use="excitation")
    read = pp.make_trapezoid("x", flat_area=n / fov, flat_time=n * dwell, system=system)
    adc = pp.make_adc(n, dwell=dwell, delay=read.rise_time, system=system)
    pre = pp.make_trapezoid("x", area=-read.area / 2 - 1.5 * slip, duration=1.1e-3, system=system)
    back = pp.make_trapezoid("x", area=-read.area + slip, duration=1.1e-3, system=system)
    seq.add_block(rf)
    seq.add_block(pre)
    for _ in range(4):
        seq.add_block(read, adc)
        seq.add_block(back)
    seq.write(str(tmp_path / "mgre.seq"), create_signature=False)
    rf_centre = rf.delay + rf.shape_dur / 2
    te1 = pp.calc_duration(rf) + pp.calc_duration(pre) + read.rise_time + n * dwell / 2 - rf_centre
    assert import_seq(tmp_path / "mgre.seq").te == pytest.approx(te1, abs=1e-6)


def test_soft_delays_and_triggers_are_reported(tmp_path):
    system = pp.Opts()
    seq = pp.Sequence(system)
    seq.add_block(pp.make_block_pulse(math.pi / 2, duration=0.5e-3, system=system, use="excitation"))
    seq.add_block(pp.make_trigger("physio1", duration=1e-3, system=system))
    seq.add_block(pp.make_delay(5e-3), pp.make_soft_delay("TE", default_duration=5e-3))
    seq.add_block(pp.make_adc(16, dwell=10e-6, system=system))
    seq.write(str(tmp_path / "soft.seq"), create_signature=False)
    imported = import_seq(tmp_path / "soft.seq")
    notes = "\n".join(imported.notes)
    assert "soft delay 'TE' kept at its default 5.000 ms" in notes
    assert "trigger on physio1" in notes
    assert float(imported.sequence.duration[0].sum()) == pytest.approx(imported.duration - 0.25e-3, abs=1e-6)
