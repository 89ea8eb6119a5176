"""Cumulative gradient moments and times within each repetition.

The events of a repetition have no RF between them, so the state at the end of event ``e`` is
the state after the pulse transformed by the *cumulative* moment ``K[e]`` and time ``T[e]``
(precession for ``duration[e]``, then the moment ``moment[e]``, then the ADC sample). Both
engines use this to compute every sample of a repetition in one tensor operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrzero.sequences.sequence import Sequence


@dataclass
class Repetition:
    """What the engines need of repetition ``r``; times in s, moments in cycles/FOV."""

    flip: torch.Tensor  # scalar
    rf_phase: torch.Tensor  # scalar
    adc_phase: torch.Tensor  # scalar
    adc_index: torch.Tensor  # [n] indices of the ADC events
    moment: torch.Tensor  # [n, 3] cumulative moment at the ADC events
    time: torch.Tensor  # [n] cumulative time at the ADC events
    end_moment: torch.Tensor  # [3] at the end of the repetition
    end_time: torch.Tensor  # scalar

    @property
    def n_adc(self) -> int:
        return int(self.adc_index.shape[0])


def repetitions(seq: Sequence) -> list[Repetition]:
    """Split ``seq`` into per-repetition cumulative quantities (differentiable)."""
    k = torch.cumsum(seq.moment, dim=1)  # [R, E, 3]
    t = torch.cumsum(seq.duration, dim=1)  # [R, E]
    out = []
    for r in range(seq.n_rep):
        idx = torch.nonzero(seq.adc[r]).reshape(-1)
        out.append(
            Repetition(
                flip=seq.flip[r],
                rf_phase=seq.rf_phase[r],
                adc_phase=seq.adc_phase[r],
                adc_index=idx,
                moment=k[r, idx],
                time=t[r, idx],
                end_moment=k[r, -1],
                end_time=t[r, -1],
            )
        )
    return out
