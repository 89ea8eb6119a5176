"""Coil combination stage: ``[coil, z, y, x]`` coil images to one ``[z, y, x]`` image.

JSON parameter ``"combine"``: ``"rss"`` (root-sum-of-squares, default, real) or
``"adaptive"`` (Walsh, complex; ``"adaptive_kernel"`` sets the smoothing width, default 7).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mrzero.core.ops.coils import adaptive_combine, rss
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.stages.buffer import ReconBuffer

COMBINE_METHODS = ("rss", "adaptive")


def combine_stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ReconBuffer]:
    method = str(ctx.parameters.get("combine", "rss"))
    if method not in COMBINE_METHODS:
        raise PipelineError(f"unknown coil combination {method!r}; use one of {', '.join(COMBINE_METHODS)}")
    kernel = ctx.parameters.get("adaptive_kernel", 7)
    if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise PipelineError(f"adaptive_kernel must be a positive odd integer, got {kernel!r}")
    for buf in items:
        yield buf.with_data(rss(buf.data) if method == "rss" else adaptive_combine(buf.data, kernel))
