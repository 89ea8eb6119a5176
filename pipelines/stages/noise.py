"""Noise prewhitening stage: learn the noise covariance from noise-adjust scans, whiten the rest.

Noise acquisitions (``ACQ_IS_NOISE_MEASUREMENT``) are accumulated and dropped from the stream.
When the first other acquisition arrives, the prewhitening matrix is computed
(``mrzero.core.ops.prewhiten``) with the dwell times of the noise and of that acquisition and
the header's relative receiver noise bandwidth, and is applied to every later acquisition.
Without noise scans, or with the JSON parameter ``{"prewhiten": false}``, data pass unchanged.
Waveforms and other items pass through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ismrmrd
import torch

from mrzero.core.ops.prewhiten import bandwidth_scale, noise_covariance, prewhiten, prewhitening_matrix
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.mrd_header import receiver_noise_bandwidth
from mrzero.pipelines.stages.acquisitions import check_data, describe, samples, with_data


def prewhiten_stage(items: Iterable[Any], ctx: Context) -> Iterator[Any]:
    enabled = ctx.params.prewhiten
    noise: list[torch.Tensor] = []
    noise_dwell_s = 0.0
    matrix: torch.Tensor | None = None
    decided = False
    for item in items:
        if not isinstance(item, ismrmrd.Acquisition):
            yield item
            continue
        if item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            if decided:
                ctx.logger.warning("noise scan after image data ignored (%s)", describe(item))
                continue
            check_data(item)
            if noise and item.active_channels != noise[0].shape[0]:
                raise PipelineError(
                    f"noise scans disagree on the number of coils: "
                    f"{noise[0].shape[0]} then {item.active_channels}"
                )
            noise.append(samples(item).to(torch.complex128))
            noise_dwell_s = item.sample_time_us * 1e-6
            continue
        if not decided:
            decided = True
            if enabled and noise:
                matrix = _matrix(noise, noise_dwell_s, item.sample_time_us * 1e-6, ctx)
            if noise and not enabled:
                ctx.logger.info("prewhitening disabled by parameter; %d noise scans dropped", len(noise))
        if matrix is not None:
            check_data(item)
            if item.active_channels != matrix.shape[1]:
                raise PipelineError(
                    f"{describe(item)} has {item.active_channels} coils, "
                    f"the noise scans had {matrix.shape[1]}"
                )
            item = with_data(item, prewhiten(samples(item), matrix))
        yield item


def _matrix(
    noise: list[torch.Tensor], noise_dwell_s: float, image_dwell_s: float, ctx: Context
) -> torch.Tensor:
    data = torch.cat(noise, dim=1)
    bandwidth = receiver_noise_bandwidth(ctx.header)
    scale = bandwidth_scale(image_dwell_s, noise_dwell_s, bandwidth)
    try:
        matrix = prewhitening_matrix(noise_covariance(data), scale)
    except ValueError as err:
        raise PipelineError(str(err)) from err
    ctx.logger.info(
        "prewhitening %d coils from %d noise samples (dwell noise %.3g s, image %.3g s, "
        "relative noise bandwidth %.3g, scale %.4g)",
        data.shape[0],
        data.shape[1],
        noise_dwell_s,
        image_dwell_s,
        bandwidth,
        scale,
    )
    return matrix.to(torch.complex64)
