"""Reading a Siemens twix ``.dat`` file with twixtools, after checking that it is one.

twixtools parses what it is given and, on a damaged file, prints a warning, loops over
garbage or fails deep inside numpy. This module checks the file's framing first (size,
multi-RAID table, measurement lengths, end-of-acquisition marker) so that every problem
becomes a :class:`TwixError` that names the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import twixtools

log = logging.getLogger(__name__)

#: Bytes of the VD/VE multi-RAID file header that twixtools reads (8 + 64 entries x 152).
_MULTI_RAID_HEADER_BYTES = 9736
#: The smallest measurement header: its length word, the buffer count and one buffer name.
_MIN_MEAS_HEADER_BYTES = 16


class TwixError(ValueError):
    """A file that cannot be converted; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


@dataclass
class TwixFile:
    """The parsed measurements of one twix file, in file order (the image scan is last)."""

    path: Path
    #: ``"VD/VE"`` or ``"VB"``.
    version: str
    #: twixtools scan dicts (``hdr``, ``mdb``, ...), one per measurement.
    scans: list[dict[str, Any]]

    @property
    def image_scan(self) -> dict[str, Any]:
        return self.scans[-1]


def _measurement_table(path: Path, head: bytes, size: int) -> tuple[str, list[tuple[int, int]]]:
    """The file version and the (offset, length) of every measurement, checked against ``size``."""
    first, second = struct.unpack("<II", head[:8])
    if first < 10000 and second <= 64:  # twixtools' own VD/VE test: small header size, scan count
        if second == 0:
            raise TwixError(path, "not a twix file: the multi-RAID header lists no measurements")
        if size < _MULTI_RAID_HEADER_BYTES:
            raise TwixError(path, f"truncated: {size} bytes, shorter than the VD/VE multi-RAID header")
        table = []
        for k in range(second):
            base = 8 + 152 * k
            offset, length = struct.unpack("<QQ", head[base + 8:base + 24])
            if length == 0 and second == 1:
                length = size - offset
            if offset < _MULTI_RAID_HEADER_BYTES or offset >= size:
                raise TwixError(path, f"not a twix file or truncated: measurement {k} starts at byte "
                                      f"{offset}, outside the file ({size} bytes)")
            if offset + length > size:
                raise TwixError(path, f"truncated: measurement {k} needs bytes {offset}..{offset + length} "
                                      f"but the file has {size} bytes")
            table.append((offset, length))
        return "VD/VE", table
    if first < _MIN_MEAS_HEADER_BYTES or first >= size:
        raise TwixError(path, "not a twix file: neither a VD/VE multi-RAID header nor a VB "
                              f"measurement header (header length {first} for a file of {size} bytes)")
    return "VB", [(0, size)]


def _check_protocol(path: Path, index: int, scan: dict[str, Any]) -> None:
    hdr = scan.get("hdr") or {}
    if not isinstance(hdr.get("MeasYaps"), dict) or not hdr["MeasYaps"]:
        raise TwixError(path, f"not a twix file: measurement {index} has no protocol (MeasYaps) "
                              "in its header")


def _check_data(path: Path, index: int, scan: dict[str, Any], end: int) -> None:
    mdbs = scan["mdb"]
    if not mdbs or not mdbs[-1].is_flag_set("ACQEND"):
        raise TwixError(path, f"truncated: measurement {index} ends without the end-of-acquisition "
                              f"(ACQEND) block after {len(mdbs)} readouts")
    for mdb in mdbs:
        if mdb.mem_pos + int(mdb.dma_len) > end:
            raise TwixError(path, f"truncated: readout {mdb.mdh.ScanCounter} of measurement {index} "
                                  f"runs past the end of the data (byte {end})")


def read_twix_file(path: str | os.PathLike[str]) -> TwixFile:
    """Parse every measurement of ``path``; raise :class:`TwixError` if it is not a sound twix file."""
    path = Path(path)
    if not path.is_file():
        raise TwixError(path, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise TwixError(path, "empty file (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(_MULTI_RAID_HEADER_BYTES)
    if len(head) < 8:
        raise TwixError(path, f"not a twix file: only {size} bytes")
    version, table = _measurement_table(path, head, size)
    with open(path, "rb") as f:
        for k, (offset, length) in enumerate(table):
            f.seek(offset)
            (hdr_len,) = struct.unpack("<I", f.read(4))
            if hdr_len < _MIN_MEAS_HEADER_BYTES or hdr_len > length:
                raise TwixError(path, f"not a twix file or truncated: measurement {k} declares a "
                                      f"{hdr_len}-byte header in {length} bytes")

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            scans = twixtools.read_twix(str(path), verbose=False, keep_acqend=True, parse_pmu=False,
                                        parse_geometry=False)
    except Exception as exc:  # twixtools raises whatever numpy/struct raise on garbage
        raise TwixError(path, f"twixtools cannot parse it ({type(exc).__name__}: {exc})") from exc
    for line in printed.getvalue().splitlines():
        if line.strip():
            log.warning("%s: twixtools: %s", path, line.strip())
    if len(scans) != len(table):
        raise TwixError(path, f"twixtools read {len(scans)} of the {len(table)} measurements")
    for k, (scan, (offset, length)) in enumerate(zip(scans, table, strict=True)):
        _check_protocol(path, k, scan)
        _check_data(path, k, scan, offset + length)
    log.info("%s: twix %s, %d measurement(s), %d readouts in the image scan", path, version,
             len(scans), len(scans[-1]["mdb"]) - 1)
    return TwixFile(path, version, scans)
