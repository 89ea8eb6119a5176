"""The wire protocol between Gadgetron and an external gadget, on top of ``mrzero.server.framing``.

Gadgetron (``<external>`` node) sends, in this order: a configuration message (id 2, the
``<configuration>`` element of the node as an XML document with a uint32 length), the MRD
header (id 3), the data of its chain at that point (acquisitions 1008, waveforms 1026, images
1022, Gadgetron image arrays 1024, ...) and a close message (id 4). The external gadget answers
with data messages, an optional error (id 8, uint64 length, text: Gadgetron logs it and fails
the chain) and close. Text messages (id 5) are illegal in that direction.

Why not ``gadgetron.external.Connection`` (PyPI ``gadgetron`` 1.4.1): it asserts that the
configuration comes first, spins forever in ``SocketWrapper.read`` when the peer disconnects
inside a message, ends the stream silently (as if closed) on any message it has no reader for
(text included), allocates whatever sizes a message claims, and accepts one connection per
``listen``. The framing here is the server's tolerant, size-limited ``MessageReader``; the
package is used only for what is Gadgetron's own: its message ids and its reader of image
arrays (whose numpy-2-broken writer is never needed: images go back as MRD images).
"""

from __future__ import annotations

import json
import re
import struct
import warnings
import xml.etree.ElementTree as ElementTree
from collections import deque
from typing import Any, BinaryIO

import ismrmrd
import numpy as np
from gadgetron.external import constants
from gadgetron.types.image_array import read_image_array

from mrzero.server.framing import (
    Message,
    MessageId,
    MessageReader,
    ProtocolError,
    TruncatedMessage,
    serialized,
)

#: Gadgetron's message id of an error text from the external peer (uint64 length, text).
ERROR = constants.GADGET_MESSAGE_ERROR
#: Gadgetron-only data messages, by id, with the name a chain author knows them by.
GADGETRON_TYPES = {
    constants.GADGET_MESSAGE_RECON_DATA: "IsmrmrdReconData buffer (1023)",
    constants.GADGET_MESSAGE_IMAGE_ARRAY: "IsmrmrdImageArray (1024)",
    constants.GADGET_MESSAGE_BUCKET: "AcquisitionBucket (1050)",
}
#: What this external gadget takes, for error messages.
ACCEPTED = (
    "acquisitions (1008), waveforms (1026), images (1022) and image arrays (1024); "
    "put it before the chain's AcquisitionAccumulateTrigger/BucketToBuffer gadgets"
)
#: The MRD messages Gadgetron may send, framed by ``mrzero.server.framing.MessageReader``.
_MRD_IDS = frozenset(
    {
        MessageId.CONFIG_FILE,
        MessageId.CONFIG_TEXT,
        MessageId.HEADER,
        MessageId.CLOSE,
        MessageId.TEXT,
        MessageId.ACQUISITION,
        MessageId.WAVEFORM,
        MessageId.IMAGE,
    }
)
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")

# gadgetron's image-array reader puts ctypes headers in an object array; numpy warns that it
# guesses their buffer format, which it never uses there.
warnings.filterwarnings("ignore", message="A builtin ctypes object gave a PEP3118", category=RuntimeWarning)


def error_message(text: str) -> bytes:
    """Gadgetron's error message: id 8, uint64 length, the text."""
    raw = text.encode("utf-8")
    return struct.pack("<HQ", ERROR, len(raw)) + raw


def parse_configuration(text: str) -> dict[str, Any]:
    """The ``<property name=... value=...>`` children of the external node's ``<configuration>``.

    Values are JSON where they parse as JSON (``true``, ``7``, ``0.5``), strings otherwise, so
    that they mean what the same pipeline parameters mean in the MRD server's JSON. A document
    without an element (a node without ``<configuration>``) has no properties.
    """
    if not _DECLARATION.sub("", text).strip():
        return {}
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ProtocolError(f"the external gadget's configuration is not XML ({exc})") from None
    parameters: dict[str, Any] = {}
    for prop in root.iter("property"):
        name, value = prop.get("name"), prop.get("value")
        if not name or value is None:
            raise ProtocolError(
                "a <property> of the external gadget's configuration lacks a name or "
                f"value attribute: {ElementTree.tostring(prop, 'unicode').strip()}"
            )
        try:
            parameters[name] = json.loads(value)
        except ValueError:
            parameters[name] = value
    return parameters


class _Rewindable:
    """A binary stream that can put back bytes it has read (the message id we peeked at)."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._back = b""

    def unread(self, data: bytes) -> None:
        self._back = data + self._back

    def read(self, n: int) -> bytes:
        if not self._back:
            return self._stream.read(n)
        out, self._back = self._back[:n], self._back[n:]
        return out

    def readinto(self, buffer: Any) -> int:
        if not self._back:
            return self._stream.readinto(buffer)
        n = min(len(buffer), len(self._back))
        buffer[:n] = self._back[:n]
        self._back = self._back[n:]
        return n


class _Bounded:
    """``read(n)`` for Gadgetron's readers: exactly ``n`` bytes, at most ``limit`` in all."""

    def __init__(self, stream: _Rewindable, limit: int, what: str):
        self._stream, self._left, self._what = stream, limit, what

    def read(self, n: int) -> bytes:
        if n > self._left:
            raise ProtocolError(f"{self._what} claims more than the message limit; refused")
        self._left -= n
        chunks, got = [], 0
        while got < n:
            chunk = self._stream.read(n - got)
            if not chunk:
                raise TruncatedMessage(f"stream ended inside {self._what}: got {got} of {n} bytes")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


def image_array_images(array: Any) -> list[ismrmrd.Image]:
    """The MRD images of a Gadgetron image array: data ``[x, y, z, cha, n, s, loc]`` and one
    header (and meta text) per ``(n, s, loc)``, in Gadgetron's (column-major) order."""
    data, headers = array.data, array.headers
    if data.ndim != 7 or headers.shape != data.shape[4:]:
        raise ProtocolError(
            f"image array with data of shape {data.shape} and headers of shape "
            f"{headers.shape}; expected [x, y, z, cha, n, s, loc] and [n, s, loc]"
        )
    meta = array.meta or []
    images = []
    for i in range(headers.size):
        n, s, loc = np.unravel_index(i, headers.shape, order="F")
        pixels = np.ascontiguousarray(data[:, :, :, :, n, s, loc].transpose(3, 2, 1, 0))
        head = ismrmrd.ImageHeader.from_buffer_copy(headers[n, s, loc])
        head.data_type = ismrmrd.DATATYPE_CXFLOAT
        head.channels = pixels.shape[0]
        head.matrix_size[:] = pixels.shape[3], pixels.shape[2], pixels.shape[1]
        image = ismrmrd.Image(head=head, attribute_string=meta[i] if i < len(meta) else "")
        image.data[:] = pixels
        images.append(image)
    return images


class ExternalReader:
    """Frames what Gadgetron sends to an external gadget, one :class:`Message` at a time.

    MRD messages are framed by :class:`mrzero.server.framing.MessageReader` (size limits, NUL
    quirks, truncation); an image array becomes one MRD image message per image; the other
    Gadgetron types and unknown ids raise :class:`ProtocolError` naming what arrived.
    """

    def __init__(self, stream: BinaryIO, max_bytes: int):
        self._stream = _Rewindable(stream)
        self._mrd = MessageReader(self._stream, max_bytes)
        self.max_bytes = max_bytes
        self._pending: deque[Message] = deque()

    def next(self) -> Message | None:
        """The next message, or ``None`` when the stream ends cleanly between messages."""
        if self._pending:
            return self._pending.popleft()
        first = self._stream.read(2)
        if len(first) == 1:
            first += self._stream.read(1)
        if len(first) == 2:
            (msg_id,) = struct.unpack("<H", first)
            if msg_id in GADGETRON_TYPES:
                return self._gadgetron_type(msg_id)
            if msg_id not in _MRD_IDS:
                raise ProtocolError(f"unsupported message id {msg_id}; this external gadget takes {ACCEPTED}")
        self._stream.unread(first)
        return self._mrd.next()

    def _gadgetron_type(self, msg_id: int) -> Message | None:
        name = GADGETRON_TYPES[msg_id]
        if msg_id != constants.GADGET_MESSAGE_IMAGE_ARRAY:
            raise ProtocolError(
                f"Gadgetron sent an {name}, which no pipeline here takes; this external "
                f"gadget takes {ACCEPTED}"
            )
        try:
            array = read_image_array(_Bounded(self._stream, self.max_bytes, f"an {name}"))
        except ProtocolError:
            raise
        except (ValueError, TypeError, struct.error) as exc:
            raise ProtocolError(f"malformed {name}: {exc}") from None
        for image in image_array_images(array):
            self._pending.append(Message(MessageId.IMAGE, wire=serialized(image)))
        return self._pending.popleft() if self._pending else self.next()
