"""The items that flow between the accumulation stage and the image output stage."""

from __future__ import annotations

from dataclasses import dataclass, replace

import ismrmrd
import torch

#: Acquisition counters that separate one image from another (``idx`` field names).
IMAGE_COUNTERS = ("slice", "contrast", "phase", "repetition", "set")


@dataclass
class ReconBuffer:
    """One image's worth of data and the acquisition it takes its geometry from.

    ``data`` is k-space ``[coil, kz, ky, kx]`` from accumulation to the FFT stage, coil images
    ``[coil, z, y, x]`` after it, and one combined image ``[z, y, x]`` after coil combination
    (``combined``; a SENSE reconstruction combines the coils itself).
    """

    data: torch.Tensor
    #: Header of the acquisition nearest the k-space centre (position, directions, counters).
    reference: ismrmrd.AcquisitionHeader
    #: Values of ``IMAGE_COUNTERS`` shared by all lines of the buffer.
    key: tuple[int, ...]
    encoding: int = 0
    #: ``[kz, ky]`` bool: the measured lines (set by the accumulation stage; None: not known).
    sampled: torch.Tensor | None = None
    #: ``(start, stop)`` of the measured readout samples in ``kx`` (asymmetric echo); None: all.
    kx_extent: tuple[int, int] | None = None
    #: The data are one combined image ``[z, y, x]`` (no FFT, no coil combination left to do).
    combined: bool = False
    #: Methods applied so far that the image's ``ImageProcessingHistory`` names (``GRAPPA``, ``POCS``).
    history: tuple[str, ...] = ()

    def with_data(self, data: torch.Tensor, **changes) -> ReconBuffer:
        """The same buffer holding new data (stages never modify a buffer in place)."""
        return replace(self, data=data, **changes)

    def counter(self, name: str) -> int:
        """The value of counter ``name`` (one of ``IMAGE_COUNTERS``) of this image."""
        return int(self.key[IMAGE_COUNTERS.index(name)])


@dataclass
class CalibrationBuffer:
    """A fully sampled block of calibration (ACS) lines, ready for GRAPPA or ESPIRiT.

    ``data`` ``[coil, kz_acs, ky_acs, kx]``, its centre index ``n // 2`` on each axis at the
    k-space centre's side the block covers (``origin`` gives its first line in the image
    k-space, so the block sits at ``[origin_z:, origin_y:]`` of a ``[coil, kz, ky, kx]`` buffer).
    """

    data: torch.Tensor
    #: Calibration key (``pipelines/stages/calibration.py``): which images this block calibrates.
    key: tuple[int, ...]
    encoding: int
    #: ``(kz, ky)`` of the block's first line in the image k-space.
    origin: tuple[int, int]
    #: ``"flagged"`` (lines with calibration flags) or ``"interleaved"`` (the union of repetitions).
    source: str = "flagged"
