"""The MRzero pipelines, registered by name: ``adjoint``, ``iterative_adjoint`` and ``mrzero_head``.

All three: noise prewhitening (noise-adjust scans) -> imaging lines -> samples and trajectories
gathered per image (``samples.py``: bundle, own trajectory or Cartesian counters) ->
reconstruction of every coil (``recon.py``). Then ``adjoint`` and ``iterative_adjoint`` finish as
the Cartesian pipeline does (coil combination, scaling, 16-bit or float images: the same JSON
parameters ``combine``, ``scale``, ``output``, ``series_index``), and ``mrzero_head`` applies the
bundle's head and returns quantitative maps (``head.py``). See ``docs/scanner.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ismrmrd

from mrzero.pipelines.base import Context, chain
from mrzero.pipelines.learned.head_maps import head_stage
from mrzero.pipelines.learned.lookup import scan_bundle
from mrzero.pipelines.learned.recon import ReconSettings, recon_stage
from mrzero.pipelines.learned.samples import gather_stage
from mrzero.pipelines.registry import register
from mrzero.pipelines.stages.combine import combine_stage
from mrzero.pipelines.stages.lines import imaging_lines_stage
from mrzero.pipelines.stages.noise import prewhiten_stage
from mrzero.pipelines.stages.output import output_stage
from mrzero.pipelines.stages.scale import scale_stage


def _run(items: Iterable[Any], ctx: Context, iterative: bool, with_head: bool) -> Iterator[ismrmrd.Image]:
    bundle = scan_bundle(ctx)
    if bundle is not None and bundle.pipeline != ctx.pipeline_name:
        ctx.logger.info("bundle %s names pipeline %s; reconstructing with %s as the scan asked",
                        bundle.name, bundle.pipeline, ctx.pipeline_name)
    settings = ReconSettings.from_context(ctx, bundle, iterative)
    finish = ((head_stage(bundle, settings.device),) if with_head
              else (combine_stage, scale_stage, output_stage))
    yield from chain(prewhiten_stage, imaging_lines_stage, gather_stage(bundle), recon_stage(settings),
                     *finish)(items, ctx)


@register("adjoint", "MRzero adjoint E^H s on the bundle's (or the acquisitions') trajectory, any sampling")
def adjoint(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    yield from _run(items, ctx, iterative=False, with_head=False)


@register("iterative_adjoint", "MRzero iterative adjoint (gradient steps or CG, N from bundle or JSON) "
                               "on the bundle's (or the acquisitions') trajectory")
def iterative_adjoint(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    yield from _run(items, ctx, iterative=True, with_head=False)


@register("mrzero_head", "MRzero NN head (e.g. T1 MLP) of the scan's bundle applied to the adjoint images; "
                         "quantitative float maps with units")
def mrzero_head(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    yield from _run(items, ctx, iterative=False, with_head=True)
