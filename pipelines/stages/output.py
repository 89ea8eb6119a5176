"""Output stage: combined images to MRD images, 16-bit (default) or float magnitude.

JSON parameters: ``"output"``: ``"uint16"`` (default; magnitude rounded and clipped to
``[0, 65535]``) or ``"float"`` (float32 magnitude); ``"series_index"`` (default 1).

Series and numbers as a scanner gives them (``ImageNumbering``): one series per contrast (echo),
``image_series_index = series_index + contrast`` (further encodings follow on after the
contrasts of the ones before), and within a series
``image_index = 1 + slice + S * (phase + P * (set + T * repetition))`` with the numbers of
slices ``S``, phases ``P`` and sets ``T`` from the header's encoding limits, so that slice
numbers follow the slice counter whatever order the slices were acquired in, and repetitions
follow one another (Gadgetron's generic chains number the same way). Where the header's limits
do not cover a counter the image takes the next free number of its series. Images carry the
window of their value range and the FIRE meta of ``mrzero.pipelines.images.make_image``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import ismrmrd
import numpy as np

from mrzero.pipelines.base import Context
from mrzero.pipelines.images import as_numpy, make_image, to_uint16
from mrzero.pipelines.scan_plan import encoding_limits
from mrzero.pipelines.stages.buffer import ReconBuffer

#: Largest ``image_index`` (a uint16 in the MRD image header).
MAX_INDEX = 65535


class ImageNumbering:
    """``(image_series_index, image_index)`` of each image, as scanners number them."""

    def __init__(self, header: ismrmrd.xsd.ismrmrdHeader, base_series: int, logger=None):
        self.log = logger
        self.sizes = []
        self.series_offset = []
        offset = 0
        for enc in header.encoding or []:
            limits = encoding_limits(enc)
            size = {
                name: (limits[name].size if name in limits else 1)
                for name in ("slice", "phase", "set", "contrast")
            }
            self.sizes.append(size)
            self.series_offset.append(offset)
            offset += size["contrast"]
        self.base = base_series
        self.used: dict[int, set[int]] = {}
        self.warned = False

    def __call__(self, reference: ismrmrd.AcquisitionHeader, encoding: int) -> tuple[int, int]:
        idx = reference.idx
        sizes = self.sizes[encoding] if encoding < len(self.sizes) else {}
        series = min(
            MAX_INDEX,
            self.base
            + (self.series_offset[encoding] if encoding < len(self.sizes) else 0)
            + int(idx.contrast),
        )
        used = self.used.setdefault(series, set())
        fits = all(int(getattr(idx, name)) < sizes.get(name, 1) for name in ("slice", "phase", "set"))
        index = None
        if fits:
            s, p, t = (sizes.get(n, 1) for n in ("slice", "phase", "set"))
            index = 1 + int(idx.slice) + s * (int(idx.phase) + p * (int(idx.set) + t * int(idx.repetition)))
        if index is None or index in used or index > MAX_INDEX:
            if not self.warned and self.log is not None:
                self.warned = True
                self.log.warning(
                    "image counters (slice %d, phase %d, set %d, repetition %d) outside the header's "
                    "encoding limits: numbered in arrival order",
                    idx.slice,
                    idx.phase,
                    idx.set,
                    idx.repetition,
                )
            index = max(used, default=0) + 1
        used.add(index)
        return series, min(index, MAX_INDEX)


def output_stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ismrmrd.Image]:
    kind, series, combine = ctx.params.output, ctx.params.series_index, ctx.params.combine
    name = ctx.pipeline_name or "cartesian"
    numbering = ImageNumbering(ctx.header, series, ctx.logger)
    for buf in items:
        magnitude = np.abs(as_numpy(buf.data)).astype(np.float32)
        data = to_uint16(magnitude) if kind == "uint16" else magnitude
        image_series, index = numbering(buf.reference, buf.encoding)
        # what was done: parallel imaging, partial Fourier, then the coil combination (SENSE combines itself)
        steps = [*buf.history, *([] if "SENSE" in buf.history else [combine.upper()])]
        yield make_image(
            data,
            buf.reference,
            ctx.header,
            series=image_series,
            index=index,
            history=("MRZERO", name.upper(), *steps),
            description=name,
            comment=" ".join([name, *(step.lower() for step in steps)]),
            encoding=buf.encoding,
        )
