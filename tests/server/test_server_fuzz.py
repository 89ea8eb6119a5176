"""A bounded stream fuzzer (hypothesis): whatever bytes a client sends, the server answers and
closes within the limits, never reports an internal error, leaks no descriptor or process,
and still reconstructs a good scan afterwards. ``bench/fuzz.py`` runs the same streams longer."""

from __future__ import annotations

import dataclasses
import os
import socket

from hypothesis import HealthCheck, given, settings
from mrd_streams import mrd_streams
from scans_for_tests import header_xml, read_reply, scan
from server_harness import TEST_LIMITS, assert_rss_reply, start_server

from mrzero.client import stream
from mrzero.pipelines import registry

LIMITS = dataclasses.replace(TEST_LIMITS, idle_timeout_s=2.0, header_timeout_s=2.0, pipeline_timeout_s=5.0)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_fuzzed_streams(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("fuzz"), LIMITS)
    try:
        before = open_descriptors()

        @settings(
            max_examples=40,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(mrd_streams())
        def one_stream(raw: bytes) -> None:
            with socket.create_connection(server.address, timeout=30) as sock:
                try:
                    sock.sendall(raw)
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the server may close first (a refused size): that is an answer too
                reply = read_reply(sock)  # TimeoutError here would be a hang
            assert not any("internal" in text for text in reply.texts), reply.texts

        one_stream()
        assert server.wait_idle(60)
        internal = server.metrics.registry.get_sample_value
        assert not any(
            internal("mrzero_pipeline_errors_total", {"kind": "internal", "pipeline": name})
            for name in ("none", "test_rss", "savedataonly", "test_raises")
        )
        labels = {
            sample.labels["pipeline"]
            for metric in server.metrics.registry.collect()
            if metric.name == "mrzero_pipeline_errors"
            for sample in metric.samples
        }
        assert labels <= {"none", *registry.names()}  # never a name a client made up
        assert open_descriptors() <= before + 2  # the journal files and sockets of every case are closed
        assert server.liveness()[0]
        acqs, xml = scan(seed=3), header_xml()
        host, port = server.address
        assert_rss_reply(stream(acqs, xml, host=host, port=port, config="test_rss", timeout_s=60), acqs, xml)
    finally:
        server.stop()
