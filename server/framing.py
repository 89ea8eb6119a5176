"""The tolerant MRD v1 framing adapter in front of ``ismrmrd.serialization``.

``ismrmrd``'s ``ProtocolDeserializer`` allocates an acquisition's arrays from the sizes its
header claims before reading them, stops at the first NUL-padded quirk and cannot say how big
a message is before it has read it. This module only *frames* messages: it reads the message
id, checks every claimed size against a limit before allocating anything, applies the quirks
of real clients (docs/architecture.md) and returns the message's wire bytes, read straight into one
buffer (the server forwards and journals them without copying). The objects themselves are
then built by ``ismrmrd`` (:func:`decode`), which owns the byte layout.

Quirks handled: the 1024-byte config-file message is cut at its first NUL (scanners send
uninitialised memory after it) and decoded leniently; header, text and config text lose
trailing NULs; a stream that ends exactly between messages is a disconnect (``None``), one
that ends inside a message is :class:`TruncatedMessage`.
"""

from __future__ import annotations

import ctypes
import io
import json
import re
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import ismrmrd
import numpy as np
from ismrmrd.acquisition import AcquisitionHeader
from ismrmrd.image import ImageHeader, get_dtype_from_data_type
from ismrmrd.serialization import ISMRMRDMessageID as MessageId
from ismrmrd.serialization import ProtocolDeserializer, ProtocolSerializer
from ismrmrd.waveform import WaveformHeader

import mrzero.pipelines.mrd_header

__all__ = [
    "MessageId",
    "Message",
    "MessageReader",
    "ProtocolError",
    "TruncatedMessage",
    "ParametersRefused",
    "decode",
    "decode_wire",
    "parse_header",
    "parse_parameters",
    "config_override",
    "header_message",
    "text_message",
    "config_file_message",
    "serialized",
    "close_message",
]

CONFIG_FILE_BYTES = 1024
_ACQ_HEADER_BYTES = ctypes.sizeof(AcquisitionHeader)
_WAVEFORM_HEADER_BYTES = ctypes.sizeof(WaveformHeader)
_IMAGE_HEADER_BYTES = ctypes.sizeof(ImageHeader)
_TEXT_IDS = (MessageId.CONFIG_TEXT, MessageId.HEADER, MessageId.TEXT)
_DATA_IDS = (MessageId.ACQUISITION, MessageId.WAVEFORM, MessageId.IMAGE)


class ProtocolError(ValueError):
    """The peer sent bytes that are not a valid MRD v1 message; the text names what is wrong."""


class TruncatedMessage(ProtocolError):
    """The stream ended inside a message."""


@dataclass(frozen=True)
class Message:
    """One framed message: ``text`` for config/header/text messages, ``wire`` for data."""

    id: int
    text: str = ""
    #: Data messages: the message as it travels on the wire (2-byte id, then the body).
    wire: bytes | bytearray = b""

    @property
    def is_data(self) -> bool:
        return self.id in _DATA_IDS

    @property
    def body(self) -> memoryview:
        """The data message without its id (a view, not a copy)."""
        return memoryview(self.wire)[2:]

    def __repr__(self) -> str:
        kind = MessageId(self.id).name if self.id in MessageId._value2member_map_ else self.id
        return f"Message({kind}, text={self.text[:40]!r}, body={len(self.body)} bytes)"


def _lenient(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


class MessageReader:
    """Frames messages from a binary stream with blocking ``read``/``readinto`` (a socket's
    ``makefile("rb")``, a file, ``io.BytesIO``).

    ``max_bytes`` bounds every single message; a larger claim raises :class:`ProtocolError`
    before any buffer for it is allocated.
    """

    def __init__(self, stream: BinaryIO, max_bytes: int):
        self._read = stream.read
        self._readinto = stream.readinto
        self.max_bytes = max_bytes
        #: Bytes consumed so far (for logs and benchmarks).
        self.bytes_read = 0

    def _exactly(self, n: int, what: str) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = self._read(n - got)
            if not chunk:
                raise TruncatedMessage(f"stream ended inside {what}: got {got} of {n} bytes")
            chunks.append(chunk)
            got += len(chunk)
        self.bytes_read += n
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _data(self, msg_id: int, head: bytes, n: int, what: str) -> bytearray:
        """One buffer holding id, ``head`` and the next ``n`` bytes of the stream."""
        start = 2 + len(head)
        wire = bytearray(start + n)
        wire[:start] = struct.pack("<H", msg_id) + head
        view, got = memoryview(wire)[start:], 0
        while got < n:
            chunk = self._readinto(view[got:])
            if not chunk:
                raise TruncatedMessage(f"stream ended inside {what}: got {got} of {n} bytes")
            got += chunk
        self.bytes_read += n
        return wire

    def _check_size(self, n: int, what: str) -> None:
        if n > self.max_bytes:
            raise ProtocolError(
                f"{what} claims {n} bytes, more than the limit of {self.max_bytes} bytes; refused"
            )

    def next(self) -> Message | None:
        """The next message, or ``None`` when the stream ends cleanly between messages."""
        first = self._read(2)
        if not first:
            return None
        if len(first) < 2:
            first += self._read(1)
            if len(first) < 2:
                raise TruncatedMessage("stream ended inside a message id")
        self.bytes_read += 2
        (msg_id,) = struct.unpack("<H", first)
        if msg_id == MessageId.CLOSE:
            return Message(msg_id)
        if msg_id == MessageId.CONFIG_FILE:
            raw = self._exactly(CONFIG_FILE_BYTES, "a config-file message")
            return Message(msg_id, text=_lenient(raw.split(b"\0", 1)[0]).strip())
        if msg_id in _TEXT_IDS:
            name = MessageId(msg_id).name.lower().replace("_", " ")
            (length,) = struct.unpack("<I", self._exactly(4, f"the length of a {name} message"))
            self._check_size(length, f"a {name} message")
            raw = self._exactly(length, f"a {name} message")
            return Message(msg_id, text=_lenient(raw.rstrip(b"\0")))
        if msg_id == MessageId.ACQUISITION:
            return Message(msg_id, wire=self._acquisition())
        if msg_id == MessageId.WAVEFORM:
            return Message(msg_id, wire=self._waveform())
        if msg_id == MessageId.IMAGE:
            return Message(msg_id, wire=self._image())
        known = ", ".join(f"{m.value} ({m.name.lower()})" for m in MessageId if m.value)
        raise ProtocolError(
            f"unknown or unsupported message id {msg_id}; this server accepts {known}".replace(
                ", 1030 (ndarray)", ""
            )
        )

    def _acquisition(self) -> bytearray:
        head = self._exactly(_ACQ_HEADER_BYTES, "an acquisition header")
        h = AcquisitionHeader.from_buffer_copy(head)
        n = h.number_of_samples * (h.trajectory_dimensions * 4 + h.active_channels * 8)
        self._check_size(
            n,
            f"acquisition (scan counter {h.scan_counter}, {h.active_channels} channels "
            f"x {h.number_of_samples} samples)",
        )
        return self._data(MessageId.ACQUISITION, head, n, f"acquisition data (scan counter {h.scan_counter})")

    def _waveform(self) -> bytearray:
        head = self._exactly(_WAVEFORM_HEADER_BYTES, "a waveform header")
        h = WaveformHeader.from_buffer_copy(head)
        n = h.channels * h.number_of_samples * 4
        self._check_size(n, f"waveform (id {h.waveform_id}, {h.channels} channels x {h.number_of_samples})")
        return self._data(MessageId.WAVEFORM, head, n, "waveform data")

    def _image(self) -> bytearray:
        head = self._exactly(_IMAGE_HEADER_BYTES, "an image header")
        h = ImageHeader.from_buffer_copy(head)
        try:
            itemsize = get_dtype_from_data_type(h.data_type).itemsize
        except TypeError:
            raise ProtocolError(f"image with unknown data type {h.data_type}") from None
        attr_len_raw = self._exactly(8, "an image attribute length")
        (attr_len,) = struct.unpack("<Q", attr_len_raw)
        self._check_size(attr_len, "image attributes")
        attrs = self._exactly(attr_len, "image attributes")
        n = h.channels * h.matrix_size[0] * h.matrix_size[1] * h.matrix_size[2] * itemsize
        self._check_size(n, f"image ({h.channels} channels x {tuple(h.matrix_size)})")
        return self._data(MessageId.IMAGE, head + attr_len_raw + attrs, n, "image data")


def decode(message: Message) -> Any:
    """The ``ismrmrd`` object for a data message (sizes were already checked by the reader)."""
    return decode_wire(message.wire)


def decode_wire(wire: bytes | bytearray) -> Any:
    """The ``ismrmrd`` object for one data message's wire bytes.

    Acquisitions, the bulk of a scan, are built with one copy of their samples (``Acquisition``
    takes the arrays); ``ProtocolDeserializer`` would zero-fill and copy them three times.
    """
    (msg_id,) = struct.unpack_from("<H", wire)
    if msg_id != MessageId.ACQUISITION:
        return next(ProtocolDeserializer(io.BytesIO(wire)).deserialize())
    head = AcquisitionHeader.from_buffer_copy(wire, 2)
    n_traj = head.number_of_samples * head.trajectory_dimensions
    offset = 2 + _ACQ_HEADER_BYTES
    traj = np.frombuffer(wire, np.float32, n_traj, offset).reshape(
        head.number_of_samples, head.trajectory_dimensions
    )
    data = np.frombuffer(
        wire, np.complex64, head.active_channels * head.number_of_samples, offset + 4 * n_traj
    ).reshape(head.active_channels, head.number_of_samples)
    return ismrmrd.Acquisition(head, data=data.copy(), trajectory=traj.copy())


def parse_header(xml: str) -> ismrmrd.xsd.ismrmrdHeader:
    """Parse an MRD XML header (``mrzero.pipelines.mrd_header`` fix-ups); :class:`ProtocolError`
    if malformed."""
    try:
        return mrzero.pipelines.mrd_header.parse_header(xml)
    except mrzero.pipelines.mrd_header.HeaderError as exc:
        raise ProtocolError(str(exc)) from None


#: Largest JSON parameter text and deepest nesting accepted (FIRE's parameters are a flat object
#: of a few hundred bytes); beyond them the text is refused before ``json`` parses it.
MAX_PARAMETER_BYTES = 1 << 20
MAX_PARAMETER_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


class ParametersRefused(ProtocolError):
    """A JSON parameter text too large or too deeply nested to parse safely."""


def _nesting(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text, strings ignored (vectorised: a hostile
    megabyte costs milliseconds)."""
    codes = np.frombuffer(_JSON_STRING.sub(b'""', raw), np.uint8)
    steps = np.isin(codes, (ord("{"), ord("["))).astype(np.int32) - np.isin(codes, (ord("}"), ord("]")))
    return int(np.cumsum(steps).max(initial=0))


def parse_parameters(text: str) -> dict[str, Any] | None:
    """The parameters of a JSON text message, FIRE's ``{"parameters": {...}}`` flattened.

    Returns ``None`` for text that is not a JSON object (a plain log line from the client);
    raises :class:`ParametersRefused` for a JSON text over :data:`MAX_PARAMETER_BYTES` or nested
    deeper than :data:`MAX_PARAMETER_DEPTH`.
    """
    if not text.lstrip().startswith("{"):
        return None
    raw = text.encode("utf-8", "replace")
    if len(raw) > MAX_PARAMETER_BYTES:
        raise ParametersRefused(
            f"JSON parameters of {len(raw)} bytes, more than the limit of "
            f"{MAX_PARAMETER_BYTES} bytes; refused"
        )
    depth = _nesting(raw)
    if depth > MAX_PARAMETER_DEPTH:
        raise ParametersRefused(
            f"JSON parameters nested {depth} levels deep, more than the limit of "
            f"{MAX_PARAMETER_DEPTH}; refused"
        )
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    inner = value.get("parameters")
    return dict(inner) if isinstance(inner, dict) else value


def config_override(parameters: dict[str, Any]) -> str | None:
    """FIRE's pipeline choice: a non-empty ``customconfig`` wins over ``config``."""
    for key in ("customconfig", "config"):
        value = parameters.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def text_message(msg_id: int, text: str) -> bytes:
    """A config-text, header or text message (id, uint32 length, UTF-8 bytes) carrying ``text``
    byte for byte (the serializer would re-render a header)."""
    raw = text.encode("utf-8")
    return struct.pack("<HI", msg_id, len(raw)) + raw


def header_message(xml: str) -> bytes:
    """A header message carrying ``xml`` byte for byte."""
    return text_message(MessageId.HEADER, xml)


def config_file_message(name: str) -> bytes:
    """A config-file message: ``name`` in 1024 NUL-padded bytes (cut there if longer)."""
    raw = name.encode("utf-8")[:CONFIG_FILE_BYTES]
    return struct.pack("<H", MessageId.CONFIG_FILE) + raw.ljust(CONFIG_FILE_BYTES, b"\0")


def serialized(obj: Any) -> bytes:
    """The wire bytes of ``obj`` (image, acquisition, waveform, text...) as ``ismrmrd`` writes them."""
    buf = io.BytesIO()
    ProtocolSerializer(buf).serialize(obj)
    return buf.getvalue()


def close_message() -> bytes:
    buf = io.BytesIO()
    ProtocolSerializer(buf).close()
    return buf.getvalue()
