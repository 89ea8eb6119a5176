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

from mrzero.pipelines.base import Context
from mrzero.pipelines.images import as_numpy, make_image, to_uint16
from mrzero.pipelines.stages.buffer import ReconBuffer


def output_stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ismrmrd.Image]:
    kind, series, combine = ctx.params.output, ctx.params.series_index, ctx.params.combine
    name = ctx.pipeline_name or "cartesian"
    for index, buf in enumerate(items, start=1):
        magnitude = np.abs(as_numpy(buf.data)).astype(np.float32)
        data = to_uint16(magnitude) if kind == "uint16" else magnitude
        yield make_image(data, buf.reference, ctx.header, series=series, index=index,
                         history=("MRZERO", name.upper(), combine.upper()), description=name,
                         comment=f"{name} {combine}", encoding=buf.encoding)
