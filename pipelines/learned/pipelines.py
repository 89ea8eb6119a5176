"""The MRzero pipelines, registered by name: ``adjoint``, ``iterative_adjoint`` and ``mrzero_head``.

All three: noise prewhitening (noise-adjust scans) -> imaging lines -> samples and trajectories
gathered per image (``samples.py``: bundle, own trajectory or Cartesian counters) ->
reconstruction of every coil (``recon.py``). Then ``adjoint`` and ``iterative_adjoint`` finish as
the Cartesian pipeline does (coil combination, scaling, 16-bit or float images: the same JSON
parameters ``combine``, ``scale``, ``output``, ``series_index``), and ``mrzero_head`` applies the
bundle's head and returns quantitative maps (``head_maps.py``). Each declares its JSON parameters
below (``pipelines/parameters.py``). See ``docs/scanner.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import ismrmrd

from mrzero.pipelines.base import Context, chain
from mrzero.pipelines.learned.head_maps import head_stage
from mrzero.pipelines.learned.lookup import scan_bundle
from mrzero.pipelines.learned.recon import DEVICE_PATTERN, MAX_ITERATIONS, ReconSettings, recon_stage
from mrzero.pipelines.learned.samples import gather_stage
from mrzero.pipelines.parameters import (
    CoilParameters,
    OutputParameters,
    PipelineParameters,
    PrewhitenParameters,
    SeriesParameters,
    parameter,
)
from mrzero.pipelines.registry import register
from mrzero.pipelines.stages.combine import combine_stage
from mrzero.pipelines.stages.lines import imaging_lines_stage
from mrzero.pipelines.stages.noise import prewhiten_stage
from mrzero.pipelines.stages.output import output_stage
from mrzero.pipelines.stages.scale import scale_stage


@dataclass(frozen=True)
class ReconParameters(PipelineParameters):
    """``recon_stage``: where and how the adjoint runs. None: the bundle's ``recon`` section, else
    the default named in the help."""

    density: Literal["none", "pipe"] | None = parameter(
        None, "density compensation: 'none' (MRzero's plain adjoint, default) or 'pipe' (Pipe-Menon)"
    )
    device: str | None = parameter(
        None,
        "torch device (cpu, cuda, cuda:N); default the server's --device, else cuda when present",
        pattern=DEVICE_PATTERN,
    )


@dataclass(frozen=True)
class AdjointParameters(OutputParameters, CoilParameters, ReconParameters, PrewhitenParameters):
    """``adjoint``: the reconstruction, then the Cartesian pipeline's finishing stages."""


@dataclass(frozen=True)
class IterativeAdjointParameters(AdjointParameters):
    """``iterative_adjoint``: also the method and its iterations."""

    method: Literal["iterative", "cg"] | None = parameter(
        None, "the seed's gradient iteration ('iterative', default) or conjugate gradients ('cg')"
    )
    iterations: int | None = parameter(None, "iterations (default 10)", ge=1, le=MAX_ITERATIONS)
    tikhonov: float | None = parameter(None, "Tikhonov weight of 'cg' (default 0)", ge=0, lt=1e6)


@dataclass(frozen=True)
class HeadParameters(SeriesParameters, ReconParameters, PrewhitenParameters):
    """``mrzero_head``: the adjoint images through the bundle's head, quantitative maps out."""

    output: Literal["float", "uint16"] = parameter(
        "float", "map data type: float, or 12-bit integers with RescaleSlope/RescaleIntercept"
    )
    mask_threshold: float = parameter(
        0.05,
        "maps are 0 where every input image is below this x the 99th percentile of their peak magnitude "
        "(background, where a head's value means nothing); 0: no mask",
        ge=0,
        lt=1,
    )


def _run(items: Iterable[Any], ctx: Context, iterative: bool, with_head: bool) -> Iterator[ismrmrd.Image]:
    bundle = scan_bundle(ctx)
    if bundle is not None and bundle.pipeline != ctx.pipeline_name:
        ctx.logger.info(
            "bundle %s names pipeline %s; reconstructing with %s as the scan asked",
            bundle.name,
            bundle.pipeline,
            ctx.pipeline_name,
        )
    settings = ReconSettings.from_context(ctx, bundle, iterative)
    finish = (
        (head_stage(bundle, settings.device),) if with_head else (combine_stage, scale_stage, output_stage)
    )
    yield from chain(
        prewhiten_stage, imaging_lines_stage, gather_stage(bundle), recon_stage(settings), *finish
    )(items, ctx)


@register(
    "adjoint",
    "MRzero adjoint E^H s on the bundle's (or the acquisitions') trajectory, any sampling",
    AdjointParameters,
)
def adjoint(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    yield from _run(items, ctx, iterative=False, with_head=False)


@register(
    "iterative_adjoint",
    "MRzero iterative adjoint (gradient steps or CG, N from bundle or JSON) "
    "on the bundle's (or the acquisitions') trajectory",
    IterativeAdjointParameters,
)
def iterative_adjoint(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    yield from _run(items, ctx, iterative=True, with_head=False)


@register(
    "mrzero_head",
    "MRzero NN head (e.g. T1 MLP) of the scan's bundle applied to the adjoint images; "
    "quantitative float maps with units",
    HeadParameters,
)
def mrzero_head(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    yield from _run(items, ctx, iterative=False, with_head=True)
