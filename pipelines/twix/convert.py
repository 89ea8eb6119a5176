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

from pipelines.twix.acquisitions import (
    GeometryLookup,
    loop_flags,
    sample_time_us,
    siemens_flags,
    to_acquisition,
)
from pipelines.twix.header import build_header
from pipelines.twix.mrd_writer import write_raw_file
from pipelines.twix.protocol import Protocol
from pipelines.twix.reader import TwixFile, read_twix_file

log = logging.getLogger(__name__)


def _is_payload(mdb: Any) -> bool:
    return not mdb.is_flag_set("SYNCDATA")  # physiology/trajectory blocks carry no readout


@dataclass
class _Part:
    """Readouts of one measurement that go into the stream, with that measurement's protocol."""

    prot: Protocol
    mdbs: list[Any]
    flags: list[list[int]]


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
        return sum(ismrmrd.ACQ_IS_NOISE_MEASUREMENT in f for part in self.parts for f in part.flags)

    def __len__(self) -> int:
        return sum(len(part.mdbs) for part in self.parts)

    def acquisitions(self) -> Iterator[ismrmrd.Acquisition]:
        """The MRD acquisitions in stream order (noise first), read from the file as they are yielded."""
        with open(self.path, "rb") as handle:
            for part in self.parts:
                dwell = sample_time_us(part.prot)
                geometry = GeometryLookup(part.prot)
                for mdb, flags in zip(part.mdbs, part.flags, strict=True):
                    mdb.fid = handle  # twixtools reopens the file per readout unless given an open one
                    yield to_acquisition(mdb, mdb.data, flags, dwell, geometry)


def _noise_part(path: Path, index: int, scan: dict[str, Any], channels: int) -> _Part | None:
    payload = [m for m in scan["mdb"] if _is_payload(m)]
    noise = [m for m in payload if m.is_flag_set("NOISEADJSCAN")]
    if len(noise) < len(payload):
        log.info("%s: measurement %d: %d non-noise readouts (adjustments) left out", path, index,
                 len(payload) - len(noise))
    if not noise:
        return None
    if any(int(m.mdh.UsedChannels) != channels for m in noise):
        log.warning("%s: measurement %d: noise readouts have other channels than the image scan (%d); "
                    "not used", path, index, channels)
        return None
    return _Part(Protocol(scan["hdr"], path), noise, [siemens_flags(m) for m in noise])


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
        parts.append(_Part(prot, own_noise, [siemens_flags(m) for m in own_noise]))
    data_flags = [siemens_flags(m) + extra for m, extra in zip(data, loop_flags(data), strict=True)]
    if not any(ismrmrd.ACQ_LAST_IN_MEASUREMENT in f for f in data_flags):
        data_flags[-1].append(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    parts.append(_Part(prot, data, data_flags))
    raw = sum(8 * int(m.mdh.SamplesInScan) * int(m.mdh.UsedChannels) for part in parts for m in part.mdbs)
    measurement = TwixMeasurement(twix.path, header, parts, raw)
    log.info("%s: %d acquisitions (%d noise), %d channels, encoded matrix %s", twix.path, len(measurement),
             measurement.noise_count, channels, header.encoding[0].encodedSpace.matrixSize)
    return measurement


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_twix` wrote."""

    source: Path
    output: Path
    acquisitions: int
    noise_acquisitions: int
    raw_bytes: int


def convert_twix(path: str | os.PathLike[str], output: str | os.PathLike[str],
                 overwrite: bool = False) -> Conversion:
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
        write_raw_file(tmp, measurement.header, measurement.acquisitions(), len(measurement))
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("%s -> %s: %d acquisitions", measurement.path, output, len(measurement))
    return Conversion(measurement.path, output, len(measurement), measurement.noise_count,
                      measurement.raw_bytes)
