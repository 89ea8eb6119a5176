"""The one writer of MRD raw-data HDF5 files (``ismrmrd.Dataset``'s layout), batched and crash-consistent.

Layout: ``/<group>/xml``, ``/<group>/data`` (``ismrmrd.hdf5.acquisition_dtype`` rows),
``/<group>/waveforms`` and ``/<group>/images_received/{header,attributes,data}``; the files read
with ``ismrmrd.Dataset``, ISMRMRD's C++ tools and ``mrzero send``. Used by the server's journal,
the twix converter and the simulated-scan export.

Rows are appended a batch at a time (one HDF5 resize + slice write): ``ismrmrd.Dataset``'s one
row per call costs milliseconds each.

Crash consistency: the HDF5 metadata cache never evicts on its own (``evictions_enabled`` off),
so the file's metadata on disk change only in :meth:`RawMRDWriter.flush`. Between two flushes
the file on disk is the one of the last flush: new rows live in space past its end, and a
process killed (SIGKILL, OOM) at any moment leaves a file that opens with every row flushed
before. A partly filled chunk is rewritten in place with its old rows unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import ismrmrd
import numpy as np
from ismrmrd.hdf5 import (
    acquisition_dtype,
    acquisition_header_dtype,
    get_hdf5type,
    image_header_dtype,
    waveform_dtype,
    waveform_header_dtype,
)
from ismrmrd.image import get_dtype_from_data_type

_ACQ_HEAD = acquisition_header_dtype.itemsize
_WAV_HEAD = waveform_header_dtype.itemsize
_IMG_HEAD = image_header_dtype.itemsize
#: Rows per HDF5 chunk of the acquisition and waveform tables.
CHUNK_ROWS = 64


class MRDFileError(RuntimeError):
    """An MRD file cannot hold what was given (an image of another shape than the earlier ones)."""


def acquisition_body(acq: ismrmrd.Acquisition) -> bytes:
    """The wire layout (header, trajectory, samples) of ``acq``, what :meth:`RawMRDWriter.append` takes."""
    return acq.to_bytes()


def _acquisition_row(body: memoryview | bytes, out: np.ndarray) -> None:
    head = np.frombuffer(body, acquisition_header_dtype, count=1)[0]
    n_traj = int(head["number_of_samples"]) * int(head["trajectory_dimensions"])
    out["head"] = head
    out["traj"] = np.frombuffer(body, np.float32, count=n_traj, offset=_ACQ_HEAD)
    out["data"] = np.frombuffer(body, np.float32, offset=_ACQ_HEAD + 4 * n_traj)


def _waveform_row(body: memoryview | bytes, out: np.ndarray) -> None:
    out["head"] = np.frombuffer(body, waveform_header_dtype, count=1)[0]
    out["data"] = np.frombuffer(body, np.uint32, offset=_WAV_HEAD)


class RawMRDWriter:
    """A new MRD HDF5 file under ``group``; the file exists from the constructor on (``exclusive``:
    an existing file is an error, else it is replaced). Not thread-safe: one writer thread."""

    def __init__(self, path: str | Path, group: str = "dataset", exclusive: bool = True):
        self.path = Path(path)
        self._file = h5py.File(self.path, "w-" if exclusive else "w")
        config = self._file.id.get_mdc_config()
        config.evictions_enabled = False  # metadata reach the disk only in flush()
        config.incr_mode = config.decr_mode = config.flash_incr_mode = 0  # required with evictions off
        self._file.id.set_mdc_config(config)
        self._group = self._file.create_group(group)
        #: Rows written (not necessarily flushed) per table: ``data``, ``waveforms``, ``images``.
        self.rows = {"data": 0, "waveforms": 0, "images": 0}
        #: Rows as of the last :meth:`flush`.
        self.flushed = dict(self.rows)

    def set_attribute(self, key: str, value: Any) -> None:
        """An attribute of the group (what MRD has no place for: config name, client texts...)."""
        self._group.attrs[key] = value

    def write_header(self, xml: str) -> None:
        self._group.create_dataset("xml", (1,), dtype=h5py.special_dtype(vlen=bytes))[0] = xml.encode("utf-8")

    def append_acquisitions(self, bodies: list[memoryview] | list[bytes]) -> None:
        """Append acquisitions given in their wire layout (:func:`acquisition_body`)."""
        self._append("data", acquisition_dtype, bodies, _acquisition_row)

    def append_waveforms(self, bodies: list[memoryview] | list[bytes]) -> None:
        self._append("waveforms", waveform_dtype, bodies, _waveform_row)

    def _append(self, name: str, dtype: np.dtype, bodies: list[Any], fill: Any) -> None:
        if not bodies:
            return
        records = np.empty(len(bodies), dtype)
        for record, body in zip(records, bodies, strict=True):
            fill(body, record)
        if name not in self._group:
            self._group.create_dataset(name, (0,), maxshape=(None,), dtype=dtype, chunks=(CHUNK_ROWS,))
        ds = self._group[name]
        start = ds.shape[0]
        ds.resize(start + len(bodies), axis=0)
        ds[start:] = records
        self.rows[name] = start + len(bodies)

    def append_image(self, body: memoryview | bytes) -> None:
        """Append an image message body (header, attribute length and text, pixels) to
        ``images_received``; every image of a file has the first one's shape."""
        head = np.frombuffer(body, image_header_dtype, count=1)[0]
        (attr_len,) = np.frombuffer(body, np.uint64, count=1, offset=_IMG_HEAD)
        attr_end = _IMG_HEAD + 8 + int(attr_len)
        attr = bytes(body[_IMG_HEAD + 8 : attr_end]).rstrip(b"\0").decode("utf-8", "replace")
        dtype = get_dtype_from_data_type(int(head["data_type"]))
        stored = get_hdf5type(int(head["data_type"]))
        shape = (int(head["channels"]), *(int(v) for v in head["matrix_size"][::-1]))
        data = np.frombuffer(body, dtype, offset=attr_end).reshape(shape)
        group = self._group.require_group("images_received")
        if "header" not in group:
            group.create_dataset("header", (0,), maxshape=(None,), dtype=image_header_dtype)
            group.create_dataset("attributes", (0,), maxshape=(None,), dtype=h5py.string_dtype())
            group.create_dataset("data", (0, *shape), maxshape=(None, *shape), dtype=stored)
        n = group["header"].shape[0]
        if group["data"].shape[1:] != shape:
            raise MRDFileError(
                f"received image {n} has shape {shape}, earlier ones "
                f"{group['data'].shape[1:]}; the file keeps one image shape"
            )
        for key in ("header", "attributes", "data"):
            group[key].resize(n + 1, axis=0)
        group["header"][n] = head
        group["attributes"][n] = attr
        group["data"][n] = data.view(stored)
        self.rows["images"] = n + 1

    def flush(self) -> None:
        """Make everything written so far what a reader (or a restart after a crash) sees."""
        self._file.flush()
        self.flushed = dict(self.rows)

    def truncate_to_flushed(self) -> None:
        """After a failed write (disk full, I/O error): cut every table back to what the last
        flush held, so that no later flush (closing flushes too) records rows whose data may
        never have reached the disk."""
        tables = {
            "data": ["data"],
            "waveforms": ["waveforms"],
            "images": [f"images_received/{key}" for key in ("header", "attributes", "data")],
        }
        for table, names in tables.items():
            for name in names:
                if name in self._group and self._group[name].shape[0] > self.flushed[table]:
                    self._group[name].resize(self.flushed[table], axis=0)
            self.rows[table] = self.flushed[table]

    def close(self) -> None:
        self._file.close()


def readable_acquisitions(path: str | Path, group: str = "dataset") -> int:
    """How many acquisitions a possibly damaged file (a write that failed, a crash) really holds:
    the leading rows that read back with a non-empty header. A row whose data never reached the
    disk reads as HDF5's fill value, all zeros. 0 if the file does not open."""
    try:
        with h5py.File(path, "r") as f:
            if f"{group}/data" not in f:
                return 0
            heads = f[f"{group}/data"].fields("head")[:]
    except (OSError, RuntimeError, KeyError):
        return 0
    filled = heads.view(np.uint8).reshape(len(heads), -1).any(axis=1)
    return int(len(filled) if filled.all() else np.argmin(filled))


def write_raw_file(
    path: str | Path,
    header_xml: str,
    acquisitions: Iterable[ismrmrd.Acquisition],
    group: str = "dataset",
    exclusive: bool = True,
    batch: int = 256,
) -> int:
    """Write ``header_xml`` and ``acquisitions`` to a new MRD HDF5 file, ``batch`` rows per
    write; returns how many acquisitions were written."""
    writer = RawMRDWriter(path, group, exclusive)
    try:
        writer.write_header(header_xml)
        pending: list[bytes] = []
        for acq in acquisitions:
            pending.append(acquisition_body(acq))
            if len(pending) == batch:
                writer.append_acquisitions(pending)
                pending = []
        writer.append_acquisitions(pending)
    finally:
        writer.close()
    return writer.rows["data"]
