"""Scaling stage: one factor for all images of a connection, so a series stays comparable.

JSON parameter ``"scale"``:

* a positive number: multiply by it;
* ``"auto"`` (default for 16-bit output): chosen on the first image so that its 99th
  percentile of magnitude becomes ``AUTO_TARGET`` (2048, as Gadgetron's AutoScale), leaving
  headroom below the 16-bit ceiling for brighter pixels and later images;
* ``"dft"``: ``sqrt(number of encoded k-space points)`` (readout oversampling included), which
  turns the orthonormal image into that of an unnormalised inverse DFT, the convention of
  ISMRMRD's ``ismrmrd_recon_cartesian_2d`` and of BART's ``fft -i`` without ``-u``.

With ``{"output": "float"}`` the default is 1 (the orthonormal image as it is).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch

from mrzero.pipelines.base import Context
from mrzero.pipelines.mrd_header import geometry
from mrzero.pipelines.stages.buffer import ReconBuffer

AUTO_TARGET = 2048.0
AUTO_PERCENTILE = 0.99


def scale_setting(ctx: Context) -> str | float:
    """The ``"scale"`` parameter, with its output-dependent default."""
    scale = ctx.params.scale
    if scale is None:
        return "auto" if ctx.params.output == "uint16" else 1.0
    return scale


def scale_factor(setting: str | float, buf: ReconBuffer, ctx: Context) -> float:
    """The factor that ``setting`` gives for the (first) image ``buf``."""
    if setting == "dft":
        return math.sqrt(math.prod(geometry(ctx.header, buf.encoding).encoded_matrix))
    if setting == "auto":
        mag = buf.data.abs().flatten().to(torch.float64)
        level = float(torch.quantile(mag, AUTO_PERCENTILE)) if mag.numel() else 0.0
        return AUTO_TARGET / level if level > 0 else 1.0
    return float(setting)


def scale_stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ReconBuffer]:
    setting = scale_setting(ctx)
    factor: float | None = None
    for buf in items:
        if factor is None:
            factor = scale_factor(setting, buf, ctx)
            ctx.logger.info("image scale %s: factor %.6g", setting, factor)
        yield buf.with_data(buf.data * factor)
