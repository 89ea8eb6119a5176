"""Train what you export: a GRE trained with the export's hardware model is the file's sequence.

The start violates the hardware on purpose (readout samples whose moments jump faster than the
slew rate allows, a prewinder too large for its time); the trained sequence is exported with
``sequences/pulseq/export.py``, read back with the project's own Pulseq import and simulated: its
signal must be the trained sequence's. Without the hardware model the same start exports with
stretched events, the file's signal differs, and the recipe's check fails.
"""

from __future__ import annotations

import math

import numpy as np
import pypulseq as pp
import pytest
import torch

from mrzero.core.units import GAMMA_HZ_PER_T
from mrzero.sequences.builders import BUILDERS
from mrzero.sequences.checkpoint import save_checkpoint
from mrzero.sequences.pulseq.export import build, export
from mrzero.sequences.pulseq.import_ import import_seq
from mrzero.sequences.pulseq.system import hardware
from mrzero.sequences.simulate import simulate
from mrzero.sequences.training import Trainer
from mrzero.sequences.training.hardware import gradient_extremes
from mrzero.sequences.training.recipe import RecipeError, parse_recipe

MATRIX = 16
ENGINE = {"name": "fast", "options": {"tolerance": 1e-5, "max_states": 2048}}


def _violating_start(path) -> None:
    """A 16x16 FLASH whose readouts jump by up to ~6 mT/m between 50 us samples (the default
    preset's 150 T/m/s allow ~3.6) and whose first prewinder needs 1.5x its time."""
    seq = BUILDERS["gre"](matrix=MATRIX)
    gen = torch.Generator().manual_seed(5)
    kick = torch.randn(seq.moment.shape, generator=gen) * torch.tensor([1.0, 1.0, 0.0])
    seq.moment = seq.moment + torch.where(seq.adc[..., None], 1.2, 0.0) * kick
    seq.moment[0, 0, 0] = 400.0  # cycles/FOV in ~1.4 ms: ~313 fit within 28 mT/m, 150 T/m/s
    save_checkpoint(path, seq, metadata={"provenance": {"note": "hardware test start"}})


def _recipe(start, enforce: bool):
    return parse_recipe(
        {
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
    )


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

    _, built = build(load_checkpoint(start).sequence, hardware())
    assert len(built.stretches) >= MATRIX // 2


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
