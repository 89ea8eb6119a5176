"""The raw-data journal: one MRD HDF5 file per connection, written as the data arrive.

Layout is ``ismrmrd.Dataset``'s, written by :class:`mrzero.core.mrd_file.RawMRDWriter`, so the
file reads with ``ismrmrd.Dataset`` and replays with ``mrzero send``. What an MRD file has no
place for goes into attributes of ``/dataset``: ``config`` (the client's config name),
``texts`` (JSON list of the client's text messages, FIRE parameters included), ``client``,
``pipeline``, ``ended`` (how the connection ended), ``acquisitions`` (how many the closed file
holds) and ``journal`` (``complete``, or
``incomplete: why``; a file the server never closed keeps the ``incomplete`` mark it was
created with).

Flush policy: a background thread owns the file; it writes a batch of items as one HDF5
resize + write per table and flushes after every batch, a batch being what arrived within
``flush_interval_s`` of its first item, at most :data:`BATCH_BYTES` (or half the journal's
buffer) and :data:`BATCH_ITEMS`. The
writer keeps the file on disk as of the last flush until the next one, so a SIGKILL of the server
between flushes loses at most the items of the last flush interval (and those still queued, which
the reader waits for when the disk is slower than the network). Such a file says ``journal =
incomplete: not closed by the server...`` and has no ``ended`` attribute.

Write-ahead log: a kill that lands while HDF5 writes a flush can leave a file that does not open.
So before each batch goes into the HDF5 file, the writer appends it to ``<journal>.h5.wal``
(:func:`wal_path`) as an MRD v1 stream, the messages as they came (config file, config text,
header, texts, acquisitions, waveforms, images; no close message), in one ``writev`` per batch of
the bytes already received (no copy), so that any MRD stream reader (``ismrmrd``'s
``ProtocolDeserializer``) reads it. The server's own attributes (``client``, ``pipeline``), which
a stream has no message for, go to the sidecar ``<journal>.h5.wal.json`` (:func:`sidecar_path`),
replaced atomically (temporary file, rename) when they change. Nothing is ``fsync``ed: what
reached the page cache survives a kill of the process, not a power cut of the machine. At any
moment the log holds at least what the HDF5 file holds; the log is locked (``flock``) while the
journal is open and removed, with the sidecar, once the file is closed with its mark (complete,
or incomplete after a disk failure). A log that is still there marks a journal the server did not
close: ``mrzero.server.recovery`` makes it whole (at ``mrzero serve`` start and with ``mrzero
journal recover``).

Bounded memory: the data the journal holds that are not yet on disk (queued, or in the batch
being written) are at most ``buffer_bytes`` (a single larger message is let in alone); the
connection waits for the disk beyond that. HDF5 holds one more copy of the batch until its flush
(``mrzero.core.mrd_file``): a connection's journal needs at most about twice ``buffer_bytes``.

Images first: a journal that cannot be created or written (disk full, out of descriptors, I/O
error, read-only file system; the HDF5 file or its log) never stops the scan. Before each batch
the writer reserves the disk space the batch, its log and the closing of the file need
(``RawMRDWriter.reserve``, ``allocate_ahead`` on the log); when the disk
has not that room (filled by this scan or by another process) it stops *before* writing, so no
flush ever runs out of space halfway (which would leave metadata that no longer read). Where the
file system cannot reserve, the free space is checked instead (racy against other processes).
:attr:`Journal.failure` then says why; the writer stops writing, drops what is queued, and the
file, if there is one, is cut back to what its last flush held, marked incomplete and why, with
the count of acquisitions it holds (attribute ``acquisitions``), and closed readable. The
connection goes on reconstructing from memory and tells the client.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ismrmrd.serialization import ISMRMRDMessageID as MessageId

from mrzero.core.mrd_file import RawMRDWriter, allocate_ahead, readable_acquisitions
from mrzero.server.framing import config_file_message, text_message

log = logging.getLogger(__name__)

_STOP = ("stop",)
#: Default bound of the data a journal holds in memory that are not on disk yet.
BUFFER_BYTES = 32 << 20
#: A batch holds at most this many bytes and items. Larger batches write no faster (4 MB of
#: 131 KB acquisitions: 294 MB/s, 16 MB: 286 MB/s, 1 MB: 197 MB/s; ``RawMRDWriter`` alone, loaded
#: machine) and lengthen the one moment a kill is not survived: HDF5 writing a flush.
BATCH_BYTES = 4 << 20
BATCH_ITEMS = 128
#: Disk space kept reserved beyond every batch for metadata and the closing marks.
RESERVE_BYTES = 1 << 20
#: Attributes that arrive as messages of the MRD stream (config file and config text): they are
#: in the write-ahead log as those messages; the server's other attributes go to the sidecar.
_STREAM_ATTRIBUTES = ("config", "config_text")
#: Buffers per ``os.writev`` (Linux's IOV_MAX is 1024).
_IOV_MAX = 512


def wal_path(path: Path) -> Path:
    """The write-ahead log of the journal ``path``: ``<journal>.h5.wal``."""
    return path.with_name(path.name + ".wal")


def sidecar_path(path: Path) -> Path:
    """The server's attributes of the journal ``path`` while it is open: ``<journal>.h5.wal.json``."""
    return path.with_name(path.name + ".wal.json")


def sidecar_temporary_path(path: Path) -> Path:
    """Where the sidecar is written before it is renamed over the old one (left only by a kill)."""
    return path.with_name(path.name + ".wal.json.tmp")


class _ByteQueue:
    """Items for the writer thread, bounded by the bytes held: queued or taken but not yet on disk
    (:meth:`release` after the flush). A full queue makes :meth:`put` wait (a slow disk)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._items: deque[tuple[Any, int]] = deque()
        self._changed = threading.Condition()
        #: Bytes queued or in the batch being written.
        self.held = 0
        self._closed = False
        self._end: Any = None

    def put(self, item: Any, size: int) -> None:
        with self._changed:
            while self.held and self.held + size > self.limit and not self._closed:
                self._changed.wait()
            if self._closed:
                return
            self._items.append((item, size))
            self.held += size
            self._changed.notify_all()

    def get(self, timeout: float | None) -> tuple[Any, int] | None:
        """The next item and its size, the end sentinel once all are taken, or None when neither
        came within ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._items or self._end is not None, timeout):
                return None
            return self._items.popleft() if self._items else (self._end, 0)

    def release(self, size: int) -> None:
        with self._changed:
            self.held -= size
            self._changed.notify_all()

    def finish(self, sentinel: Any) -> None:
        """End the queue: :meth:`get` gives ``sentinel`` after the last item (also after :meth:`close`)."""
        with self._changed:
            self._end = sentinel
            self._changed.notify_all()

    def close(self) -> None:
        """Drop what is queued and let in nothing more (the journal failed): no put waits."""
        with self._changed:
            self._closed = True
            self._items.clear()
            self.held = 0
            self._changed.notify_all()


_OPEN = (
    "incomplete: not closed by the server (it crashed, or the disk failed); "
    "it holds the acquisitions of its last flush"
)


class Journal:
    """Journal of one connection. Methods are called from the connection's thread and never
    raise for a failing disk: :attr:`failure` says when the journal stopped keeping data.
    ``on_flush(bytes)`` is called by the writer thread with the data bytes each flush made safe."""

    def __init__(
        self,
        path: Path,
        buffer_bytes: int = BUFFER_BYTES,
        flush_interval_s: float = 0.05,
        on_flush: Callable[[int], None] = lambda n: None,
    ):
        self.path = Path(path)
        self._batch_bytes = max(1, min(BATCH_BYTES, buffer_bytes // 2))
        self._interval = flush_interval_s
        self._on_flush = on_flush
        self._queue = _ByteQueue(buffer_bytes)
        self._texts: list[str] = []
        #: Why the journal stopped keeping data (None while it keeps everything).
        self.failure: str | None = None
        self.counts = {MessageId.ACQUISITION: 0, MessageId.WAVEFORM: 0, MessageId.IMAGE: 0}
        self.bytes = 0
        #: Acquisitions on disk as of the last flush (after a failure: what the closed file holds).
        self.held = 0
        self._ended = ""
        self._writer: RawMRDWriter | None = None
        self._thread: threading.Thread | None = None
        #: The write-ahead log: its descriptor (locked while open) and size.
        self._wal: int | None = None
        self._wal_bytes = 0
        #: The server's attributes (client, pipeline...), kept in the sidecar while the log exists.
        self._attributes: dict[str, str] = {}
        self._made: list[Path] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open_wal()
            self._made.append(self.path)
            try:
                self._writer = RawMRDWriter(self.path)
            except FileExistsError:
                self._made.pop()  # not this journal's file
                raise
            self._reserve(RESERVE_BYTES, 0)
            for key, value in (("texts", "[]"), ("journal", _OPEN)):
                self._writer.set_attribute(key, value)
            self._writer.flush()
        except Exception as exc:
            self._abandon_creation(exc)
            return
        self._thread = threading.Thread(target=self._run, name=f"journal {self.path.name}", daemon=True)
        self._thread.start()

    def _open_wal(self) -> None:
        """Create the write-ahead log, locked (``flock``) while this journal has it open: recovery
        leaves a locked log alone, and the lock goes when the process does, killed or not."""
        path = wal_path(self.path)
        self._wal = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._made.append(path)
        fcntl.flock(self._wal, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _abandon_creation(self, exc: BaseException) -> None:
        """The file could not be made: no journal, and no empty unreadable file left behind
        (only files this journal created are removed)."""
        self.failure = f"cannot create the journal {self.path.name}: {exc}"
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
            self._writer = None
        for path in self._made:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # a read-only file system holds no file either
        self._close_wal()

    def _close_wal(self) -> None:
        if self._wal is not None:
            os.close(self._wal)
            self._wal = None

    # -- called by the connection -------------------------------------------------------
    def _put(self, item: Any, size: int) -> None:
        if self.failure is None:
            self._queue.put(item, size)

    def set_attribute(self, key: str, value: str) -> None:
        self._put(("attr", key, value), len(value))

    def text(self, text: str) -> None:
        self._texts.append(text)
        value = json.dumps(self._texts)
        self._put(("text", text, value), len(value) + len(text))

    def header(self, xml: str) -> None:
        self._put(("xml", xml), len(xml))

    def data(self, msg_id: int, body: memoryview) -> None:
        """Journal an acquisition, waveform or image message body (wire layout)."""
        self.counts[msg_id] += 1
        self.bytes += len(body)
        self._put((msg_id, body), len(body))

    @property
    def buffered_bytes(self) -> int:
        """Data held in memory that are not on disk yet (queued, or in the batch being written)."""
        return self._queue.held

    def close(self, ended: str) -> None:
        """Write what is queued, record how the connection ended, close the file."""
        if self._thread is not None and self._thread.is_alive():
            self._ended = ended
            self._queue.finish(_STOP)
            self._thread.join()
        if self.failure is not None:
            log.error("journal %s: %s", self.path, self.failure)

    # -- the writer thread -------------------------------------------------------------
    def _run(self) -> None:
        assert self._writer is not None
        writer = self._writer
        while True:
            first = self._queue.get(None)
            assert first is not None  # without a timeout, get waits for an item
            batch, batch_bytes = [first[0]], first[1]
            deadline = time.monotonic() + self._interval
            while batch[-1] is not _STOP and batch_bytes < self._batch_bytes and len(batch) < BATCH_ITEMS:
                got = self._queue.get(max(0.0, deadline - time.monotonic()))
                if got is None:
                    break
                batch.append(got[0])
                batch_bytes += got[1]
            stop = batch[-1] is _STOP
            if self.failure is None:
                try:
                    self._write(writer, [item for item in batch if item is not _STOP])
                except Exception as exc:
                    self._fail(writer, exc)
            self._queue.release(batch_bytes)
            if stop:
                break
        self._close(writer)

    def _reserve(self, nbytes: int, wal_bytes: int) -> None:
        """Make sure the disk has ``nbytes`` for the HDF5 file and ``wal_bytes`` for the
        write-ahead log before writing them: reserved where the file system can (another process
        cannot take them), else checked."""
        assert self._writer is not None and self._wal is not None
        wal_name = wal_path(self.path).name
        try:
            if self._writer.reserve(nbytes) and (
                not wal_bytes or allocate_ahead(self._wal, self._wal_bytes, wal_bytes, wal_name)
            ):
                return
        except OSError as exc:
            raise OSError(
                errno.ENOSPC,
                f"the disk is nearly full (cannot reserve the {(nbytes + wal_bytes) >> 10} KB that "
                f"the next batch, its write-ahead log and closing the file need: {exc.strerror})",
            ) from None
        nbytes += wal_bytes
        free = shutil.disk_usage(self.path.parent).free
        if free < nbytes:
            raise OSError(
                errno.ENOSPC,
                f"the disk is nearly full ({free >> 10} KB free, the next batch "
                f"needs {nbytes >> 10} KB with the reserve for closing the file)",
            )

    def _write(self, writer: RawMRDWriter, batch: list[Any]) -> None:
        """Write a batch: first to the write-ahead log (and the sidecar when the server's
        attributes changed), then to the HDF5 file, then flush it."""
        data = [len(item[1]) for item in batch if isinstance(item[0], int)]
        texts = sum(len(item[-1]) for item in batch if not isinstance(item[0], int))
        frames = self._frames(batch)
        self._reserve(writer.space_needed(data) + 2 * texts + RESERVE_BYTES, sum(map(len, frames)))
        self._append_wal(frames)
        if any(item[0] == "attr" and item[1] not in _STREAM_ATTRIBUTES for item in batch):
            self._write_sidecar()
        for item in batch:
            if item[0] == "attr":
                writer.set_attribute(item[1], item[2])
            elif item[0] == "text":
                writer.set_attribute("texts", item[2])
            elif item[0] == "xml":
                writer.write_header(item[1])
            elif item[0] == MessageId.IMAGE:
                writer.append_image(item[1])
        writer.append_acquisitions([item[1] for item in batch if item[0] == MessageId.ACQUISITION])
        writer.append_waveforms([item[1] for item in batch if item[0] == MessageId.WAVEFORM])
        writer.flush()
        self.held = writer.rows["data"]
        self._on_flush(sum(data))

    def _frames(self, batch: list[Any]) -> list[bytes | memoryview]:
        """The batch as MRD stream messages for the write-ahead log (data bodies not copied);
        the server's own attributes go to :attr:`_attributes` instead."""
        frames: list[bytes | memoryview] = []
        for item in batch:
            kind = item[0]
            if kind == "attr" and item[1] == "config":
                frames.append(config_file_message(item[2]))
            elif kind == "attr" and item[1] == "config_text":
                frames.append(text_message(MessageId.CONFIG_TEXT, item[2]))
            elif kind == "attr":
                self._attributes[item[1]] = item[2]
            elif kind == "text":
                frames.append(text_message(MessageId.TEXT, item[1]))
            elif kind == "xml":
                frames.append(text_message(MessageId.HEADER, item[1]))
            else:
                frames += [struct.pack("<H", kind), item[1]]
        return frames

    def _append_wal(self, frames: list[bytes | memoryview]) -> None:
        """Append ``frames`` to the write-ahead log with as few system calls as the kernel allows
        (no ``fsync``: what reached the page cache survives a kill of the process)."""
        assert self._wal is not None
        start = 0
        while start < len(frames):
            written = os.writev(self._wal, frames[start : start + _IOV_MAX])
            self._wal_bytes += written
            while start < len(frames) and written >= len(frames[start]):
                written -= len(frames[start])
                start += 1
            if written:  # a short write: the rest of this frame goes with the next call
                frames[start] = memoryview(frames[start])[written:]

    def _write_sidecar(self) -> None:
        """Replace the sidecar with the server's attributes, atomically (temporary file, rename)."""
        temporary = sidecar_temporary_path(self.path)
        temporary.write_text(json.dumps(self._attributes))
        os.replace(temporary, sidecar_path(self.path))

    def _fail(self, writer: RawMRDWriter, exc: BaseException) -> None:
        self.failure = (
            f"writing the journal {self.path.name} failed after {self.held} acquisitions: "
            f"{type(exc).__name__}: {exc}"
        )
        log.error("%s; the scan goes on without it", self.failure)
        self._queue.close()
        try:
            writer.truncate_to_flushed()
        except Exception as cut:
            log.error("journal %s: cannot cut it back to its last flush (%s)", self.path, cut)

    def _close(self, writer: RawMRDWriter) -> None:
        """Record how the connection ended, mark the file complete and close it. After a failure
        the mark says incomplete and why, as far as the file still takes it, and :attr:`held`
        becomes what the closed file really holds."""
        if self.failure is not None:
            marked = self._mark(writer, f"incomplete: {self.failure}")
        elif not (marked := self._mark(writer, "complete")):
            self.failure = "the journal could not be closed complete"
        try:
            writer.close()
        except Exception as exc:
            log.error("journal %s: closing failed: %s", self.path, exc)
            self.failure = self.failure or f"closing the journal failed: {exc}"
            marked = False
        if self.failure is not None:
            self.held = readable_acquisitions(self.path)
        if marked:
            self._remove_wal()
        else:
            log.error("journal %s: its write-ahead log is kept for `mrzero journal recover`", self.path)
        self._close_wal()

    def _remove_wal(self) -> None:
        """The file is closed with its mark: the write-ahead log and sidecar are no longer needed."""
        for path in (wal_path(self.path), sidecar_path(self.path)):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.error("journal %s: cannot remove %s: %s", self.path, path.name, exc)

    def _mark(self, writer: RawMRDWriter, state: str) -> bool:
        try:
            writer.set_attribute("acquisitions", writer.rows["data"])
            writer.set_attribute("ended", self._ended)
            writer.set_attribute("journal", state)
            writer.flush()
            return True
        except Exception as exc:
            log.error(
                "journal %s: cannot record its state (%s); it keeps the mark of its creation: %s",
                self.path,
                exc,
                _OPEN,
            )
            return False
