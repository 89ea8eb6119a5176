"""Fixtures of the server tests: one in-process server on a free 127.0.0.1 port per module,
with the test-only pipelines, and a well-behaved second client to stream concurrently."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_harness import start_server

from mrzero.server.listener import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("journal"))
    yield srv
    srv.stop()
