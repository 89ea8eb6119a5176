"""Export a :class:`~mrzero.sequences.sequence.Sequence` to a Pulseq file that a scanner can run.

How the instantaneous model becomes hardware events (pypulseq 1.5):

* each non-zero RF pulse becomes an RF block of fixed length (``rf_block``, default 2 ms) with a
  block pulse or a slice-selective sinc (default 1 ms, time-bandwidth product 4) centred in it;
  the RF centre sits exactly at the model's repetition start;
* consecutive non-ADC events between RF pulses and readouts form one *gap* block whose
  trapezoids realise their summed moment. Relaxation, free precession and gradient dephasing
  commute while no RF or ADC happens, so merging them is exact for the simulation. The gap also
  absorbs what the neighbouring hardware needs: the readout's ramp-up area and half-sample shift,
  the slice-select gradient's area before/after the RF centre (this is the slice rephaser) and the
  time the RF and readout blocks take beyond the model's instants;
* consecutive ADC events with equal moment and duration become one readout block: one trapezoid
  per axis (flat area = the events' summed moment) and one ADC whose sample ``i`` lands at the
  model's sample time with the model's k-space position;
* labels (LIN, PAR, SLC, ECO, REP, SET and NOISE where used) are initialised in the first block
  and set on every readout; definitions carry FOV, Name and the k-space centre line.

The export keeps two offsets, file minus model, in time (s) and in k-space (1/m). Gap blocks
bring both to what the next RF or readout block needs; where a gap has too little time for its
trapezoids, or for the hardware, it is stretched, and every stretch is reported. Where no
stretching can help (a readout gradient above ``max_grad``, an RF pulse above ``max_b1``, a file
whose B1 RMS exceeds ``max_b1_rms``), the export refuses with :class:`ExportError` naming the
event and the excess. Each gap block's budget (``GapBudget``: its model events, the time and area
its neighbours add) is recorded by ``build``: training's hardware model keeps learned sequences
within it, so that trained sequences export without stretching.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pypulseq as pp
import torch

from mrzero.core.units import GAMMA_HZ_PER_T
from mrzero.sequences.adc_layout import derive_layout
from mrzero.sequences.pulseq.system import HardwareLimits, hardware
from mrzero.sequences.pulseq.waveform import area_at, grad_points, rf_integral
from mrzero.sequences.sequence import EXCITATION, INVERSION, REFOCUSING, Sequence

log = logging.getLogger(__name__)

RF_USE = {EXCITATION: "excitation", REFOCUSING: "refocusing", INVERSION: "inversion"}

#: Areas below this (1/m) are treated as zero: 1e-6 cycles over a 1 m FOV.
AREA_EPS = 1e-6


class ExportError(ValueError):
    """A sequence cannot be realised within the hardware limits; the message names the event."""


@dataclass
class ExportOptions:
    """How instantaneous model events become hardware events; ``None`` takes ``Sequence.hints``."""

    rf_shape: str | None = None  # "block" or "sinc"
    rf_duration: float | None = None  # s
    time_bw_product: float | None = None
    slice_thickness: float | None = None  # m
    rf_block: float = 2e-3  # s, fixed RF block length
    dwell: float | None = None  # s, ADC dwell for ADC events of zero duration

    def resolved(self, seq: Sequence) -> ExportOptions:
        """These options with every ``None`` filled in from the sequence's export hints."""
        h = seq.hints
        opts = ExportOptions(
            rf_shape=self.rf_shape or h.rf_shape,
            rf_duration=self.rf_duration if self.rf_duration is not None else h.rf_duration,
            time_bw_product=self.time_bw_product if self.time_bw_product is not None else h.time_bw_product,
            slice_thickness=self.slice_thickness if self.slice_thickness is not None else h.slice_thickness,
            rf_block=self.rf_block,
            dwell=self.dwell if self.dwell is not None else h.readout_dwell,
        )
        if opts.rf_shape not in ("block", "sinc"):
            raise ExportError(f"rf_shape must be 'block' or 'sinc', got {opts.rf_shape!r}")
        for name in ("rf_duration", "time_bw_product", "slice_thickness", "rf_block", "dwell"):
            value = getattr(opts, name)
            if not (math.isfinite(value) and value > 0):
                raise ExportError(f"export option {name} must be positive, got {value}")
        return opts


@dataclass
class Stretch:
    """An event that got more time in the file than in the model."""

    where: str
    needed: float  # s the hardware needs
    given: float  # s the model gave

    def __str__(self) -> str:
        return f"{self.where}: stretched by {(self.needed - self.given) * 1e3:.3f} ms"


@dataclass(frozen=True)
class GapBudget:
    """One gap block as the export built it: what the training's hardware model must respect.

    The block realises ``sum(model moments of events) + offset`` (1/m per axis) in
    ``sum(model durations of events) + slack`` seconds; ``offset`` and ``slack`` are what the
    neighbouring RF and readout blocks add (ramp areas, slice rephasers, dead times, the RF
    block beyond its centre)."""

    where: str
    events: tuple[tuple[int, int], ...]  # (repetition, event) of the model's gap events
    slack: float  # s
    offset: tuple[float, float, float]  # 1/m


@dataclass
class ExportResult:
    """What was written and what the physicist should know about it (SI units)."""

    path: Path
    report_path: Path
    signature: str
    duration: float  # s, file
    model_duration: float  # s, sequence model
    n_blocks: int
    sar_proxy: float  # rad^2, sum of squared flip angles (the seed's proxy)
    rf_energy: float  # Hz^2 s, sum over pulses of the integral of |B1(t)|^2 (in Hz^2)
    limits: HardwareLimits
    stretches: list[Stretch] = field(default_factory=list)

    @property
    def mean_rf_power(self) -> float:
        """RF energy per second of scan (Hz^2): compare sequences by this, not by absolute SAR."""
        return self.rf_energy / self.duration if self.duration > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.path.name}: {self.n_blocks} blocks, {self.duration:.4f} s "
            f"(model {self.model_duration:.4f} s), SAR proxy {self.sar_proxy:.3f} rad^2, "
            f"mean RF power {self.mean_rf_power:.1f} Hz^2, {len(self.stretches)} stretched event(s), "
            f"limits {self.limits.name}, signature {self.signature}"
        )


def _ceil_to(x: float, raster: float) -> float:
    return round(math.ceil(x / raster - 1e-6) * raster, 12)


def _ramp_time(amplitude: float, slew: float, raster: float) -> float:
    """The shortest ramp on the raster (at least one raster) that reaches ``amplitude`` within ``slew``.

    Unlike ``_ceil_to`` it forgives only float noise (1e-10 raster), not 1e-6: a ramp 1e-7 too
    short is a slew 1e-7 too high, and pypulseq refuses anything above its limit by more than 1e-9."""
    return round(math.ceil(max(amplitude / slew, raster) / raster - 1e-10) * raster, 12)


def _round_to(x: float, raster: float) -> float:
    return round(round(x / raster) * raster, 12)


@dataclass
class _Readout:
    rep: int
    first: int
    last: int
    moments: np.ndarray  # [n, 3] 1/m, one per event
    duration: float  # s per event (model)
    sample: int  # index of the first sample in the ADC order

    @property
    def moment(self) -> np.ndarray:
        """The moment of the first event (of every event when ``uniform``)."""
        return self.moments[0]

    @property
    def uniform(self) -> bool:
        return bool(np.isclose(self.moments, self.moments[0], rtol=1e-6, atol=1e-9).all())

    def uniform_runs(self) -> list[_Readout]:
        """This readout split into runs of consecutive events with equal moments."""
        same = np.isclose(self.moments[1:], self.moments[:-1], rtol=1e-6, atol=1e-9).all(-1)
        cuts = [0, *(np.flatnonzero(~same) + 1).tolist(), len(self.moments)]
        return [
            _Readout(
                self.rep,
                self.first + a,
                self.first + b - 1,
                self.moments[a:b],
                self.duration,
                self.sample + a,
            )
            for a, b in zip(cuts[:-1], cuts[1:], strict=True)
        ]


def _pulse(opts: ExportOptions, system: pp.Opts, flip: float, phase: float, delay: float, use: str) -> tuple:
    """The RF event (and the slice-select gradient of a sinc, else None) of one pulse."""
    if opts.rf_shape == "sinc":
        rf, gz, _ = pp.make_sinc_pulse(
            flip_angle=flip,
            phase_offset=phase,
            duration=opts.rf_duration,
            delay=delay,
            slice_thickness=opts.slice_thickness,
            time_bw_product=opts.time_bw_product,
            apodization=0.5,
            return_gz=True,
            system=system,
            use=use,
        )
        return rf, gz
    rf = pp.make_block_pulse(
        flip_angle=flip, phase_offset=phase, duration=opts.rf_duration, delay=delay, system=system, use=use
    )
    return rf, None


def unit_pulse(
    seq: Sequence, limits: HardwareLimits, options: ExportOptions | None = None
) -> tuple[float, float]:
    """Peak amplitude (Hz) and energy (Hz^2 s, the integral of |B1|^2) of the export's RF pulse
    for ``seq`` at a flip of 1 rad: both scale with the flip (the energy with its square)."""
    opts = (options or ExportOptions()).resolved(seq)
    system = limits.to_opts()
    rf, _ = _pulse(opts, system, 1.0, 0.0, system.rf_dead_time, "excitation")
    return float(np.max(np.abs(rf.signal))), rf_integral(rf.t, np.abs(rf.signal) ** 2).real


class _Builder:
    """Appends blocks to a pypulseq sequence while tracking the file-minus-model offsets."""

    def __init__(self, limits: HardwareLimits, opts: ExportOptions):
        self.limits, self.opts = limits, opts
        self.system = limits.to_opts()
        self.systems = {k: limits.to_opts(k) for k in (1, 2, 3)}  # by simultaneously active axes
        self.pp = pp.Sequence(system=self.system)
        self.dt = 0.0  # file time minus model time, s
        self.dk = np.zeros(3)  # file k minus model k, 1/m
        self.gap_time = 0.0
        self.gap_area = np.zeros(3)
        self.gap_where = "start"
        self.gap_events: list[tuple[int, int]] = []
        self.gaps: list[GapBudget] = []
        self.stretches: list[Stretch] = []
        self.rf_energy = 0.0
        self.pending_labels: list = []
        self.block_names: dict[int, str] = {}

    # ------------------------------------------------------------ blocks
    def _add(self, where: str, *events) -> None:
        events = [*events, *self.pending_labels]
        self.pending_labels = []
        self.pp.add_block(*events)
        self.block_names[len(self.pp.block_events)] = where

    def _traps(self, area: np.ndarray) -> list:
        system = self.systems[_active_axes(area)]
        return [
            pp.make_trapezoid(channel=ax, area=float(a), system=system)
            for ax, a in zip("xyz", area, strict=True)
            if abs(a) > AREA_EPS
        ]

    def flush_gap(self, target_dt: float, target_dk: np.ndarray, before_rf: bool = False) -> None:
        """Emit the pending gap so that the offsets become (``target_dt``, ``target_dk``)."""
        if not self.pp.block_events and self.gap_time == 0:
            # Lead-in: the file may start before the model's t = 0; before a first excitation no
            # transverse magnetisation exists and k restarts at it, so any k-space offset is free too.
            self.dt = target_dt
            if before_rf:
                self.dk = np.array(target_dk, dtype=float)
        area = self.gap_area + target_dk - self.dk
        wanted = self.gap_time + target_dt - self.dt
        self.gaps.append(
            GapBudget(
                self.gap_where,
                tuple(self.gap_events),
                float(wanted - self.gap_time),
                tuple(float(a) for a in area - self.gap_area),
            )
        )
        traps = self._traps(area)
        raster = self.limits.block_duration_raster
        needed = _ceil_to(max([pp.calc_duration(g) for g in traps], default=0.0), raster)
        length = max(_round_to(wanted, raster), needed, 0.0)
        if length - wanted > raster / 2:
            self.stretches.append(Stretch(self.gap_where, needed=length, given=float(wanted)))
        if length > 0:
            self._add(self.gap_where, *traps, pp.make_delay(length))
        self.dt += length - self.gap_time
        self.dk += area - self.gap_area
        self.gap_time, self.gap_area, self.gap_events = 0.0, np.zeros(3), []

    def add_gap_event(self, r: int, e: int, duration: float, moment: np.ndarray) -> None:
        if self.gap_time == 0.0 and not self.gap_area.any():
            self.gap_where = f"rep {r}, event {e} (gap)"
        self.gap_events.append((r, e))
        self.gap_time += duration
        self.gap_area = self.gap_area + moment

    def add_rf(self, r: int, flip: float, phase: float, kind: int) -> None:
        opts, limits = self.opts, self.limits
        where = f"rep {r} (RF, flip {math.degrees(flip):.1f} deg)"
        if flip < 0:
            flip, phase = -flip, (phase + math.pi) % (2 * math.pi)
        centred = _round_to((opts.rf_block - opts.rf_duration) / 2, limits.rf_raster_time)
        delay = max(centred, limits.rf_dead_time)
        try:
            rf, gz = _pulse(opts, self.system, flip, phase, delay, RF_USE[kind])
        except ValueError as exc:  # pypulseq refuses a slice-select gradient above max_grad
            raise ExportError(f"{where}: cannot build the RF pulse within the limits: {exc}") from exc
        peak = float(np.max(np.abs(rf.signal)))
        if peak > limits.max_b1_hz * (1 + 1e-9):
            raise ExportError(
                f"{where}: RF peak {peak / GAMMA_HZ_PER_T * 1e6:.2f} uT exceeds max_b1 "
                f"{limits.max_b1 * 1e6:.2f} uT by {100 * (peak / limits.max_b1_hz - 1):.1f} %; "
                "lengthen rf_duration or lower the flip angle"
            )
        self.rf_energy += rf_integral(rf.t, np.abs(rf.signal) ** 2).real
        events = [rf] if gz is None else [rf, gz]
        needed = _ceil_to(
            max(rf.delay + rf.shape_dur + rf.ringdown_time, pp.calc_duration(*events)),
            limits.block_duration_raster,
        )
        length = max(_ceil_to(opts.rf_block, limits.block_duration_raster), needed)
        if length > opts.rf_block + limits.block_duration_raster / 2:
            self.stretches.append(Stretch(where, needed=length, given=opts.rf_block))
        centre = rf.delay + rf.center
        pre_area = np.zeros(3)
        total_area = np.zeros(3)
        if gz is not None:
            t, g = grad_points(gz)
            pre_area[2] = float(area_at(t, g, np.array([centre]))[0])
            total_area[2] = gz.area
        self.flush_gap(target_dt=-centre, target_dk=-pre_area, before_rf=kind == EXCITATION)
        self._add(where, *events, pp.make_delay(length))
        self.dt += length
        self.dk += total_area
        self.gap_where = f"rep {r}, after RF"

    def add_readout(self, ro: _Readout, phase: float, labels: list) -> None:
        """One block per readout: a trapezoid for equal moments, a shaped gradient for learned ones
        (one trapezoid block per run of equal moments where the shape cannot be realised)."""
        self.pending_labels.extend(labels)
        if ro.uniform:
            self._trapezoid_readout(ro, phase)
        elif not self._shaped_readout(ro, phase):
            for run in ro.uniform_runs():
                self._trapezoid_readout(run, phase)

    def _dwell(self, ro: _Readout, where: str) -> float:
        """The ADC dwell: the events' duration on the ADC raster (the option's for zero duration)."""
        dwell = _round_to(ro.duration, self.limits.adc_raster_time)
        if dwell <= 0:
            dwell = _round_to(self.opts.dwell, self.limits.adc_raster_time)
            n = ro.last - ro.first + 1
            self.stretches.append(Stretch(where, needed=n * dwell, given=n * ro.duration))
        return dwell

    def _check_readout_amplitude(self, ro: _Readout, amp: np.ndarray) -> None:
        """Refuse a readout whose moment per dwell needs more than ``max_grad``, naming the event."""
        amp = np.atleast_2d(amp)
        axes = _active_axes(ro.moments)
        max_grad = self.limits.axis_limits(axes)[0]
        worst = np.unravel_index(int(np.argmax(np.abs(amp))), amp.shape)
        peak = abs(float(amp[worst]))
        if peak > max_grad * (1 + 1e-9):
            raise ExportError(
                f"rep {ro.rep}, event {ro.first + int(worst[0])} (readout of events {ro.first}-{ro.last}): "
                f"readout gradient {peak / GAMMA_HZ_PER_T * 1e3:.2f} mT/m on "
                f"{'xyz'[worst[-1]]} exceeds max_grad {max_grad / GAMMA_HZ_PER_T * 1e3:.2f} mT/m by "
                f"{100 * (peak / max_grad - 1):.1f} %"
                f"{'' if axes == 1 else f' (the vector limit shared by {axes} axes)'}; "
                "lower the moment per sample or lengthen the dwell"
            )

    def _shaped_readout(self, ro: _Readout, phase: float) -> bool:
        """Learned readouts (a different moment per sample) as one extended trapezoid per axis.

        Corners sit at the sample times ``t_i`` (value ``v_i``, the mean of the neighbouring
        nominal amplitudes) and one ramp width ``w`` inside each dwell interval, with a plateau
        ``p_i`` chosen so that the interval's area is exactly the event's moment:
        ``p_i (d - w) + w (v_{i-1} + v_i) / 2 = m_i``. Needs the dwell on the gradient raster and
        slew-feasible plateaus; returns False (nothing added) otherwise.
        """
        limits = self.limits
        axes = _active_axes(ro.moments)
        system, (max_grad, max_slew) = self.systems[axes], limits.axis_limits(axes)
        n = ro.last - ro.first + 1
        where = f"rep {ro.rep}, events {ro.first}-{ro.last} (readout, {n} samples)"
        graster = limits.grad_raster_time
        dwell = _round_to(ro.duration, graster)
        if dwell < 2 * graster or not math.isclose(dwell, ro.duration, rel_tol=1e-6, abs_tol=1e-12):
            return False
        nominal = ro.moments / dwell  # Hz/m, [n, 3]
        self._check_readout_amplitude(ro, nominal)
        corners = np.concatenate([nominal[:1], (nominal[:-1] + nominal[1:]) / 2, nominal[-1:]])
        for steps in range(1, int(round(dwell / graster)) // 2 + 1):
            w = steps * graster
            plateau = (ro.moments - w * (corners[:-1] + corners[1:]) / 2) / (dwell - w)
            slew = np.maximum(np.abs(plateau - corners[:-1]), np.abs(corners[1:] - plateau)) / w
            if slew.max() <= max_slew and np.abs(plateau).max() <= max_grad:
                break
        else:
            return False
        rise = _ramp_time(float(np.abs(corners[0]).max()), max_slew, graster)
        fall = _ramp_time(float(np.abs(corners[-1]).max()), max_slew, graster)
        lead = _ceil_to(max(limits.adc_dead_time - rise - dwell / 2, 0.0), graster)
        start = lead + rise  # t_{-1}: where the first event's interval begins
        sample_t = start + dwell * np.arange(n + 1)
        inner = np.stack([sample_t[:-1] + w, sample_t[1:] - w, sample_t[1:]], axis=1).reshape(-1)
        times = np.concatenate([[lead, start], inner, [sample_t[-1] + fall]])
        middle = np.stack([plateau, plateau, corners[1:]], axis=1).reshape(-1, 3)
        values = np.concatenate([np.zeros((1, 3)), corners[:1], middle, np.zeros((1, 3))])
        keep = np.concatenate([[True], np.diff(times) > 1e-12])  # w = dwell / 2 leaves no plateau
        times, values = np.round(times[keep] / graster) * graster, values[keep]
        grads = [
            pp.make_extended_trapezoid(channel=ax, times=times, amplitudes=values[:, i], system=system)
            for i, ax in enumerate("xyz")
            if np.any(np.abs(ro.moments[:, i]) > AREA_EPS)
        ]
        adc_delay = _round_to(start + dwell / 2, limits.rf_raster_time)
        adc = pp.make_adc(num_samples=n, dwell=dwell, delay=adc_delay, phase_offset=phase, system=system)
        length = _ceil_to(
            max(times[-1], adc_delay + n * dwell + limits.adc_dead_time), limits.block_duration_raster
        )
        ramp_up, ramp_down = corners[0] * rise / 2, corners[-1] * fall / 2
        self.flush_gap(target_dt=-start, target_dk=-ramp_up)
        self._add(where, *grads, adc, pp.make_delay(length))
        self.dt += length - n * ro.duration
        self.dk += ramp_up + ramp_down
        self.gap_where = f"rep {ro.rep}, after event {ro.last}"
        return True

    def _trapezoid_readout(self, ro: _Readout, phase: float) -> None:
        limits = self.limits
        axes = _active_axes(ro.moments)
        system, max_slew = self.systems[axes], limits.axis_limits(axes)[1]
        n = ro.last - ro.first + 1
        where = f"rep {ro.rep}, events {ro.first}-{ro.last} (readout, {n} samples)"
        dwell = self._dwell(ro, where)
        amp = ro.moment / dwell  # Hz/m
        self._check_readout_amplitude(ro, amp)
        graster = limits.grad_raster_time
        moving = bool(np.any(np.abs(ro.moment) > AREA_EPS))
        peak = float(np.max(np.abs(amp)))
        rise = _ramp_time(peak, max_slew, graster) if moving else 0.0
        lead = _ceil_to(max(limits.adc_dead_time - rise, 0.0), graster)
        # Shift the ADC within the flat top (the prephaser absorbs the extra area) so that the
        # block starts on the block raster exactly when the model's samples are due.
        wanted = self.gap_time + dwell / 2 - (lead + rise) - self.dt
        shift = _round_to(wanted % limits.block_duration_raster, limits.rf_raster_time)
        shift = shift if shift < limits.block_duration_raster - 1e-12 else 0.0
        flat = _ceil_to(n * dwell + shift, graster)
        adc_delay = _round_to(lead + rise + shift, limits.rf_raster_time)
        length = _ceil_to(
            max(lead + 2 * rise + flat if moving else 0.0, adc_delay + n * dwell + limits.adc_dead_time),
            limits.block_duration_raster,
        )
        grads = [
            pp.make_trapezoid(
                channel=ax,
                amplitude=float(a),
                flat_time=flat,
                rise_time=rise,
                fall_time=rise,
                delay=lead,
                system=system,
            )
            for ax, a, m in zip("xyz", amp, ro.moment, strict=True)
            if abs(m) > AREA_EPS
        ]
        adc = pp.make_adc(num_samples=n, dwell=dwell, delay=adc_delay, phase_offset=phase, system=system)
        ramp_area = amp * rise / 2 if moving else np.zeros(3)
        before_adc = amp * (adc_delay - lead - rise) if moving else np.zeros(3)
        self.flush_gap(target_dt=dwell / 2 - adc_delay, target_dk=ro.moment / 2 - ramp_area - before_adc)
        self._add(where, *grads, adc, pp.make_delay(length))
        total = amp * (rise + flat) if moving else np.zeros(3)
        self.dt += length - n * ro.duration
        self.dk += total - n * ro.moment
        self.gap_where = f"rep {ro.rep}, after event {ro.last}"


def _active_axes(area: np.ndarray) -> int:
    """How many axes of ``area`` (``[3]`` or ``[n, 3]``, 1/m) play a gradient (at least 1)."""
    return max(int((np.abs(np.atleast_2d(area)) > AREA_EPS).any(0).sum()), 1)


def _readouts(moment_per_m: np.ndarray, duration: np.ndarray, adc: np.ndarray) -> list[_Readout]:
    """Group each repetition's consecutive ADC events of equal duration (the dwell)."""
    same = np.zeros_like(adc)  # event e continues the readout of event e - 1
    same[:, 1:] = (
        adc[:, 1:] & adc[:, :-1] & np.isclose(duration[:, 1:], duration[:, :-1], rtol=1e-6, atol=1e-12)
    )
    ends_next = np.zeros_like(adc)
    ends_next[:, :-1] = same[:, 1:]
    starts = np.argwhere(adc & ~same)
    lasts = np.argwhere(adc & ~ends_next)
    samples = np.cumsum(adc.ravel()).reshape(adc.shape) - 1
    return [
        _Readout(
            int(r),
            int(e),
            int(last),
            moment_per_m[r, e : last + 1],
            float(duration[r, e]),
            int(samples[r, e]),
        )
        for (r, e), (_, last) in zip(starts, lasts, strict=True)
    ]


def _labels(seq: Sequence, groups: list[_Readout]) -> tuple[list[list], list]:
    """Per-readout label events and the label initialisation for the first block.

    LIN, ECO and REP come from the sequence's readout layout (the builders' own, or
    ``derive_layout`` for a learned sequence: phase-encoding line on a Cartesian grid, a running
    index otherwise); NOISE flags readouts before the first excitation.
    """
    layout = seq.readouts or derive_layout(seq.n_rep, seq.adc, seq.trajectory(), seq.matrix[1])
    firsts = [r.first for r in layout.readouts]
    flips = seq.flip.detach().cpu().numpy()
    kinds = seq.rf_kind.cpu().numpy()
    excited_reps = np.flatnonzero((flips != 0) & (kinds == EXCITATION))
    first_excitation = int(excited_reps[0]) if len(excited_reps) else seq.n_rep
    noise = [g.rep < first_excitation for g in groups]
    init = [
        pp.make_label(label=name, type="SET", value=0) for name in ("LIN", "PAR", "SLC", "ECO", "REP", "SET")
    ]
    if any(noise):
        init.append(pp.make_label(label="NOISE", type="SET", value=False))
    per_readout = []
    for g, is_noise in zip(groups, noise, strict=True):
        readout = layout.readouts[bisect.bisect_right(firsts, g.sample) - 1]
        events = [
            pp.make_label(label=name, type="SET", value=value)
            for name, value in (("LIN", readout.line), ("ECO", readout.contrast), ("REP", readout.repetition))
        ]
        if any(noise):
            events.append(pp.make_label(label="NOISE", type="SET", value=is_noise))
        per_readout.append(events)
    return per_readout, init


def build(
    seq: Sequence, limits: HardwareLimits | None = None, options: ExportOptions | None = None
) -> tuple[pp.Sequence, _Builder]:
    """The pypulseq sequence for ``seq`` (not yet checked or written) and its build record."""
    limits = limits or hardware()
    opts = (options or ExportOptions()).resolved(seq)
    seq = seq.to("cpu", torch.float64)
    if seq.n_samples == 0:
        raise ExportError(f"sequence {seq.name!r} has no ADC event; nothing would be acquired")
    fov = np.array(seq.fov, dtype=float)
    moment = seq.moment.detach().numpy() / fov  # 1/m
    duration = seq.duration.detach().numpy()
    adc = seq.adc.numpy()
    flip = seq.flip.detach().numpy()
    # Wrapped phases keep their precision: pypulseq writes six significant digits.
    phase = seq.rf_phase.detach().numpy() % (2 * math.pi)
    adc_phase = seq.adc_phase.detach().numpy() % (2 * math.pi)
    kinds = seq.rf_kind.numpy()
    groups = _readouts(moment, duration, adc)
    labels, init = _labels(seq, groups)
    b = _Builder(limits, opts)
    b.pending_labels = init
    g = 0
    for r in range(seq.n_rep):
        if flip[r] != 0:
            b.add_rf(r, float(flip[r]), float(phase[r]), int(kinds[r]))
        for e in range(seq.n_event):
            if not adc[r, e]:
                b.add_gap_event(r, e, float(duration[r, e]), moment[r, e])
            elif g < len(groups) and groups[g].rep == r and groups[g].first == e:
                b.add_readout(groups[g], float(adc_phase[r]), labels[g])
                g += 1
    # End with the model where the hardware allows, never earlier than the last block needs.
    b.flush_gap(target_dt=max(0.0, b.dt - b.gap_time), target_dk=np.zeros(3))
    b.pp.set_definition("FOV", [float(f) for f in seq.fov])
    b.pp.set_definition("Name", seq.name)
    b.pp.set_definition("kSpaceCenterLine", int(seq.matrix[1] // 2))
    return b.pp, b


def limit_violations(seq: pp.Sequence, limits: HardwareLimits) -> list[str]:
    """Every gradient event above ``max_grad`` or ``max_slew`` (per axis, and as a vector where
    the limits set vector limits), and every RF above ``max_b1``, by block."""
    problems = []
    for i in seq.block_events:
        block = seq.get_block(i)
        points = {}
        for ax in "xyz":
            g = getattr(block, f"g{ax}")
            if g is None:
                continue
            t, a = points[ax] = grad_points(g)
            peak = float(np.max(np.abs(a)))
            dt = np.diff(t)
            slew = float(np.max(np.abs(np.diff(a))[dt > 0] / dt[dt > 0], initial=0.0))
            if peak > limits.max_grad_hz * (1 + 1e-6):
                problems.append(
                    f"block {i} g{ax}: {peak / GAMMA_HZ_PER_T * 1e3:.2f} mT/m > "
                    f"{limits.max_grad * 1e3:.2f} mT/m"
                )
            if slew > limits.max_slew_hz * (1 + 1e-6):
                problems.append(
                    f"block {i} g{ax}: slew {slew / GAMMA_HZ_PER_T:.1f} T/m/s > {limits.max_slew:.1f} T/m/s"
                )
        problems += _vector_violations(i, points, limits)
        if block.rf is not None:
            peak = float(np.max(np.abs(block.rf.signal)))
            if peak > limits.max_b1_hz * (1 + 1e-6):
                problems.append(
                    f"block {i} RF: {peak / GAMMA_HZ_PER_T * 1e6:.2f} uT > {limits.max_b1 * 1e6:.2f} uT"
                )
    return problems


def _vector_violations(block: int, points: dict, limits: HardwareLimits) -> list[str]:
    """The block's summed gradient against the vector limits: the per-axis waveforms are piecewise
    linear, so on the union of their corners the vector's peak and slew are exact."""
    if len(points) < 2 or (limits.max_grad_vector is None and limits.max_slew_vector is None):
        return []
    times = np.unique(np.concatenate([t for t, _ in points.values()]))
    g = np.stack([np.interp(times, t, a, left=0.0, right=0.0) for t, a in points.values()])
    dt = np.diff(times)
    ok = dt > 1e-12
    peak = float(np.linalg.norm(g, axis=0).max()) / GAMMA_HZ_PER_T
    slew = float(np.max(np.linalg.norm(np.diff(g, axis=1)[:, ok], axis=0) / dt[ok], initial=0.0))
    slew /= GAMMA_HZ_PER_T
    problems = []
    if limits.max_grad_vector is not None and peak > limits.max_grad_vector * (1 + 1e-6):
        limit = limits.max_grad_vector * 1e3
        problems.append(f"block {block} vector: {peak * 1e3:.2f} mT/m > {limit:.2f} mT/m")
    if limits.max_slew_vector is not None and slew > limits.max_slew_vector * (1 + 1e-6):
        problems.append(f"block {block} vector: slew {slew:.1f} T/m/s > {limits.max_slew_vector:.1f} T/m/s")
    return problems


def _test_report(built: pp.Sequence, duration: float) -> str:
    """pypulseq's test report; its TE/TR analysis fails on some valid files (an ADC before the
    first excitation makes it index out of range), then a shorter report of our own says so."""
    try:
        return built.test_report()
    except (IndexError, ValueError) as exc:
        log.warning("pypulseq test_report failed (%s: %s); writing a short report", type(exc).__name__, exc)
        return (
            f"Number of blocks: {len(built.block_events)}\nSequence duration: {duration:.6f} s\n"
            f"TE/TR analysis unavailable: pypulseq test_report failed with {type(exc).__name__}: {exc}\n"
            "Event timing check passed successfully\n"
        )


def export(
    seq: Sequence,
    path: str | Path,
    limits: HardwareLimits | None = None,
    options: ExportOptions | None = None,
) -> ExportResult:
    """Write ``seq`` as a Pulseq file at ``path`` plus ``<stem>.testreport.txt`` beside it.

    Raises :class:`ExportError` (nothing written) when any event violates the limits or timing.
    """
    limits = limits or hardware()
    path = Path(path)
    if seq.rf_offsets is not None and bool((seq.rf_offsets.duration > 0).any()):
        played = torch.nonzero(seq.rf_offsets.duration > 0).reshape(-1).tolist()
        raise ExportError(
            f"repetition(s) {played[:5]} hold pulses played off resonance (rf_offsets, e.g. fat "
            "saturation from an imported file); the export writes on-resonance pulses only, so the "
            "file would not be the sequence"
        )
    built, b = build(seq, limits, options)
    ok, errors = built.check_timing()
    if not ok:
        first = "; ".join(
            f"block {e.block} ({b.block_names.get(e.block, '?')}): {e.error_type} {e.event}.{e.field}"
            for e in errors[:5]
        )
        raise ExportError(f"{len(errors)} timing error(s), refusing to write {path.name}: {first}")
    problems = limit_violations(built, limits)
    duration = float(sum(built.block_durations.values()))
    b1_rms = math.sqrt(b.rf_energy / duration) / GAMMA_HZ_PER_T if duration > 0 else 0.0
    if limits.max_b1_rms is not None and b1_rms > limits.max_b1_rms * (1 + 1e-6):
        problems.append(
            f"file B1 RMS: {b1_rms * 1e6:.3f} uT > max_b1_rms {limits.max_b1_rms * 1e6:.3f} uT "
            f"(lower the flips, e.g. loss.sar, or lengthen the sequence)"
        )
    if problems:
        named = "; ".join(
            f"{p} [{b.block_names.get(int(p.split()[1]), '?')}]" if p.startswith("block") else p
            for p in problems[:5]
        )
        raise ExportError(f"{len(problems)} limit violation(s), refusing to write {path.name}: {named}")
    path.parent.mkdir(parents=True, exist_ok=True)
    signature = built.write(str(path), create_signature=True, check_timing=False)
    report_path = path.with_suffix(".testreport.txt")
    report_path.write_text(_test_report(built, duration))
    flips = seq.flip.detach().cpu().double()
    result = ExportResult(
        path=path,
        report_path=report_path,
        signature=str(signature),
        duration=duration,
        model_duration=float(seq.total_duration().detach()),
        n_blocks=len(built.block_events),
        sar_proxy=float((flips**2).sum()),
        rf_energy=b.rf_energy,
        limits=limits,
        stretches=b.stretches,
    )
    for s in result.stretches:
        log.info("stretched %s", s)
    log.info("exported %s", result.summary())
    return result
