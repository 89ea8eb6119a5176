"""``torch.autograd.gradcheck`` in float64 of both engines w.r.t. every sequence tensor."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mrzero.sequences.engines import configuration
from mrzero.sequences.phantom import Phantom
from mrzero.sequences.sequence import Sequence
from mrzero.sequences.simulate import simulate

FIELDS = ("flip", "rf_phase", "duration", "moment", "adc_phase")
OPTIONS = {"fast": {"tolerance": 0.0}, "isochromat": {"spins": 16}}


def tiny_phantom() -> Phantom:
    """2x2 voxels with distinct tissue, B0, B1, T2' and two coils (float64)."""
    g = torch.Generator().manual_seed(3)

    def rand(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(2, 2, generator=g, dtype=torch.float64)

    sign = torch.tensor([1.0, -1.0], dtype=torch.float64)[:, None, None]
    coils = torch.polar(rand(0.5, 1.0).expand(2, 2, 2), rand(-1, 1).expand(2, 2, 2) * sign)
    return Phantom(
        pd=rand(0.5, 1.0),
        t1=rand(0.3, 1.5),
        t2=rand(0.02, 0.1),
        t2dash=rand(0.01, 0.05),
        b0=rand(-30, 30),
        b1=rand(0.8, 1.2),
        coil_sens=coils.to(torch.complex128),
    )


def tiny_sequence() -> Sequence:
    """3 repetitions x 3 events with arbitrary (learned-looking) moments and durations."""
    g = torch.Generator().manual_seed(7)
    r, e = 3, 3
    return Sequence(
        flip=torch.tensor([0.7, 1.9, 0.4], dtype=torch.float64),
        rf_phase=torch.tensor([0.0, 1.3, -0.6], dtype=torch.float64),
        duration=1e-3 + 4e-3 * torch.rand(r, e, generator=g, dtype=torch.float64),
        moment=torch.randn(r, e, 3, generator=g, dtype=torch.float64) * torch.tensor([0.9, 0.7, 0.1]),
        adc=torch.tensor([[False, True, True], [True, False, True], [True, True, False]]),
        adc_phase=torch.tensor([0.2, -0.4, 1.1], dtype=torch.float64),
    )


@pytest.mark.parametrize("engine", sorted(OPTIONS))
@pytest.mark.parametrize("name", FIELDS)
def test_gradcheck(engine, name):
    seq, phantom = tiny_sequence(), tiny_phantom()
    x = getattr(seq, name).clone().requires_grad_(True)

    def signal(value: torch.Tensor) -> torch.Tensor:
        return simulate(replace(seq, **{name: value}), phantom, engine, **OPTIONS[engine])

    out = signal(x)
    assert out.dtype == torch.complex128 and out.shape == (2, seq.n_samples)
    assert torch.autograd.gradcheck(signal, (x,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_engines_agree_on_the_tiny_problem_and_its_gradient():
    """Not only self-consistent: both engines give the same signal and the same flip gradient."""
    seq, phantom = tiny_sequence(), tiny_phantom()
    grads = {}
    for engine, opts in (("fast", {"tolerance": 0.0}), ("isochromat", {"spins": 4096})):
        flip = seq.flip.clone().requires_grad_(True)
        out = simulate(replace(seq, flip=flip), phantom, engine, **opts)
        out.abs().pow(2).sum().backward()
        grads[engine] = (out.detach(), flip.grad)
    (s_fast, g_fast), (s_iso, g_iso) = grads["fast"], grads["isochromat"]
    scale = s_fast.abs().max()
    # T2' here is short and the isochromats' Lorentzian quantiles converge slowly: 2 %
    assert (s_fast - s_iso).abs().max() < 0.02 * scale
    assert (g_fast - g_iso).abs().max() < 0.02 * g_fast.abs().max()


@pytest.mark.parametrize("engine", sorted(OPTIONS))
def test_checkpointing_changes_memory_not_gradients(engine):
    seq, phantom = tiny_sequence(), tiny_phantom()
    grads = []
    for checkpointing in (False, True):
        moment = seq.moment.clone().requires_grad_(True)
        out = simulate(
            replace(seq, moment=moment), phantom, engine, checkpointing=checkpointing, **OPTIONS[engine]
        )
        out.abs().pow(2).sum().backward()
        grads.append(moment.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_automatic_checkpointing_switches_mid_sequence_without_changing_gradients(monkeypatch):
    """The fast engine's default keeps the first repetitions and recomputes those after its byte
    budget; with a budget of 0 that is every repetition after the first, and the gradients of
    moments and durations (the dual amplitudes included) must equal those without checkpointing."""
    seq, phantom = tiny_sequence(), tiny_phantom()
    recomputed = []

    def counted(*args, **kwargs):
        recomputed.append(1)
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    monkeypatch.setattr(configuration, "AUTO_CHECKPOINT_BYTES", 0)
    monkeypatch.setattr(configuration, "checkpoint", counted)
    grads = []
    for checkpointing in (False, None):
        leaves = {name: getattr(seq, name).clone().requires_grad_(True) for name in ("moment", "duration")}
        out = simulate(replace(seq, **leaves), phantom, "fast", tolerance=0.0, checkpointing=checkpointing)
        out.abs().pow(2).sum().backward()
        grads.append([leaf.grad for leaf in leaves.values()])
    assert len(recomputed) == seq.n_rep - 1
    for without, automatic in zip(*grads, strict=True):
        assert torch.allclose(without, automatic, rtol=1e-10, atol=1e-12)
