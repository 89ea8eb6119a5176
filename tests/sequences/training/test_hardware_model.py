"""Train what you export: a GRE trained with the export's hardware model is the file's sequence.

The start violates the hardware on purpose (readout samples whose moments jump faster than the
slew rate allows, a prewinder too large for its time); the trained sequence is exported with
``sequences/pulseq/export.py``, read back with the project's own Pulseq import and simulated: its
signal must be the trained sequence's. Without the hardware model the same start exports with
stretched events, the file's signal differs, and the recipe's check fails.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pypulseq as pp
import pytest
import torch

from mrzero.cli import main
from mrzero.core.units import GAMMA_HZ_PER_T
from mrzero.sequences.builders import BUILDERS
from mrzero.sequences.checkpoint import save_checkpoint
from mrzero.sequences.pulseq.export import ExportError, build, export
from mrzero.sequences.pulseq.import_ import import_seq
from mrzero.sequences.pulseq.system import hardware
from mrzero.sequences.simulate import simulate
from mrzero.sequences.training import Trainer
from mrzero.sequences.training.hardware import HardwareModel, gradient_extremes
from mrzero.sequences.training.learnables import free_mask
from mrzero.sequences.training.recipe import RecipeError, parse_recipe

MATRIX = 16
ENGINE = {"name": "fast", "options": {"tolerance": 1e-5, "max_states": 2048}}


def export_build(seq):
    """The export's build record of ``seq`` with the default limits (stretches, gaps)."""
    return build(seq, hardware())[1]


def _violating_start(path) -> None:
    """A 16x16 FLASH whose readouts jump by up to ~6 mT/m between 50 us samples (the default
    preset's 150 T/m/s allow ~3.6) and whose first prewinder needs 1.5x its time."""
    seq = BUILDERS["gre"](matrix=MATRIX)
    gen = torch.Generator().manual_seed(5)
    kick = torch.randn(seq.moment.shape, generator=gen) * torch.tensor([1.0, 1.0, 0.0])
    seq.moment = seq.moment + torch.where(seq.adc[..., None], 1.2, 0.0) * kick
    seq.moment[0, 0, 0] = 400.0  # cycles/FOV in ~1.4 ms: at most ~313 fit at 28 mT/m, 150 T/m/s
    save_checkpoint(path, seq, metadata={"provenance": {"note": "hardware test start"}})


def _recipe(start, enforce: bool):
    return parse_recipe(_recipe_data(start, enforce))


def _recipe_data(start, enforce: bool) -> dict:
    return {
        "name": "hardware_gre",
        "seed": 0,
        "matrix": MATRIX,
        "sequence": {
            "builder": "gre",
            "checkpoint": str(start),
            "learn": {"flip": "all", "moment": {"axes": "xy"}},
        },
        "target": {"kind": "sequence"},
        "engine": ENGINE,
        "optimizer": {"iterations": 3, "lr": {"flip": 0.5, "moment": 0.2}},
        "hardware": {"enforce": enforce},
        "output": {"checkpoint_every": 10, "report_every": 10},
    }


def _file_signal_error(seq, path, phantom) -> float:
    """NRMSE of the signal of the imported ``path`` against ``seq``'s, on ``phantom``."""
    twin = import_seq(path).sequence
    options = ENGINE["options"]
    trained = simulate(seq.to("cpu", torch.float64), phantom, **options)
    played = simulate(twin.to("cpu", torch.float64), phantom, **options)
    return float((played - trained).abs().norm() / trained.abs().norm())


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    path = tmp_path_factory.mktemp("start") / "violating.pt"
    _violating_start(path)
    return path


def test_the_start_violates_the_hardware(start):
    """The start cannot be exported as simulated: the test below is not trivially met."""
    from mrzero.sequences.checkpoint import load_checkpoint

    assert len(export_build(load_checkpoint(start).sequence).stretches) >= MATRIX // 2


def test_trained_with_the_hardware_model_the_file_is_the_sequence(start, tmp_path, single_torch_thread):
    trainer = Trainer(_recipe(start, enforce=True), tmp_path / "run", progress=False)
    result = trainer.run()
    assert result.hardware is not None and result.hardware.passed, result.hardware.summary()
    assert (tmp_path / "run" / "hardware_check.json").is_file()
    assert "hardware check" in (tmp_path / "run" / "report" / "summary.html").read_text()
    # independently of the trainer's check: export, read with pypulseq, import, simulate
    exported = export(result.sequence, tmp_path / "trained.seq")
    assert exported.stretches == []
    # the file starts before the model's t = 0 by the first RF block's lead-in (half its 2 ms)
    assert exported.duration - exported.model_duration == pytest.approx(1e-3, abs=2e-5)
    written = pp.Sequence()
    written.read(str(exported.path))
    for ax, values in zip("xyz", written.waveforms_and_times()[0], strict=True):
        if values.size:
            slope = np.abs(np.diff(values[1])) / np.maximum(np.diff(values[0]), 1e-12)
            assert slope.max() / GAMMA_HZ_PER_T <= 150.0 * (1 + 1e-6), ax
            assert np.abs(values[1]).max() / GAMMA_HZ_PER_T <= 28e-3 * (1 + 1e-6), ax
    error = _file_signal_error(result.sequence, exported.path, trainer.phantoms[0])
    assert error < 0.01, f"the file's signal differs from the trained one by {100 * error:.2f} % NRMSE"
    assert result.hardware.signal_nrmse == pytest.approx(error, abs=0.005)


def test_without_the_hardware_model_the_same_start_fails_its_check(start, tmp_path, single_torch_thread):
    trainer = Trainer(_recipe(start, enforce=False), tmp_path / "run", progress=False)
    result = trainer.run()
    check = result.hardware
    assert check is not None and not check.passed
    assert len(check.stretches) >= MATRIX // 2 and "FAILED" in check.summary()
    exported = export(result.sequence, tmp_path / "stretched.seq")
    assert len(exported.stretches) == len(check.stretches)
    # the stretched file is measurably another sequence: the 1 % criterion above can fail
    assert _file_signal_error(result.sequence, exported.path, trainer.phantoms[0]) > 0.01


def test_gradient_extremes_of_a_known_trapezoid():
    """Peak and slew of one x and one y trapezoid against their closed forms (vector: both ramps
    run at once, so the vector slew is sqrt(2) x the per-axis one)."""
    limits = hardware()
    system = limits.to_opts()
    seq = pp.Sequence(system=system)
    amp = 20e-3 * GAMMA_HZ_PER_T
    gx = pp.make_trapezoid("x", amplitude=amp, rise_time=200e-6, flat_time=500e-6, system=system)
    gy = pp.make_trapezoid("y", amplitude=amp, rise_time=200e-6, flat_time=500e-6, system=system)
    seq.add_block(gx, gy)
    grad, slew = gradient_extremes(seq)
    assert grad["x"] == pytest.approx(20e-3) and grad["vector"] == pytest.approx(20e-3 * math.sqrt(2))
    assert slew["x"] == pytest.approx(100.0) and slew["z"] == 0.0
    assert slew["vector"] == pytest.approx(100.0 * math.sqrt(2))


def test_recipe_hardware_section():
    rec = parse_recipe(
        {"hardware": {"preset": "prisma", "max_slew_T_m_s": 120}, "sequence": {"learn": {"flip": "all"}}}
    )
    assert rec.hardware.overrides() == {"max_slew": 120.0}
    with pytest.raises(RecipeError, match="hardware.preset"):
        parse_recipe({"hardware": {"preset": "magnetom"}, "sequence": {"learn": {"flip": "all"}}})
    with pytest.raises(RecipeError, match="bounds.max_gradient_mT_m.*exceeds the hardware"):
        parse_recipe({"bounds": {"max_gradient_mT_m": 40}, "sequence": {"learn": {"flip": "all"}}})


def test_learned_durations_grow_to_what_the_export_needs():
    """Inversion times of 0 (the seed's T1 start) leave no time for the RF blocks and the spoiler:
    the projection lengthens exactly the free durations, and the file then needs no stretch."""
    seq = BUILDERS["t1"](matrix=8, ti=(0.0, 0.0), trec=0.0)
    free = free_mask(seq, "duration", ["inversion", "recovery"], [0])
    assert len(export_build(seq).stretches) > 0
    model = HardwareModel(hardware())
    longer = model.project(seq, {"duration": free})["duration"]
    assert torch.equal(longer[~free], seq.duration[~free])  # fixed events keep their times
    assert bool((longer[free] >= seq.duration[free]).all()) and bool((longer[free] > 1e-3).any())
    assert export_build(replace(seq, duration=longer)).stretches == []


def test_vector_limits_hold_in_the_file_and_per_axis_presets_exceed_them(tmp_path):
    """A gradient on x and y at once: the default preset (vector limits) keeps |dG/dt| within
    150 T/m/s; the same limits per axis only (vector unset) let the vector go towards sqrt(2) x 150."""
    seq = BUILDERS["gre"](matrix=8)
    seq.moment[:, 0, :2] = torch.tensor([-60.0, 60.0])  # prewinders on both axes
    per_axis = replace(hardware(), max_grad_vector=None, max_slew_vector=None)
    slews = {}
    for name, limits in (("vector", hardware()), ("per_axis", per_axis)):
        result = export(seq, tmp_path / f"{name}.seq", limits)
        written = pp.Sequence()
        written.read(str(result.path))
        slews[name] = gradient_extremes(written)[1]["vector"]
    assert slews["vector"] <= 150.0 * (1 + 1e-6)
    assert slews["per_axis"] > 1.3 * 150.0  # both axes ramp at ~150 T/m/s at once


def test_learned_flips_scale_to_the_rms_b1_limit(tmp_path):
    """90 deg block pulses (1 ms) every 20 ms: B1 RMS = sqrt(sum(flip^2) / (4 pi^2 T_rf) / T) / gamma
    ~ 1.31 uT. With max_b1_rms 1 uT the export refuses the file; the projection scales the free
    flips by one factor, and the file then sits just below the limit by the closed form."""
    seq = BUILDERS["gre"](matrix=8, flip=math.pi / 2)
    limits = hardware(max_b1_rms=1e-6)
    with pytest.raises(ExportError, match="max_b1_rms"):
        export(seq, tmp_path / "hot.seq", limits)
    flips = HardwareModel(limits).project(seq, {"flip": torch.ones(seq.n_rep, dtype=torch.bool)})["flip"]
    ratio = flips / seq.flip
    assert torch.allclose(ratio, ratio[0]) and 0.7 < float(ratio[0]) < 0.8
    result = export(replace(seq, flip=flips), tmp_path / "cool.seq", limits)
    t_rf = seq.hints.rf_duration
    rms = math.sqrt(float((flips.double() ** 2).sum()) / (4 * math.pi**2 * t_rf) / result.duration)
    assert 0.98e-6 < rms / GAMMA_HZ_PER_T <= 1e-6


def test_learned_flips_stay_within_the_peak_b1(tmp_path):
    """A 1 ms block pulse at 20 uT flips at most 2 pi gamma B1 T = 306.6 deg (closed form): 400 deg
    is refused by the export, and the projection brings free flips just below the closed form."""
    seq = BUILDERS["gre"](matrix=8, flip=math.radians(400))
    with pytest.raises(ExportError, match="exceeds max_b1"):
        export(seq, tmp_path / "peak.seq")
    largest = 2 * math.pi * GAMMA_HZ_PER_T * 20e-6 * seq.hints.rf_duration
    flips = HardwareModel(hardware()).project(seq, {"flip": torch.ones(seq.n_rep, dtype=torch.bool)})["flip"]
    assert bool((flips <= largest).all()) and bool((flips > 0.99 * largest).all())
    export(replace(seq, flip=flips), tmp_path / "within.seq")


def test_train_command_fails_a_recipe_whose_export_stretches(start, tmp_path, capsys, single_torch_thread):
    """``mrzero train`` says FAILED and exits with status 3 when the trained sequence's file is not
    the sequence (the start trained one step without the hardware model)."""
    path = tmp_path / "no_hardware.json"
    path.write_text(json.dumps(_recipe_data(start, enforce=False)))
    out = tmp_path / "run"
    assert main(["train", str(path), "--iterations", "1", "-o", str(out), "--no-progress"]) == 3
    printed = capsys.readouterr().out
    assert "the recipe FAILED its hardware check" in printed and "stretched event(s)" in printed
    assert json.loads((out / "hardware_check.json").read_text())["passed"] is False
