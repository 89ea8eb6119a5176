"""The item that flows between the accumulation stage and the image output stage."""

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
    ``[coil, z, y, x]`` after it, and one combined image ``[z, y, x]`` after coil combination.
    """

    data: torch.Tensor
    #: Header of the acquisition nearest the k-space centre (position, directions, counters).
    reference: ismrmrd.AcquisitionHeader
    #: Values of ``IMAGE_COUNTERS`` shared by all lines of the buffer.
    key: tuple[int, ...]
    encoding: int = 0

    def with_data(self, data: torch.Tensor) -> ReconBuffer:
        """The same buffer holding new data (stages never modify a buffer in place)."""
        return replace(self, data=data)
