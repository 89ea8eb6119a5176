"""The learnable part of a sequence: free tensors, their masks and the physical bounds.

``Learnables`` holds one full-shape parameter per free field next to the fixed base sequence;
``sequence()`` merges them (``where(mask, parameter, base)``), so gradients reach only the free
entries and ``Sequence.free`` records the masks for export. Tied entries (``readout_ties``: the
free ADC events of a repetition) are played as their mean, one constant readout gradient per
repetition: the optimiser then moves a line's direction and spacing, not each sample. After
every optimiser step ``project()`` enforces the bounds: durations at least ``min_duration``, flips within
``+-max_flip`` and, per event and axis, ``|moment| <= gamma * G_max * duration * FOV`` (the
largest moment the gradient hardware can play in the event's time, cycles/FOV); then, with a
``HardwareModel``, what the Pulseq export builds without stretching (``hardware.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from mrzero.core.units import GAMMA_HZ_PER_T
from mrzero.sequences.sequence import EXCITATION, INVERSION, REFOCUSING, Sequence
from mrzero.sequences.training.hardware import HardwareModel

log = logging.getLogger(__name__)

AXES = "xyz"


@dataclass(frozen=True)
class Bounds:
    """Physical bounds in SI units: T/m, s, rad."""

    max_gradient: float = 40e-3
    min_duration: float = 0.0
    max_flip: float = 4 * torch.pi

    def __post_init__(self) -> None:
        if not self.max_gradient > 0:
            raise ValueError(f"bounds.max_gradient_mT_m must be positive, got {self.max_gradient * 1e3} mT/m")
        if not self.min_duration >= 0:
            raise ValueError(f"bounds.min_duration_ms must be non-negative, got {self.min_duration * 1e3} ms")
        if not self.max_flip > 0:
            raise ValueError(f"bounds.max_flip_deg must be positive, got {self.max_flip} rad")

    def max_moment(self, seq: Sequence) -> torch.Tensor:
        """Largest moment per event and axis, ``[R, E, 3]`` cycles/FOV, from the event durations."""
        fov = torch.tensor(seq.fov, dtype=seq.duration.dtype, device=seq.device)
        return GAMMA_HZ_PER_T * self.max_gradient * seq.duration.detach()[..., None] * fov


def rep_selection(seq: Sequence, selector: str | list[str]) -> torch.Tensor:
    """Repetitions ``[R]`` chosen by a recipe selector (see ``recipe.REP_SELECTORS``) or a list of them."""
    if not isinstance(selector, str):
        chosen = torch.zeros(seq.n_rep, dtype=torch.bool, device=seq.device)
        for one in selector:
            chosen |= rep_selection(seq, one)
        return chosen
    kind = seq.rf_kind
    no_adc = ~seq.adc.any(1)
    chosen = {
        "all": torch.ones_like(no_adc),
        "excitation": (kind == EXCITATION) & ~(no_adc & (seq.flip == 0)),
        "refocusing": kind == REFOCUSING,
        "inversion": kind == INVERSION,
        "recovery": (kind == EXCITATION) & no_adc & (seq.flip == 0),
    }[selector]
    return chosen


def free_mask(
    seq: Sequence, name: str, reps: str | list[str] = "all", events: list[int] | str = "all", axes: str = "xy"
) -> torch.Tensor:
    """The boolean mask of field ``name`` selected by repetitions, events and (moment) axes.

    ``events``: ``"all"``, ``"encoding"`` (per repetition, every event up to its last ADC event: the
    moments that place its samples, not the rewinder or spoiler after them) or event indices."""
    r_mask = rep_selection(seq, reps)
    shape = tuple(getattr(seq, name).shape)
    if len(shape) == 1:
        return r_mask.clone()
    if events == "encoding":
        index = torch.arange(seq.n_event, device=seq.device)
        last_adc = torch.where(seq.adc, index, torch.full_like(index, -1)).amax(1)
        mask = r_mask[:, None] & (index[None, :] <= last_adc[:, None])
    else:
        e_mask = torch.zeros(seq.n_event, dtype=torch.bool, device=seq.device)
        if events == "all":
            e_mask[:] = True
        else:
            for e in events:
                if not -seq.n_event <= e < seq.n_event:
                    raise ValueError(f"event index {e} out of range for {seq.n_event} events per repetition")
                e_mask[e] = True
        mask = r_mask[:, None] & e_mask[None, :]
    if len(shape) == 3:
        a_mask = torch.tensor([a in axes for a in AXES], dtype=torch.bool, device=seq.device)
        mask = mask[..., None] & a_mask
    return mask


def readout_ties(seq: Sequence, mask: torch.Tensor) -> torch.Tensor:
    """Entries ``[R, E, 3]`` of a free moment mask that share one value per repetition and axis:
    the free moments of the repetition's ADC events (a constant readout gradient)."""
    return mask & seq.adc[..., None]


def _tie_mean(value: torch.Tensor, tied: torch.Tensor) -> torch.Tensor:
    """``value`` with each repetition's tied entries replaced by their mean (per axis)."""
    weight = tied.to(value.dtype)
    mean = (value * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp(min=1)
    return torch.where(tied, mean, value)


class Learnables(torch.nn.Module):
    """Free sequence tensors on top of a fixed base sequence; see the module docstring."""

    def __init__(
        self,
        base: Sequence,
        masks: dict[str, torch.Tensor],
        bounds: Bounds,
        hardware: HardwareModel | None = None,
        ties: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not masks or not any(bool(m.any()) for m in masks.values()):
            raise ValueError("sequence.learn selects no entry: nothing of the sequence is learnable")
        self.base = base.clone()
        self.masks = {k: v.to(base.device) for k, v in masks.items()}
        self.ties = {k: v.to(base.device) for k, v in (ties or {}).items()}
        self.bounds = bounds
        self.hardware = hardware
        self.params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(getattr(self.base, k).detach().clone()) for k in masks}
        )
        self.project()

    def sequence(self) -> Sequence:
        """The current sequence (differentiable in the free entries), with ``free`` set to the masks."""
        changed = {
            k: torch.where(
                self.masks[k], p if k not in self.ties else _tie_mean(p, self.ties[k]), getattr(self.base, k)
            )
            for k, p in self.params.items()
        }
        return replace(self.base, free=dict(self.masks), **changed)

    @torch.no_grad()
    def project(self) -> None:
        """Clamp the free entries into the physical bounds (in place)."""
        p = self.params
        if "duration" in p:
            p["duration"].clamp_(min=self.bounds.min_duration)
        if "flip" in p:
            p["flip"].clamp_(-self.bounds.max_flip, self.bounds.max_flip)
        if "moment" in p:
            limit = self.bounds.max_moment(self.sequence())
            p["moment"].copy_(torch.maximum(torch.minimum(p["moment"], limit), -limit))
        if self.hardware is not None:
            for name, value in self.hardware.project(self.sequence(), self.masks).items():
                p[name].copy_(value)
        for name, tied in self.ties.items():
            p[name].copy_(_tie_mean(p[name], tied))

    def out_of_bounds(self) -> list[str]:
        """Fixed (not free) flips and durations that violate the bounds: no training can meet them.

        Fixed moments are not checked: the simulation plays them instantaneously, and the Pulseq
        export stretches their events as the hardware needs."""
        seq, bad = self.sequence(), []

        def fixed(name: str, violated: torch.Tensor) -> bool:
            mask = self.masks.get(name)
            return bool((violated & ~mask).any()) if mask is not None else bool(violated.any())

        if fixed("duration", seq.duration.detach() < self.bounds.min_duration - 1e-12):
            bad.append("duration below bounds.min_duration_ms")
        if fixed("flip", seq.flip.detach().abs() > self.bounds.max_flip + 1e-9):
            bad.append("flip above bounds.max_flip_deg")
        return bad

    def state(self) -> dict[str, torch.Tensor]:
        """Copies of the free tensors (for restarts and the best-so-far snapshot)."""
        return {k: v.detach().clone() for k, v in self.params.items()}

    @torch.no_grad()
    def load(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.params[k].copy_(v)
