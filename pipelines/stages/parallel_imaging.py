"""Parallel imaging stage: calibrate on ACS blocks as they arrive, unfold every accelerated image.

Consumes the ``CalibrationBuffer`` and ``ReconBuffer`` items of
``calibrating_accumulate_stage`` and yields ``ReconBuffer`` items whose k-space is filled inside
the measured box (``pipelines/stages/sampling.py``), or, with SENSE, one combined image:

* a ``CalibrationBuffer`` is calibrated at once (GRAPPA kernel, ``mrzero.core.ops.grappa``, or
  ESPIRiT maps, ``mrzero.core.ops.sense``), with its coil-compression matrix when
  ``coil_compression`` is set; it replaces the earlier calibration of its key;
* an accelerated image is unfolded with the calibration of its key (slice, contrast, phase,
  set), or else the latest calibration of its slice; under interleaved calibration an image that
  arrives before its calibration waits for it;
* an image of an unaccelerated encoding passes (coil-compressed if asked) unless lines are
  missing inside its measured box: undersampled data without a ``parallelImaging`` block are
  refused, a few missing lines are logged.

JSON parameters (``pipelines/cartesian_parameters.py``): ``parallel_imaging`` (``grappa``,
``sense``, ``none``), ``coil_compression``, ``grappa_kernel``, ``grappa_regularization``,
``sense_iterations``, ``sense_regularization``; when the ACS block is too small for the GRAPPA
kernel asked for, a smaller kernel (``FALLBACK_KERNELS``) is calibrated and a warning logged. What
cannot be unfolded correctly (no calibration for an image, too few ACS lines even for the
smallest kernel, a sampling that does not match the header's acceleration) is a
``PipelineError`` that says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from mrzero.core.ops.coil_compression import compress, compression_matrix
from mrzero.core.ops.grappa import GrappaKernel, grappa_apply, grappa_calibrate
from mrzero.core.ops.sense import estimate_sensitivities, sense_reconstruct
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.cartesian_parameters import ReconstructionParameters, reconstruction_parameters
from mrzero.pipelines.scan_plan import EncodingPlan, scan_plan
from mrzero.pipelines.stages.buffer import IMAGE_COUNTERS, CalibrationBuffer, ReconBuffer
from mrzero.pipelines.stages.calibration import buffer_counters, calibration_key
from mrzero.pipelines.stages.sampling import holes, sampled_box

#: Fraction of missing lines (central row/column of the measured box) above which an image of an
#: unaccelerated encoding is refused as undersampled.
UNDERSAMPLED_FRACTION = 0.1
#: Smaller GRAPPA kernels (readout points, ky blocks) tried, in order, when the ACS block is too
#: small for the one asked for.
FALLBACK_KERNELS = ((5, 2), (3, 2))


@dataclass
class _Calibration:
    """What one calibration block gives: the coil count it was measured with, the compression
    matrix (if any), and the GRAPPA kernel or the ESPIRiT maps."""

    coils: int
    matrix: torch.Tensor | None = None
    kernel: GrappaKernel | None = None
    maps: torch.Tensor | None = None


def image_name(buf: ReconBuffer) -> str:
    """``image (slice 0, contrast 1, ...)`` for messages; counters that are 0 are left out."""
    parts = [f"{n} {v}" for n, v in zip(IMAGE_COUNTERS, buf.key, strict=True) if v]
    return f"the image of encoding {buf.encoding}" + (f" ({', '.join(parts)})" if parts else "")


def _centred(block: torch.Tensor, origin: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
    """The part of an ACS block symmetric about the k-space centre (its ``n // 2`` is k = 0)."""
    for axis, (start, n) in zip((1, 2), zip(origin, shape, strict=True), strict=True):
        size = block.shape[axis]
        below, above = n // 2 - start, start + size - n // 2
        half = min(below, above)
        if n == 1 or half < 1:
            continue
        block = block.narrow(axis, n // 2 - half - start, 2 * half)
    return block


class _ParallelImaging:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.params: ReconstructionParameters = reconstruction_parameters(ctx)
        self.plan = scan_plan(ctx.header)
        self.calibrations: dict[tuple[int, ...], _Calibration] = {}
        self.by_slice: dict[tuple[int, int], _Calibration] = {}
        self.pending: dict[tuple[int, ...], list[ReconBuffer]] = {}
        self.warned_holes = False

    def run(self, items: Iterable[ReconBuffer | CalibrationBuffer]) -> Iterator[ReconBuffer]:
        for item in items:
            if isinstance(item, CalibrationBuffer):
                enc = self.plan.encoding(item.encoding)
                if not enc.accelerated:
                    continue  # calibration lines of an unaccelerated scan: nothing to unfold
                cal = self._calibrate(item, enc)
                self.calibrations[item.key] = cal
                self.by_slice[(item.key[0], item.key[1])] = cal
                for buf in self.pending.pop(item.key, []):
                    yield self._unfold(buf, enc, cal)
                continue
            if not isinstance(item, ReconBuffer):
                yield item
                continue
            enc = self.plan.encoding(item.encoding)
            if not enc.accelerated:
                yield self._unaccelerated(item, enc)
                continue
            box = sampled_box(item, enc)
            if item.sampled is not None and bool(item.sampled[box.lines()].all()):
                self.ctx.logger.info("%s is fully sampled inside its box: no unfolding", image_name(item))
                yield self._compressed(item)
                continue
            key = calibration_key(enc, buffer_counters(item))
            cal = self.calibrations.get(key) or self.by_slice.get((key[0], key[1]))
            if cal is None and enc.calibration_mode == "interleaved":
                self.pending.setdefault(key, []).append(item)
                continue
            if cal is None:
                raise PipelineError(self._no_calibration(item, enc))
            yield self._unfold(item, enc, cal)
        for waiting in self.pending.values():
            raise PipelineError(self._no_calibration(waiting[0], self.plan.encoding(waiting[0].encoding)))

    def _no_calibration(self, buf: ReconBuffer, enc: EncodingPlan) -> str:
        mode = enc.calibration_mode or "not stated"
        how = (
            "the interleaved images never filled the centre of k-space"
            if enc.calibration_mode == "interleaved"
            else "no lines flagged ACQ_IS_PARALLEL_CALIBRATION(_AND_IMAGING) for its slice"
        )
        return (
            f"{image_name(buf)} is undersampled (R = {enc.accel[0]} x {enc.accel[1]}) and has no usable "
            f"calibration data (calibration mode {mode}: {how}); it cannot be unfolded"
        )

    # -- calibration -------------------------------------------------------------------------
    def _calibrate(self, block: CalibrationBuffer, enc: EncodingPlan) -> _Calibration:
        start = time.perf_counter()
        acs = block.data
        cal = _Calibration(acs.shape[0])
        where = f"slice {block.key[1]} of encoding {block.encoding}"
        if self.params.coil_compression and self.params.coil_compression < acs.shape[0]:
            try:
                cal.matrix = compression_matrix(acs, self.params.coil_compression)
            except ValueError as err:
                raise PipelineError(f"coil compression for {where}: {err}") from err
            acs = compress(acs, cal.matrix)
        try:
            if self.params.parallel_imaging == "sense":
                nx, ny, nz = enc.geometry.kspace_matrix
                centred = _centred(acs, block.origin, (nz, ny))
                cal.maps = estimate_sensitivities(centred, (nz, ny, nx))
            else:
                cal.kernel = self._grappa(acs, enc, where)
        except ValueError as err:
            raise PipelineError(
                f"{self.params.parallel_imaging.upper()} calibration for {where} from "
                f"{acs.shape[1]} x {acs.shape[2]} (kz x ky) ACS lines failed: {err}"
            ) from err
        self.ctx.logger.info(
            "%s calibrated for %s from %d x %d x %d ACS (%s, %d coils) in %.3f s",
            self.params.parallel_imaging.upper(),
            where,
            *acs.shape[1:],
            block.source,
            acs.shape[0],
            time.perf_counter() - start,
        )
        return cal

    def _grappa(self, acs: torch.Tensor, enc: EncodingPlan, where: str) -> GrappaKernel:
        """The kernel of the ``grappa_kernel`` size, or, when the ACS block is too small for it,
        of the largest of ``FALLBACK_KERNELS`` that it fits (logged)."""
        wanted = tuple(self.params.grappa_kernel)
        sizes = [wanted] + [
            k for k in FALLBACK_KERNELS if k[0] <= wanted[0] and k[1] <= wanted[1] and k != wanted
        ]
        for i, size in enumerate(sizes):
            try:
                kernel = grappa_calibrate(acs, enc.accel, size, self.params.grappa_regularization)
            except ValueError as err:
                if "too few" not in str(err) or i == len(sizes) - 1:
                    raise
                continue
            if size != wanted:
                self.ctx.logger.warning(
                    "GRAPPA for %s: %d ACS lines are too few for the %d x %d kernel; "
                    "calibrated a %d x %d kernel",
                    where,
                    acs.shape[2],
                    *wanted,
                    *size,
                )
            return kernel
        raise AssertionError("unreachable")

    # -- images ------------------------------------------------------------------------------
    def _compressed(self, buf: ReconBuffer, matrix: torch.Tensor | None = None) -> ReconBuffer:
        n = self.params.coil_compression
        if not n or n >= buf.data.shape[0]:
            return buf
        if matrix is None:
            try:
                matrix = compression_matrix(buf.data, n)
            except ValueError as err:
                raise PipelineError(f"coil compression of {image_name(buf)}: {err}") from err
        return buf.with_data(compress(buf.data, matrix))

    def _unaccelerated(self, buf: ReconBuffer, enc: EncodingPlan) -> ReconBuffer:
        if buf.sampled is not None:
            box = sampled_box(buf, enc)
            missing, total = holes(buf.sampled, box)
            if total and missing / total > UNDERSAMPLED_FRACTION:
                raise PipelineError(
                    f"{image_name(buf)} is undersampled ({missing} of {total} lines missing inside the "
                    "measured k-space) but the header declares no acceleration "
                    "(parallelImaging/accelerationFactor); zero-filling would fold the image"
                )
            if missing and not self.warned_holes:
                self.warned_holes = True
                self.ctx.logger.warning(
                    "%s: %d of %d lines missing inside the measured k-space; zero-filled",
                    image_name(buf),
                    missing,
                    total,
                )
        return self._compressed(buf)

    def _unfold(self, buf: ReconBuffer, enc: EncodingPlan, cal: _Calibration) -> ReconBuffer:
        if self.params.parallel_imaging == "none":  # refused at the start already; kept as a guard
            raise PipelineError(f"{image_name(buf)} is accelerated and parallel_imaging is 'none'")
        if buf.data.shape[0] != cal.coils:
            raise PipelineError(
                f"{image_name(buf)} has {buf.data.shape[0]} coils, its calibration data had {cal.coils}"
            )
        start = time.perf_counter()
        data = compress(buf.data, cal.matrix) if cal.matrix is not None else buf.data
        box = sampled_box(buf, enc)
        try:
            if cal.maps is not None:
                image = sense_reconstruct(
                    data,
                    buf.sampled,
                    cal.maps,
                    self.params.sense_iterations,
                    self.params.sense_regularization,
                )
                out = buf.with_data(
                    image, combined=True, sampled=box.lines(), history=(*buf.history, "SENSE")
                )
            else:
                filled = grappa_apply(cal.kernel, data, buf.sampled)
                inside = box.lines()
                filled = filled * inside[None, :, :, None].to(filled.dtype)
                out = buf.with_data(filled, sampled=inside, history=(*buf.history, "GRAPPA"))
        except ValueError as err:
            raise PipelineError(f"{image_name(buf)}: {err}") from err
        self.ctx.logger.info(
            "%s unfolded (%s) in %.3f s",
            image_name(buf),
            self.params.parallel_imaging,
            time.perf_counter() - start,
        )
        return out


def parallel_imaging_stage(
    items: Iterable[ReconBuffer | CalibrationBuffer], ctx: Context
) -> Iterator[ReconBuffer]:
    yield from _ParallelImaging(ctx).run(items)
