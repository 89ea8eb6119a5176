"""Readiness and liveness follow the server's state: busy at the connection limit, dead when the
fork server of the pipeline workers is gone (and alive again once a scan has restarted it);
refusals and failed reconstructions are counted by kind. An in-process server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from multiprocessing import forkserver
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mrzero.client import open_mrd, send_file, stream
from mrzero.server.limits import Limits, Settings
from mrzero.server.listener import Server
from mrzero.shepp_logan_demo import generate_shepp_logan

pytestmark = [pytest.mark.needs_ismrmrd_tools]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shepp_logan(tmp_path_factory.mktemp("scan") / "shepp_logan.h5", matrix=32, coils=2)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(
        Settings(
            port=0,
            health_port=0,
            data_dir=tmp_path / "journal",
            drain_timeout_s=30,
            limits=Limits(max_connections=1, idle_timeout_s=60),
        )
    ).start()
    yield srv
    srv.stop()


def get(server: Server, path: str) -> tuple[int, str]:
    host, port = server.health_address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(server: Server, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels`` (other labels, e.g. ``pipeline``, summed over)."""
    values = [
        sample.value
        for family in text_string_to_metric_families(get(server, "/metrics")[1])
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    if not values:
        raise KeyError(name)
    return sum(values)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 60  # bounds a hang only
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_busy_at_the_connection_limit_refusals_and_error_kinds_counted(server, raw):
    mrd = open_mrd(raw)
    release = threading.Event()

    def held() -> Iterator:
        for i, acquisition in enumerate(mrd.items):
            if i == 2:
                assert release.wait(60)
            yield acquisition

    host, port = server.address
    replies = {}
    first = threading.Thread(
        target=lambda: replies.update(
            held=stream(held(), mrd.header_xml, host=host, port=port, config="nope", timeout_s=60)
        )
    )
    first.start()
    wait_until(
        lambda: metric(server, "mrzero_pipeline_errors_total", kind="unknown_pipeline") == 1,
        "the unknown pipeline to be counted",
    )
    assert get(server, "/readyz") == (503, "busy: 1 of 1 connections running\n")
    assert get(server, "/healthz") == (200, "alive\n")
    assert metric(server, "mrzero_connections_active") == 1

    refused = stream([], mrd.header_xml, host=host, port=port, timeout_s=60)
    assert any("server busy" in error for error in refused.errors)
    assert metric(server, "mrzero_connections_refused_total") == 1

    release.set()
    first.join(60)
    assert any("unknown pipeline 'nope'" in error for error in replies["held"].errors)
    wait_until(lambda: get(server, "/readyz")[0] == 200, "readiness after the scan")
    assert metric(server, "mrzero_acquisitions_total") == mrd.count  # journaled and counted though failed
    assert metric(server, "mrzero_images_sent_total") == 0
    assert metric(server, "mrzero_scan_latency_seconds_count") == 0  # failed scans have no latency
    assert metric(server, "mrzero_pipeline_errors_total", kind="pipeline") == 0


def test_liveness_fails_without_the_fork_server_until_a_scan_restarts_it(server, raw):
    assert get(server, "/healthz") == (200, "alive\n")
    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGKILL)
    wait_until(lambda: get(server, "/healthz")[0] == 503, "liveness to fail")
    assert get(server, "/healthz")[1] == "the fork server that starts pipeline workers is not running\n"

    # the scan's worker is started by a new fork server: multiprocessing restarts a dead one
    reply = send_file(raw, port=server.address[1], progress=False, timeout_s=120)
    assert reply.errors == [] and len(reply.images) == 1, reply.texts
    assert get(server, "/healthz") == (200, "alive\n")
