"""Gadgetron's side of an external-gadget connection, as its C++ ``External`` node speaks it.

Gadgetron connects to the external gadget, sends the node's ``<configuration>`` as an XML
document (message 2, uint32 length; pugixml's formatting), the MRD header (message 3), the
chain's data, and close (message 4); it reads back data messages, error messages (8, uint64
length) and close, and treats anything else as an illegal message from the peer. The tests and
``bench/gadgetron.py`` drive external gadgets with it where no Gadgetron is installed.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import ismrmrd

from mrzero.server.framing import MessageId, header_message, serialized, text_message

CLOSE = struct.pack("<H", 4)


def configuration(properties: dict[str, str]) -> str:
    """The configuration document Gadgetron sends for ``<configuration>`` with these properties."""
    lines = "".join(f'\t<property name="{name}" value="{value}" />\n' for name, value in properties.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{lines}</configuration>\n'


def config_message(xml: str) -> bytes:
    """The configuration document as Gadgetron sends it: a config-text message."""
    return text_message(MessageId.CONFIG_TEXT, xml)


def opening(properties: dict[str, str], header_xml: str) -> bytes:
    """Configuration and header, as every Gadgetron connection starts."""
    return config_message(configuration(properties)) + header_message(header_xml)


@dataclass
class Answer:
    """What the external gadget sent back."""

    images: list[ismrmrd.Image] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    closed: bool = False
    #: Set when the answer holds something Gadgetron would reject, or broke off.
    illegal: str | None = None


def read_answer(sock: socket.socket) -> Answer:
    """Read until close or end of stream, as Gadgetron's external channel does."""
    answer = Answer()
    stream = sock.makefile("rb")

    def exactly(n: int) -> bytes:
        data = stream.read(n)
        if len(data) != n:
            raise EOFError(f"stream ended inside a message ({len(data)} of {n} bytes)")
        return data

    try:
        while head := stream.read(2):
            (msg_id,) = struct.unpack("<H", head)
            if msg_id == 4:
                answer.closed = True
                break
            if msg_id == 8:
                (length,) = struct.unpack("<Q", exactly(8))
                answer.errors.append(exactly(length).decode())
            elif msg_id == 1022:
                answer.images.append(ismrmrd.Image.deserialize_from(exactly))
            else:
                answer.illegal = f"illegal message id {msg_id} from the external peer"
                break
    except (EOFError, OSError) as exc:  # cut off mid-message, reset, or silent past the timeout
        answer.illegal = str(exc)
    return answer


def run_chain(
    address: tuple[str, int],
    start: bytes,
    items: Iterable[Any] = (),
    end: bytes = CLOSE,
    timeout_s: float = 120.0,
) -> Answer:
    """Send ``start`` (raw bytes), the items (MRD objects or raw bytes) and ``end``, reading
    the answer concurrently; return it once the external gadget closed."""
    result: dict[str, Answer] = {}
    with socket.create_connection(address, timeout=timeout_s) as sock:
        reader = threading.Thread(target=lambda: result.update(answer=read_answer(sock)), daemon=True)
        reader.start()
        try:
            sock.sendall(start)
            for item in items:
                sock.sendall(item if isinstance(item, bytes) else serialized(item))
            sock.sendall(end)
        except OSError:
            pass  # the gadget may have closed after an error: its answer says why
        reader.join(timeout_s)
        if reader.is_alive():
            raise TimeoutError(
                f"the external gadget at {address[0]}:{address[1]} did not close the "
                f"connection within {timeout_s:g} s"
            )
    return result["answer"]
