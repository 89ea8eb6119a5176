"""The sequence model's contract: validation messages and the k-space trajectory rules."""

import math

import pytest
import torch

from mrzero.sequences.sequence import EXCITATION, INVERSION, REFOCUSING, Sequence, SequenceError


def make(r: int = 3, e: int = 4, **over) -> Sequence:
    fields = dict(
        flip=torch.full((r,), math.pi / 2),
        rf_phase=torch.zeros(r),
        duration=torch.full((r, e), 1e-3),
        moment=torch.zeros(r, e, 3),
        adc=torch.ones(r, e, dtype=torch.bool),
        adc_phase=torch.zeros(r),
    )
    fields.update(over)
    return Sequence(**fields)


def test_negative_duration_is_refused_with_its_index():
    d = torch.full((3, 4), 1e-3)
    d[1, 2] = -1e-3
    with pytest.raises(SequenceError, match=r"duration is negative at \(rep, event\) \(1, 2\)"):
        make(duration=d)


def test_nan_and_shape_errors_name_the_field():
    m = torch.zeros(3, 4, 3)
    m[0, 0, 1] = float("nan")
    with pytest.raises(SequenceError, match="moment is not finite"):
        make(moment=m)
    with pytest.raises(SequenceError, match="flip must have shape"):
        make(flip=torch.zeros(5))


def test_trajectory_resets_at_excitation_and_negates_at_refocusing():
    m = torch.zeros(3, 2, 3)
    m[:, :, 0] = 1.0  # +1 cycle/FOV in x per event
    kinds = torch.tensor([EXCITATION, REFOCUSING, INVERSION])
    seq = make(r=3, e=2, moment=m, rf_kind=kinds)
    kx = seq.trajectory()[:, 0].tolist()
    # rep 0: 1, 2; rep 1 starts at -2: -1, 0; rep 2 continues from 0: 1, 2
    assert kx == [1.0, 2.0, -1.0, 0.0, 1.0, 2.0]


def test_trajectory_is_differentiable_in_the_moments():
    m = torch.zeros(2, 3, 3, requires_grad=True)
    seq = make(r=2, e=3, moment=m)
    seq.trajectory().sum().backward()
    # the first event's moment counts for all three samples of its repetition
    assert m.grad[0, :, 0].tolist() == [3.0, 2.0, 1.0]
