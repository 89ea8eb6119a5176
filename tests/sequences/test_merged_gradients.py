"""Gradients of the fast engine through merged configuration states, against an unmerged reference.

The case is a short RF- and gradient-spoiled GRE whose spoilers are equal, so transverse and
longitudinal pathways re-meet at equal keys and the engine merges them (counted below). The
reference is the central finite difference of the *value* of the same engine with the key grid
shrunk to 1e-12: the +-eps perturbed runs keep every pathway whose key moved apart by the
perturbation as its own state (counted below), so the difference quotient is the derivative of
the unmerged extended phase graph. It depends on no gradient code (no ``backward`` is run) and
on no merged key (the merged value is exact; only its derivative is at stake), so it is an
independent reference for the hand-written backward passes and the merged states' keys.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mrzero.sequences.engines import configuration
from mrzero.sequences.phantom import Phantom
from mrzero.sequences.sequence import Sequence
from mrzero.sequences.simulate import simulate

#: The sequence fields compared element by element.
FIELDS = ("flip", "rf_phase", "moment", "duration")
#: Central-difference steps (rad, rad, cycles/FOV, s).
STEPS = {"flip": 1e-6, "rf_phase": 1e-6, "moment": 1e-6, "duration": 1e-9}
#: A key grid far below the perturbations (same units as ``configuration.KEY_GRID``).
FINE_GRID = (1e-12, 1e-12, 1e-12, 1e-16)


def phantom(t2dash: bool) -> Phantom:
    """4x4 voxels with distinct T1/T2, B0 and B1 (and T2' when ``t2dash``), two coils, float64."""
    g = torch.Generator().manual_seed(11)

    def rand(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(4, 4, generator=g, dtype=torch.float64)

    coils = torch.polar(
        rand(0.5, 1.0).expand(2, 4, 4), rand(-1, 1).expand(2, 4, 4) * torch.tensor([[[1.0]], [[-1.0]]])
    )
    return Phantom(
        pd=rand(0.5, 1.0),
        t1=rand(0.2, 1.0),
        t2=rand(0.03, 0.1),
        t2dash=rand(0.01, 0.04) if t2dash else torch.zeros(4, 4, dtype=torch.float64),
        b0=rand(-40, 40),
        b1=rand(0.8, 1.2),
        fov=(0.2, 0.2, 0.005),
        coil_sens=coils.to(torch.complex128),
    )


def spoiled_gre() -> Sequence:
    """5 repetitions: delay, two ADC samples along x (phase step along y), equal spoiler (x, z).

    Flips are large enough that stimulated pathways carry weight, and the equal spoilers put
    pathways of different histories on equal keys.
    """
    r = 5
    duration = torch.tensor([2e-3, 0.3e-3, 0.3e-3, 4e-3], dtype=torch.float64).repeat(r, 1)
    moment = torch.zeros(r, 4, 3, dtype=torch.float64)
    ky = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
    moment[:, 0, 0], moment[:, 0, 1] = -0.75, ky
    moment[:, 1, 0] = moment[:, 2, 0] = 0.5
    moment[:, 3] = torch.stack([1.25 * torch.ones(r), -ky, 0.3 * torch.ones(r)], 1).to(torch.float64)
    return Sequence(
        flip=torch.tensor([1.2, 0.9, 1.4, 0.7, 1.1], dtype=torch.float64),
        rf_phase=torch.tensor([0.0, 0.4, 1.3, 2.7, 4.5], dtype=torch.float64),
        duration=duration,
        moment=moment,
        adc=torch.tensor([[False, True, True, False]]).repeat(r, 1),
        adc_phase=torch.tensor([0.0, 0.4, 1.3, 2.7, 4.5], dtype=torch.float64),
        fov=(0.2, 0.2, 0.005),
    )


def loss(signal: torch.Tensor) -> torch.Tensor:
    """A real scalar of the complex signal that weighs every sample, coil and phase differently."""
    g = torch.Generator().manual_seed(5)
    weights = torch.randn(*signal.shape, 2, generator=g, dtype=torch.float64)
    return (torch.view_as_real(signal) * weights).sum() + signal.abs().pow(2).sum()


def run(seq: Sequence, ph: Phantom) -> torch.Tensor:
    return loss(simulate(seq, ph, "fast", tolerance=0.0))


def state_counts(monkeypatch: pytest.MonkeyPatch, seq: Sequence, ph: Phantom) -> list[int]:
    """The number of states after every pulse of one simulation."""
    counts: list[int] = []
    pulse = configuration._pulse

    def counted(*args, **kwargs):
        out = pulse(*args, **kwargs)
        counts.append(out.f.shape[0])
        return out

    with monkeypatch.context() as m:
        m.setattr(configuration, "_pulse", counted)
        run(seq, ph)
    return counts


def finite_differences(seq: Sequence, ph: Phantom, name: str) -> torch.Tensor:
    """Central differences of ``run`` w.r.t. every element of ``seq.name``."""
    base = getattr(seq, name)
    out = torch.zeros_like(base)
    flat = out.reshape(-1)
    for i in range(flat.numel()):
        step = torch.zeros_like(base).reshape(-1)
        step[i] = STEPS[name]
        plus = run(replace(seq, **{name: base + step.reshape(base.shape)}), ph)
        minus = run(replace(seq, **{name: base - step.reshape(base.shape)}), ph)
        flat[i] = (plus - minus) / (2 * STEPS[name])
    return out


@pytest.mark.parametrize("t2dash", [True, False], ids=["t2dash", "no-t2dash"])
def test_gradients_through_merged_states_match_unmerged_finite_differences(monkeypatch, t2dash):
    seq, ph = spoiled_gre(), phantom(t2dash)
    merged = state_counts(monkeypatch, seq, ph)
    # the reference is unmerged: perturbing one spoiler moment splits pathways that met
    bumped = seq.moment.clone()
    bumped[1, 3, 0] += STEPS["moment"]
    with monkeypatch.context() as m:
        m.setattr(configuration, "KEY_GRID", FINE_GRID)
        unmerged = state_counts(m, replace(seq, moment=bumped), ph)
    assert merged[-1] < unmerged[-1], (merged, unmerged)
    check_against_unmerged(monkeypatch, seq, ph, FIELDS)


def test_gradients_survive_pruning(monkeypatch):
    """A zero flip sends nothing to the conjugate pathways: their rows are pruned (counted) and
    the dual gradients of the kept rows must still be exact. (Flips are left out: at exactly 0
    the pruned rows' amplitudes have a derivative in the flip, which pruning drops.)"""
    seq = spoiled_gre()
    flip = seq.flip.clone()
    flip[2] = 0.0
    zero, small = replace(seq, flip=flip), replace(seq, flip=flip.index_fill(0, torch.tensor([2]), 1e-3))
    ph = phantom(True)
    assert state_counts(monkeypatch, zero, ph)[2] < state_counts(monkeypatch, small, ph)[2]
    check_against_unmerged(monkeypatch, zero, ph, ("rf_phase", "moment", "duration"))


def check_against_unmerged(
    monkeypatch: pytest.MonkeyPatch, seq: Sequence, ph: Phantom, fields: tuple[str, ...]
) -> None:
    """Every element of the gradient of ``run`` w.r.t. ``fields`` within 1 % of its norm from
    the unmerged central differences."""
    leaves = {name: getattr(seq, name).clone().requires_grad_(True) for name in fields}
    run(replace(seq, **leaves), ph).backward()
    monkeypatch.setattr(configuration, "KEY_GRID", FINE_GRID)
    for name in fields:
        reference = finite_differences(seq, ph, name)
        error = (leaves[name].grad - reference).abs().max() / reference.norm()
        assert error < 0.01, f"{name}: max error {float(error):.2e} of the gradient's norm"
