"""Fixtures of the server tests: one in-process server on a free 127.0.0.1 port per module,
with the test-only pipelines, and a well-behaved second client to stream concurrently."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pipelines_for_tests import rss_image
from scans_for_tests import header_xml, scan

from pipelines.header import parse_header
from server.client import Reply, stream
from server.limits import MB, Limits, Settings
from server.listener import Server

TEST_LIMITS = Limits(max_message_bytes=16 * MB, pipeline_timeout_s=3.0, memory_limit_bytes=512 * MB,
                     max_connections=16, idle_timeout_s=30.0)


def start_server(data_dir: Path, limits: Limits = TEST_LIMITS) -> Server:
    return Server(Settings(port=0, data_dir=data_dir, limits=limits,
                           pipeline_modules=("pipelines_for_tests",))).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("journal"))
    yield srv
    srv.stop()


def assert_rss_reply(reply: Reply, acqs: list, xml: str) -> None:
    """The reply is exactly one image equal to the reference RSS reconstruction."""
    assert reply.errors == [] and reply.closed, reply.texts
    assert len(reply.images) == 1
    np.testing.assert_allclose(reply.images[0].data[0, 0], rss_image(acqs, parse_header(xml)),
                               rtol=1e-5, atol=1e-6)


@contextlib.contextmanager
def concurrent_good_scan(server: Server) -> Iterator[None]:
    """A second client streams half a good scan before the ``with`` body, the rest after it,
    and must then get the correct image."""
    acqs, xml = scan(seed=7), header_xml()
    halfway, go_on = threading.Event(), threading.Event()
    result: dict[str, Reply] = {}

    def items() -> Iterator:
        for i, acq in enumerate(acqs):
            if i == len(acqs) // 2:
                halfway.set()
                go_on.wait(120)
            yield acq

    host, port = server.address
    thread = threading.Thread(target=lambda: result.update(
        reply=stream(items(), xml, host=host, port=port, config="test_rss", timeout_s=120)))
    thread.start()
    assert halfway.wait(120)
    try:
        yield
    finally:
        go_on.set()
        thread.join(120)
    assert_rss_reply(result["reply"], acqs, xml)
