"""Reading a Siemens twix ``.dat`` file with twixtools, after checking that it is one.

twixtools parses what it is given and, on a damaged file, prints a warning, loops over
garbage (forever, on a zero-length block) or fails deep inside numpy. This module checks the
file's framing first (size, multi-RAID table, measurement and header lengths), takes only the
protocols from twixtools, and walks the readout blocks itself with twixtools' block parser,
checking each block's length and the end-of-acquisition marker, so that every problem becomes
a :class:`TwixError` that names the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import twixtools
from twixtools import mdh_def
from twixtools.mdb import Mdb

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
    #: twixtools scan dicts, one per measurement: ``hdr`` (the parsed protocol) and ``mdb`` (the
    #: data blocks, without the closing ACQEND block).
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
            offset, length = struct.unpack("<QQ", head[base + 8 : base + 24])
            if length == 0 and second == 1:
                length = size - offset
            if offset < _MULTI_RAID_HEADER_BYTES or offset >= size:
                raise TwixError(
                    path,
                    f"not a twix file or truncated: measurement {k} starts at byte "
                    f"{offset}, outside the file ({size} bytes)",
                )
            if offset + length > size:
                raise TwixError(
                    path,
                    f"truncated: measurement {k} needs bytes {offset}..{offset + length} "
                    f"but the file has {size} bytes",
                )
            table.append((offset, length))
        return "VD/VE", table
    if first < _MIN_MEAS_HEADER_BYTES or first >= size:
        raise TwixError(
            path,
            "not a twix file: neither a VD/VE multi-RAID header nor a VB "
            f"measurement header (header length {first} for a file of {size} bytes)",
        )
    return "VB", [(0, size)]


def _check_protocol(path: Path, index: int, scan: dict[str, Any]) -> None:
    hdr = scan.get("hdr") or {}
    if not isinstance(hdr.get("MeasYaps"), dict) or not hdr["MeasYaps"]:
        raise TwixError(
            path, f"not a twix file: measurement {index} has no protocol (MeasYaps) in its header"
        )


def _readouts(path: Path, index: int, handle: BinaryIO, start: int, end: int, is_ve: bool) -> list[Any]:
    """The measurement data blocks between ``start`` and ``end``, up to and without ACQEND.

    twixtools' own loop trusts every block's length; a zero length (garbage) makes it spin
    forever and a short file makes it read past the end. This walk uses twixtools' ``Mdb``
    parser for each block but checks every length against the measurement's extent.
    """
    header_bytes = ctypes.sizeof(mdh_def.Scan_header if is_ve else mdh_def.VB17_header)
    readouts: list[Any] = []
    pos = start
    while True:
        if pos + header_bytes > end:
            raise TwixError(
                path,
                f"truncated: measurement {index} ends after {len(readouts)} readouts "
                "without the end-of-acquisition (ACQEND) block",
            )
        handle.seek(pos)
        try:
            mdb = Mdb(handle, is_ve)
        except Exception as exc:  # ctypes/numpy errors on garbage
            raise TwixError(
                path,
                f"unreadable readout header at byte {pos} of measurement {index} "
                f"({type(exc).__name__}: {exc})",
            ) from exc
        if mdb.is_flag_set("ACQEND"):
            return readouts
        length = int(mdb.dma_len)
        empty = not mdb.is_flag_set("SYNCDATA") and (mdb.mdh.UsedChannels == 0 or mdb.mdh.SamplesInScan == 0)
        if length < header_bytes or empty:
            raise TwixError(
                path,
                f"corrupt readout header at byte {pos} of measurement {index} "
                f"(block length {length}, {mdb.mdh.UsedChannels} channels x "
                f"{mdb.mdh.SamplesInScan} samples)",
            )
        if pos + length > end:
            raise TwixError(
                path,
                f"truncated: readout {len(readouts)} of measurement {index} runs past "
                f"the end of its data (byte {end})",
            )
        readouts.append(mdb)
        pos += length


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
        header_lengths = []
        for k, (offset, length) in enumerate(table):
            f.seek(offset)
            (hdr_len,) = struct.unpack("<I", f.read(4))
            if hdr_len < _MIN_MEAS_HEADER_BYTES or hdr_len > length:
                raise TwixError(
                    path,
                    f"not a twix file or truncated: measurement {k} declares a "
                    f"{hdr_len}-byte header in {length} bytes",
                )
            header_lengths.append(hdr_len)

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):  # protocols only: the readouts are walked below
            scans = twixtools.read_twix(
                str(path), verbose=False, parse_data=False, parse_pmu=False, parse_geometry=False
            )
    except Exception as exc:  # twixtools raises whatever numpy/struct raise on garbage
        raise TwixError(path, f"twixtools cannot parse its header ({type(exc).__name__}: {exc})") from exc
    for line in printed.getvalue().splitlines():
        if line.strip():
            log.warning("%s: twixtools: %s", path, line.strip())
    if len(scans) != len(table):
        raise TwixError(path, f"twixtools read {len(scans)} of the {len(table)} measurements")
    with open(path.resolve(), "rb") as f:
        for k, (scan, (offset, length), hdr_len) in enumerate(zip(scans, table, header_lengths, strict=True)):
            _check_protocol(path, k, scan)
            scan["mdb"] = _readouts(path, k, f, offset + hdr_len, offset + length, version == "VD/VE")
    log.info(
        "%s: twix %s, %d measurement(s), %d readouts in the image scan",
        path,
        version,
        len(scans),
        len(scans[-1]["mdb"]),
    )
    return TwixFile(path, version, scans)
