"""Cropping stage: the combined image ``[z, y, x]`` to the header's recon matrix (centred)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mrzero.core.ops.oversampling import crop_center
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.mrd_header import geometry
from mrzero.pipelines.stages.buffer import ReconBuffer


def crop_stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ReconBuffer]:
    for buf in items:
        rx, ry, rz = geometry(ctx.header, buf.encoding).recon_matrix
        z, y, x = buf.data.shape[-3:]
        if rx > x or ry > y or rz > z:
            raise PipelineError(f"recon matrix {rx} x {ry} x {rz} is larger than the image {x} x {y} x {z}")
        data = crop_center(crop_center(crop_center(buf.data, rx, -1), ry, -2), rz, -3)
        yield buf.with_data(data)
