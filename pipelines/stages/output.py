"""Output stage: combined images to MRD images, 16-bit (default) or float magnitude.

JSON parameters: ``"output"``: ``"uint16"`` (default; magnitude rounded and clipped to
``[0, 65535]``) or ``"float"`` (float32 magnitude); ``"series_index"`` (default 1).
Images are numbered ``image_index = 1, 2, ...`` in the order they are ready, and carry the
window of their value range and the FIRE meta of ``mrzero.pipelines.images.make_image``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import ismrmrd
import numpy as np

from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.images import as_numpy, make_image, to_uint16
from mrzero.pipelines.stages.buffer import ReconBuffer

OUTPUT_KINDS = ("uint16", "float")


def output_kind(ctx: Context) -> str:
    """The validated ``"output"`` parameter."""
    kind = str(ctx.parameters.get("output", "uint16"))
    if kind not in OUTPUT_KINDS:
        raise PipelineError(f"unknown output {kind!r}; use one of {', '.join(OUTPUT_KINDS)}")
    return kind


def output_stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ismrmrd.Image]:
    kind = output_kind(ctx)
    series = ctx.parameters.get("series_index", 1)
    if isinstance(series, bool) or not isinstance(series, int) or not 0 <= series <= 65535:
        raise PipelineError(f"series_index must be an integer in [0, 65535], got {series!r}")
    name = ctx.pipeline_name or "cartesian"
    combine = str(ctx.parameters.get("combine", "rss"))
    for index, buf in enumerate(items, start=1):
        magnitude = np.abs(as_numpy(buf.data)).astype(np.float32)
        data = to_uint16(magnitude) if kind == "uint16" else magnitude
        yield make_image(data, buf.reference, ctx.header, series=series, index=index,
                         history=("MRZERO", name.upper(), combine.upper()), description=name,
                         comment=f"{name} {combine}", encoding=buf.encoding)
