"""The external gadget's limits: a Gadgetron that goes silent is ended after the idle timeout,
connections over the limit are refused with Gadgetron's error message, a message over the
size limit is refused before it is read, and stopping the service ends a scan that does not
finish within the drain timeout."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from mrzero.client import open_mrd
from mrzero.server.framing import serialized
from mrzero.server.gadgetron.listener import ExternalServer
from mrzero.server.gadgetron.peer import config_message, opening, read_answer, run_chain
from mrzero.server.limits import MB, Limits, Settings


@pytest.fixture
def strict_gadget() -> Iterator[ExternalServer]:
    limits = Limits(max_message_bytes=1 * MB, idle_timeout_s=0.5, max_connections=1, pipeline_timeout_s=30)
    srv = ExternalServer(Settings(port=0, limits=limits, pipeline_threads=1)).start()
    yield srv
    srv.stop()


def test_a_silent_gadgetron_is_ended_after_the_idle_timeout(strict_gadget):
    with socket.create_connection(strict_gadget.address, timeout=60) as sock:
        sock.sendall(config_message("<configuration/>"))
        answer = read_answer(sock)  # sends nothing more
    assert answer.closed and len(answer.errors) == 1
    assert "sent nothing for 0.5 s (idle timeout)" in answer.errors[0]


def test_connections_over_the_limit_are_refused(strict_gadget):
    with socket.create_connection(strict_gadget.address, timeout=60) as first:
        first.sendall(config_message("<configuration/>"))
        second = run_chain(strict_gadget.address, config_message("<configuration/>"))
    assert second.closed and len(second.errors) == 1
    assert "busy: 1 connections already running" in second.errors[0]


def test_a_message_over_the_size_limit_is_refused(strict_gadget):
    huge = struct.pack("<HI", 3, 2 * MB)  # a header claiming 2 MB, over the 1 MB limit
    answer = run_chain(strict_gadget.address, config_message("<configuration/>") + huge)
    assert answer.closed and len(answer.errors) == 1
    assert "claims 2097152 bytes, more than the limit of 1048576 bytes" in answer.errors[0]


def test_stopping_ends_a_running_scan_after_the_drain_timeout(shepp_logan):
    srv = ExternalServer(Settings(port=0, pipeline_threads=1)).start()
    mrd = open_mrd(shepp_logan)
    with socket.create_connection(srv.address, timeout=60) as sock:
        sock.sendall(opening({"pipeline": "cartesian"}, mrd.header_xml))
        for acq in list(mrd.items)[:10]:
            sock.sendall(serialized(acq))
        # stop only once the server serves this scan: sendall returns before the accept loop
        # has taken the connection, and a stop before that would close the listening socket on it
        deadline = time.monotonic() + 60
        while not srv._connections:
            assert time.monotonic() < deadline, "the server never took the connection"
            time.sleep(0.01)
        stopped = srv.stop(timeout_s=0.5)  # the scan never finishes by itself
        answer = read_answer(sock)
    assert stopped
    assert answer.closed and len(answer.errors) == 1
    assert "server shutting down" in answer.errors[0]
