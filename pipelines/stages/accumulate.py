"""Accumulating readout lines into zero-filled k-space buffers, one per image.

Lines are grouped by encoding and the counters ``IMAGE_COUNTERS`` (slice, contrast, phase,
repetition, set) and placed in a zero-filled k-space of ``Geometry.kspace_matrix``:

* along x by the echo centre: sample ``center_sample`` lands at ``nx // 2`` (asymmetric echo;
  the measured samples are remembered as the buffer's ``kx_extent``);
* along y/z by ``kspace_encode_step_1/2`` relative to the header's k-space centre
  (``encodingLimits``), which lands at ``ny // 2`` / ``nz // 2``; the measured lines are the
  buffer's ``sampled`` mask ``[kz, ky]`` (parallel imaging and partial Fourier fill the rest);
* lines measured more than once (averages) are averaged.

When are images emitted? Every open image on ``ACQ_LAST_IN_REPETITION`` /
``ACQ_LAST_IN_MEASUREMENT``, when the trigger counter changes (JSON parameter ``"trigger"``: a
counter name, default ``"repetition"``, or ``"none"``), and at the end of the stream. The
image of a line flagged ``ACQ_LAST_IN_SLICE`` (2D encodings), once the header's last average is
reached (a scan with averages sets the flag at the end of every average), together with the
open images of the same slice and repetition (other contrasts, phases, sets) that hold all its
lines: scanners flag only the last echo's last line, other writers each echo's last line. 3D
encodings ignore ``ACQ_LAST_IN_SLICE`` (converters set it per partition or per slab). A line for
an image that was already emitted is an error (the image would have been split silently). The
geometry comes from the line nearest the k-space centre.

``calibrating_accumulate_stage`` (the ``cartesian`` chain) also collects the parallel-imaging
calibration lines (``pipelines/stages/calibration.py``) and yields ``CalibrationBuffer`` items
as soon as they are complete; lines flagged as calibration only are then kept out of the images
of a *separate* (or external) calibration, whose reference scan may have another contrast.
``accumulate_stage`` puts every line into the images and yields only ``ReconBuffer`` items; it
refuses accelerated encodings (a chain without the parallel-imaging stage would fold them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import ismrmrd
import torch

from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.scan_plan import EncodingPlan, ScanPlan, scan_plan
from mrzero.pipelines.stages.acquisitions import describe
from mrzero.pipelines.stages.buffer import IMAGE_COUNTERS, CalibrationBuffer, ReconBuffer
from mrzero.pipelines.stages.calibration import CalibrationCollector, is_calibration_only
from mrzero.pipelines.stages.oversampling import centred_readout

_FLUSH_ALL_FLAGS = (ismrmrd.ACQ_LAST_IN_REPETITION, ismrmrd.ACQ_LAST_IN_MEASUREMENT)
#: Calibration modes whose calibration-only lines stay out of the images.
SEPARATE_MODES = ("separate", "external")


@dataclass
class _OpenBuffer:
    data: torch.Tensor  # [coil, kz, ky, kx] sum of lines
    count: torch.Tensor  # [kz, ky] lines added per position
    reference: ismrmrd.AcquisitionHeader
    distance: int  # of the reference line from the k-space centre
    key: tuple[int, ...]
    encoding: int
    kx_extent: tuple[int, int]

    def emit(self) -> ReconBuffer:
        data = self.data / self.count.clamp_min(1).to(self.data.dtype)[None, :, :, None]
        return ReconBuffer(
            data, self.reference, self.key, self.encoding, sampled=self.count > 0, kx_extent=self.kx_extent
        )


def trigger_counter(ctx: Context) -> str | None:
    """The counter whose change emits all open buffers, from the ``"trigger"`` parameter."""
    name = ctx.params.trigger
    return None if name == "none" else name


def accumulate_stage(items: Iterable[ismrmrd.Acquisition], ctx: Context) -> Iterator[ReconBuffer]:
    """Every line into the images; ``ReconBuffer`` items only. For chains without a parallel-imaging
    stage: an accelerated encoding is refused (its images would be folded)."""
    accumulator = _Accumulator(ctx, calibration=False)
    for enc in accumulator.plan.encodings:
        if enc.accelerated:
            name = f"pipeline {ctx.pipeline_name!r}" if ctx.pipeline_name else "this pipeline"
            raise PipelineError(
                f"encoding {enc.index} is accelerated (R = {enc.accel[0]} x {enc.accel[1]}) and "
                f"the {name} has no parallel-imaging stage; its images would be folded "
                "(the cartesian pipeline unfolds them)"
            )
    yield from accumulator.run(items)


def calibrating_accumulate_stage(
    items: Iterable[ismrmrd.Acquisition], ctx: Context
) -> Iterator[ReconBuffer | CalibrationBuffer]:
    """Images and, as soon as they are complete, calibration blocks."""
    yield from _Accumulator(ctx, calibration=True).run(items)


def _emission_key(key: tuple[int, ...]) -> tuple[int, int, int]:
    """(encoding, slice, repetition) of an image key: what ``ACQ_LAST_IN_SLICE`` ends."""
    return key[0], key[1 + IMAGE_COUNTERS.index("slice")], key[1 + IMAGE_COUNTERS.index("repetition")]


class _Accumulator:
    def __init__(self, ctx: Context, calibration: bool):
        self.ctx = ctx
        self.trigger = trigger_counter(ctx)
        self.plan: ScanPlan = scan_plan(ctx.header)
        self.buffers: dict[tuple[int, ...], _OpenBuffer] = {}
        self.emitted: set[tuple[int, ...]] = set()
        self.calibration = CalibrationCollector(ctx.logger) if calibration else None

    def run(self, items: Iterable[ismrmrd.Acquisition]) -> Iterator[ReconBuffer | CalibrationBuffer]:
        last_value: int | None = None
        for acq in items:
            if self.trigger is not None:
                value = getattr(acq.idx, self.trigger)
                if last_value is not None and value != last_value:
                    yield from self._flush(list(self.buffers))
                last_value = value
            enc = self.plan.encoding(acq.encoding_space_ref)
            key = yield from self._add_line(acq, enc)
            if any(acq.is_flag_set(flag) for flag in _FLUSH_ALL_FLAGS):
                yield from self._flush(list(self.buffers))
            elif key is not None and self._ends_slice(acq, enc):
                yield from self._flush(self._slice_images(key))
        yield from self._flush(list(self.buffers))

    def _slice_images(self, key: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The image ``key`` and the open images of the same slice and repetition (other contrasts,
        phases, sets) that hold every line it holds: the flag ends those too (a scanner flags the
        last line of the last echo only), but not an image still missing lines (the flag then
        marks the end of each echo's image)."""
        lines = self.buffers[key].count > 0
        ends = _emission_key(key)
        return [key] + [
            k
            for k, buf in self.buffers.items()
            if k != key and _emission_key(k) == ends and bool((buf.count > 0)[lines].all())
        ]

    def _ends_slice(self, acq: ismrmrd.Acquisition, enc: EncodingPlan) -> bool:
        if not acq.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE) or enc.is_3d:
            return False
        averages = enc.limits.get("average")
        return averages is None or acq.idx.average >= averages.maximum

    def _flush(self, keys: list[tuple[int, ...]]) -> Iterator[ReconBuffer | CalibrationBuffer]:
        for key in keys:
            buf = self.buffers.pop(key).emit()
            self.emitted.add(key)
            if self.calibration is not None:
                yield from self.calibration.before_image(buf, self.plan.encoding(buf.encoding))
            yield buf

    def _add_line(self, acq: ismrmrd.Acquisition, enc: EncodingPlan):
        """Place ``acq``; returns its image key (None when it is calibration data only)."""
        geo = enc.geometry
        nx, ny, nz = geo.kspace_matrix
        e1, e2 = acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2
        ky, kz = e1 - geo.center_e1 + ny // 2, e2 - geo.center_e2 + nz // 2
        if not (0 <= ky < ny and 0 <= kz < nz):
            raise PipelineError(
                f"{describe(acq)}: encode steps ({e1}, {e2}) fall outside the header's "
                f"matrix {ny} x {nz} with centre ({geo.center_e1}, {geo.center_e2})"
            )
        line = centred_readout(acq, nx)
        if self.calibration is not None:
            yield from self.calibration.line(acq, enc, line, kz, ky, (nz, ny, nx))
            if is_calibration_only(acq) and enc.calibration_mode in SEPARATE_MODES:
                return None
        counters = tuple(int(getattr(acq.idx, name)) for name in IMAGE_COUNTERS)
        key = (enc.index, *counters)
        if key in self.emitted:
            raise PipelineError(
                f"{describe(acq)} belongs to the image of encoding {enc.index}, "
                + ", ".join(f"{n} {v}" for n, v in zip(IMAGE_COUNTERS, counters, strict=True))
                + ", which was already emitted (its ACQ_LAST_IN_SLICE/ACQ_LAST_IN_REPETITION flag or "
                f"the {self.trigger or 'end'} trigger came before all its lines); the image would be split"
            )
        start = nx // 2 - (acq.center_sample - acq.discard_pre)
        stop = start + acq.number_of_samples - acq.discard_pre - acq.discard_post
        distance = abs(e1 - geo.center_e1) + abs(e2 - geo.center_e2)
        buf = self.buffers.get(key)
        if buf is None:
            buf = _OpenBuffer(
                torch.zeros(line.shape[0], nz, ny, nx, dtype=torch.complex64),
                torch.zeros(nz, ny, dtype=torch.int32),
                acq.getHead(),
                distance,
                key[1:],
                enc.index,
                (start, stop),
            )
            self.buffers[key] = buf
        elif line.shape[0] != buf.data.shape[0]:
            raise PipelineError(
                f"{describe(acq)} has {line.shape[0]} coils, earlier lines had {buf.data.shape[0]}"
            )
        else:
            buf.kx_extent = (min(buf.kx_extent[0], start), max(buf.kx_extent[1], stop))
            if distance < buf.distance:
                buf.reference, buf.distance = acq.getHead(), distance
        buf.data[:, kz, ky] += line
        buf.count[kz, ky] += 1
        return key
