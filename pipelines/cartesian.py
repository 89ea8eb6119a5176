"""``cartesian``: the faithful inline Cartesian reconstruction (Gadgetron's default chain).

Noise prewhitening -> imaging lines only (waveforms ignored) -> readout oversampling removal
-> accumulation into zero-filled k-space per image -> centred orthonormal inverse FFT -> coil
combination -> crop to the recon matrix -> scaling -> 16-bit (or float) MRD images.
JSON parameters: ``CartesianParameters`` below (``pipelines/parameters.py``; ``mrzero pipelines``
and ``docs/pipelines.md`` list them).
"""

from __future__ import annotations

from dataclasses import dataclass

from mrzero.pipelines.base import chain
from mrzero.pipelines.parameters import ImageParameters
from mrzero.pipelines.registry import register
from mrzero.pipelines.stages.accumulate import accumulate_stage
from mrzero.pipelines.stages.combine import combine_stage
from mrzero.pipelines.stages.crop import crop_stage
from mrzero.pipelines.stages.lines import imaging_lines_stage
from mrzero.pipelines.stages.noise import prewhiten_stage
from mrzero.pipelines.stages.output import output_stage
from mrzero.pipelines.stages.oversampling import oversampling_stage
from mrzero.pipelines.stages.scale import scale_stage
from mrzero.pipelines.stages.transform import kspace_to_image_stage


@dataclass(frozen=True)
class CartesianParameters(ImageParameters):
    """The Cartesian chain's JSON parameters: those of its stages (prewhiten, trigger, combine,
    adaptive_kernel, scale, output, series_index) and the ones declared here."""


cartesian = register(
    "cartesian",
    "Cartesian 2D/3D: prewhitening, oversampling removal, zero-filled FFT, rss/adaptive coil combination",
    CartesianParameters,
)(chain(prewhiten_stage, imaging_lines_stage, oversampling_stage, accumulate_stage,
        kspace_to_image_stage, combine_stage, crop_stage, scale_stage, output_stage))
