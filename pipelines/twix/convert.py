"""Twix ``.dat`` -> MRD: the header and acquisition stream of a measurement, and ``.h5`` files.

A twix file holds one or more measurements (multi-RAID); the last one is the image scan.
Noise-adjust readouts of the earlier measurements (and of the image scan itself) come first
in the stream, flagged ``ACQ_IS_NOISE_MEASUREMENT``, so that a pipeline can estimate the noise
covariance and prewhiten before the first imaging readout arrives. Other readouts of earlier
measurements (adjustment scans) are not part of the image and are left out, with a log line.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ismrmrd
import numpy as np

from mrzero.core.mrd_file import write_raw_file
from mrzero.pipelines.twix.acquisitions import (
    acquisition_headers,
    header_table,
    loop_flags,
    mrd_bit,
    sample_time_us,
    siemens_flags,
)
from mrzero.pipelines.twix.header_builder import build_header
from mrzero.pipelines.twix.protocol_fields import Protocol
from mrzero.pipelines.twix.reader import TwixFile, read_twix_file

log = logging.getLogger(__name__)


def _is_payload(mdb: Any) -> bool:
    return not mdb.is_flag_set("SYNCDATA")  # physiology/trajectory blocks carry no readout


@dataclass
class _Part:
    """Readouts of one measurement that go into the stream, with their MRD acquisition headers."""

    mdbs: list[Any]
    heads: np.ndarray

    @classmethod
    def build(cls, prot: Protocol, mdbs: list[Any], image_scan: bool = False) -> _Part:
        """Headers of ``mdbs``; for the image scan's readouts also the loop flags and, if the file
        does not mark it, ``ACQ_LAST_IN_MEASUREMENT`` on the last readout."""
        table = header_table(mdbs)
        flags = siemens_flags(table)
        if image_scan:
            flags |= loop_flags(table, np.array([m.is_image_scan() for m in mdbs]))
            last = mrd_bit(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
            if not (flags & last).any():
                flags[-1] |= last
        return cls(mdbs, acquisition_headers(table, flags, sample_time_us(prot), prot))

    @property
    def raw_bytes(self) -> int:
        samples = self.heads["number_of_samples"].astype(np.int64) * self.heads["active_channels"]
        return int(8 * samples.sum())  # complex64


@dataclass
class TwixMeasurement:
    """A twix file as MRD: ``header`` and, read lazily from the file, :meth:`acquisitions`."""

    path: Path
    header: ismrmrd.xsd.ismrmrdHeader
    parts: list[_Part] = field(repr=False)
    #: Size of the raw readouts (complex samples, all channels) in bytes.
    raw_bytes: int = 0

    @property
    def noise_count(self) -> int:
        noise = mrd_bit(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        return sum(int(np.count_nonzero(part.heads["flags"] & noise)) for part in self.parts)

    def __len__(self) -> int:
        return sum(len(part.mdbs) for part in self.parts)

    def acquisitions(self) -> Iterator[ismrmrd.Acquisition]:
        """The MRD acquisitions in stream order (noise first), read from the file as they are yielded."""
        with open(self.path, "rb") as handle:
            for part in self.parts:
                for mdb, head in zip(part.mdbs, part.heads, strict=True):
                    mdb.fid = handle  # twixtools reopens the file per readout unless given an open one
                    yield ismrmrd.Acquisition(head=head.tobytes(), data=np.ascontiguousarray(mdb.data))


def _noise_part(path: Path, index: int, scan: dict[str, Any], channels: int) -> _Part | None:
    payload = [m for m in scan["mdb"] if _is_payload(m)]
    noise = [m for m in payload if m.is_flag_set("NOISEADJSCAN")]
    if len(noise) < len(payload):
        log.info(
            "%s: measurement %d: %d non-noise readouts (adjustments) left out",
            path,
            index,
            len(payload) - len(noise),
        )
    if not noise:
        return None
    if any(int(m.mdh.UsedChannels) != channels for m in noise):
        log.warning(
            "%s: measurement %d: noise readouts have other channels than the image scan (%d); not used",
            path,
            index,
            channels,
        )
        return None
    return _Part.build(Protocol(scan["hdr"], path), noise)


def load_twix(path: str | os.PathLike[str]) -> TwixMeasurement:
    """Parse ``path`` and build its MRD header; ``TwixError`` names the file and what is wrong."""
    twix: TwixFile = read_twix_file(path)
    scan = twix.image_scan
    prot = Protocol(scan["hdr"], twix.path)
    payload = [m for m in scan["mdb"] if _is_payload(m)]
    own_noise = [m for m in payload if m.is_flag_set("NOISEADJSCAN")]
    data = [m for m in payload if not m.is_flag_set("NOISEADJSCAN")]
    header = build_header(prot, data)
    channels = header.acquisitionSystemInformation.receiverChannels

    parts = [p for k, s in enumerate(twix.scans[:-1]) if (p := _noise_part(twix.path, k, s, channels))]
    if own_noise:
        parts.append(_Part.build(prot, own_noise))
    parts.append(_Part.build(prot, data, image_scan=True))
    measurement = TwixMeasurement(twix.path, header, parts, sum(part.raw_bytes for part in parts))
    log.info(
        "%s: %d acquisitions (%d noise), %d channels, encoded matrix %s",
        twix.path,
        len(measurement),
        measurement.noise_count,
        channels,
        header.encoding[0].encodedSpace.matrixSize,
    )
    return measurement


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_twix` wrote."""

    source: Path
    output: Path
    acquisitions: int
    noise_acquisitions: int
    raw_bytes: int


def convert_twix(
    path: str | os.PathLike[str], output: str | os.PathLike[str], overwrite: bool = False
) -> Conversion:
    """Write ``path`` as an MRD HDF5 file (group ``dataset``) at ``output``.

    The file is written under a temporary name in the output's folder and renamed at the end,
    so that a failure leaves nothing behind and a reader never sees a half-written file.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output}: exists (pass overwrite=True / --force to replace it)")
    measurement = load_twix(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        xml = ismrmrd.xsd.ToXML(measurement.header)
        write_raw_file(tmp, xml, measurement.acquisitions(), exclusive=False)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("%s -> %s: %d acquisitions", measurement.path, output, len(measurement))
    return Conversion(
        measurement.path, output, len(measurement), measurement.noise_count, measurement.raw_bytes
    )
