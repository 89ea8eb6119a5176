"""The one writer of MRD raw-data HDF5 files (``ismrmrd.Dataset``'s layout), batched and crash-consistent.

Layout: ``/<group>/xml``, ``/<group>/data`` (``ismrmrd.hdf5.acquisition_dtype`` rows),
``/<group>/waveforms`` and ``/<group>/images_received/{header,attributes,data}``; the files read
with ``ismrmrd.Dataset``, ISMRMRD's C++ tools and ``mrzero send``. Used by the server's journal,
the twix converter and the simulated-scan export.

Rows are appended a batch at a time (one HDF5 resize + one write): ``ismrmrd.Dataset``'s one
row per call costs milliseconds each. The samples of a row are HDF5 variable-length data; h5py
would copy every row's arrays into its own buffers (and hold the GIL throughout), so the rows are
handed to the HDF5 library that h5py loaded as its native variable-length records, pointing into
the caller's message bytes, with the GIL released (h5py's lock still held): the server's reading
thread runs while the journal writes. Where that library cannot be found (not Linux, an h5py
built another way), rows go through h5py as before.

Crash consistency: the HDF5 metadata cache never evicts on its own (``evictions_enabled`` off),
so the file's metadata on disk change only in :meth:`RawMRDWriter.flush`. Between two flushes
the file on disk is the one of the last flush: new rows live in space past its end, and a
process killed (SIGKILL, OOM) at any moment leaves a file that opens with every row flushed
before. A partly filled chunk is rewritten in place with its old rows unchanged.

Bounded memory: HDF5 keeps the samples of variable-length rows (global heap collections) in the
metadata cache, and a cache that never evicts would hold the whole file (a 2 GB scan: about
4 GB of memory). Right after each flush, when every entry is clean and evicting writes nothing,
the cache is shrunk to its minimum: the writer holds at most what was written since the last
flush.

Disk space: :meth:`RawMRDWriter.reserve` allocates the file's next bytes on disk ahead of the
writes (``fallocate`` keeping the file size), so that a flush never runs out of space halfway,
even when another process fills the disk: a flush that fails halfway can leave metadata that
point to data never written (attributes that no longer read).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import h5py
import h5py._objects
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
#: Bytes of file per variable-length record beside its samples (global heap object and
#: collection headers), and per table row in a chunk (header and references: 372), generously.
_HEAP_OVERHEAD = 128
_ROW_BYTES = 512
#: The metadata cache's size between flushes, and its size right after one (HDF5's minimum).
_CACHE_BYTES = 2 << 20
_FALLOC_FL_KEEP_SIZE = 1


class MRDFileError(RuntimeError):
    """An MRD file cannot hold what was given (an image of another shape than the earlier ones)."""


def acquisition_body(acq: ismrmrd.Acquisition) -> bytes:
    """The wire layout (header, trajectory, samples) of ``acq``, what :meth:`RawMRDWriter.append` takes."""
    return acq.to_bytes()


def _acquisition_vlens(body: memoryview | bytes) -> tuple[int, int]:
    """Float32 counts of the trajectory and the samples of an acquisition message body."""
    head = np.frombuffer(body, acquisition_header_dtype, count=1)[0]
    n_traj = int(head["number_of_samples"]) * int(head["trajectory_dimensions"])
    rest = len(body) - _ACQ_HEAD - 4 * n_traj
    if rest < 0 or rest % 4:
        raise MRDFileError(
            f"acquisition (scan counter {int(head['scan_counter'])}) of {len(body)} bytes does not "
            f"match its header ({n_traj} trajectory values, then float32 samples)"
        )
    return n_traj, rest // 4


def _waveform_vlens(body: memoryview | bytes) -> tuple[int]:
    rest = len(body) - _WAV_HEAD
    if rest < 0 or rest % 4:
        raise MRDFileError(f"waveform of {len(body)} bytes is not a header and uint32 samples")
    return (rest // 4,)


#: Per table: the header dtype, the variable-length fields' element dtypes, their counts.
_TABLES: dict[str, tuple[np.dtype, np.dtype, tuple[np.dtype, ...], Any]] = {
    "data": (acquisition_dtype, acquisition_header_dtype, (np.float32, np.float32), _acquisition_vlens),
    "waveforms": (waveform_dtype, waveform_header_dtype, (np.uint32,), _waveform_vlens),
}


def _h5py_rows(table: str, bodies: list[Any]) -> np.ndarray:
    """The rows as h5py takes them: object fields holding arrays over the bodies (h5py copies them)."""
    dtype, head_dtype, element_types, vlens = _TABLES[table]
    records = np.empty(len(bodies), dtype)
    for record, body in zip(records, bodies, strict=True):
        record["head"] = np.frombuffer(body, head_dtype, count=1)[0]
        offset = head_dtype.itemsize
        for name, element, count in zip(dtype.names[1:], element_types, vlens(body), strict=True):
            record[name] = np.frombuffer(body, element, count, offset)
            offset += count * np.dtype(element).itemsize
    return records


def _native_rows(table: str, bodies: list[Any], row_bytes: int) -> np.ndarray:
    """The rows in HDF5's memory layout of the table's type: the header's bytes, then per
    variable-length field ``hvl_t`` (count, pointer into the body). The bodies must outlive the write."""
    _, head_dtype, element_types, vlens = _TABLES[table]
    head = head_dtype.itemsize
    rows = np.zeros((len(bodies), row_bytes), np.uint8)
    refs = rows[:, head:].view(np.uint64)  # (count, address) pairs
    for i, body in enumerate(bodies):
        raw = np.frombuffer(body, np.uint8)
        rows[i, :head] = raw[:head]
        address, offset = raw.__array_interface__["data"][0], head
        for k, (element, count) in enumerate(zip(element_types, vlens(body), strict=True)):
            refs[i, 2 * k : 2 * k + 2] = count, (address + offset if count else 0)
            offset += count * np.dtype(element).itemsize
    return rows


class _NativeHDF5:
    """The HDF5 library that h5py has loaded, called directly: with the GIL released (ctypes),
    under h5py's lock (the library is not thread-safe; every h5py call takes that lock)."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path, use_errno=True)
        self._write = lib.H5Dwrite
        self._write.argtypes = [ctypes.c_int64] * 5 + [ctypes.c_void_p]
        self._write.restype = ctypes.c_int
        self._flush = lib.H5Fflush
        self._flush.argtypes = [ctypes.c_int64, ctypes.c_int]
        self._flush.restype = ctypes.c_int

    def _check(self, status: int, what: str) -> None:
        if status < 0:
            code = ctypes.get_errno() or errno.EIO
            raise OSError(code, f"{os.strerror(code)} ({what})")

    def write(self, dataset: h5py.Dataset, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` (the dataset type's memory layout) at rows ``start`` onwards."""
        memory = h5py.h5s.create_simple((len(rows),))
        selection = dataset.id.get_space()
        selection.select_hyperslab((start,), (len(rows),))
        memory_type = dataset.id.get_type()  # memory layout: variable-length fields as hvl_t
        with h5py._objects.phil:
            status = self._write(dataset.id.id, memory_type.id, memory.id, selection.id, 0, rows.ctypes.data)
        self._check(status, f"HDF5 could not write {len(rows)} rows of {dataset.name}")

    def flush(self, file: h5py.File) -> None:
        with h5py._objects.phil:
            status = self._flush(file.id.id, 0)  # H5F_SCOPE_LOCAL
        self._check(status, f"HDF5 could not flush {file.filename}")


@cache
def _native() -> _NativeHDF5 | None:
    """The library h5py uses, where it is the one HDF5 library of this process (Linux: found in
    ``/proc/self/maps``); None elsewhere (rows then go through h5py)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = set(re.findall(r"/\S*/libhdf5(?:_serial)?[-.][^/\s]*", maps.read()))
    except OSError:
        return None
    if len(paths) != 1 or h5py.version.hdf5_version_tuple < (1, 10, 0):  # hid_t is 64-bit from 1.10
        return None
    return _NativeHDF5(paths.pop())


@cache
def _fallocate() -> Any:
    """libc's ``fallocate`` (Linux), or None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return function


def allocate_ahead(fd: int, start: int, nbytes: int, name: str) -> bool:
    """Allocate bytes ``start`` to ``start + nbytes`` of the open file ``fd`` on disk without
    changing its size (``fallocate`` keeping the size): later writes there cannot run out of
    space. False where the file system or platform cannot; :class:`OSError` (``ENOSPC``) when
    the disk has not that much room. ``name`` is for the error text."""
    fallocate = _fallocate()
    if fallocate is None:
        return False
    if fallocate(fd, _FALLOC_FL_KEEP_SIZE, start, nbytes) != 0:
        code = ctypes.get_errno()
        if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return False
        raise OSError(code, f"{os.strerror(code)}: no room to reserve {nbytes >> 10} KB for {name}")
    return True


class RawMRDWriter:
    """A new MRD HDF5 file under ``group``; the file exists from the constructor on (``exclusive``:
    an existing file is an error, else it is replaced). Not thread-safe: one writer thread."""

    def __init__(self, path: str | Path, group: str = "dataset", exclusive: bool = True):
        self.path = Path(path)
        self._file = h5py.File(self.path, "w-" if exclusive else "w")
        config = self._file.id.get_mdc_config()
        config.evictions_enabled = False  # metadata reach the disk only in flush()
        config.incr_mode = config.decr_mode = config.flash_incr_mode = 0  # required with evictions off
        config.set_initial_size, config.initial_size = True, _CACHE_BYTES
        self._file.id.set_mdc_config(config)
        self._group = self._file.create_group(group)
        #: Rows written (not necessarily flushed) per table: ``data``, ``waveforms``, ``images``.
        self.rows = {"data": 0, "waveforms": 0, "images": 0}
        #: Rows as of the last :meth:`flush`.
        self.flushed = dict(self.rows)
        #: File offset up to which :meth:`reserve` allocated disk space.
        self._reserved_to = 0

    def set_attribute(self, key: str, value: Any) -> None:
        """An attribute of the group (what MRD has no place for: config name, client texts...)."""
        self._group.attrs[key] = value

    def write_header(self, xml: str) -> None:
        self._group.create_dataset("xml", (1,), dtype=h5py.special_dtype(vlen=bytes))[0] = xml.encode("utf-8")

    def append_acquisitions(self, bodies: list[memoryview] | list[bytes]) -> None:
        """Append acquisitions given in their wire layout (:func:`acquisition_body`)."""
        self._append("data", bodies)

    def append_waveforms(self, bodies: list[memoryview] | list[bytes]) -> None:
        self._append("waveforms", bodies)

    def _append(self, name: str, bodies: list[Any]) -> None:
        if not bodies:
            return
        if name not in self._group:
            self._group.create_dataset(
                name, (0,), maxshape=(None,), dtype=_TABLES[name][0], chunks=(CHUNK_ROWS,)
            )
        ds = self._group[name]
        start = ds.shape[0]
        native = _native()
        rows = _native_rows(name, bodies, ds.id.get_type().get_size()) if native else _h5py_rows(name, bodies)
        ds.resize(start + len(bodies), axis=0)
        if native:
            native.write(ds, start, rows)
        else:
            ds[start:] = rows
        self.rows[name] = start + len(bodies)

    @staticmethod
    def space_needed(sizes: list[int]) -> int:
        """File space that rows of these message sizes may take: their samples and heap records
        and up to two new chunks of the table (a chunk is written whole)."""
        return sum(sizes) + _HEAP_OVERHEAD * len(sizes) + 2 * CHUNK_ROWS * _ROW_BYTES

    def reserve(self, nbytes: int) -> bool:
        """Allocate the ``nbytes`` past the file's current end on disk (the file's size does not
        change), so that writing and flushing that much never needs space another process can
        take. False where the file system cannot (the caller then checks the free space
        itself); :class:`OSError` (``ENOSPC``) when the disk has not that much room."""
        start = self._file.id.get_filesize()
        if not allocate_ahead(self._file.id.get_vfd_handle(), start, nbytes, self.path.name):
            return False
        self._reserved_to = max(self._reserved_to, start + nbytes)
        return True

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
        """Make everything written so far what a reader (or a restart after a crash) sees, then
        empty the metadata cache of what the flush wrote."""
        native = _native()
        if native:
            native.flush(self._file)
        else:
            self._file.flush()
        self.flushed = dict(self.rows)
        self._shrink_cache()

    def _shrink_cache(self) -> None:
        """Evict the metadata cache down to HDF5's minimum size. Only right after a flush: every
        entry is clean then, so evicting writes nothing to the file (crash consistency holds)."""
        file_id = self._file.id
        config = file_id.get_mdc_config()
        config.set_initial_size = True  # else the size below is not applied
        config.evictions_enabled, config.initial_size = True, config.min_size
        file_id.set_mdc_config(config)  # a smaller size: the next cache access evicts down to it
        "journal" in self._group.attrs  # noqa: B015  (that access: reads the group's header)
        config.evictions_enabled, config.initial_size = False, _CACHE_BYTES
        file_id.set_mdc_config(config)

    def cache_bytes(self) -> int:
        """Bytes in HDF5's metadata cache of this file (what the writer holds beside the chunk cache)."""
        return int(self._file.id.get_mdc_size()[2])

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
        """Close the file and give back the disk space :meth:`reserve` allocated past its end."""
        self._file.close()
        if not self._reserved_to:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError:
            return  # the file went away: so did its blocks
        try:
            size = os.fstat(fd).st_size
            if self._reserved_to > size:  # a shrinking truncate frees every block past the size
                os.ftruncate(fd, size + 1)
                os.ftruncate(fd, size)
        finally:
            os.close(fd)


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
    write and flush; returns how many acquisitions were written."""
    writer = RawMRDWriter(path, group, exclusive)
    try:
        writer.write_header(header_xml)
        pending: list[bytes] = []
        for acq in acquisitions:
            pending.append(acquisition_body(acq))
            if len(pending) == batch:
                writer.append_acquisitions(pending)
                writer.flush()  # the metadata cache holds no more than a batch (twix files: GBs)
                pending = []
        writer.append_acquisitions(pending)
    finally:
        writer.close()
    return writer.rows["data"]
