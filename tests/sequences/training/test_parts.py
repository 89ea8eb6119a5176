"""Schedules, loss parts, unit conversion of builder options, steady-state targets and image splitting."""

from __future__ import annotations

import math

import pytest
import torch

from mrzero.core.training.schedule import Schedule
from mrzero.sequences.builders import flash, inversion_gre
from mrzero.sequences.training.forward import repetition_groups
from mrzero.sequences.training.losses import Loss, relative_error
from mrzero.sequences.training.targets import si_options, with_dummies


@pytest.mark.parametrize("kind", ["cosine", "exponential"])
def test_schedules_fall_from_one_to_the_final_factor(kind):
    s = Schedule(kind, length=11, final=0.1)
    values = [s.factor(i) for i in range(11)]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert s.factor(50) == pytest.approx(0.1)
    assert Schedule("constant", 5).factor(3) == 1.0


def test_loss_parts_relative_error_sar_and_time():
    target = torch.ones(1, 4, 4, dtype=torch.complex64)
    pred = target * 0.9
    seq = flash(matrix=4, flip=math.radians(10))
    loss = Loss(sar=0.5, time=0.25, sar_ref=float(seq.sar_proxy()) * 2, time_ref=float(seq.total_duration()))
    parts = loss(pred, target, torch.ones(4, 4), seq)
    assert parts.error == pytest.approx(0.1, rel=1e-5)
    assert float(parts.image) == pytest.approx(0.01, rel=1e-4)
    assert float(parts.sar) == pytest.approx(0.25, rel=1e-5)
    assert float(parts.time) == pytest.approx(0.25, rel=1e-5)
    assert float(parts.total) == pytest.approx(0.51, rel=1e-4)


def test_relative_error_weights_and_magnitude():
    t = torch.tensor([[1.0, 2.0]], dtype=torch.complex64)
    p = torch.tensor([[-1.0, 0.0]], dtype=torch.complex64)
    assert float(relative_error(p, t, compare="magnitude")) == pytest.approx(2 / math.sqrt(5))
    assert float(relative_error(p, t, torch.tensor([[1.0, 0.0]]), compare="complex")) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="differ in shape"):
        relative_error(p, t[:, :1])


def test_builder_options_convert_degrees_and_milliseconds():
    opts = si_options({"flip_deg": 90, "te_ms": 3, "ti_ms": [0, 500], "order": "centric"})
    assert opts == {
        "flip": pytest.approx(math.pi / 2),
        "te": pytest.approx(3e-3),
        "ti": [0.0, pytest.approx(0.5)],
        "order": "centric",
    }


def test_dummies_precede_the_scan_with_the_adc_off():
    seq = flash(matrix=4)
    ss = with_dummies(seq, 6)
    assert ss.n_rep == 10 and ss.n_samples == seq.n_samples
    assert not bool(ss.adc[:6].any())
    assert torch.equal(ss.flip[:6], seq.flip[[0, 1, 2, 3, 0, 1]])
    assert torch.equal(ss.trajectory(), seq.trajectory())
    assert ss.readouts.readouts[0].rep == 6


def test_images_split_by_inversion_block():
    seq = inversion_gre(matrix=4, ti=[0.1, 0.2, 0.3])
    groups = repetition_groups(seq)
    assert len(groups) == 3 and all(len(g) == 16 for g in groups)
    assert torch.equal(torch.cat(groups), torch.arange(48))


@pytest.mark.parametrize("engine", ["fast", "isochromat"])
def test_duration_gradients_stay_finite_when_t2_decay_is_subnormal(engine):
    """A long learned delay on short-T2 tissue makes exp(-t/T2) subnormal in float32 (the T1 run's NaN)."""
    from dataclasses import replace

    from mrzero.sequences.phantoms import brain_phantom
    from mrzero.sequences.simulate import simulate

    seq = flash(matrix=4, tr=0.96)  # the last event of each TR lasts ~0.957 s: exp(-95.7) ~ 3e-42
    phantom = brain_phantom((4, 4))
    phantom = replace(phantom, t2=torch.full_like(phantom.t2, 0.01), t2dash=torch.zeros_like(phantom.t2))
    seq.duration.requires_grad_(True)
    options = {"spins": 4} if engine == "isochromat" else {}
    simulate(seq, phantom, engine=engine, **options).abs().sum().backward()
    assert bool(torch.isfinite(seq.duration.grad).all())


def test_band_errors_show_an_error_that_lives_at_high_k_only():
    """Cosines at 2, 6, 10 and 14 cycles/FOV, one per band; an error of 10 % on the 10-cycle one
    is 10 % in the 8-12 band, 0 elsewhere, and 5 % of the total."""
    from mrzero.sequences.training.losses import band_errors, band_names

    x = torch.arange(32) / 32
    waves = {k: torch.cos(2 * math.pi * k * x)[None, :].expand(32, 32) for k in (2, 6, 10, 14)}
    target = sum(waves.values())[None].to(torch.complex64)
    pred = target + 0.1 * waves[10][None]
    bands = band_errors(pred, target, compare="complex")
    assert list(bands) == ["err_k0-4", "err_k4-8", "err_k8-12", "err_k12+"]
    assert bands["err_k8-12"] == pytest.approx(0.1, rel=1e-4)
    assert max(bands["err_k0-4"], bands["err_k4-8"], bands["err_k12+"]) < 1e-6
    assert float(relative_error(pred, target, compare="complex")) == pytest.approx(0.05, rel=1e-4)
    assert band_names(8) == ["err_k0-4", "err_k4-8"]  # |k| <= 4 sqrt(2) at 8x8


def test_high_k_term_is_the_squared_outer_ring_error_and_pulls_towards_it():
    """The same four cosines (closed form: each ring holds one of them, of equal energy): a 20 %
    error on the 14-cycle cosine is 20 % at |k| >= 12, so ``high_k`` = lambda * 0.04 and the total is
    image + high_k. Its gradient with respect to that cosine's amplitude in the prediction points
    towards the target's; from 8 cycles/FOV the ring holds two cosines, and the term halves."""
    x = torch.arange(32) / 32
    waves = {k: torch.cos(2 * math.pi * k * x)[None, :].expand(32, 32) for k in (2, 6, 10, 14)}
    target = sum(waves.values())[None].to(torch.complex64)
    amp = torch.tensor(0.8, requires_grad=True)
    pred = target + (amp - 1.0) * waves[14][None]
    seq = flash(matrix=4)
    parts = Loss(compare="complex", high_k=2.0)(pred, target, torch.ones(32, 32), seq)
    assert float(parts.high_k) == pytest.approx(2.0 * 0.2**2, rel=1e-4)
    assert float(parts.image) == pytest.approx(0.1**2, rel=1e-4)  # one of four equal cosines
    assert float(parts.total) == pytest.approx(0.01 + 0.08, rel=1e-4)
    assert parts.as_dict()["high_k"] == pytest.approx(0.08, rel=1e-4)
    parts.high_k.backward()
    assert float(amp.grad) < 0  # raising the amplitude towards 1 lowers the term
    wider = Loss(compare="complex", high_k=2.0, high_k_from=8.0)(pred.detach(), target, None, seq)
    assert float(wider.high_k) == pytest.approx(2.0 * 0.2**2 / 2, rel=1e-4)
    assert Loss()(pred.detach(), target, None, seq).high_k is None
