"""An MRD v1 streaming client: send a header and items to any MRD server, collect what comes back.

Used by ``mrzero send`` (an MRD HDF5 file), ``mrzero demo``, the benchmark and, later, the
digital-twin scanner (simulated acquisitions). Images are received by a second thread while
the items are sent, because a server may answer before the stream ends.
"""

from __future__ import annotations

import heapq
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import ismrmrd
from ismrmrd.serialization import ConfigFile, ProtocolSerializer
from tqdm import tqdm

from mrzero.pipelines.offline import read_acquisitions, read_waveforms
from mrzero.server.framing import MessageId, MessageReader, ProtocolError, decode, header_message
from mrzero.server.limits import DEFAULT_HOST, DEFAULT_PORT, MB
from mrzero.server.tls_bridge import tls_bridge

log = logging.getLogger(__name__)


@dataclass
class Reply:
    """What a server sent back."""

    images: list[ismrmrd.Image] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    #: True when the server ended with a close message (not a dropped connection).
    closed: bool = False

    @property
    def errors(self) -> list[str]:
        return [text for text in self.texts if text.startswith("ERROR")]


@dataclass
class MRDFile:
    """The streamable content of an MRD HDF5 file (journal attributes included when present)."""

    header_xml: str
    count: int
    items: Iterator[Any]
    config: str | None = None
    texts: list[str] = field(default_factory=list)


def _images(path: Path, dataset: str, groups: list[str]) -> Iterator[ismrmrd.Image]:
    with ismrmrd.Dataset(str(path), dataset, mode="r") as dset:
        for group in groups:
            for i in range(dset.number_of_images(group)):
                yield dset.read_image(group, i)


def open_mrd(path: Path | str, dataset: str = "dataset") -> MRDFile:
    """Read an MRD HDF5 file's header and prepare its acquisitions+waveforms (in time order)
    or, if it holds none, its images."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such MRD file: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not an HDF5 file ({exc})") from None
    if dataset not in f or "xml" not in f[dataset]:
        f.close()
        raise ValueError(f"{path}: no /{dataset}/xml header, which an MRD stream must start with")
    group = f[dataset]
    xml = group["xml"][0]
    xml = xml.decode("utf-8", "replace") if isinstance(xml, bytes) else str(xml)
    config = group.attrs.get("config")
    texts = json.loads(group.attrs.get("texts", "[]"))
    names = [k for k in group if isinstance(group[k], h5py.Group) and "header" in group[k]]
    counts = {k: group[k].shape[0] for k in ("data", "waveforms") if k in group}
    image_count = sum(group[k]["header"].shape[0] for k in names)
    f.close()
    if counts:
        items: Iterator[Any] = heapq.merge(
            read_acquisitions(path, dataset),
            list(read_waveforms(path, dataset)),  # both open the file
            key=lambda x: x.acquisition_time_stamp if isinstance(x, ismrmrd.Acquisition) else x.time_stamp,
        )
    else:
        items = _images(path, dataset, names)
    count = sum(counts.values()) if counts else image_count
    return MRDFile(xml, count, items, str(config) if config is not None else None, list(texts))


def tls_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """A client TLS context that trusts ``ca_file`` (a PEM CA bundle or the server's self-signed
    certificate) or, without one, the system's CAs; the server's name is checked."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)


def _connect(host: str, port: int, timeout_s: float, tls: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is None:
        return sock
    plain = tls_bridge(sock, tls, False, timeout_s, server_hostname=host)  # sender and receiver share it
    plain.settimeout(timeout_s)
    return plain


def stream(
    items: Iterable[Any],
    header_xml: str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config: str | None = None,
    texts: Iterable[str] = (),
    total: int | None = None,
    progress: bool = False,
    timeout_s: float = 600.0,
    max_message_bytes: int = 1024 * MB,
    tls: ssl.SSLContext | None = None,
) -> Reply:
    """Stream ``config`` (a config-file message; ``None`` sends none), ``texts`` (e.g. JSON
    parameters), the header and ``items`` (acquisitions, waveforms or images), then close;
    return what the server sent until its close or disconnect. ``tls``: speak TLS (``mrzero
    serve --tls-cert``) with this context (:func:`tls_context`)."""
    reply = Reply()
    with _connect(host, port, timeout_s, tls) as sock:
        receiver = threading.Thread(
            target=receive, args=(sock, reply, max_message_bytes), name="mrd receive", daemon=True
        )
        receiver.start()
        wfile = sock.makefile("wb", buffering=1 << 20)
        out = ProtocolSerializer(wfile)
        sent = 0
        try:
            if config is not None:
                out.serialize(ConfigFile(config))
            for text in texts:
                out.serialize(text)
            wfile.write(header_message(header_xml))
            wfile.flush()
            for item in tqdm(items, total=total, unit="item", disable=not progress, desc="sending"):
                out.serialize(item)
                wfile.flush()  # one send per item: data leave as they are produced (a live scan)
                sent += 1
            out.close()
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.warning("server closed the connection after %d items: %s", sent, exc)
        finally:
            try:
                wfile.close()
            except OSError:
                pass
        receiver.join(timeout_s)
    for text in reply.texts:
        log.log(logging.ERROR if text.startswith("ERROR") else logging.INFO, "server: %s", text)
    return reply


def receive(sock: socket.socket, reply: Reply, max_message_bytes: int = 1024 * MB) -> Reply:
    """Collect into ``reply`` what the server sends until its close or disconnect."""
    reader = MessageReader(sock.makefile("rb", buffering=1 << 20), max_message_bytes)
    try:
        while (msg := reader.next()) is not None:
            if msg.id == MessageId.CLOSE:
                reply.closed = True
                break
            if msg.id == MessageId.TEXT:
                reply.texts.append(msg.text)
            elif msg.id == MessageId.IMAGE:
                reply.images.append(decode(msg))
            else:
                log.warning("ignoring a %s message from the server", MessageId(msg.id).name)
    except (ProtocolError, OSError) as exc:
        reply.texts.append(f"ERROR: client: reading the server's answer failed: {exc}")
    return reply


def send_file(
    path: Path | str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config: str | None = None,
    parameters: str | None = None,
    output: Path | str | None = None,
    progress: bool = True,
    timeout_s: float = 600.0,
    tls: ssl.SSLContext | None = None,
) -> Reply:
    """Stream an MRD HDF5 file; save returned images to ``output`` (MRD HDF5) if given.

    Without ``config``/``parameters``, a journal's recorded config name and texts are replayed.
    """
    from mrzero.pipelines.image_files import write_images_h5

    if parameters is not None:
        try:
            json.loads(parameters)
        except ValueError as exc:
            raise ValueError(f"--parameters is not valid JSON: {exc}") from None
    mrd = open_mrd(path)
    reply = stream(
        mrd.items,
        mrd.header_xml,
        host=host,
        port=port,
        config=config if config is not None else mrd.config,
        texts=[parameters] if parameters is not None else mrd.texts,
        total=mrd.count,
        progress=progress,
        timeout_s=timeout_s,
        tls=tls,
    )
    if output is not None:
        write_images_h5(reply.images, output)
    return reply
