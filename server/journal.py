"""The raw-data journal: one MRD HDF5 file per connection, written as the data arrive.

Layout is ``ismrmrd.Dataset``'s, written by :class:`mrzero.core.mrd_file.RawMRDWriter`, so the
file reads with ``ismrmrd.Dataset`` and replays with ``mrzero send``. What an MRD file has no
place for goes into attributes of ``/dataset``: ``config`` (the client's config name),
``texts`` (JSON list of the client's text messages, FIRE parameters included), ``client``,
``pipeline``, ``ended`` (how the connection ended) and ``journal`` (``complete``, or
``incomplete: why``; a file the server never closed keeps the ``incomplete`` mark it was
created with).

Flush policy: a background thread owns the file; it writes a batch of items as one HDF5
resize + slice write and flushes after every batch, a batch being at most ``batch_items``
items or ``flush_interval_s`` seconds after its first item. The writer keeps the file on disk
as of the last flush until the next one, so a SIGKILL of the server at any moment loses at
most the items of the last flush interval (and those still queued, at most 128 items,
which the reader waits for when the disk is slower than the network). Such a file says
``journal = incomplete: not closed by the server...`` and has no ``ended`` attribute.

Images first: a journal that cannot be created or written (disk full, out of descriptors, I/O
error, read-only file system) never stops the scan. The writer stops on its own before a batch
would fill the disk (a flush that fails halfway can leave unreadable metadata).
:attr:`Journal.failure` then says why; the writer stops writing, drops what is queued, and the
file, if there is one, is cut back to what its last flush held, marked incomplete and why, and
closed readable. The connection goes on reconstructing from memory and tells the client.
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ismrmrd.serialization import ISMRMRDMessageID as MessageId

from mrzero.core.mrd_file import CHUNK_ROWS, RawMRDWriter, readable_acquisitions

log = logging.getLogger(__name__)

_STOP = object()
#: Items waiting for the writer thread; a full queue makes the connection wait (a slow disk).
QUEUE_ITEMS = 128
#: Free space kept on the journal's disk for metadata and the closing marks.
RESERVE_BYTES = 256 << 10
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
        batch_items: int = 32,
        flush_interval_s: float = 0.05,
        on_flush: Callable[[int], None] = lambda n: None,
    ):
        self.path = Path(path)
        self._batch_items = batch_items
        self._interval = flush_interval_s
        self._on_flush = on_flush
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_ITEMS)
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = RawMRDWriter(self.path)
            for key, value in (("texts", "[]"), ("journal", _OPEN)):
                self._writer.set_attribute(key, value)
            self._writer.flush()
        except Exception as exc:
            self._abandon_creation(exc)
            return
        self._thread = threading.Thread(target=self._run, name=f"journal {self.path.name}", daemon=True)
        self._thread.start()

    def _abandon_creation(self, exc: BaseException) -> None:
        """The file could not be made: no journal, and no empty unreadable file left behind."""
        self.failure = f"cannot create the journal {self.path.name}: {exc}"
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
            self._writer = None
        if not isinstance(exc, FileExistsError):
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass  # a read-only file system holds no file either

    # -- called by the connection -------------------------------------------------------
    def _put(self, item: Any) -> None:
        if self.failure is None:
            self._queue.put(item)

    def set_attribute(self, key: str, value: str) -> None:
        self._put(("attr", key, value))

    def text(self, text: str) -> None:
        self._texts.append(text)
        self._put(("attr", "texts", json.dumps(self._texts)))

    def header(self, xml: str) -> None:
        self._put(("xml", xml))

    def data(self, msg_id: int, body: memoryview) -> None:
        """Journal an acquisition, waveform or image message body (wire layout)."""
        self.counts[msg_id] += 1
        self.bytes += len(body)
        self._put((msg_id, body))

    def close(self, ended: str) -> None:
        """Write what is queued, record how the connection ended, close the file."""
        if self._thread is not None and self._thread.is_alive():
            self._ended = ended
            self._queue.put(_STOP)
            self._thread.join()
        if self.failure is not None:
            log.error("journal %s: %s", self.path, self.failure)

    # -- the writer thread -------------------------------------------------------------
    def _run(self) -> None:
        assert self._writer is not None
        writer = self._writer
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self._interval
            while batch[-1] is not _STOP and len(batch) < self._batch_items:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP
            if self.failure is None:
                try:
                    self._write(writer, [item for item in batch if item is not _STOP])
                except Exception as exc:
                    self._fail(writer, exc)
            if stop:
                break
        self._close(writer)

    def _check_space(self, batch: list[Any]) -> None:
        """Stop before the disk runs full rather than when it has: a flush that fails halfway
        leaves metadata that no longer read. The batch needs its bytes, up to two new chunks
        (a chunk is written whole) and room for the metadata and the closing marks."""
        sizes = [len(item[1]) for item in batch if isinstance(item[0], int)]
        needed = sum(sizes) + 2 * CHUNK_ROWS * max(sizes, default=0) + RESERVE_BYTES
        free = shutil.disk_usage(self.path.parent).free
        if free < needed:
            raise OSError(
                errno.ENOSPC,
                f"the disk is nearly full ({free >> 10} KB free, the next batch "
                f"needs {needed >> 10} KB with the reserve for closing the file)",
            )

    def _write(self, writer: RawMRDWriter, batch: list[Any]) -> None:
        self._check_space(batch)
        for item in batch:
            if item[0] == "attr":
                writer.set_attribute(item[1], item[2])
            elif item[0] == "xml":
                writer.write_header(item[1])
            elif item[0] == MessageId.IMAGE:
                writer.append_image(item[1])
        writer.append_acquisitions([item[1] for item in batch if item[0] == MessageId.ACQUISITION])
        writer.append_waveforms([item[1] for item in batch if item[0] == MessageId.WAVEFORM])
        writer.flush()
        self.held = writer.rows["data"]
        self._on_flush(sum(len(item[1]) for item in batch if isinstance(item[0], int)))

    def _fail(self, writer: RawMRDWriter, exc: BaseException) -> None:
        self.failure = (
            f"writing the journal {self.path.name} failed after {self.held} acquisitions: "
            f"{type(exc).__name__}: {exc}"
        )
        log.error("%s; the scan goes on without it", self.failure)
        try:
            writer.truncate_to_flushed()
        except Exception as cut:
            log.error("journal %s: cannot cut it back to its last flush (%s)", self.path, cut)

    def _close(self, writer: RawMRDWriter) -> None:
        """Record how the connection ended, mark the file complete and close it. After a failure
        the mark says incomplete and why, as far as the file still takes it, and :attr:`held`
        becomes what the closed file really holds."""
        if self.failure is not None:
            self._mark(writer, f"incomplete: {self.failure}")
        elif not self._mark(writer, "complete"):
            self.failure = "the journal could not be closed complete"
        try:
            writer.close()
        except Exception as exc:
            log.error("journal %s: closing failed: %s", self.path, exc)
            self.failure = self.failure or f"closing the journal failed: {exc}"
        if self.failure is not None:
            self.held = readable_acquisitions(self.path)

    def _mark(self, writer: RawMRDWriter, state: str) -> bool:
        try:
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
