"""A pipeline that raises, hangs or eats memory, a client that vanishes, too many clients and
an idle client: each ends only its own connection, with a clear error where the socket is still
there, and the journal keeps everything that arrived."""

from __future__ import annotations

import dataclasses
import socket
import time

import numpy as np
import pytest
from scans_for_tests import acquisition_message, config_file_message, header_xml, read_reply, scan, wire_text
from server_harness import (
    TEST_LIMITS,
    concurrent_good_scan,
    journal_of,
    only_error,
    run_bad,
    start,
    start_server,
)

from mrzero.client import stream
from mrzero.server.framing import MessageId, close_message


@pytest.mark.parametrize(
    "config, fragment",
    [
        ("test_raises", "pipeline 'test_raises' failed: ValueError: deliberate failure in test_raises"),
        ("test_hangs", "pipeline 'test_hangs' made no progress for 8 s (pipeline timeout); stopped"),
        ("test_hog", "pipeline 'test_hog' exceeded the memory limit of 512 MB"),
    ],
)
def test_failing_pipeline_ends_only_its_connection(server, config, fragment):
    acqs = scan()
    body = b"".join(map(acquisition_message, acqs))
    reply, journal = run_bad(server, start(config) + body + close_message())
    assert fragment in only_error(reply)
    with journal:
        assert journal["dataset/data"].shape == (32,)  # journaled although the pipeline failed
        assert journal["dataset"].attrs["pipeline"] == config
        assert fragment in journal["dataset"].attrs["ended"]


def test_client_vanishing_mid_scan_keeps_every_acquisition(server):
    acqs = scan(seed=5)
    with concurrent_good_scan(server):
        sock = socket.create_connection(server.address, timeout=60)
        name = sock.getsockname()
        sock.sendall(start() + b"".join(map(acquisition_message, acqs[:20])))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # close = reset
        sock.close()
    with journal_of(server, name) as journal:
        data = journal["dataset/data"]
        assert data.shape == (20,)
        for i in (0, 19):
            assert np.array_equal(data[i]["data"].view(np.complex64).reshape(4, 32), acqs[i].data)
        assert "ismrmrdHeader" in journal["dataset/xml"][0].decode()


def test_too_many_connections_are_refused_with_an_error(tmp_path):
    srv = start_server(tmp_path, dataclasses.replace(TEST_LIMITS, max_connections=1))
    try:
        with socket.create_connection(srv.address, timeout=60) as first:
            first.sendall(config_file_message(b"test_rss"))
            while srv.accepted < 1:
                time.sleep(0.01)
            acqs, xml = scan(), header_xml()
            host, port = srv.address
            refused = stream(acqs, xml, host=host, port=port, config="test_rss", timeout_s=60)
            assert refused.closed and refused.images == []
            assert refused.errors == ["ERROR: server busy: 1 connections already running; try again later"]
            first.sendall(
                wire_text(MessageId.HEADER, xml.encode())
                + b"".join(map(acquisition_message, acqs))
                + close_message()
            )
            reply = read_reply(first)
        assert reply.errors == [] and len(reply.images) == 1
    finally:
        srv.stop()


def test_idle_client_is_disconnected(tmp_path):
    srv = start_server(tmp_path, dataclasses.replace(TEST_LIMITS, idle_timeout_s=0.5))
    try:
        with socket.create_connection(srv.address, timeout=60) as sock:
            sock.sendall(config_file_message(b"test_rss"))
            reply = read_reply(sock)
        assert only_error(reply) == "ERROR: no data for 0.5 s (idle timeout); closing"
    finally:
        srv.stop()
