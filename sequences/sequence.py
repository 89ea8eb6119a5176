"""The MRzero sequence model: ``R`` repetitions x ``E`` events, held as tensors.

Timeline of one repetition ``r`` (see ``core/units.py`` for the sign convention):

1. one instantaneous RF pulse: flip ``flip[r]`` (rad, scaled per voxel by B1) about the axis
   set by ``rf_phase[r]`` (rad);
2. for each event ``e`` in order: relaxation and free precession (B0, T2') for
   ``duration[r, e]`` seconds, then the gradient moment ``moment[r, e]`` (cycles/FOV, x/y/z)
   as an instantaneous dephasing, then, if ``adc[r, e]``, one complex sample demodulated with
   ``adc_phase[r]``.

The sample of event ``e`` therefore sees its own event's gradient moment: its k-space position
is the moment accumulated since the last excitation up to and including ``e``. How an RF pulse
acts on the k-space position is given by ``rf_kind[r]``: an excitation starts at k = 0, a
refocusing pulse negates k, and an inversion/storage pulse (or a zero flip) leaves k alone.

For diffusion (``sequences/engines/diffusion.py``) an event's moment is played as a constant
gradient over the event's duration (a rectangular lobe); the signal's phases only see the
event ends, where both readings agree. ``joined_gradients`` marks sequences whose events do not
mean that (they integrate whole waveforms); the engine refuses to diffuse them.

``rf_offsets`` (optional, set by the Pulseq import) plays pulses as they are on a scanner:
each pulse's frequency offset (Hz, relative to the receiver) and the duration of the hard pulse
that stands for it; the engines then rotate every voxel by the pulse at its own off-resonance
(``sequences/engines/rf.py``). Without it, or for a duration of 0, a pulse is the instantaneous
on-resonance rotation above.

Every tensor can be learnable; ``free`` maps a field name to a boolean mask of the entries an
optimiser may change (absent field: nothing free). Durations and the RF pulses' real shapes are
carried in ``hints`` for the Pulseq export, since the simulation treats RF as instantaneous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from mrzero.sequences.adc_layout import ReadoutLayout

#: ``rf_kind`` values.
EXCITATION, REFOCUSING, INVERSION = 0, 1, 2

TENSOR_FIELDS = ("flip", "rf_phase", "rf_kind", "duration", "moment", "adc", "adc_phase")


class SequenceError(ValueError):
    """A sequence is malformed: wrong shapes, NaN, negative durations, ..."""


@dataclass
class ExportHints:
    """What the instantaneous-RF simulation ignores but the scanner needs (SI units)."""

    rf_duration: float = 1e-3
    rf_shape: str = "block"  # "block" or "sinc"
    time_bw_product: float = 4.0
    slice_thickness: float = 5e-3
    readout_dwell: float = 80e-6


@dataclass
class RfOffsets:
    """How each pulse is played out beyond its flip and phase (``[R]`` each, SI units)."""

    frequency: torch.Tensor  # Hz, the pulse's frequency relative to the receiver (0: on resonance)
    duration: torch.Tensor  # s, the pulse's length (0: instantaneous, off-resonance ignored)
    shape: torch.Tensor | None = None  # [R, S] complex share of each pulse's area in S equal steps

    def to(self, device: torch.device | str | None, dtype: torch.dtype | None = None) -> RfOffsets:
        shape = None if self.shape is None else self.shape.to(device)
        return RfOffsets(
            self.frequency.to(device=device, dtype=dtype), self.duration.to(device=device, dtype=dtype), shape
        )


@dataclass
class Sequence:
    """A sequence as tensors; see the module docstring for the timeline and units."""

    flip: torch.Tensor  # [R] rad
    rf_phase: torch.Tensor  # [R] rad
    duration: torch.Tensor  # [R, E] s
    moment: torch.Tensor  # [R, E, 3] cycles/FOV
    adc: torch.Tensor  # [R, E] bool
    adc_phase: torch.Tensor  # [R] rad
    rf_kind: torch.Tensor | None = None  # [R] int64, EXCITATION by default
    fov: tuple[float, float, float] = (0.2, 0.2, 0.005)  # m
    matrix: tuple[int, int, int] = (32, 32, 1)  # nominal reconstruction matrix (x, y, z)
    name: str = "sequence"
    hints: ExportHints = field(default_factory=ExportHints)
    free: dict[str, torch.Tensor] = field(default_factory=dict)
    readouts: ReadoutLayout | None = None  # what each readout encodes (builders set it; MRD counters)
    rf_offsets: RfOffsets | None = None  # pulses as played out (Pulseq import); None: instantaneous
    #: True when events stand for gradient waveforms that are not constant over them (the Pulseq
    #: import without ``split_gradients``): the phases are right, diffusion would not be
    joined_gradients: bool = False

    def __post_init__(self) -> None:
        if self.rf_kind is None:
            self.rf_kind = torch.full_like(self.flip, EXCITATION, dtype=torch.int64)
        self.validate()

    # ---------------------------------------------------------------- shape and sanity
    @property
    def n_rep(self) -> int:
        return int(self.duration.shape[0])

    @property
    def n_event(self) -> int:
        return int(self.duration.shape[1])

    @property
    def device(self) -> torch.device:
        return self.duration.device

    def validate(self) -> None:
        """Raise ``SequenceError`` naming the field when shapes or values are impossible."""
        if self.duration.ndim != 2:
            raise SequenceError(f"duration must be [R, E], got shape {tuple(self.duration.shape)}")
        r, e = self.duration.shape
        expected = {
            "flip": (r,),
            "rf_phase": (r,),
            "rf_kind": (r,),
            "duration": (r, e),
            "moment": (r, e, 3),
            "adc": (r, e),
            "adc_phase": (r,),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise SequenceError(f"{name} must have shape {shape} for R={r}, E={e}, got {got}")
        if self.adc.dtype != torch.bool:
            raise SequenceError(f"adc must be a bool tensor, got {self.adc.dtype}")
        for name in ("flip", "rf_phase", "duration", "moment", "adc_phase"):
            bad = ~torch.isfinite(getattr(self, name).detach())
            if bool(bad.any()):
                where = tuple(int(i) for i in bad.nonzero()[0])
                raise SequenceError(f"{name} is not finite (NaN or inf) at index {where}")
        neg = self.duration.detach() < 0
        if bool(neg.any()):
            where = tuple(int(i) for i in neg.nonzero()[0])
            value = float(self.duration.detach()[where])
            raise SequenceError(f"duration is negative at (rep, event) {where}: {value} s")
        if not set(self.rf_kind.unique().tolist()) <= {EXCITATION, REFOCUSING, INVERSION}:
            raise SequenceError("rf_kind must hold only EXCITATION (0), REFOCUSING (1) or INVERSION (2)")
        if any(f <= 0 for f in self.fov):
            raise SequenceError(f"fov must be positive in metres, got {self.fov}")
        if self.rf_offsets is not None:
            for name in ("frequency", "duration"):
                value = getattr(self.rf_offsets, name)
                if tuple(value.shape) != (r,) or not bool(torch.isfinite(value).all()):
                    raise SequenceError(
                        f"rf_offsets.{name} must be {r} finite values, got shape {tuple(value.shape)}"
                    )
            if bool((self.rf_offsets.duration < 0).any()):
                raise SequenceError("rf_offsets.duration must be non-negative (seconds)")
            shape = self.rf_offsets.shape
            if shape is not None and (shape.ndim != 2 or shape.shape[0] != r or not shape.is_complex()):
                raise SequenceError(
                    f"rf_offsets.shape must be complex [{r}, steps], got {tuple(shape.shape)}"
                )
        if self.readouts is not None:
            try:
                self.readouts.check(r, self.adc)
            except ValueError as err:
                raise SequenceError(f"readouts: {err}") from err
        for name, mask in self.free.items():
            if name not in TENSOR_FIELDS:
                raise SequenceError(f"free mask for unknown field {name!r}; fields: {TENSOR_FIELDS}")
            if tuple(mask.shape) != tuple(getattr(self, name).shape):
                raise SequenceError(
                    f"free mask of {name} has shape {tuple(mask.shape)}, "
                    f"field has {tuple(getattr(self, name).shape)}"
                )

    # ---------------------------------------------------------------- conversions
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Sequence:
        """A copy on ``device``; real floating fields cast to ``dtype`` when given."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        changed = {name: move(getattr(self, name)) for name in TENSOR_FIELDS}
        changed["free"] = {k: v.to(device) for k, v in self.free.items()}
        offsets = self.rf_offsets and self.rf_offsets.to(device, dtype)
        return replace(self, rf_offsets=offsets, **changed)

    def clone(self) -> Sequence:
        """A deep copy that shares no storage (and no autograd history) with ``self``."""
        changed = {name: getattr(self, name).detach().clone() for name in TENSOR_FIELDS}
        changed["free"] = {k: v.clone() for k, v in self.free.items()}
        changed["hints"] = replace(self.hints)
        if self.rf_offsets is not None:
            offsets = self.rf_offsets
            shape = None if offsets.shape is None else offsets.shape.clone()
            changed["rf_offsets"] = RfOffsets(offsets.frequency.clone(), offsets.duration.clone(), shape)
        return replace(self, **changed)

    # ---------------------------------------------------------------- derived quantities
    def trajectory(self) -> torch.Tensor:
        """k-space position (cycles/FOV) of every ADC sample, ``[n_samples, 3]``, in (rep, event) order.

        Differentiable in ``moment``. The position is the moment accumulated since the last
        excitation, negated at each refocusing pulse; see the module docstring.
        """
        k_end = torch.zeros(3, dtype=self.moment.dtype, device=self.device)
        per_rep = []
        kinds = self.rf_kind.tolist()
        flips_zero = (self.flip.detach() == 0).tolist()
        for r in range(self.n_rep):
            if not flips_zero[r]:
                if kinds[r] == EXCITATION:
                    k_end = torch.zeros_like(k_end)
                elif kinds[r] == REFOCUSING:
                    k_end = -k_end
            k_rep = k_end + torch.cumsum(self.moment[r], dim=0)
            per_rep.append(k_rep[self.adc[r]])
            k_end = k_rep[-1]
        return torch.cat(per_rep, dim=0)

    def sample_times(self) -> torch.Tensor:
        """Time (s) of every ADC sample since the start of the sequence, ``[n_samples]``."""
        t_end = torch.cumsum(self.duration.reshape(-1), dim=0).reshape(self.duration.shape)
        return t_end[self.adc]

    def total_duration(self) -> torch.Tensor:
        """Scan time in seconds (differentiable)."""
        return self.duration.sum()

    def sar_proxy(self) -> torch.Tensor:
        """The seed's SAR proxy: the sum of squared flip angles (rad^2)."""
        return (self.flip**2).sum()

    @property
    def n_samples(self) -> int:
        return int(self.adc.sum())

    def summary(self) -> str:
        """One line for logs: size, samples, duration and the flip-angle range in degrees."""
        flips = self.flip.detach() * 180 / math.pi
        lo, hi = float(flips.min()), float(flips.max())
        return (
            f"{self.name}: {self.n_rep} reps x {self.n_event} events, {self.n_samples} ADC samples, "
            f"{float(self.total_duration()):.3f} s, flip {lo:.1f}..{hi:.1f} deg"
        )
