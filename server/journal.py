"""The raw-data journal: one MRD HDF5 file per connection, written as the data arrive.

Layout is ``ismrmrd.Dataset``'s (``/dataset/xml``, ``/dataset/data``, ``/dataset/waveforms``,
``/dataset/images_received/{header,attributes,data}``), so the file reads with
``ismrmrd.Dataset`` and replays with ``mrzero send``. What an MRD file has no place for goes
into attributes of ``/dataset``: ``config`` (the client's config name), ``texts`` (JSON list of
the client's text messages, FIRE parameters included), ``client``, ``pipeline`` and ``ended``.

Flush policy: a background thread owns the file; it writes a batch of items as one HDF5
resize + slice write and flushes the file after every batch, a batch being at most
``batch_items`` items or ``flush_interval_s`` seconds after its first item. Writing one item
at a time costs about three times as much (HDF5 variable-length writes), so batching is what
keeps the journal above the ingest target. The journal lives in the server process, apart from
the pipeline worker, so a pipeline crash loses nothing; a client that vanishes closes the
journal normally; only a crash of the server process itself can lose the last batch.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import h5py
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
from ismrmrd.serialization import ISMRMRDMessageID as MessageId

log = logging.getLogger(__name__)

_ACQ_HEAD = acquisition_header_dtype.itemsize
_WAV_HEAD = waveform_header_dtype.itemsize
_IMG_HEAD = image_header_dtype.itemsize
_STOP = object()


class JournalError(RuntimeError):
    """The journal could not be written (disk full, permissions...)."""


def _acquisition_record(body: memoryview, out: np.ndarray) -> None:
    head = np.frombuffer(body, acquisition_header_dtype, count=1)[0]
    n_traj = int(head["number_of_samples"]) * int(head["trajectory_dimensions"])
    out["head"] = head
    out["traj"] = np.frombuffer(body, np.float32, count=n_traj, offset=_ACQ_HEAD)
    out["data"] = np.frombuffer(body, np.float32, offset=_ACQ_HEAD + 4 * n_traj)


def _waveform_record(body: memoryview, out: np.ndarray) -> None:
    out["head"] = np.frombuffer(body, waveform_header_dtype, count=1)[0]
    out["data"] = np.frombuffer(body, np.uint32, offset=_WAV_HEAD)


class Journal:
    """Journal of one connection. Methods are called from the connection's thread."""

    def __init__(self, path: Path, batch_items: int = 32, flush_interval_s: float = 0.05):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w-")
        self._group = self._file.create_group("dataset")
        self._group.attrs["texts"] = "[]"
        self._texts: list[str] = []
        self._batch_items = batch_items
        self._interval = flush_interval_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4 * batch_items)
        self._error: BaseException | None = None
        self.counts = {MessageId.ACQUISITION: 0, MessageId.WAVEFORM: 0, MessageId.IMAGE: 0}
        self.bytes = 0
        self._thread = threading.Thread(target=self._run, name=f"journal {self.path.name}", daemon=True)
        self._thread.start()

    # -- called by the connection -------------------------------------------------------
    def _put(self, item: Any) -> None:
        if self._error is not None:
            raise JournalError(f"journal {self.path} failed: {self._error}")
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
        if self._thread.is_alive():
            self._queue.put(("attr", "ended", ended))
            self._queue.put(_STOP)
            self._thread.join()
        if self._error is not None:
            log.error("journal %s: %s", self.path, self._error)

    # -- the writer thread -------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                batch = [self._queue.get()]
                deadline = time.monotonic() + self._interval
                while batch[-1] is not _STOP and len(batch) < self._batch_items:
                    try:
                        batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                    except queue.Empty:
                        break
                stop = batch[-1] is _STOP
                self._write([item for item in batch if item is not _STOP])
                self._file.flush()
                if stop:
                    break
        except BaseException as exc:  # keep the reason; the connection reports it
            self._error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self._queue.get_nowait() is _STOP:
                        break
                except queue.Empty:
                    break
        finally:
            try:
                self._file.close()
            except Exception as exc:
                self._error = self._error or exc

    def _write(self, batch: list[Any]) -> None:
        acqs = [item[1] for item in batch if item[0] == MessageId.ACQUISITION]
        wavs = [item[1] for item in batch if item[0] == MessageId.WAVEFORM]
        for item in batch:
            if item[0] == "attr":
                self._group.attrs[item[1]] = item[2]
            elif item[0] == "xml":
                self._group.create_dataset("xml", (1,), dtype=h5py.special_dtype(vlen=bytes))[0] = \
                    item[1].encode("utf-8")
            elif item[0] == MessageId.IMAGE:
                self._append_image(item[1])
        self._append("data", acquisition_dtype, acqs, _acquisition_record)
        self._append("waveforms", waveform_dtype, wavs, _waveform_record)

    def _append(self, name: str, dtype: np.dtype, bodies: list[memoryview], fill: Any) -> None:
        if not bodies:
            return
        records = np.empty(len(bodies), dtype)
        for record, body in zip(records, bodies, strict=True):
            fill(body, record)
        if name not in self._group:
            self._group.create_dataset(name, (0,), maxshape=(None,), dtype=dtype, chunks=(64,))
        ds = self._group[name]
        start = ds.shape[0]
        ds.resize(start + len(bodies), axis=0)
        ds[start:] = records

    def _append_image(self, body: memoryview) -> None:
        head = np.frombuffer(body, image_header_dtype, count=1)[0]
        (attr_len,) = np.frombuffer(body, np.uint64, count=1, offset=_IMG_HEAD)
        attr_end = _IMG_HEAD + 8 + int(attr_len)
        attr = bytes(body[_IMG_HEAD + 8:attr_end]).rstrip(b"\0").decode("utf-8", "replace")
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
            raise JournalError(f"received image {n} has shape {shape}, earlier ones "
                               f"{group['data'].shape[1:]}; the journal keeps one image shape")
        for key in ("header", "attributes", "data"):
            group[key].resize(n + 1, axis=0)
        group["header"][n] = head
        group["attributes"][n] = attr
        group["data"][n] = data.view(stored)
