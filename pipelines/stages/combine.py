"""Coil combination stage: ``[coil, z, y, x]`` coil images to one ``[z, y, x]`` image.

JSON parameter ``"combine"``: ``"rss"`` (root-sum-of-squares, default, real) or
``"adaptive"`` (Walsh, complex; ``"adaptive_kernel"`` sets the smoothing width, default 7).
Buffers that are already combined (SENSE) pass unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mrzero.core.ops.coils import adaptive_combine, rss
from mrzero.pipelines.base import Context
from mrzero.pipelines.stages.buffer import ReconBuffer


def combine_stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ReconBuffer]:
    method, kernel = ctx.params.combine, ctx.params.adaptive_kernel
    for buf in items:
        if buf.combined:
            yield buf
            continue
        yield buf.with_data(
            rss(buf.data) if method == "rss" else adaptive_combine(buf.data, kernel), combined=True
        )
