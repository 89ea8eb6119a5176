"""Checks of incoming acquisitions against the header, before they reach a pipeline.

A pipeline should not have to guess why its arrays have the wrong shape: the server refuses
acquisitions that cannot belong to the announced scan with an error naming the acquisition
and what disagrees. Noise-adjust scans are exempt from the k-space checks (their sample count
differs) but not from the channel and finiteness checks.
"""

from __future__ import annotations

import ismrmrd
import numpy as np
from ismrmrd.acquisition import AcquisitionHeader

_HEAD = 340


class InvalidData(ValueError):
    """Data that are well-formed MRD but do not fit the scan; the text says what and where."""


class AcquisitionChecker:
    """Validates acquisition message bodies for one connection's header."""

    def __init__(self, header: ismrmrd.xsd.ismrmrdHeader):
        system = header.acquisitionSystemInformation
        self.channels = system.receiverChannels if system is not None else None
        self.encodings = []
        for enc in header.encoding:
            cartesian = str(enc.trajectory.value if hasattr(enc.trajectory, "value") else enc.trajectory)
            matrix = enc.encodedSpace.matrixSize
            self.encodings.append((cartesian.lower() == "cartesian", matrix.x, matrix.y, matrix.z))

    def check(self, index: int, body: memoryview) -> None:
        """Raise :class:`InvalidData` if acquisition number ``index`` (0-based) does not fit."""
        h = AcquisitionHeader.from_buffer_copy(body[:_HEAD])
        where = f"acquisition {index} (scan counter {h.scan_counter})"
        if h.active_channels == 0:
            raise InvalidData(f"{where} has zero coils (active_channels = 0)")
        if self.channels is not None and h.active_channels != self.channels:
            raise InvalidData(f"{where} has {h.active_channels} coils but the header announces "
                              f"{self.channels} receiver channels")
        data_offset = _HEAD + 4 * h.number_of_samples * h.trajectory_dimensions
        if not np.isfinite(np.frombuffer(body, np.float32, offset=data_offset)).all():
            raise InvalidData(f"{where} contains NaN or infinite samples")
        if h.flags & (1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1)):
            return
        if h.encoding_space_ref >= len(self.encodings):
            raise InvalidData(f"{where} refers to encoding {h.encoding_space_ref}, the header has "
                              f"{len(self.encodings)}")
        cartesian, nx, ny, nz = self.encodings[h.encoding_space_ref]
        if not cartesian:
            return
        if h.number_of_samples > nx:
            raise InvalidData(f"{where} has {h.number_of_samples} samples, more than the encoded "
                              f"matrix's {nx} readout points")
        if h.idx.kspace_encode_step_1 >= ny or h.idx.kspace_encode_step_2 >= max(nz, 1):
            raise InvalidData(f"{where} has k-space indices (ky {h.idx.kspace_encode_step_1}, "
                              f"kz {h.idx.kspace_encode_step_2}) outside the encoded matrix "
                              f"{ny} x {nz}")
