"""Checks of incoming acquisitions against the header, before they reach a pipeline.

A pipeline should not have to guess why its arrays have the wrong shape: the server refuses
acquisitions that cannot belong to the announced scan with an error naming the acquisition
and what disagrees. Noise-adjust scans are exempt from the k-space checks (their sample count
differs) but not from the channel and finiteness checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import ismrmrd
import numpy as np
from ismrmrd.acquisition import AcquisitionHeader

_HEAD = 340


class InvalidData(ValueError):
    """Data that are well-formed MRD but do not fit the scan; the text says what and where."""


@dataclass(frozen=True)
class ScanShape:
    """What the checks need from a header: receiver channels (None: not announced) and, per
    encoding, (Cartesian?, matrix x, y, z). Small and picklable: a child process parses the header."""

    channels: int | None
    encodings: tuple[tuple[bool, int, int, int], ...]

    @classmethod
    def of(cls, header: ismrmrd.xsd.ismrmrdHeader) -> ScanShape:
        system = header.acquisitionSystemInformation
        encodings = []
        for enc in header.encoding:
            cartesian = str(enc.trajectory.value if hasattr(enc.trajectory, "value") else enc.trajectory)
            matrix = enc.encodedSpace.matrixSize
            encodings.append((cartesian.lower() == "cartesian", matrix.x, matrix.y, matrix.z))
        return cls(system.receiverChannels if system is not None else None, tuple(encodings))


class AcquisitionChecker:
    """Validates acquisition message bodies for one connection's scan shape."""

    def __init__(self, shape: ScanShape):
        self.channels = shape.channels
        self.encodings = shape.encodings

    def check(self, index: int, body: memoryview) -> None:
        """Raise :class:`InvalidData` if acquisition number ``index`` (0-based) does not fit."""
        h = AcquisitionHeader.from_buffer_copy(body[:_HEAD])
        where = f"acquisition {index} (scan counter {h.scan_counter})"
        if h.active_channels == 0:
            raise InvalidData(f"{where} has zero coils (active_channels = 0)")
        if self.channels is not None and h.active_channels != self.channels:
            raise InvalidData(
                f"{where} has {h.active_channels} coils but the header announces "
                f"{self.channels} receiver channels"
            )
        data_offset = _HEAD + 4 * h.number_of_samples * h.trajectory_dimensions
        if not np.isfinite(np.frombuffer(body, np.float32, offset=data_offset)).all():
            raise InvalidData(f"{where} contains NaN or infinite samples")
        if h.flags & (1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1)):
            return
        if h.encoding_space_ref >= len(self.encodings):
            raise InvalidData(
                f"{where} refers to encoding {h.encoding_space_ref}, the header has {len(self.encodings)}"
            )
        cartesian, nx, ny, nz = self.encodings[h.encoding_space_ref]
        if not cartesian:
            return
        if h.number_of_samples > nx:
            raise InvalidData(
                f"{where} has {h.number_of_samples} samples, more than the encoded "
                f"matrix's {nx} readout points"
            )
        if h.idx.kspace_encode_step_1 >= ny or h.idx.kspace_encode_step_2 >= max(nz, 1):
            raise InvalidData(
                f"{where} has k-space indices (ky {h.idx.kspace_encode_step_1}, "
                f"kz {h.idx.kspace_encode_step_2}) outside the encoded matrix "
                f"{ny} x {nz}"
            )
