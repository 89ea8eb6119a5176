"""Free masks, where gradients go, and the physical bounds (projection and impossible fixed parts)."""

from __future__ import annotations

import math

import pytest
import torch

from mrzero.core.units import GAMMA_HZ_PER_T
from mrzero.sequences.builders import flash, inversion_gre, rare
from mrzero.sequences.sequence import INVERSION, REFOCUSING
from mrzero.sequences.training.learnables import Bounds, Learnables, free_mask, readout_ties


def test_selectors_pick_refocusing_inversion_and_recovery_repetitions():
    r = rare(matrix=8)
    mask = free_mask(r, "flip", reps="refocusing")
    assert torch.equal(mask, r.rf_kind == REFOCUSING) and int(mask.sum()) == 8
    t1 = inversion_gre(matrix=4, ti=[0.0, 0.0])
    dur = free_mask(t1, "duration", reps=["inversion", "recovery"], events=[0])
    rows = dur.any(1).nonzero().reshape(-1).tolist()
    assert rows == [0, 5, 6, 11]  # block starts (inversions) and block ends (recoveries), 6 reps a block
    assert bool((t1.rf_kind[[0, 6]] == INVERSION).all())
    assert int(dur.sum()) == 4 and bool(dur[:, 1:].sum() == 0)


def test_moment_mask_selects_axes():
    seq = flash(matrix=4)
    mask = free_mask(seq, "moment", axes="y")
    assert mask.shape == seq.moment.shape
    assert bool(mask[..., 1].all()) and not bool(mask[..., 0].any()) and not bool(mask[..., 2].any())


def test_encoding_events_are_those_up_to_the_last_adc_of_each_repetition():
    seq = flash(matrix=8)  # per repetition: prewinder, 8 ADC events, rewinder + spoiler
    mask = free_mask(seq, "moment", events="encoding", axes="xy")
    assert bool(mask[:, :9, :2].all()) and not bool(mask[:, 9:].any()) and not bool(mask[..., 2].any())
    t1 = inversion_gre(matrix=4, ti=[0.1], trec=0.2)  # the inversion repetition has no ADC: none of it
    enc = free_mask(t1, "moment", events="encoding")
    no_adc = ~t1.adc.any(1)
    assert not bool(enc[no_adc].any()) and bool(enc[~no_adc].any())


def test_gradients_reach_only_free_entries():
    seq = rare(matrix=8)
    learn = Learnables(seq, {"flip": free_mask(seq, "flip", reps="refocusing")}, Bounds())
    out = learn.sequence()
    (out.flip**2).sum().backward()
    grad = learn.params["flip"].grad
    assert grad[0] == 0 and bool((grad[1:] != 0).all())
    assert torch.equal(out.free["flip"], seq.rf_kind == REFOCUSING)


def test_projection_enforces_durations_flips_and_hardware_moment():
    seq = flash(matrix=4)
    masks = {
        name: torch.ones_like(getattr(seq, name), dtype=torch.bool) for name in ("duration", "flip", "moment")
    }
    bounds = Bounds(max_gradient=10e-3, min_duration=1e-4, max_flip=math.radians(90))
    learn = Learnables(seq, masks, bounds)
    with torch.no_grad():
        learn.params["duration"][0, 0] = -1.0
        learn.params["flip"][1] = 4.0
        learn.params["moment"][0, 1, 0] = 1e3
    learn.project()
    out = learn.sequence().clone()
    assert float(out.duration[0, 0]) == pytest.approx(1e-4)
    assert float(out.flip[1]) == pytest.approx(math.pi / 2)
    limit = GAMMA_HZ_PER_T * 10e-3 * float(out.duration[0, 1]) * seq.fov[0]
    assert float(out.moment[0, 1, 0]) == pytest.approx(limit, rel=1e-5)
    assert bool((out.duration >= 1e-4).all())


def test_fixed_flips_above_the_bound_are_reported():
    seq = rare(matrix=8)
    learn = Learnables(
        seq, {"duration": torch.ones_like(seq.duration, dtype=torch.bool)}, Bounds(max_flip=math.radians(90))
    )
    assert learn.out_of_bounds() == ["flip above bounds.max_flip_deg"]


def test_bounds_refuse_impossible_values():
    with pytest.raises(ValueError, match="max_gradient"):
        Bounds(max_gradient=0.0)
    with pytest.raises(ValueError, match="nothing of the sequence is learnable"):
        Learnables(flash(matrix=4), {"flip": torch.zeros(4, dtype=torch.bool)}, Bounds())


def test_readout_tie_plays_one_gradient_per_line_and_keeps_it_straight():
    """A tied readout is a straight line of equally spaced samples whatever the parameters hold:
    each repetition's ADC moments are their mean, the prephaser and spoiler stay free."""
    seq = flash(matrix=8)
    mask = free_mask(seq, "moment", axes="xy")
    tied = readout_ties(seq, mask)
    assert torch.equal(tied, mask & seq.adc[..., None]) and not bool(tied[:, 0].any())
    learn = Learnables(seq, {"moment": mask}, Bounds(), ties={"moment": tied})
    with torch.no_grad():
        learn.params["moment"].normal_()
    out = learn.sequence().moment.detach()
    adc = seq.adc[0]
    line = out[:, adc]  # [R, samples, 3]
    assert torch.allclose(line, line[:, :1].expand_as(line))  # one step per line: equal spacing
    expected = learn.params["moment"].detach()[:, adc, :2].mean(1)
    assert torch.allclose(line[:, 0, :2], expected, atol=1e-6)
    assert torch.equal(out[:, 0, :2], learn.params["moment"].detach()[:, 0, :2])  # prephasers untied
    k = learn.sequence().trajectory().detach().reshape(seq.n_rep, -1, 3)[..., :2]
    steps = k.diff(dim=1)
    assert torch.allclose(steps, steps[:, :1].expand_as(steps), atol=1e-5)  # straight lines in k-space
    (learn.sequence().moment[:, adc, 0] * torch.arange(int(adc.sum()))).sum().backward()
    grad = learn.params["moment"].grad[:, adc, 0]
    assert torch.allclose(grad, grad[:, :1].expand_as(grad))  # tied entries move together
    learn.project()  # the projection keeps them tied
    p = learn.params["moment"].detach()[:, adc, :2]
    assert torch.allclose(p, p[:, :1].expand_as(p))
