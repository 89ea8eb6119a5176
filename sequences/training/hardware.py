"""Train what you export: the Pulseq export's hardware model as projections in training.

The simulation plays every event instantaneously; the export (``sequences/pulseq/export.py``)
turns the events into RF, gap and readout blocks within ``HardwareLimits`` and stretches what
does not fit. ``HardwareModel.project`` keeps the learned sequence inside what the export can
build without stretching, after every optimiser step, with the export itself as the timing
oracle:

* flips within the largest flip the export's RF pulse reaches at ``max_b1`` and, where the limits
  set ``max_b1_rms``, the learned flips scaled together until the RF energy over the sequence
  stays within it (``export.unit_pulse``: the pulse's peak and energy per radian);
* learned readouts (a moment per sample) within the shaped readout gradient the export builds:
  per axis, nominal amplitudes ``a_i = m_i / dwell`` with ``|a_i| <= G - S w^2 / d`` and
  ``|a_i - a_{i-1}| <= 2 S w (d - w) / d`` (``w`` the ramp width, the largest gradient-raster
  multiple up to ``d / 2``) — sufficient for the export's ramps and plateaus to stay within
  ``max_slew`` and ``max_grad``; samples are clamped in order, each against its predecessor;
* gaps: the export builds the sequence (``export.build``) and reports, per gap block, the model
  events it merges and what its neighbours add (``GapBudget``: time and area). A gap's free
  durations first grow to the time its area needs (``HardwareLimits.min_time``, plus a raster
  margin); then its summed area is projected per axis onto what a trapezoid reaches in the
  gap's time (``HardwareLimits.max_area``); the correction is shared equally by the gap's free
  events.
* every limit is per axis and, where the limits set vector limits, for the vector: ``n`` axes
  playing at once each get ``vector / sqrt(n)`` (``HardwareLimits.axis_limits``), as in the
  export.

``check`` exports the final sequence with the same limits and measures the file: a stretched
event, or a file whose signal (imported with the project's Pulseq import and simulated) differs
from the trained sequence's by more than ``SIGNAL_TOLERANCE``, fails the recipe; it reports the
file's peak gradients and slew rates per axis and as a vector.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pypulseq as pp
import torch

from mrzero.core.units import GAMMA_HZ_PER_T
from mrzero.sequences.pulseq.export import (
    AREA_EPS,
    ExportError,
    ExportOptions,
    GapBudget,
    build,
    export,
    unit_pulse,
)
from mrzero.sequences.pulseq.import_ import import_seq
from mrzero.sequences.pulseq.system import HardwareLimits
from mrzero.sequences.sequence import Sequence

#: Fraction of each limit the projections aim at: float32 training tensors and the export's
#: float64 arithmetic must not disagree about an event exactly at a limit.
SAFETY = 0.995


#: The largest NRMSE between the file's signal and the trained sequence's that passes the check.
SIGNAL_TOLERANCE = 0.01


@dataclass
class HardwareCheck:
    """The exported file of a trained sequence, measured (SI units, slew in T/m/s)."""

    limits: str
    passed: bool
    stretches: list[str] = field(default_factory=list)
    longest_stretch: float = 0.0  # s, the largest time one stretched block got over the model's
    error: str | None = None  # the export's refusal, when it refused
    max_grad: dict[str, float] = field(default_factory=dict)  # T/m, per axis and "vector"
    max_slew: dict[str, float] = field(default_factory=dict)  # T/m/s, per axis and "vector"
    signal_nrmse: float | None = None  # file vs trained sequence, simulated on one phantom
    file_duration: float | None = None  # s
    model_duration: float | None = None  # s

    def summary(self) -> str:
        if self.error is not None:
            return f"FAILED: the export refuses the trained sequence ({self.limits}): {self.error}"
        head = "passed" if self.passed else "FAILED"
        parts = [
            f"{head}: {len(self.stretches)} stretched event(s) within limits {self.limits}"
            + (f" (up to +{1e3 * self.longest_stretch:.2f} ms)" if self.stretches else ""),
            f"peak gradient {1e3 * self.max_grad['vector']:.1f} mT/m (vector), "
            f"slew {self.max_slew['vector']:.0f} T/m/s (vector), "
            + ", ".join(f"{a} {self.max_slew[a]:.0f}" for a in "xyz")
            + " T/m/s per axis",
        ]
        if self.signal_nrmse is not None:
            over = self.signal_nrmse > SIGNAL_TOLERANCE
            parts.append(
                f"file signal vs trained {100 * self.signal_nrmse:.3f} % NRMSE"
                + (f" (above {100 * SIGNAL_TOLERANCE:g} %)" if over else "")
            )
        if self.stretches:
            parts.append("first: " + "; ".join(self.stretches[:3]))
        return ", ".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)


def gradient_extremes(seq: pp.Sequence) -> tuple[dict[str, float], dict[str, float]]:
    """Peak gradient (T/m) and slew (T/m/s) of a Pulseq sequence per axis and as a vector.

    The waveforms are piecewise linear; on the union of all axes' corner times the vector is
    linear too, so its peak sits on a corner and its slew is constant between corners."""
    waves = seq.waveforms_and_times()[0]
    times = np.unique(np.concatenate([w[0] for w in waves if w.size]))
    g = np.zeros((3, times.size))
    for i, w in enumerate(waves):
        if w.size:
            g[i] = np.interp(times, w[0], w[1], left=0.0, right=0.0)
    dt = np.diff(times)
    ok = dt > 1e-9
    dg = np.abs(np.diff(g, axis=1))[:, ok] / dt[ok]
    vector_slew = np.linalg.norm(np.diff(g, axis=1)[:, ok], axis=0) / dt[ok]
    grad = {a: float(np.abs(g[i]).max(initial=0.0)) / GAMMA_HZ_PER_T for i, a in enumerate("xyz")}
    slew = {a: float(dg[i].max(initial=0.0)) / GAMMA_HZ_PER_T for i, a in enumerate("xyz")}
    grad["vector"] = float(np.linalg.norm(g, axis=0).max(initial=0.0)) / GAMMA_HZ_PER_T
    slew["vector"] = float(vector_slew.max(initial=0.0)) / GAMMA_HZ_PER_T
    return grad, slew


def _free(mask: torch.Tensor | None, shape: torch.Size) -> np.ndarray:
    """A field's free mask as a numpy array (all False when the field is not learned)."""
    return np.zeros(tuple(shape), dtype=bool) if mask is None else mask.cpu().numpy()


class HardwareModel:
    """``HardwareLimits`` and the export options as training constraints; see the module docstring."""

    def __init__(self, limits: HardwareLimits, options: ExportOptions | None = None) -> None:
        self.limits = limits
        self.options = options or ExportOptions()
        # the export's gap length is the trapezoid's, rise and flat time rounded up to the gradient
        # raster (pypulseq) and the block to its raster
        self.margin = 3 * limits.grad_raster_time + 2 * limits.block_duration_raster

    # ------------------------------------------------------------------ projection
    @torch.no_grad()
    def project(self, seq: Sequence, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Projected ``flip``, ``moment`` and ``duration`` (full-shape tensors, only free entries
        changed) of ``seq``; fields not in ``masks`` are left out. Raises ``ExportError`` when the
        export refuses the sequence for a reason no projection of the free entries removes."""
        out: dict[str, torch.Tensor] = {}
        if "flip" in masks:
            out["flip"] = self._project_flips(seq, masks["flip"])
            seq = replace(seq, flip=out["flip"])
        if "moment" not in masks and "duration" not in masks:
            return out
        fov = np.array(seq.fov, dtype=float)
        free_moment = _free(masks.get("moment"), seq.moment.shape)
        free_duration = _free(masks.get("duration"), seq.duration.shape)
        area = seq.moment.detach().cpu().double().numpy() / fov  # 1/m
        duration = seq.duration.detach().cpu().double().numpy()
        adc = seq.adc.cpu().numpy()
        self._project_readouts(area, duration, adc, free_moment)
        seq = replace(seq, moment=torch.as_tensor(area * fov, dtype=seq.moment.dtype, device=seq.device))
        _, built = build(seq, self.limits, self.options)
        for gap in built.gaps:
            if gap.events:
                self._project_gap(gap, area, duration, free_moment, free_duration)
        if "moment" in masks:
            out["moment"] = torch.as_tensor(area * fov, dtype=seq.moment.dtype, device=seq.device)
        if "duration" in masks:
            out["duration"] = torch.as_tensor(duration, dtype=seq.duration.dtype, device=seq.device)
        return out

    def _project_flips(self, seq: Sequence, free: torch.Tensor) -> torch.Tensor:
        """Free flips within the peak ``max_b1`` and, where set, scaled together so that the RF
        energy over the model's duration stays within ``max_b1_rms`` (the file, longer by its
        lead-in, then has a lower RMS)."""
        peak, energy = unit_pulse(seq, self.limits, self.options)
        limit = SAFETY * self.limits.max_b1_hz / peak
        flip = torch.where(free, seq.flip.clamp(-limit, limit), seq.flip)
        if self.limits.max_b1_rms is None:
            return flip
        allowed = (SAFETY * self.limits.max_b1_rms * GAMMA_HZ_PER_T) ** 2 * float(seq.total_duration())
        fixed = float((flip[~free] ** 2).sum()) * energy
        learned = float((flip[free] ** 2).sum()) * energy
        if fixed + learned <= allowed:
            return flip
        if fixed >= allowed:
            raise ExportError(
                f"the fixed flips alone exceed max_b1_rms {self.limits.max_b1_rms * 1e6:.3f} uT "
                "over the sequence: no learned flip can bring it within"
            )
        return torch.where(free, flip * math.sqrt((allowed - fixed) / learned), flip)

    def _project_readouts(
        self, area: np.ndarray, duration: np.ndarray, adc: np.ndarray, free: np.ndarray
    ) -> None:
        """Clamp the free readout samples (in place, ``area`` in 1/m) to the shaped readout's limits."""
        lim = self.limits
        moving = adc[..., None] & (free | (np.abs(area) > AREA_EPS))
        g, s = lim.axis_limits(int(moving.any((0, 1)).sum()))  # axes any readout plays
        raster = lim.grad_raster_time
        for e in range(area.shape[1]):
            d = duration[:, e]
            on = adc[:, e] & (d > 0)
            if not on.any():
                continue
            dw = np.where(on, d, 1.0)
            w = np.floor(dw / 2 / raster + 1e-6) * raster
            w = np.where(w > 0, w, dw / 2)  # below two rasters the export falls back to trapezoids
            step = SAFETY * 2 * s * w * (dw - w) / dw
            peak = SAFETY * (g - s * w**2 / dw)
            amp = area[:, e] / dw[:, None]
            lo, hi = -peak[:, None] * np.ones(3), peak[:, None] * np.ones(3)
            if e > 0:
                cont = on & adc[:, e - 1] & np.isclose(d, duration[:, e - 1], rtol=1e-6, atol=1e-12)
                prev = area[:, e - 1] / np.where(cont, duration[:, e - 1], 1.0)[:, None]
                lo = np.where(cont[:, None], np.maximum(lo, prev - step[:, None]), lo)
                hi = np.where(cont[:, None], np.minimum(hi, prev + step[:, None]), hi)
            clamped = np.minimum(np.maximum(amp, lo), hi) * dw[:, None]
            area[:, e] = np.where(on[:, None] & free[:, e], clamped, area[:, e])

    def _project_gap(
        self,
        gap: GapBudget,
        area: np.ndarray,
        duration: np.ndarray,
        free_moment: np.ndarray,
        free_duration: np.ndarray,
    ) -> None:
        """Make one gap fit (in place): first its free durations grow to the time its area needs,
        then its remaining excess area (per axis) is shared equally by its free moments."""
        r, e = (np.array(x) for x in zip(*gap.events, strict=True))
        total = area[r, e].sum(0) + np.array(gap.offset)
        playing = (np.abs(total) > AREA_EPS) | free_moment[r, e].any(0)
        axes = int(playing.sum())
        longer = free_duration[r, e]
        if longer.any():
            needed = float(self.limits.min_time(total, axes).max()) / SAFETY + self.margin
            missing = needed - (duration[r, e].sum() + gap.slack)
            if missing > 0:
                duration[r[longer], e[longer]] += missing / int(longer.sum())
        time = duration[r, e].sum() + gap.slack - self.margin
        reach = SAFETY * float(self.limits.max_area(time, axes))
        for axis in range(3):
            movable = free_moment[r, e, axis]
            if abs(total[axis]) <= reach or not movable.any():
                continue
            excess = float(np.clip(total[axis], -reach, reach) - total[axis])
            area[r[movable], e[movable], axis] += excess / int(movable.sum())

    # ------------------------------------------------------------------ the check after training
    def check(
        self, seq: Sequence, simulate_on: Callable[[Sequence], torch.Tensor] | None = None
    ) -> HardwareCheck:
        """Export ``seq`` with these limits to a temporary file and measure it; ``simulate_on``
        (a callable ``Sequence -> signal``) adds the file's signal error against ``seq``'s."""
        name = self.limits.name
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "check.seq"
            try:
                result = export(seq, path, self.limits, self.options)
            except ExportError as exc:
                return HardwareCheck(name, False, error=str(exc))
            written = pp.Sequence()
            written.read(str(path))
            grad, slew = gradient_extremes(written)
            nrmse = None
            if simulate_on is not None:
                twin = import_seq(path).sequence.to(seq.device, seq.moment.dtype)
                trained, played = simulate_on(seq), simulate_on(twin)
                nrmse = float((played - trained).abs().norm() / trained.abs().norm().clamp_min(1e-30))
        stretches = [str(s) for s in result.stretches]
        return HardwareCheck(
            name,
            not stretches and (nrmse is None or nrmse <= SIGNAL_TOLERANCE),
            stretches,
            max((s.needed - s.given for s in result.stretches), default=0.0),
            None,
            grad,
            slew,
            nrmse,
            result.duration,
            result.model_duration,
        )
