"""Read a Pulseq ``.seq`` file into the simulation's :class:`~mrzero.sequences.sequence.Sequence` model.

The same file then drives the scanner and its digital twin. The mapping:

* one repetition per RF pulse, starting at the pulse's centre; samples acquired before the first
  pulse form an extra repetition with flip 0 (a noise scan);
* **approximation**: each RF pulse on resonance (and each slice-selective pulse) acts as an
  instantaneous rotation by its total flip ``2 pi |integral of B1(t) dt|`` (Hz s) with the phase
  of that integral plus the pulse's phase offset. Off-resonance, slice profile and relaxation
  *during* the pulse are ignored, which is exact for hard pulses on resonance and good to first
  order for short shaped pulses;
* the gradient waveforms (trapezoids, arbitrary and extended trapezoids, rotated per block when
  the file uses the v1.5.1 ROTATIONS extension) are integrated exactly into one moment per
  interval between consecutive markers (RF centres and ADC samples, sample ``i`` of an ADC at
  ``delay + (i + 0.5) dwell``). An event ends at each sample (ADC flag set) and one last event
  ends at the next RF centre, so timing is preserved. Such a *joined* model has the right
  phases but not the right diffusion (the engine plays each event as a constant gradient), so
  it is marked ``joined_gradients`` and the engine refuses to diffuse it;
* with ``split_gradients`` events also end at every gradient corner, sloped pieces in two
  events whose areas make the b-value of every state exact up to a stated bound
  (:func:`_events`): for diffusion-weighted files, at the cost of more events;
* ``rf_kind`` follows the RF ``use``: refocusing -> REFOCUSING; inversion, saturation and
  preparation -> INVERSION (k-space untouched); everything else -> EXCITATION. Files that do not
  store the use (before v1.5, or ``undefined``) get it guessed from flip angle, frequency and
  position (``sequences/pulseq/rf_use.py``), and the guess is reported;
* each pulse's frequency offset (``freq`` Hz plus ``freqPPM`` at the field strength) is kept in
  ``ImportedSequence.rf_frequency``; for pulses played without a gradient (fat saturation,
  spectral pulses) it becomes, with ``off_resonant_rf`` (default on), the model's
  ``rf_offsets`` with the pulse's shape, so that the engines rotate each voxel by the pulse as
  played out at its own off-resonance (``sequences/engines/rf.py``); a slice-selective pulse's
  offset moves the slice, which the 2D phantom stands for, and is only reported;
* TE is measured on the imaging samples: ADCs acquired while the ``NAV`` label is set
  (navigators, phase-correction echoes) are left out;
* soft delays keep the block duration written in the file (their default) and are reported,
  as are triggers, which the simulation ignores;
* ADC frequency offsets and the ADC phase of any but a repetition's first ADC are not modelled.

Before pypulseq parses the file, ``sequences/pulseq/file_check.py`` refuses files beyond the
import's limits and broken files, naming the line and block. pypulseq's reader is called
without its duplicate removal, which trips (``TypeError: type NoneType doesn't define
__round__``) on v1.4 files holding an arbitrary gradient no block uses, as MATLAB writes them.

pypulseq 1.5 cannot read the ROTATIONS extension (``extension ROTATIONS <id>`` with rows
``id w x y z``, a unit quaternion rotating a block's logical gradients into the physical frame):
its section and extension-list entries are removed before pypulseq parses the file, and the
rotations are applied here during the integration.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pypulseq as pp
import torch

from mrzero.core.units import per_m_to_cycles_per_fov
from mrzero.sequences.pulseq.file_check import FileFacts, ImportLimits, PulseqFileError, scan
from mrzero.sequences.pulseq.rf_use import guess_rf_use
from mrzero.sequences.pulseq.waveform import area_at, grad_points, rf_integral
from mrzero.sequences.sequence import EXCITATION, INVERSION, REFOCUSING, ExportHints, RfOffsets, Sequence

log = logging.getLogger(__name__)

RF_KIND = {
    "refocusing": REFOCUSING,
    "inversion": INVERSION,
    "saturation": INVERSION,
    "preparation": INVERSION,
}
#: Proton gyromagnetic ratio (Hz/T) and the field strength assumed when the file names none.
GAMMA_HZ_PER_T = 42.577478e6
DEFAULT_FIELD_T = 3.0


class PulseqReadError(ValueError):
    """A ``.seq`` file cannot be read or mapped onto the sequence model; the message says why."""


# ---------------------------------------------------------------------------- ROTATIONS fallback
def _strip_rotations(text: str) -> tuple[str, dict[int, np.ndarray]]:
    """The file text without the ROTATIONS extension, and each rotated block's quaternion."""
    head = re.search(r"^extension ROTATIONS (\d+)\s*$", text, re.MULTILINE)
    if head is None:
        return text, {}
    rot_type = int(head.group(1))
    lines = text.splitlines(keepends=True)
    quats: dict[int, np.ndarray] = {}
    ext_list: dict[int, tuple[int, int, int]] = {}
    out: list[str] = []
    section = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") or stripped.startswith("extension "):
            section = stripped
            if section == head.group(0).strip():
                continue
        elif section == head.group(0).strip():
            if stripped and not stripped.startswith("#"):
                values = stripped.split()
                if len(values) != 5:
                    raise PulseqReadError(f"ROTATIONS row {stripped!r} must be 'id w x y z'")
                quats[int(values[0])] = np.array([float(v) for v in values[1:]])
            continue
        elif section == "[EXTENSIONS]" and stripped and not stripped.startswith("#"):
            eid, etype, ref, nxt = (int(v) for v in stripped.split())
            ext_list[eid] = (etype, ref, nxt)
            continue
        out.append(line)

    # Re-link extension lists without their rotation entries.
    def skip(eid: int) -> int:
        while eid and ext_list[eid][0] == rot_type:
            eid = ext_list[eid][2]
        return eid

    kept = {eid: (t, ref, skip(nxt)) for eid, (t, ref, nxt) in ext_list.items() if t != rot_type}
    text = "".join(out)
    ext_rows = "".join(f"{eid} {t} {ref} {nxt}\n" for eid, (t, ref, nxt) in sorted(kept.items()))
    text = re.sub(
        r"(^\[EXTENSIONS\][ \t]*\n)", lambda m: m.group(1) + ext_rows, text, count=1, flags=re.MULTILINE
    )

    block_rot: dict[int, np.ndarray] = {}

    def rewrite_block(m: re.Match) -> str:
        fields = m.group(0).split()
        eid = int(fields[7])
        walk = eid
        while walk:
            etype, ref, walk_next = ext_list[walk]
            if etype == rot_type:
                block_rot[int(fields[0])] = quats[ref]
            walk = walk_next
        fields[7] = str(skip(eid))
        return " ".join(fields)

    blocks = re.search(r"^\[BLOCKS\]\s*\n(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    if blocks is None:
        raise PulseqReadError("file has a ROTATIONS extension but no [BLOCKS] section")
    body = re.sub(r"^[ \t]*\d+([ \t]+-?\d+){7}[ \t]*$", rewrite_block, blocks.group(1), flags=re.MULTILINE)
    text = text[: blocks.start(1)] + body + text[blocks.end(1) :]
    return text, block_rot


def quaternion_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of the unit quaternion ``(w, x, y, z)``."""
    norm = float(np.linalg.norm(q))
    if not math.isclose(norm, 1.0, rel_tol=1e-3):
        raise PulseqReadError(f"rotation quaternion {q.tolist()} is not of unit length ({norm:.4f})")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def read_pulseq(
    path: str | Path, limits: ImportLimits | None = None
) -> tuple[pp.Sequence, dict[int, np.ndarray]]:
    """The pypulseq sequence of a file and the rotation matrix of each rotated block (1-based)."""
    seq, rotations, _ = _read(path, limits)
    return seq, rotations


def _read(
    path: str | Path, limits: ImportLimits | None
) -> tuple[pp.Sequence, dict[int, np.ndarray], FileFacts]:
    """:func:`read_pulseq` and what the pre-scan found; refuses broken files and files beyond ``limits``."""
    path = Path(path)
    if not path.is_file():
        raise PulseqReadError(f"{path}: no such Pulseq file")
    text = path.read_text(errors="replace")
    if "[BLOCKS]" not in text:
        raise PulseqReadError(f"{path}: not a Pulseq file (no [BLOCKS] section)")
    try:
        facts = scan(text, limits or ImportLimits())
    except PulseqFileError as err:
        raise PulseqReadError(f"{path}: {err}") from err
    stripped, quats = _strip_rotations(text)
    seq = pp.Sequence()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*higher than installed package version.*")
        warnings.filterwarnings("ignore", message=".*Loading older Pulseq format.*")
        source = path
        if quats:
            source = Path(tmp) / path.name
            source.write_text(stripped)
            log.info(
                "%s: applied the ROTATIONS extension to %d block(s) outside pypulseq", path.name, len(quats)
            )
        try:
            seq.read(str(source), detect_rf_use=False, remove_duplicates=False)
        except Exception as exc:  # pypulseq raises bare ValueError/RuntimeError/KeyError on bad files
            raise PulseqReadError(
                f"{path}: pypulseq cannot parse the file: {type(exc).__name__}: {exc}"
            ) from exc
    return seq, {block: quaternion_matrix(q) for block, q in quats.items()}, facts


# ---------------------------------------------------------------------------- waveform integration
@dataclass
class RfPulse:
    """One RF pulse as the file plays it out (SI units; the shape's time from the pulse start)."""

    t: np.ndarray  # s
    signal: np.ndarray  # complex Hz, B1 envelope without the frequency offset
    center: float  # s from the pulse start
    frequency: float  # Hz, relative to the receiver (freq offset plus freqPPM at the field strength)
    use: str  # as stored in the file; "undefined" where it is not
    duration: float  # s, the shape's length

    def step_weights(self, steps: int) -> np.ndarray:
        """The share of the pulse's area in each of ``steps`` equal steps of its duration (complex)."""
        fine = np.linspace(0.0, self.duration, 16 * steps + 1)
        fine = 0.5 * (fine[1:] + fine[:-1])
        values = np.interp(fine, self.t, self.signal.real) + 1j * np.interp(fine, self.t, self.signal.imag)
        per_step = values.reshape(steps, 16).sum(1)
        total = per_step.sum()
        return per_step / total if abs(total) > 0 else np.full(steps, 1.0 / steps)


@dataclass
class Timeline:
    """A file's events on one time axis (s from the file start): RF pulses, ADC samples, gradients."""

    rf_time: np.ndarray  # s, RF centres
    rf_flip: np.ndarray  # rad
    rf_phase: np.ndarray  # rad
    pulses: list[RfPulse]
    adc_time: np.ndarray  # s, every sample
    adc_object: np.ndarray  # index of the ADC object of every sample
    adc_phase: np.ndarray  # rad per ADC object
    adc_nav: np.ndarray  # bool per ADC object: acquired with the NAV label set
    grad: list[tuple[np.ndarray, np.ndarray]]  # per physical axis: (t, Hz/m) corner points
    duration: float
    rf_duration: float
    rf_shape: str
    dwell: float
    soft_delays: dict[str, list[int]]  # what was done -> blocks
    triggers: dict[str, list[int]]


def _block_gradients(block, rotation: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per physical axis corner points of one block's gradients (block-relative time)."""
    logical = [
        grad_points(g) if g is not None else (np.zeros(0), np.zeros(0))
        for g in (block.gx, block.gy, block.gz)
    ]
    if rotation is None:
        return logical
    grid = np.unique(np.concatenate([t for t, _ in logical]))
    values = np.stack(
        [np.interp(grid, t, a, left=0.0, right=0.0) if len(t) else np.zeros_like(grid) for t, a in logical]
    )
    physical = rotation @ values
    return [(grid, physical[i]) for i in range(3)]


def _nav_flag(block, nav: bool) -> bool:
    """The NAV label after this block's label events."""
    for label in (block.label or {}).values():
        if label.label == "NAV":
            nav = bool(label.value) if label.type == "labelset" else nav
    return nav


def _timeline(seq: pp.Sequence, rotations: dict[int, np.ndarray], larmor_mhz: float) -> Timeline:
    rf_t, flip, phase, pulses = [], [], [], []
    adc_t, adc_obj, adc_phase, adc_nav = [], [], [], []
    axes_t: list[list[np.ndarray]] = [[], [], []]
    axes_g: list[list[np.ndarray]] = [[], [], []]
    soft_delays: dict[str, list[int]] = {}
    triggers: dict[str, list[int]] = {}
    rf_duration, rf_shape, dwell, nav = 1e-3, "block", 0.0, False
    t0 = 0.0
    for index in seq.block_events:
        block = seq.get_block(index)
        nav = _nav_flag(block, nav)
        if getattr(block, "soft_delay", None) is not None:
            sd = block.soft_delay
            what = (
                f"soft delay '{sd.hint}' kept at its default {1e3 * float(seq.block_durations[index]):.3f} ms"
            )
            soft_delays.setdefault(what, []).append(index)
        for trig in (getattr(block, "trigger", None) or {}).values():
            what = (
                f"{trig.type} on {trig.channel} (delay {1e3 * trig.delay:.3f} ms, "
                f"{1e3 * trig.duration:.3f} ms) not simulated"
            )
            triggers.setdefault(what, []).append(index)
        if block.rf is not None:
            rf = block.rf
            area = rf_integral(rf.t, rf.signal)
            centre = rf.center if hasattr(rf, "center") else pp.calc_rf_center(rf)[0]
            rf_t.append(t0 + rf.delay + centre)
            flip.append(2 * math.pi * abs(area))
            phase.append(
                rf.phase_offset
                + getattr(rf, "phase_ppm", 0.0) * larmor_mhz
                + math.atan2(area.imag, area.real)
            )
            frequency = float(rf.freq_offset) + float(getattr(rf, "freq_ppm", 0.0)) * larmor_mhz
            pulses.append(
                RfPulse(
                    np.asarray(rf.t, float),
                    np.asarray(rf.signal, complex),
                    float(centre),
                    frequency,
                    str(getattr(rf, "use", "undefined") or "undefined"),
                    float(rf.shape_dur),
                )
            )
            if len(rf_t) == 1:
                rf_duration = float(rf.shape_dur)
                magnitude = np.abs(rf.signal)
                rf_shape = "block" if np.allclose(magnitude, magnitude.max(), rtol=1e-3) else "sinc"
        if block.adc is not None:
            adc = block.adc
            n = int(adc.num_samples)
            adc_t.append(t0 + adc.delay + (np.arange(n) + 0.5) * adc.dwell)
            adc_obj.append(np.full(n, len(adc_phase)))
            adc_phase.append(float(adc.phase_offset))
            adc_nav.append(nav)
            dwell = dwell or float(adc.dwell)
        for axis, (t, g) in enumerate(_block_gradients(block, rotations.get(index))):
            if len(t):
                axes_t[axis].append(t + t0)
                axes_g[axis].append(g)
        t0 += float(seq.block_durations[index])
    grad = [
        (np.concatenate(ts) if ts else np.zeros(0), np.concatenate(gs) if gs else np.zeros(0))
        for ts, gs in zip(axes_t, axes_g, strict=True)
    ]
    return Timeline(
        np.array(rf_t),
        np.array(flip),
        np.array(phase),
        pulses,
        np.concatenate(adc_t) if adc_t else np.zeros(0),
        np.concatenate(adc_obj) if adc_obj else np.zeros(0, dtype=int),
        np.array(adc_phase),
        np.array(adc_nav, dtype=bool),
        grad,
        t0,
        rf_duration,
        rf_shape,
        dwell,
        soft_delays,
        triggers,
    )


def read_timeline(
    path: str | Path, limits: ImportLimits | None = None, field_strength: float = DEFAULT_FIELD_T
) -> Timeline:
    """The events of a file as played out (for the sequence diagram)."""
    seq, rotations, _ = _read(path, limits)
    return _timeline(seq, rotations, GAMMA_HZ_PER_T * field_strength * 1e-6)


def _per_block(events: dict[str, list[int]]) -> list[str]:
    """One report line per kind of event, with the blocks it occurs in."""
    lines = []
    for what, blocks in events.items():
        more = f" and {len(blocks) - 1} more" if len(blocks) > 1 else ""
        lines.append(f"block {blocks[0]}{more}: {what}")
    return lines


def _rf_uses(tl: Timeline, larmor_mhz: float, guess: bool) -> tuple[list[str], list[str]]:
    """Each pulse's use (guessed where the file has none) and a report line per guessed pulse."""
    stored = [p.use for p in tl.pulses]
    if not guess and "undefined" not in stored:
        return stored, []
    nxt = np.append(tl.rf_time[1:], np.inf)
    between = np.searchsorted(tl.adc_time, nxt, side="left") - np.searchsorted(
        tl.adc_time, tl.rf_time, side="right"
    )
    sampled = (between > 0).tolist()
    ppm = [p.frequency / larmor_mhz for p in tl.pulses]
    guessed = guess_rf_use(np.degrees(tl.rf_flip).tolist(), ppm, sampled)
    uses = [new if guess or use == "undefined" else use for use, new in zip(stored, guessed, strict=True)]
    counts: dict[str, int] = {}
    for use, old in zip(uses, stored, strict=True):
        if guess or old == "undefined":
            counts[use] = counts.get(use, 0) + 1
    found = ", ".join(f"{n} {use}" for use, n in counts.items())
    return uses, [f"RF use guessed from flip angle, frequency and position (the file stores none): {found}"]


# ---------------------------------------------------------------------------- events
#: Split import: the largest excess of a repetition's b over the waveform's, per second of
#: gradient (s/m^2 per s; 1e-2 s/mm^2 per s): ``D b`` is off by at most 3e-5 per second for CSF.
SPLIT_B_RATE = 1e4
#: Split import: a gradient corner closer than this (s) to an RF centre or ADC sample is merged
#: into it (their times are computed along different sums).
CORNER_MERGE_S = 1e-10


@dataclass
class Events:
    """The model's events from a timeline, ``[R, E]`` (moments ``[R, E, 3]`` in 1/m)."""

    duration: np.ndarray  # s
    moment: np.ndarray  # 1/m
    adc: np.ndarray  # bool: the event ends at an ADC sample
    b_excess: float  # s/m^2: the most the model's b exceeds the waveform's in one repetition


def _waveform_slope(tl: Timeline, t0: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Slope (Hz/m/s) ``[N, 3]`` of every axis on intervals ``[t0, t0 + h]`` holding no corner."""
    slopes = []
    for t, g in tl.grad:
        if len(t) < 2:
            slopes.append(np.zeros_like(t0))
            continue
        late = np.interp(t0 + 0.75 * h, t, g, left=0.0, right=0.0)
        early = np.interp(t0 + 0.25 * h, t, g, left=0.0, right=0.0)
        slopes.append((late - early) / (0.5 * h))
    return np.stack(slopes, axis=-1)


def _events(tl: Timeline, starts: np.ndarray, split: bool) -> Events:
    """Events of every repetition, from its start (RF centre) over its samples to its end.

    Joined (``split`` False): one event per interval between consecutive markers (RF centres, ADC
    samples), the waveform integrated exactly. Split: intervals also end at every gradient
    corner, so each axis is linear in time on each. A constant one is one event, which the
    diffusion model (a constant gradient per event) plays exactly. A sloped one of length ``h``
    is cut into ``n`` pieces of two events each, the first ending at the piece's midpoint with
    the area ``(8 A(mid) - A(start) - A(end)) / 6`` in place of ``A(mid)``: then the model's
    integral of ``k(t)`` over the piece equals the waveform's, so the cross term ``2 q . int k``
    of every state ``q`` is exact, and its integral of ``|k|^2`` exceeds the waveform's by
    ``|beta|^2 h^5 / (1080 n^4)`` (``beta``: 2 pi times the slope, rad/m/s^2) for every state;
    ``n`` is the smallest with this at most ``SPLIT_B_RATE * h``. Phases see only the ends of
    the pieces, where the areas are the waveform's; no sample ends at a midpoint. Events are
    in time order; repetitions with fewer are padded with empty events.
    """
    markers = np.unique(np.concatenate([starts, tl.adc_time, [tl.duration]]))
    if split:
        corners = np.unique(np.concatenate([t for t, _ in tl.grad]))
        corners = corners[(corners > starts[0]) & (corners < tl.duration)]
        at = np.clip(np.searchsorted(markers, corners), 1, len(markers) - 1)
        gap = np.minimum(corners - markers[at - 1], markers[at] - corners)
        markers = np.union1d(markers, corners[gap > CORNER_MERGE_S])
    t0, t1 = markers[:-1], markers[1:]
    h = t1 - t0
    if split:
        beta = 2 * math.pi * _waveform_slope(tl, t0, h)
        excess = (beta * beta).sum(-1) * h**5 / 1080  # of one piece (two events)
        sloped = excess > 0
        pieces = np.ceil((excess / (SPLIT_B_RATE * h)) ** 0.25).clip(1, None).astype(int)
        pieces = np.where(sloped, pieces, 0)
        excess = np.where(sloped, excess / np.maximum(pieces, 1) ** 4, 0.0)
    else:
        sloped, pieces, excess = np.zeros(len(h), bool), np.zeros(len(h), int), np.zeros(len(h))
    steps = np.where(sloped, 2 * pieces, 1)
    interval = np.repeat(np.arange(len(h)), steps)
    local = np.arange(len(interval)) - np.repeat(np.cumsum(steps) - steps, steps)
    last = local + 1 == steps[interval]
    half = h[interval] / steps[interval]
    t_end = np.where(last, t1[interval], t0[interval] + (local + 1) * half)

    def area(times: np.ndarray) -> np.ndarray:
        return np.stack([area_at(t, g, times) for t, g in tl.grad], axis=-1)

    a_end = area(t_end)
    middle = sloped[interval] & (local % 2 == 0)
    if middle.any():
        mid = np.flatnonzero(middle)
        around = area(t_end[mid] - half[mid]) + area(t_end[mid] + half[mid])
        a_end[mid] = (8 * a_end[mid] - around) / 6
    duration = np.diff(np.concatenate([[starts[0]], t_end]))
    moment = np.diff(np.concatenate([area(starts[:1]), a_end]), axis=0)
    adc = last & np.isin(t_end, tl.adc_time)
    if int(adc.sum()) != len(tl.adc_time):
        raise PulseqReadError(
            f"{len(tl.adc_time)} ADC samples fall on {int(adc.sum())} distinct times: samples overlap"
        )
    rep = np.searchsorted(starts, t0[interval], side="right") - 1
    counts = np.bincount(rep, minlength=len(starts))
    n_event = max(int(counts.max()), 1)
    pos = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
    shape = (len(starts), n_event)
    out_duration, out_moment, out_adc = np.zeros(shape), np.zeros((*shape, 3)), np.zeros(shape, bool)
    out_duration[rep, pos], out_moment[rep, pos], out_adc[rep, pos] = duration, moment, adc
    rep_excess = np.bincount(np.searchsorted(starts, t0, side="right") - 1, excess, minlength=len(starts))
    return Events(out_duration, out_moment, out_adc, float(rep_excess.max()))


# ---------------------------------------------------------------------------- the model
@dataclass
class ImportedSequence:
    """A file's sequence model and what the file says about itself (SI units)."""

    sequence: Sequence
    n_blocks: int
    duration: float  # s, whole file
    lead_in: float  # s of the file before the model's t = 0 (the first RF centre)
    definitions: dict
    rotated_blocks: int
    #: per repetition, the pulse that starts it as played out (None: the flip-0 noise repetition)
    pulses: list[RfPulse | None] = field(default_factory=list)
    #: per ADC sample (model order): False for navigator / phase-correction samples (NAV label)
    imaging: np.ndarray | None = None
    field_strength: float = DEFAULT_FIELD_T  # T, converts ppm offsets to Hz
    version: tuple[int, int, int] = (1, 5, 0)
    #: what the simulation does not do as the file says (guessed RF use, soft delays, triggers)
    notes: list[str] = field(default_factory=list)
    #: split import: the most the model's b exceeds the waveform's in a repetition (s/m^2, any state)
    b_excess: float | None = None

    @property
    def te(self) -> float:
        return echo_and_repetition_time(self.sequence, self.imaging)[0]

    @property
    def tr(self) -> float:
        return echo_and_repetition_time(self.sequence, self.imaging)[1]

    @property
    def rf_frequency(self) -> np.ndarray:
        """Frequency offset (Hz) of the pulse of every repetition (0 for the noise repetition)."""
        return np.array([p.frequency if p is not None else 0.0 for p in self.pulses])


def _matrix_from_k(k: np.ndarray) -> tuple[int, int, int]:
    """Nominal matrix per axis: the span of sampled k (cycles/FOV) plus one, at least 1."""
    if len(k) == 0:
        return (1, 1, 1)
    span = np.round(k.max(0) - k.min(0)).astype(int) + 1
    return tuple(int(max(1, s)) for s in span)  # type: ignore[return-value]


def _fov(
    definitions: dict, tl: Timeline, fov: tuple[float, float, float] | None
) -> tuple[float, float, float]:
    if fov is None and "FOV" not in definitions:
        if any(np.any(g != 0) for _, g in tl.grad):
            raise PulseqReadError(
                "the file defines no FOV; give one to import it (fov=(x, y, z) in m; --fov X Y Z in mm)"
            )
        fov = Sequence.__dataclass_fields__["fov"].default  # no gradients: the FOV is irrelevant
    if fov is None:
        fov = tuple(float(f) for f in np.atleast_1d(definitions["FOV"]))
        if len(fov) == 2:
            fov = (*fov, float(definitions.get("SliceThickness", 5e-3)))
    if len(fov) != 3 or any(f <= 0 for f in fov):
        raise PulseqReadError(f"FOV must be three positive lengths in metres, got {fov}")
    return fov  # type: ignore[return-value]


def to_sequence(
    seq: pp.Sequence,
    rotations: dict[int, np.ndarray] | None = None,
    fov: tuple[float, float, float] | None = None,
    name: str | None = None,
    field_strength: float = DEFAULT_FIELD_T,
    guess_use: bool = False,
    off_resonant_rf: bool = True,
    split_gradients: bool = False,
) -> ImportedSequence:
    """The sequence model of a pypulseq sequence (``n_blocks``/``duration`` filled in by the caller).

    ``guess_use``: guess every pulse's use (files before v1.5); pulses stored as ``undefined``
    are guessed anyway. ``off_resonant_rf``: play pulses with a spectral frequency offset out
    (:func:`_rf_offsets`); otherwise every pulse is an on-resonance rotation.
    ``split_gradients``: events at every gradient corner, so that diffusion is simulated right
    (:func:`_events`); otherwise one event per interval between markers, marked
    ``joined_gradients`` when the file has gradients (the engine then refuses to diffuse it).
    """
    definitions = seq.definitions
    larmor_mhz = GAMMA_HZ_PER_T * field_strength * 1e-6
    tl = _timeline(seq, rotations or {}, larmor_mhz)
    fov = _fov(definitions, tl, fov)
    uses, notes = _rf_uses(tl, larmor_mhz, guess_use) if tl.pulses else ([], [])
    excited = tl.rf_time
    starts = list(excited)
    flips, phases = list(tl.rf_flip), list(tl.rf_phase)
    kinds = [RF_KIND.get(u, EXCITATION) for u in uses]
    pulses: list[RfPulse | None] = list(tl.pulses)
    lead_in = float(excited[0]) if len(excited) else 0.0
    if len(excited) == 0 or (len(tl.adc_time) and tl.adc_time[0] < excited[0]):
        starts.insert(0, 0.0)
        flips.insert(0, 0.0)
        phases.insert(0, 0.0)
        kinds.insert(0, EXCITATION)
        pulses.insert(0, None)
        lead_in = 0.0
    starts_a = np.array(starts)
    ev = _events(tl, starts_a, split_gradients)
    duration, moment, adc = ev.duration, ev.moment, ev.adc
    n_rep = len(starts_a)
    for axis in range(3):
        moment[..., axis] = per_m_to_cycles_per_fov(moment[..., axis], fov[axis])
    counts = adc.sum(1)
    first_obj = np.zeros(n_rep, dtype=int)
    sample_rep_first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    first_obj[has] = tl.adc_object[sample_rep_first[has]]
    adc_phase = np.where(has, tl.adc_phase[first_obj] if len(tl.adc_phase) else 0.0, 0.0)
    hints = ExportHints(
        rf_duration=tl.rf_duration,
        rf_shape=tl.rf_shape,
        slice_thickness=float(definitions.get("SliceThickness", fov[2])),
        readout_dwell=tl.dwell or 80e-6,
    )
    model = Sequence(
        flip=torch.tensor(flips, dtype=torch.float32),
        rf_phase=torch.tensor(phases, dtype=torch.float32),
        duration=torch.tensor(duration, dtype=torch.float32),
        moment=torch.tensor(moment, dtype=torch.float32),
        adc=torch.tensor(adc),
        adc_phase=torch.tensor(adc_phase, dtype=torch.float32),
        rf_kind=torch.tensor(kinds, dtype=torch.int64),
        fov=tuple(fov),  # type: ignore[arg-type]
        name=name or str(definitions.get("Name", "imported")),
        hints=hints,
        joined_gradients=not split_gradients and any(bool(np.any(g != 0)) for _, g in tl.grad),
    )
    if off_resonant_rf:
        model.rf_offsets, offset_notes = _rf_offsets(tl, pulses, starts_a)
        notes += offset_notes
    imaging = ~tl.adc_nav[tl.adc_object] if len(tl.adc_time) else np.zeros(0, dtype=bool)
    model.matrix = _matrix_from_k(model.trajectory().double().numpy()[imaging])
    if tl.adc_nav.any():
        notes.append(
            f"{int(tl.adc_nav.sum())} ADC event(s) acquired with the NAV label: left out of TE and the matrix"
        )
    if split_gradients:
        notes.append(
            f"gradients split at their corners into {model.n_event} events per repetition for diffusion: "
            f"b of every state within {1e-6 * ev.b_excess:.1e} s/mm^2 of the waveform's per repetition"
        )
    return ImportedSequence(
        model,
        len(seq.block_events),
        tl.duration,
        lead_in,
        dict(definitions),
        len(rotations or {}),
        pulses,
        imaging,
        field_strength,
        notes=notes + _per_block(tl.soft_delays) + _per_block(tl.triggers),
        b_excess=ev.b_excess if split_gradients else None,
    )


#: Mean gradient (Hz/m, about 0.02 mT/m) above which a pulse counts as slice selective.
SELECTIVE_HZ_PER_M = 1e3
#: Steps in which a pulse played out at each voxel's off-resonance is integrated.
RF_STEPS = 64


def _rf_offsets(
    tl: Timeline, pulses: list[RfPulse | None], centres: np.ndarray
) -> tuple[RfOffsets | None, list[str]]:
    """The model's ``rf_offsets`` for the pulses of every repetition, and what was decided.

    A pulse played with a gradient is slice selective: its frequency offset moves the slice
    (position ``f / G``), which the 2D phantom stands for, so it stays on resonance. A pulse
    without a gradient (fat saturation, spectral or non-selective pulses) keeps its offset and
    its shape, integrated in ``RF_STEPS`` steps at each voxel's off-resonance (referenced to the
    middle of the shape). None when no pulse is off resonance: pulses stay instantaneous, as
    without a file.
    """
    frequency, duration, slices = [], [], []
    shapes = np.full((len(pulses), RF_STEPS), 1.0 / RF_STEPS, dtype=complex)
    for r, (pulse, centre) in enumerate(zip(pulses, centres, strict=True)):
        if pulse is None or abs(pulse.frequency) < 1e-6:
            frequency.append(0.0)
            duration.append(0.0)
            continue
        start = centre - pulse.center
        span = np.array([start + pulse.t[0], start + pulse.t[-1]])
        mean_g = np.array([np.diff(area_at(t, g, span))[0] for t, g in tl.grad]) / max(np.ptp(span), 1e-9)
        strength = float(np.linalg.norm(mean_g))
        if strength > SELECTIVE_HZ_PER_M:
            slices.append(1e3 * pulse.frequency / strength)
            frequency.append(0.0)
            duration.append(0.0)
            continue
        frequency.append(pulse.frequency)
        duration.append(pulse.duration)
        shapes[r] = pulse.step_weights(RF_STEPS)
    notes = []
    if slices:
        notes.append(
            f"{len(slices)} slice-selective pulse(s) off the isocentre (slices at "
            f"{min(slices):+.1f}..{max(slices):+.1f} mm): each excites the phantom's slice"
        )
    spectral = [f for f in frequency if f]
    if not spectral:
        return None, notes
    notes.append(
        f"{len(spectral)} pulse(s) without gradient off resonance ({min(spectral):+.1f}.."
        f"{max(spectral):+.1f} Hz): played out in {RF_STEPS} steps at each voxel's off-resonance"
    )
    offsets = RfOffsets(
        torch.tensor(frequency, dtype=torch.float32),
        torch.tensor(duration, dtype=torch.float32),
        torch.tensor(shapes, dtype=torch.complex64),
    )
    return offsets, notes


def import_seq(
    path: str | Path,
    fov: tuple[float, float, float] | None = None,
    limits: ImportLimits | None = None,
    field_strength: float | None = None,
    off_resonant_rf: bool = True,
    split_gradients: bool = False,
) -> ImportedSequence:
    """Read a ``.seq`` file (Pulseq 1.2 to 1.5, plus v1.5.1 ROTATIONS); see the module docstring.

    ``limits``: refuse larger files (:class:`ImportLimits`); ``field_strength`` (T): converts the
    ppm offsets of pulses, default the file's ``B0`` definition, else 3 T; ``off_resonant_rf``:
    play pulses without gradient at their frequency offset (False: all on resonance);
    ``split_gradients``: one event per linear piece of the gradients, for diffusion (more events).
    """
    seq, rotations, facts = _read(path, limits)
    if field_strength is None:
        field_strength = float(seq.definitions.get("B0", DEFAULT_FIELD_T))
    try:
        imported = to_sequence(
            seq,
            rotations,
            fov=fov,
            name=Path(path).stem,
            field_strength=field_strength,
            guess_use=facts.version < (1, 5, 0),
            off_resonant_rf=off_resonant_rf,
            split_gradients=split_gradients,
        )
    except PulseqReadError as err:
        raise PulseqReadError(f"{path}: {err}") from err
    imported.version = facts.version
    for note in imported.notes:
        log.info("%s: %s", Path(path).name, note)
    if log.isEnabledFor(logging.INFO):
        log.info(
            "imported %s: %d blocks, %.4f s -> %s",
            Path(path).name,
            imported.n_blocks,
            imported.duration,
            imported.sequence.summary(),
        )
    return imported


def echo_and_repetition_time(seq: Sequence, imaging: np.ndarray | None = None) -> tuple[float, float]:
    """TE and TR (s) the way Pulseq's test report defines them.

    TE: from the last excitation to the echo (the first sample nearest k = 0, interpolated towards
    the neighbour that brackets k = 0), among the ``imaging`` samples (default all; navigators
    excluded by the import). TR: between the excitations around the echo.
    """
    flips = seq.flip.detach().cpu().numpy()
    kinds = seq.rf_kind.cpu().numpy()
    rep_start = np.concatenate([[0.0], np.cumsum(seq.duration.detach().cpu().double().sum(1).numpy())[:-1]])
    excitation = rep_start[(flips != 0) & (kinds == EXCITATION)]
    times = seq.sample_times().detach().cpu().double().numpy()
    k = seq.trajectory().detach().cpu().double().numpy() / np.array(seq.fov)  # 1/m, as Pulseq measures
    if len(excitation) == 0 or len(times) == 0:
        return math.nan, float(seq.total_duration())
    keep = times > excitation[0]
    if imaging is not None and len(imaging) == len(keep) and bool((keep & imaging).any()):
        keep = keep & imaging
    times, k = times[keep], k[keep]
    norm = np.linalg.norm(k, axis=1)
    # the first crossing of the centre: in a multi-echo readout every echo passes k = 0, and the
    # file's rounded gradient areas leave each echo a different residual far below one k-space
    # step (1/FOV); TE is the first echo's, as the scanner reports TE1
    i = int(np.argmax(norm <= norm.min() + 1e-3 / max(seq.fov)))
    t_echo = times[i]
    for j in (i - 1, i + 1):
        if 0 <= j < len(k) and norm[i] > 1e-9:
            step = k[j] - k[i]
            p = float(-k[i] @ step / max(step @ step, 1e-30))
            if p > 0:
                t_echo = times[i] * (1 - p) + times[j] * p
    before = excitation[excitation < t_echo]
    after = excitation[excitation > t_echo]
    te = t_echo - before[-1]
    if len(excitation) < 2:
        tr = float(seq.total_duration())
    elif len(after):
        tr = after[0] - before[-1]
    else:
        tr = before[-1] - before[-2]
    return float(te), float(tr)
