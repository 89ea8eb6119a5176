"""``cartesian``: the inline Cartesian reconstruction (Gadgetron's generic Cartesian chains).

Scan check (the header's scan plan and every acquisition's flags: refuse what the chain cannot
reconstruct) -> noise prewhitening -> EPI (reflected, ramp-sampled readouts with navigators to
Cartesian lines; other data pass) -> imaging lines only (waveforms ignored) -> readout
oversampling removal -> accumulation into zero-filled k-space per image, with the calibration
(ACS) blocks captured as they complete -> parallel imaging (GRAPPA or SENSE, calibrated while
the scan streams) -> partial Fourier (POCS, homodyne or zero filling) -> centred orthonormal
inverse FFT -> coil combination -> crop to the recon matrix -> scaling -> 16-bit (or float) MRD
images, one series per contrast.

JSON parameters: ``CartesianParameters`` below (``pipelines/parameters.py``; ``mrzero pipelines``
and ``docs/pipelines.md`` list them; ``docs/reconstruction.md`` says what each method does).
"""

from __future__ import annotations

from dataclasses import dataclass

from mrzero.pipelines.base import chain
from mrzero.pipelines.cartesian_parameters import ReconstructionParameters
from mrzero.pipelines.parameters import ImageParameters
from mrzero.pipelines.registry import register
from mrzero.pipelines.stages.accumulate import calibrating_accumulate_stage
from mrzero.pipelines.stages.combine import combine_stage
from mrzero.pipelines.stages.crop import crop_stage
from mrzero.pipelines.stages.epi import epi_stage
from mrzero.pipelines.stages.lines import imaging_lines_stage
from mrzero.pipelines.stages.noise import prewhiten_stage
from mrzero.pipelines.stages.output import output_stage
from mrzero.pipelines.stages.oversampling import oversampling_stage
from mrzero.pipelines.stages.parallel_imaging import parallel_imaging_stage
from mrzero.pipelines.stages.partial_fourier import partial_fourier_stage
from mrzero.pipelines.stages.scale import scale_stage
from mrzero.pipelines.stages.scan_check import scan_check
from mrzero.pipelines.stages.transform import kspace_to_image_stage

#: From Cartesian lines to coil-combined images cropped to the recon matrix (``ReconBuffer`` items):
#: what every Cartesian chain (``cartesian``, ``roar``) does before its own output.
CARTESIAN_IMAGE_STAGES = (
    imaging_lines_stage,
    oversampling_stage,
    calibrating_accumulate_stage,
    parallel_imaging_stage,
    partial_fourier_stage,
    kspace_to_image_stage,
    combine_stage,
    crop_stage,
)
#: The stages after the EPI stage: what the Cartesian chain does with Cartesian lines.
CARTESIAN_STAGES = (*CARTESIAN_IMAGE_STAGES, scale_stage, output_stage)


@dataclass(frozen=True)
class CartesianParameters(ReconstructionParameters, ImageParameters):
    """The Cartesian chain's JSON parameters: those of its stages (prewhiten, trigger, parallel
    imaging, partial Fourier, coil compression, combine, adaptive_kernel, scale, output,
    series_index)."""


cartesian = register(
    "cartesian",
    "Cartesian 2D/3D and EPI: prewhitening, GRAPPA/SENSE, partial Fourier (POCS), rss/adaptive coil "
    "combination",
    CartesianParameters,
)(chain(scan_check(epi_stage=True), prewhiten_stage, epi_stage, *CARTESIAN_STAGES))
