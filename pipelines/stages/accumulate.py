"""Accumulating readout lines into zero-filled k-space buffers, one per image.

Lines are grouped by encoding and the counters ``IMAGE_COUNTERS`` (slice, contrast, phase,
repetition, set) and placed in a zero-filled k-space of ``Geometry.kspace_matrix``:

* along x by the echo centre: sample ``center_sample`` lands at ``nx // 2`` (asymmetric echo);
* along y/z by ``kspace_encode_step_1/2`` relative to the header's k-space centre
  (``encodingLimits``), which lands at ``ny // 2`` (partial Fourier is placement plus zeros);
* lines measured more than once (averages) are averaged.

A buffer is emitted (``ReconBuffer``) when its last line carries ``ACQ_LAST_IN_SLICE``; all
open buffers are emitted on ``ACQ_LAST_IN_REPETITION``/``ACQ_LAST_IN_MEASUREMENT``, when the
trigger counter changes (JSON parameter ``"trigger"``: a counter name, default
``"repetition"``, or ``"none"``), and at the end of the stream. The geometry comes from the
line nearest the k-space centre.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import ismrmrd
import torch

from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.mrd_header import HeaderError, geometry
from mrzero.pipelines.stages.acquisitions import describe
from mrzero.pipelines.stages.buffer import IMAGE_COUNTERS, ReconBuffer
from mrzero.pipelines.stages.oversampling import centred_readout

_FLUSH_ALL_FLAGS = (ismrmrd.ACQ_LAST_IN_REPETITION, ismrmrd.ACQ_LAST_IN_MEASUREMENT)


@dataclass
class _OpenBuffer:
    data: torch.Tensor  # [coil, kz, ky, kx] sum of lines
    count: torch.Tensor  # [kz, ky] lines added per position
    reference: ismrmrd.AcquisitionHeader
    distance: int  # of the reference line from the k-space centre
    key: tuple[int, ...]
    encoding: int

    def emit(self) -> ReconBuffer:
        data = self.data / self.count.clamp_min(1).to(self.data.dtype).unsqueeze(-1)
        return ReconBuffer(data, self.reference, self.key, self.encoding)


def trigger_counter(ctx: Context) -> str | None:
    """The counter whose change emits all open buffers, from the ``"trigger"`` parameter."""
    name = ctx.params.trigger
    return None if name == "none" else name


def accumulate_stage(items: Iterable[ismrmrd.Acquisition], ctx: Context) -> Iterator[ReconBuffer]:
    trigger = trigger_counter(ctx)
    buffers: dict[tuple[int, ...], _OpenBuffer] = {}
    last_value: int | None = None
    for acq in items:
        if trigger is not None:
            value = getattr(acq.idx, trigger)
            if last_value is not None and value != last_value:
                yield from _flush(buffers, list(buffers))
            last_value = value
        key = _add_line(buffers, acq, ctx)
        if any(acq.is_flag_set(flag) for flag in _FLUSH_ALL_FLAGS):
            yield from _flush(buffers, list(buffers))
        elif acq.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE):
            yield from _flush(buffers, [key])
    yield from _flush(buffers, list(buffers))


def _flush(buffers: dict[tuple[int, ...], _OpenBuffer], keys: list[tuple[int, ...]]) -> Iterator[ReconBuffer]:
    for key in keys:
        yield buffers.pop(key).emit()


def _add_line(buffers: dict[tuple[int, ...], _OpenBuffer], acq: ismrmrd.Acquisition, ctx: Context) -> tuple:
    enc = acq.encoding_space_ref
    try:
        geo = geometry(ctx.header, enc)
    except HeaderError as err:
        raise PipelineError(str(err)) from err
    nx, ny, nz = geo.kspace_matrix
    counters = tuple(int(getattr(acq.idx, name)) for name in IMAGE_COUNTERS)
    key = (enc, *counters)
    e1, e2 = acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2
    ky, kz = e1 - geo.center_e1 + ny // 2, e2 - geo.center_e2 + nz // 2
    if not (0 <= ky < ny and 0 <= kz < nz):
        raise PipelineError(f"{describe(acq)}: encode steps ({e1}, {e2}) fall outside the header's "
                            f"matrix {ny} x {nz} with centre ({geo.center_e1}, {geo.center_e2})")
    line = centred_readout(acq, nx)
    distance = abs(e1 - geo.center_e1) + abs(e2 - geo.center_e2)
    buf = buffers.get(key)
    if buf is None:
        buf = _OpenBuffer(torch.zeros(line.shape[0], nz, ny, nx, dtype=torch.complex64),
                          torch.zeros(nz, ny, dtype=torch.int32), acq.getHead(), distance, counters, enc)
        buffers[key] = buf
    elif line.shape[0] != buf.data.shape[0]:
        raise PipelineError(f"{describe(acq)} has {line.shape[0]} coils, "
                            f"earlier lines had {buf.data.shape[0]}")
    elif distance < buf.distance:
        buf.reference, buf.distance = acq.getHead(), distance
    buf.data[:, kz, ky] += line
    buf.count[kz, ky] += 1
    return key
