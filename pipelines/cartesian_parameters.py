"""The declared JSON parameters of the Cartesian chain's parallel-imaging and partial-Fourier stages.

``ReconstructionParameters`` is a parameter group (``pipelines/parameters.py``) that
``CartesianParameters`` (``pipelines/cartesian.py``) inherits; the stages read it through
``reconstruction_parameters(ctx)`` (``ctx.params``, validated when the pipeline starts: an
unknown key or a bad value ends the scan with an error text naming the parameter).

* ``parallel_imaging``: ``"grappa"`` (default), ``"sense"`` or ``"none"`` (refuse accelerated
  scans instead of reconstructing them);
* ``partial_fourier``: ``"pocs"`` (default), ``"homodyne"`` or ``"zero_fill"`` (only when asked);
* ``coil_compression``: number of virtual coils (0: off);
* ``grappa_kernel`` ``[readout points, ky blocks]`` (``[5, 4]``), ``grappa_regularization``
  (1e-4), ``sense_iterations`` (30), ``sense_regularization`` (0), ``pocs_iterations`` (10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mrzero.pipelines.base import Context
from mrzero.pipelines.parameters import PipelineParameters, parameter


@dataclass(frozen=True)
class ReconstructionParameters(PipelineParameters):
    """``parallel_imaging_stage`` and ``partial_fourier_stage`` (``pipelines/stages/``)."""

    parallel_imaging: Literal["grappa", "sense", "none"] = parameter(
        "grappa", "how accelerated scans are unfolded: GRAPPA, SENSE (ESPIRiT maps), or 'none' to refuse them"
    )
    partial_fourier: Literal["pocs", "homodyne", "zero_fill"] = parameter(
        "pocs", "how the unmeasured side of partial-Fourier k-space (ky, kz, asymmetric echo) is filled"
    )
    coil_compression: int = parameter(0, "virtual coils to compress to before unfolding (0: off)", ge=0)
    grappa_kernel: tuple[int, int] = parameter(
        (5, 4),
        "GRAPPA kernel: readout points, ky blocks (Gadgetron's kRO x kE1)",
        rule=("two positive integers", lambda v: all(k >= 1 for k in v)),
    )
    grappa_regularization: float = parameter(1e-4, "Tikhonov weight of the GRAPPA fit, relative", ge=0)
    sense_iterations: int = parameter(30, "conjugate-gradient iterations of SENSE", ge=1, le=1000)
    sense_regularization: float = parameter(0.0, "Tikhonov lambda of SENSE", ge=0)
    pocs_iterations: int = parameter(10, "POCS iterations", ge=1, le=1000)


def reconstruction_parameters(ctx: Context) -> ReconstructionParameters:
    """The validated parameters of ``ctx`` (``ParameterError`` naming a bad one)."""
    return ctx.params
