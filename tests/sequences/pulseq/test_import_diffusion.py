"""Diffusion-weighted Pulseq files: the split import reproduces their b-value, the joined one refuses.

A PGSE sequence is written by pypulseq (90 - trapezoid - 180 - trapezoid - ADC, block pulses,
no other gradient) to a real ``.seq`` file and imported. On a phantom of one diffusing tissue
the echo's attenuation ``S(D) / S(0)`` must equal ``exp(-b D)`` with the Stejskal-Tanner ``b``
of trapezoidal lobes (``b_trapezoids``; its definition of ``delta`` and ``Delta`` is checked
here against a direct quadrature of the trapezoid pair). The ramps are long (5 ms of a 10 ms
lobe) so that their shape matters: the ramp terms are 1.4 % of ``b``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pypulseq as pp
import pytest
import torch
from epi_file import write_epi
from pulseq_samples import disc_phantom

from mrzero.cli import main
from mrzero.sequences.checkpoint import load_checkpoint, save_checkpoint
from mrzero.sequences.phantoms import brain_phantom
from mrzero.sequences.phantoms.arrays import phantom_from_arrays
from mrzero.sequences.pulseq.import_ import SPLIT_B_RATE, import_seq
from mrzero.sequences.simulate import simulate

DATA = Path(__file__).parents[2] / "data" / "pulseq"
FOV = (0.2, 0.2, 0.005)  # m: z 40x finer than x and y, so a per-axis scaling error shows
RAMP, FLAT, LOBE_GAP = 5e-3, 5e-3, 15e-3  # s: ramp time, flat time, from lobe 1's end to lobe 2's start
B_TARGET = 1000e6  # s/m^2 (1000 s/mm^2)
D = 1.0e-9  # m^2/s: b D = 1


def b_trapezoids(g: float, delta: float, big_delta: float, ramp: float) -> float:
    """Stejskal-Tanner ``b`` (s/m^2) of two equal trapezoids of amplitude ``g`` (rad/s/m, gamma G)
    around a 180: ``g^2 [delta^2 (Delta - delta/3) + eps^3/30 - delta eps^2/6]`` with ``delta``
    from a lobe's ramp-up start to its ramp-down start, ``Delta`` between the lobes' starts and
    ``eps`` the ramp time (Bernstein, King, Zhou, Handbook of MRI Pulse Sequences, 2004, ch. 17)."""
    return g**2 * (delta**2 * (big_delta - delta / 3) + ramp**3 / 30 - delta * ramp**2 / 6)


def test_closed_form_matches_a_quadrature_of_the_trapezoid_pair():
    """The definition of delta and Delta used here, against the integral of k(t)^2 itself."""
    delta, big_delta = RAMP + FLAT, RAMP + FLAT + RAMP + LOBE_GAP
    t = np.linspace(0.0, big_delta + delta + RAMP, 400_001)

    def trapezoid(start: float) -> np.ndarray:
        x = t - start
        return np.clip(np.minimum(x / RAMP, (delta + RAMP - x) / RAMP), 0.0, 1.0)

    g = trapezoid(0.0) - trapezoid(big_delta)  # the 180 negates the first lobe's phase
    k = np.concatenate([[0.0], np.cumsum((g[1:] + g[:-1]) / 2 * np.diff(t))])
    quadrature = float(np.sum((k[1:] ** 2 + k[1:] * k[:-1] + k[:-1] ** 2) / 3 * np.diff(t)))
    assert quadrature == pytest.approx(b_trapezoids(1.0, delta, big_delta, RAMP), rel=1e-6)


def write_pgse(path: Path, direction: tuple[float, float, float]) -> float:
    """A PGSE ``.seq`` with diffusion lobes along ``direction``; returns its closed-form ``b``."""
    system = pp.Opts(max_grad=100, grad_unit="mT/m", max_slew=100, slew_unit="T/m/s")
    excite = pp.make_block_pulse(math.pi / 2, duration=0.5e-3, system=system, use="excitation")
    refocus = pp.make_block_pulse(
        math.pi, duration=1e-3, phase_offset=math.pi / 2, system=system, use="refocusing"
    )
    wait = pp.make_delay((LOBE_GAP - pp.calc_duration(refocus)) / 2)
    delta = RAMP + FLAT
    big_delta = 2 * RAMP + FLAT + 2 * wait.delay + pp.calc_duration(refocus)  # between the lobes' starts
    assert big_delta == pytest.approx(delta + RAMP + LOBE_GAP)
    unit = 2 * math.pi * math.sqrt(b_trapezoids(1.0, delta, big_delta, RAMP))
    amplitude = math.sqrt(B_TARGET) / unit  # Hz/m along the direction
    norm = math.sqrt(sum(c * c for c in direction))
    lobes = [
        pp.make_trapezoid(
            channel, amplitude=amplitude * c / norm, flat_time=FLAT, rise_time=RAMP, system=system
        )
        for channel, c in zip("xyz", direction, strict=True)
        if c
    ]
    assert pp.calc_duration(*lobes) == pytest.approx(2 * RAMP + FLAT)  # what the closed form assumes
    seq = pp.Sequence(system)
    for block in ([excite], lobes, [wait], [refocus], [wait], lobes):
        seq.add_block(*block)
    # the sample at the spin echo, where B0 and T2' are refocused
    t90 = excite.delay + excite.shape_dur / 2
    t180 = sum(seq.block_durations[i] for i in (1, 2, 3)) + refocus.delay + refocus.shape_dur / 2
    dwell = 20e-6
    delay = 2 * t180 - t90 - seq.duration()[0] - dwell / 2
    seq.add_block(pp.make_adc(num_samples=1, dwell=dwell, delay=round(delay, 7), system=system))
    seq.set_definition("FOV", list(FOV))
    seq.write(str(path))
    back = pp.Sequence()
    back.read(str(path))  # the file keeps 6 digits of each amplitude: b from what it holds
    block = back.get_block(2)
    stored = math.sqrt(sum(g.amplitude**2 for g in (block.gx, block.gy, block.gz) if g is not None))
    assert stored == pytest.approx(amplitude, rel=1e-5)
    return b_trapezoids(2 * math.pi * stored, delta, big_delta, RAMP)


def one_tissue(diffusion: float | None):
    ones = np.ones((2, 2))
    return phantom_from_arrays(
        ones,
        1.0 * ones,
        0.1 * ones,
        diffusion=None if diffusion is None else diffusion * ones,
        fov=FOV,
        dtype=torch.float64,
    )


@pytest.mark.parametrize("direction", [(1.0, 0.0, 0.0), (1.0, 2.0, 2.0)], ids=["x", "oblique"])
def test_split_import_attenuates_the_echo_by_the_trapezoids_b(tmp_path, direction):
    b = write_pgse(tmp_path / "pgse.seq", direction)
    imported = import_seq(tmp_path / "pgse.seq", split_gradients=True)
    seq = imported.sequence.to(dtype=torch.float64)
    assert not seq.joined_gradients and seq.n_samples == 1
    # the stated bound: the model's b exceeds the waveform's by at most SPLIT_B_RATE per second
    assert 0 < imported.b_excess <= SPLIT_B_RATE * float(seq.duration.sum(1).max())
    with torch.no_grad():
        diffusing = simulate(seq, one_tissue(D))
        still = simulate(seq, one_tissue(None))
    attenuation = complex(diffusing[0, 0] / still[0, 0])
    expected = math.exp(-b * D)
    print(f"\n{direction}: b {b / 1e6:.2f} s/mm^2, attenuation error {abs(attenuation / expected - 1):.1e}")
    assert abs(attenuation / expected - 1) < 1e-5  # the brief asks 1e-3; measured 1.2e-7
    assert abs(still[0, 0]) > 0.5  # a spin echo, not a spoiled signal


def test_joined_import_refuses_to_diffuse(tmp_path):
    b = write_pgse(tmp_path / "pgse.seq", (1.0, 0.0, 0.0))
    joined = import_seq(tmp_path / "pgse.seq").sequence.to(dtype=torch.float64)
    assert joined.joined_gradients and joined.clone().joined_gradients
    with pytest.raises(ValueError, match="split_gradients"):
        simulate(joined, one_tissue(D))
    with torch.no_grad():
        still = simulate(joined, one_tissue(None))  # without diffusion the joined import is exact
        # what the refusal prevents: each lobe spread over its whole interval, a wrong b
        joined.joined_gradients = False
        wrong = complex(simulate(joined, one_tissue(D))[0, 0] / still[0, 0])
    assert abs(wrong / math.exp(-b * D) - 1) > 0.1


def test_checkpoint_keeps_the_mark(tmp_path):
    """A joined import saved as a checkpoint still refuses to diffuse once loaded."""
    write_pgse(tmp_path / "pgse.seq", (1.0, 0.0, 0.0))
    for split in (False, True):
        seq = import_seq(tmp_path / "pgse.seq", split_gradients=split).sequence
        save_checkpoint(tmp_path / f"{split}.ckpt", seq)
        assert load_checkpoint(tmp_path / f"{split}.ckpt").sequence.joined_gradients is not split


def test_split_import_keeps_phases_and_timing(tmp_path):
    """Splitting changes only where events end inside the waveform: the k-space position and
    time of every sample, and the signal without diffusion, stay those of the joined import."""
    write_pgse(tmp_path / "pgse.seq", (1.0, 2.0, 2.0))
    joined = import_seq(tmp_path / "pgse.seq").sequence.to(dtype=torch.float64)
    split = import_seq(tmp_path / "pgse.seq", split_gradients=True).sequence.to(dtype=torch.float64)
    assert split.n_event > joined.n_event
    torch.testing.assert_close(split.trajectory(), joined.trajectory(), atol=1e-5, rtol=0)
    torch.testing.assert_close(split.sample_times(), joined.sample_times(), atol=1e-8, rtol=0)
    torch.testing.assert_close(split.duration.sum(1), joined.duration.sum(1), atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", ["epi", "gre_matlab"])
def test_split_import_of_imaging_files_changes_no_sample(tmp_path, name):
    """An EPI (ramps between and under its readouts, blips, fat saturation) and a MATLAB GRE:
    without diffusion the split import's signal is the joined one's."""
    path = DATA / "gre_matlab.seq"
    if name == "epi":
        path = tmp_path / "epi.seq"
        write_epi(path, n=16)
    joined = import_seq(path).sequence.to(dtype=torch.float64)
    split = import_seq(path, split_gradients=True).sequence.to(dtype=torch.float64)
    assert joined.joined_gradients and not split.joined_gradients and split.n_event > joined.n_event
    torch.testing.assert_close(split.trajectory(), joined.trajectory(), atol=1e-4, rtol=0)
    torch.testing.assert_close(split.sample_times(), joined.sample_times(), atol=1e-6, rtol=0)
    phantom = disc_phantom(16).to(dtype=torch.float64)
    with torch.no_grad():
        a, b = simulate(joined, phantom), simulate(split, phantom)
    assert float((a - b).abs().max()) < 1e-5 * float(a.abs().max())  # measured 3.2e-7, 6.0e-8


def test_file_without_gradients_is_not_marked():
    """Nothing to join: the joined import of an FID file is exact and diffuses."""
    seq = import_seq(DATA / "fid_matlab.seq").sequence
    assert not seq.joined_gradients
    simulate(seq, one_tissue(D))


def _echo(raw: Path) -> complex:
    import ismrmrd

    ds = ismrmrd.Dataset(str(raw), "dataset", create_if_needed=False)
    try:
        return complex(ds.read_acquisition(ds.number_of_acquisitions() - 1).data[0, 0])
    finally:
        ds.close()


def test_simulate_command_diffusion_gives_each_tissue_its_attenuation(tmp_path, capsys):
    """``mrzero simulate FILE.seq --diffusion``: the echo over the brain phantom is the sum of
    its voxels' echoes ``PD e^{-TE/T2} sin(b1 90deg) sin^2(b1 90deg) e^{-b D}`` relative to the
    same run without diffusion (B0 and T2' refocused at the sample; the lobes spoil the FID)."""
    b = write_pgse(tmp_path / "pgse.seq", (1.0, 0.0, 0.0))
    echoes = []
    for flags, out in (([], "plain"), (["--diffusion"], "dwi")):
        args = ["simulate", str(tmp_path / "pgse.seq"), "--matrix", "8", "--no-progress", "-o"]
        assert main([*args, str(tmp_path / out), *flags]) == 0, capsys.readouterr()
        echoes.append(_echo(tmp_path / out / "pgse.h5"))
    assert "28 events" in capsys.readouterr().out  # the split import
    brain = brain_phantom((8, 8), diffusion=True)
    te = float(import_seq(tmp_path / "pgse.seq").te)
    b1 = brain.b1.double() * math.pi / 2
    weight = brain.pd.double() * torch.exp(-te / brain.t2.double()) * torch.sin(b1) * torch.sin(b1) ** 2
    expected = float((weight * torch.exp(-b * brain.diffusion.double())).sum() / weight.sum())
    assert 0.3 < expected < 0.6  # grey and white matter near e^-0.75, CSF near e^-3
    ratio = echoes[1] / echoes[0]
    assert abs(ratio.real - expected) < 1e-5 * expected  # measured 3e-7
    # the CLI simulates in float32: k at the echo sums lobes of 6200 cycles/FOV, left off zero by
    # ~1e-4 cycles/FOV, differently for the two event layouts: a phase of 1.5e-4 rad
    assert abs(ratio.imag) < 1e-3 * expected


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sequence", "gre"], "--diffusion applies to .seq files"),
        (["FILE", "--phantom", "sparse"], "has no diffusion map"),
        (["FILE", "--engine", "isochromat"], "--diffusion needs --engine fast"),
    ],
)
def test_simulate_command_diffusion_refusals(tmp_path, capsys, extra, message):
    write_pgse(tmp_path / "pgse.seq", (1.0, 0.0, 0.0))
    extra = [str(tmp_path / "pgse.seq") if a == "FILE" else a for a in extra]
    assert main(["simulate", *extra, "--diffusion", "-o", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
