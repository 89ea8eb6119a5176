"""Recovery of journals the server did not close, from their write-ahead logs.

A journal's writer appends every batch to ``<journal>.h5.wal`` (an MRD v1 stream: config,
header, texts, acquisitions, waveforms, images) before it writes the batch into the HDF5 file,
and the server's own attributes (client, pipeline) to ``<journal>.h5.wal.json``; both go when
the journal is closed with its mark (``mrzero.server.journal``). A log that is still there
belongs to a journal whose server stopped without closing it (SIGKILL, OOM, power cut of the
process), and it holds at least what the HDF5 file holds, which may not open at all when the
kill landed while HDF5 wrote a flush.

:func:`recover` makes such a journal whole: when the HDF5 file opens and holds every message
the log holds, it only records what the log says (attributes, mark, count); otherwise it
rebuilds the file from the log under a temporary name and renames it over the damaged one. A
torn last record of the log (the kill landed inside its write) is dropped. The log is removed
only once the result reads back with every acquisition; a failure leaves both files and says
why. Logs a running server has open are locked (``flock``) and left alone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import h5py
import numpy as np
from ismrmrd.hdf5 import acquisition_header_dtype

from mrzero.core.mrd_file import RawMRDWriter, readable_acquisitions
from mrzero.server.framing import Message, MessageId, MessageReader, ProtocolError, TruncatedMessage
from mrzero.server.journal import sidecar_path, sidecar_temporary_path, wal_path

log = logging.getLogger(__name__)

#: Rows per write and flush of a rebuilt file, and the bytes at which a batch is written early.
_BATCH_ROWS = 256
_BATCH_BYTES = 16 << 20
_HEAD = acquisition_header_dtype.itemsize
_DATA = {MessageId.ACQUISITION: "data", MessageId.WAVEFORM: "waveforms", MessageId.IMAGE: "images"}


class RecoveryError(RuntimeError):
    """A journal could not be recovered; its files are left as they were."""


class InUse(RecoveryError):
    """The write-ahead log is open in a running server (locked): not a journal to recover."""


@dataclass
class LogContents:
    """What a write-ahead log holds, without the data (see :func:`read_log`)."""

    config: str | None = None
    config_text: str | None = None
    header: str | None = None
    texts: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_DATA.values(), 0))
    #: The acquisitions' headers, concatenated (compared with the HDF5 file's).
    heads: bytearray = field(default_factory=bytearray)
    #: The last acquisition's wire body (compared with the HDF5 file's last row).
    last: bytes = b""
    #: Bytes of a torn last record, dropped.
    torn: int = 0


@dataclass(frozen=True)
class Recovered:
    """The outcome for one journal: ``how`` is ``marked`` (the HDF5 file held everything) or
    ``rebuilt`` (written anew from the log)."""

    path: Path
    how: str
    acquisitions: int
    torn: int


def _messages(stream: BinaryIO, contents: LogContents) -> Iterator[Message]:
    """The log's messages; a record cut short by the end of the file ends it (``contents.torn``)."""
    reader = MessageReader(stream, max_bytes=1 << 62)
    size = os.fstat(stream.fileno()).st_size
    while True:
        start = reader.bytes_read
        try:
            message = reader.next()
        except TruncatedMessage:
            contents.torn = size - start
            return
        except ProtocolError as exc:
            raise RecoveryError(
                f"its write-ahead log does not parse at byte {start} of {size} ({exc}); "
                "that is no torn last record"
            ) from None
        if message is None:
            return
        yield message


def _note(contents: LogContents, message: Message) -> None:
    """Record what ``message`` adds to the journal's attributes and counts."""
    if message.id == MessageId.CONFIG_FILE:
        contents.config = message.text
    elif message.id == MessageId.CONFIG_TEXT:
        contents.config_text = message.text
    elif message.id == MessageId.HEADER:
        contents.header = message.text
    elif message.id == MessageId.TEXT:
        contents.texts.append(message.text)
    elif message.id in _DATA:
        contents.counts[_DATA[message.id]] += 1
        if message.id == MessageId.ACQUISITION:
            contents.heads += message.body[:_HEAD]
            contents.last = bytes(message.body)


def read_log(path: Path) -> LogContents:
    """Read the write-ahead log ``path`` once: attributes, counts and acquisition headers."""
    contents = LogContents()
    with open(path, "rb") as stream:
        for message in _messages(stream, contents):
            _note(contents, message)
    return contents


def _holds_everything(path: Path, contents: LogContents) -> bool:
    """Whether the HDF5 file opens and holds every message of the log: as many rows per table,
    the same acquisition headers, the last acquisition byte-equal, the header if one came."""
    try:
        with h5py.File(path, "r") as f:
            group = f["dataset"]
            rows = {
                "data": group["data"].shape[0] if "data" in group else 0,
                "waveforms": group["waveforms"].shape[0] if "waveforms" in group else 0,
                "images": group["images_received/header"].shape[0] if "images_received" in group else 0,
            }
            if rows != contents.counts or (contents.header is not None and "xml" not in group):
                return False
            if not rows["data"]:
                return True
            heads = group["data"].fields("head")[:]
            last = group["data"][rows["data"] - 1]
    except Exception:  # noqa: BLE001 - a file that does not read is one to rebuild
        return False
    if heads.tobytes() != bytes(contents.heads):
        return False
    body = last["head"].tobytes() + last["traj"].astype(np.float32).tobytes() + last["data"].tobytes()
    return body == contents.last and readable_acquisitions(path) == rows["data"]


def _attributes(journal: Path, contents: LogContents) -> dict[str, str]:
    """The journal's attributes as the log and the sidecar give them."""
    attributes: dict[str, str] = {"texts": json.dumps(contents.texts)}
    for key in ("config", "config_text"):
        if (value := getattr(contents, key)) is not None:
            attributes[key] = value
    try:
        attributes.update(json.loads(sidecar_path(journal).read_text()))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("journal %s: its sidecar of server attributes does not read (%s)", journal, exc)
    return attributes


def _mark(journal: Path, attributes: dict[str, str], acquisitions: int, state: str) -> None:
    """Write the attributes, the count and the mark into the (readable) journal."""
    with h5py.File(journal, "r+") as f:
        for key, value in attributes.items():
            f["dataset"].attrs[key] = value
        f["dataset"].attrs["acquisitions"] = acquisitions
        f["dataset"].attrs["journal"] = state


def _rebuild(journal: Path, log_path: Path, attributes: dict[str, str], contents: LogContents) -> None:
    """Write the journal anew from its log under a temporary name, then rename it over the old one."""
    temporary = journal.with_name(journal.name + ".recovering")
    acquisitions = contents.counts["data"]
    try:
        writer = RawMRDWriter(temporary, exclusive=False)
        try:
            batch: dict[int, list[bytes]] = {MessageId.ACQUISITION: [], MessageId.WAVEFORM: []}
            pending = 0

            def write_batch() -> None:
                nonlocal pending
                writer.append_acquisitions(batch[MessageId.ACQUISITION])
                writer.append_waveforms(batch[MessageId.WAVEFORM])
                writer.flush()  # the metadata cache holds no more than a batch
                batch[MessageId.ACQUISITION], batch[MessageId.WAVEFORM], pending = [], [], 0

            with open(log_path, "rb") as stream:
                for message in _messages(stream, LogContents()):
                    if message.id == MessageId.HEADER:
                        writer.write_header(message.text)
                    elif message.id == MessageId.IMAGE:
                        writer.append_image(message.body)
                    elif message.id in batch:
                        batch[message.id].append(message.body)
                        pending += len(message.wire)
                        if pending > _BATCH_BYTES or len(batch[message.id]) >= _BATCH_ROWS:
                            write_batch()
            write_batch()
            state = (
                "incomplete: recovered from its write-ahead log after the server stopped "
                f"without closing it ({acquisitions} acquisitions)"
            )
            for key, value in {**attributes, "acquisitions": acquisitions, "journal": state}.items():
                writer.set_attribute(key, value)
        finally:
            writer.close()
        if readable_acquisitions(temporary) != acquisitions:
            raise RecoveryError(f"the rebuilt file does not read back with its {acquisitions} acquisitions")
        os.replace(temporary, journal)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def recover(journal: Path) -> Recovered:
    """Recover the journal ``journal`` (the ``.h5``) from its write-ahead log, which must exist.
    Raises :class:`InUse` for a log a running server holds, :class:`RecoveryError` (files left
    as they were) when it cannot."""
    log_path = wal_path(journal)
    try:
        lock = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RecoveryError(f"{log_path.name}: no write-ahead log") from None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InUse(f"{journal.name} is open in a running server; left alone") from None
        contents = read_log(log_path)
        attributes = _attributes(journal, contents)
        acquisitions = contents.counts["data"]
        how = "rebuilt"
        if _holds_everything(journal, contents):
            try:
                with h5py.File(journal, "r") as f:
                    closed = "ended" in f["dataset"].attrs  # closed with its mark, log not yet removed
                if not closed:
                    state = (
                        "incomplete: the server stopped without closing it; it holds every "
                        f"acquisition of its write-ahead log ({acquisitions} acquisitions)"
                    )
                    _mark(journal, attributes, acquisitions, state)
                if readable_acquisitions(journal) == acquisitions:
                    how = "marked"
            except Exception as exc:  # noqa: BLE001 - the log still holds everything: rebuild
                log.warning("journal %s: marking it failed (%s); rebuilding it from its log", journal, exc)
        if how == "rebuilt":
            try:
                _rebuild(journal, log_path, attributes, contents)
            except RecoveryError:
                raise
            except Exception as exc:
                raise RecoveryError(f"rebuilding it from its write-ahead log failed: {exc}") from exc
        for path in (log_path, sidecar_path(journal), sidecar_temporary_path(journal)):
            path.unlink(missing_ok=True)
    finally:
        os.close(lock)
    return Recovered(journal, how, acquisitions, contents.torn)


def leftover_logs(paths: Iterable[Path], prefix: str = "") -> list[Path]:
    """The journals (``.h5`` paths) with a write-ahead log among ``paths``: journal files, logs,
    or directories (searched for ``<prefix>-*.h5.wal``, or every ``*.h5.wal`` without a prefix)."""
    suffix = ".wal"
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            pattern = f"{prefix}-*.h5{suffix}" if prefix else f"*.h5{suffix}"
            found += sorted(p.with_name(p.name[: -len(suffix)]) for p in path.glob(pattern))
        elif path.name.endswith(".h5" + suffix):
            found.append(path.with_name(path.name[: -len(suffix)]))
        else:
            found.append(path)
    return found


def recover_all(data_dir: Path, prefix: str = "") -> tuple[list[Recovered], list[tuple[Path, str]]]:
    """Recover every journal with a leftover log in ``data_dir`` (with ``prefix``, only this
    server's); returns what was recovered and what was not (with why), and logs both."""
    recovered: list[Recovered] = []
    failed: list[tuple[Path, str]] = []
    if not data_dir.is_dir():
        return recovered, failed
    for journal in leftover_logs([data_dir], prefix):
        try:
            result = recover(journal)
        except InUse:
            continue
        except (RecoveryError, OSError) as exc:
            log.error("journal %s: not recovered, its files are left as they were: %s", journal, exc)
            failed.append((journal, str(exc)))
            continue
        recovered.append(result)
        log.warning(
            "journal %s: %s from its write-ahead log (%d acquisitions%s)",
            journal,
            "recovered, the file held everything" if result.how == "marked" else "rebuilt",
            result.acquisitions,
            f"; a torn last record of {result.torn} bytes dropped" if result.torn else "",
        )
    return recovered, failed
