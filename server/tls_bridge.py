"""TLS for a socket that two threads use at once (one reads, one writes).

OpenSSL forbids using one SSL object from two threads at the same time, and Python's
``SSLSocket`` does not serialise its reads and writes: a connection whose reader and image relay
(or a client's sender and receiver) share one ``SSLSocket`` fails at random with "internal
error". :func:`tls_bridge` gives the callers the plain end of a socket pair instead; one thread
owns the TLS session (``ssl.MemoryBIO``) and moves bytes between the pair and the TCP socket.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading

_CHUNK = 1 << 16


def _send_pending(tls_out: ssl.MemoryBIO, tcp: socket.socket) -> None:
    if data := tls_out.read():
        tcp.sendall(data)


def _handshake(tls: ssl.SSLObject, tls_in: ssl.MemoryBIO, tls_out: ssl.MemoryBIO, tcp: socket.socket) -> None:
    while True:
        try:
            tls.do_handshake()
            _send_pending(tls_out, tcp)
            return
        except ssl.SSLWantReadError:
            _send_pending(tls_out, tcp)
            data = tcp.recv(_CHUNK)
            if not data:
                raise ConnectionError("the peer closed during the TLS handshake") from None
            tls_in.write(data)


def tls_bridge(
    tcp: socket.socket,
    context: ssl.SSLContext,
    server_side: bool,
    timeout_s: float,
    server_hostname: str | None = None,
) -> socket.socket:
    """Complete a TLS handshake on ``tcp`` within ``timeout_s`` and return a plain socket whose
    bytes travel encrypted over ``tcp`` (``ssl.SSLError``/``OSError`` if the handshake fails;
    ``tcp`` is then closed)."""
    tls_in, tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(tls_in, tls_out, server_side=server_side, server_hostname=server_hostname)
    try:
        tcp.settimeout(timeout_s)
        _handshake(tls, tls_in, tls_out, tcp)
        tcp.settimeout(None)
    except BaseException:
        tcp.close()
        raise
    plain, inner = socket.socketpair()
    threading.Thread(target=_pump, args=(tls, tls_in, tls_out, tcp, inner), name="tls", daemon=True).start()
    return plain


def _pump(
    tls: ssl.SSLObject,
    tls_in: ssl.MemoryBIO,
    tls_out: ssl.MemoryBIO,
    tcp: socket.socket,
    inner: socket.socket,
) -> None:
    """Move bytes both ways until both directions have ended (or either side fails)."""
    selector = selectors.DefaultSelector()
    selector.register(tcp, selectors.EVENT_READ)
    selector.register(inner, selectors.EVENT_READ)
    try:
        while selector.get_map():
            for key, _ in selector.select():
                if key.fileobj is tcp:
                    _from_network(tls, tls_in, tcp, inner, selector)
                else:
                    _to_network(tls, tls_out, tcp, inner, selector)
    except (OSError, ssl.SSLError):
        pass
    finally:
        selector.close()
        tcp.close()
        inner.close()


def _from_network(
    tls: ssl.SSLObject,
    tls_in: ssl.MemoryBIO,
    tcp: socket.socket,
    inner: socket.socket,
    selector: selectors.BaseSelector,
) -> None:
    data = tcp.recv(_CHUNK)
    if data:
        tls_in.write(data)
    else:
        tls_in.write_eof()
    while True:
        try:
            plain = tls.read(_CHUNK)
        except ssl.SSLWantReadError:
            return
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            plain = b""
        if not plain:  # the peer ended its side
            selector.unregister(tcp)
            inner.shutdown(socket.SHUT_WR)
            return
        inner.sendall(plain)


def _to_network(
    tls: ssl.SSLObject,
    tls_out: ssl.MemoryBIO,
    tcp: socket.socket,
    inner: socket.socket,
    selector: selectors.BaseSelector,
) -> None:
    data = inner.recv(_CHUNK)
    if not data:  # our side ended: close_notify, then half-close the TCP connection
        selector.unregister(inner)
        try:
            tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        _send_pending(tls_out, tcp)
        tcp.shutdown(socket.SHUT_WR)
        return
    tls.write(data)
    _send_pending(tls_out, tcp)
