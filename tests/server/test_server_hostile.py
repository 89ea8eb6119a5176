"""Hostile or careless clients: trickling bytes, expensive headers, nested JSON, peers outside
--allow, plain TCP to a TLS port. Each gets a clear answer (or a silent close where it must not
be read at all), frees its slot, and a concurrent good scan still gets its image."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from scans_for_tests import acquisition_message, config_file_message, header_xml, read_reply, scan, wire_text
from server_harness import (
    TEST_LIMITS,
    assert_rss_reply,
    concurrent_good_scan,
    only_error,
    run_bad,
    start,
    start_server,
)

from mrzero.cli import main as mrzero
from mrzero.client import stream, tls_context
from mrzero.core.mrd_file import write_raw_file
from mrzero.server.framing import MessageId, close_message
from mrzero.server.health import REQUEST_TIMEOUT_S

CLOSE = close_message()


def trickle(sock: socket.socket, data: bytes, every_s: float) -> None:
    """Send ``data`` one byte at a time until the server closes."""
    try:
        for byte in data:
            sock.send(bytes([byte]))
            time.sleep(every_s)
    except OSError:
        pass


def test_trickling_before_the_header_is_closed_by_the_header_timeout(tmp_path):
    server = start_server(tmp_path, dataclasses.replace(TEST_LIMITS, header_timeout_s=1.0))
    try:
        with concurrent_good_scan(server):
            with socket.create_connection(server.address, timeout=60) as sock:
                trickle(sock, start(), every_s=0.1)  # each byte well within the idle timeout
                reply = read_reply(sock)
        assert only_error(reply) == "ERROR: no XML header within 1 s of connecting (header timeout); closing"
        assert server.metrics.errors.labels("limit", "none")._value.get() == 1  # config not read yet
    finally:
        server.stop()


def test_trickling_data_are_closed_by_the_minimum_rate(tmp_path):
    limits = dataclasses.replace(TEST_LIMITS, idle_timeout_s=1.0, header_timeout_s=1.0, min_data_rate=1e5)
    server = start_server(tmp_path, limits)
    try:
        with socket.create_connection(server.address, timeout=60) as sock:
            sock.sendall(start())
            trickle(sock, acquisition_message(scan()[0]) * 10, every_s=0.05)
            reply = read_reply(sock)
        assert "below the minimum of 100000 bytes/s (minimum data rate); closing" in only_error(reply)
        (journal,) = tmp_path.glob("*.h5")
        assert "minimum data rate" not in journal.name
    finally:
        server.stop()


def test_scan_deadline(tmp_path):
    server = start_server(tmp_path, dataclasses.replace(TEST_LIMITS, scan_deadline_s=1.0))
    try:
        with socket.create_connection(server.address, timeout=60) as sock:
            sock.sendall(start() + acquisition_message(scan()[0]))
            reply = read_reply(sock)
        assert only_error(reply) == "ERROR: the scan is still sending after 1 s (scan deadline); closing"
    finally:
        server.stop()


def test_deeply_nested_json_is_refused_and_the_data_are_still_journaled(server):
    nested = '{"parameters": {"config": "test_rss", "x": ' + "[" * 200_000 + "]" * 200_000 + "}}"
    stream_ = (
        config_file_message(b"test_rss")
        + wire_text(MessageId.TEXT, nested.encode())
        + wire_text(MessageId.HEADER, header_xml().encode())
        + b"".join(map(acquisition_message, scan()))
        + CLOSE
    )
    reply, journal = run_bad(server, stream_)
    assert "JSON parameters nested 200002 levels deep, more than the limit of 32; refused" in only_error(
        reply
    )
    with journal:
        assert journal["dataset/data"].shape == (32,)
        assert json.loads(journal["dataset"].attrs["texts"]) == [nested]


def test_huge_json_is_refused(server):
    huge = json.dumps({"parameters": {"config": "test_rss", "blob": "x" * (2 << 20)}})
    reply, journal = run_bad(
        server, start() + wire_text(MessageId.TEXT, huge.encode()) + acquisition_message(scan()[0]) + CLOSE
    )
    assert "more than the limit of 1048576 bytes; refused" in only_error(reply)
    with journal:
        assert journal["dataset/data"].shape == (1,)


def test_header_slow_to_parse_is_refused_without_stalling_the_server(tmp_path):
    """120,000 nested unknown elements (840 KB) cost about a second of XML parsing, a real header
    a millisecond: a 0.1 s limit refuses the one and keeps the other."""
    server = start_server(tmp_path, dataclasses.replace(TEST_LIMITS, header_parse_timeout_s=0.1))
    try:
        depth = 120_000
        xml = header_xml().replace("</ismrmrdHeader>", "<x>" * depth + "</x>" * depth + "</ismrmrdHeader>")
        stream_ = (
            config_file_message(b"test_rss")
            + wire_text(MessageId.HEADER, xml.encode())
            + b"".join(map(acquisition_message, scan()[:3]))
            + CLOSE
        )
        reply, journal = run_bad(server, stream_)  # a concurrent good scan gets its image meanwhile
        assert "the XML header (840826 characters)" in only_error(
            reply
        ) and "took more than 0.1 s to parse; refused" in only_error(reply)
        with journal:
            assert journal["dataset/data"].shape == (3,)
    finally:
        server.stop()


def test_header_over_the_size_limit_is_refused(tmp_path):
    server = start_server(tmp_path, dataclasses.replace(TEST_LIMITS, max_header_bytes=4096))
    try:
        xml = header_xml().replace("</ismrmrdHeader>", "<!--" + "x" * 8192 + "--></ismrmrdHeader>")
        reply, journal = run_bad(
            server, config_file_message(b"test_rss") + wire_text(MessageId.HEADER, xml.encode()) + CLOSE
        )
        assert "the XML header has 8 KB, more than the limit of 4 KB (--max-header-kb)" in only_error(reply)
        journal.close()
    finally:
        server.stop()


def test_peers_outside_allow_are_closed_unread(tmp_path):
    server = start_server(tmp_path, allow=(ipaddress.ip_network("10.0.0.0/8"),))
    try:
        with socket.create_connection(server.address, timeout=60) as sock:
            try:
                sock.sendall(start())
                answer = sock.recv(1024)
            except ConnectionResetError:
                answer = b""
        assert answer == b""
        deadline = time.monotonic() + 30
        while server.metrics.denied._value.get() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.metrics.denied._value.get() == 1
        assert list(tmp_path.glob("*.h5")) == []
    finally:
        server.stop()
    allowed = start_server(tmp_path, allow=(ipaddress.ip_network("127.0.0.0/8"),))
    try:
        acqs, xml = scan(), header_xml()
        host, port = allowed.address
        assert_rss_reply(stream(acqs, xml, host=host, port=port, config="test_rss", timeout_s=60), acqs, xml)
    finally:
        allowed.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls(tmp_path):
    cert, key = self_signed(tmp_path)
    server = start_server(tmp_path / "journal", tls_cert=cert, tls_key=key)
    try:
        host, port = server.address
        acqs, xml = scan(coils=8, nx=128, ny=128, seed=9), header_xml(coils=8, nx=128, ny=128)  # 1 MB
        reply = stream(
            acqs, xml, host=host, port=port, config="test_rss", timeout_s=60, tls=tls_context(cert)
        )
        assert_rss_reply(reply, acqs, xml)
        raw = tmp_path / "raw.h5"
        write_raw_file(raw, xml, acqs)
        assert (
            mrzero(
                [
                    "send",
                    str(raw),
                    "--host",
                    host,
                    "--port",
                    str(port),
                    "--config",
                    "test_rss",
                    "--tls-ca",
                    str(cert),
                    "-o",
                    str(tmp_path / "images.h5"),
                ]
            )
            == 0
        )
        failures = server.metrics.tls_failures._value.get  # mrzero send's probe of the port counts too
        before = failures()
        plain = stream(acqs, xml, host=host, port=port, config="test_rss", timeout_s=60)
        assert plain.images == [] and not plain.closed
        deadline = time.monotonic() + 30
        while failures() < before + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert failures() == before + 1
    finally:
        server.stop()


def test_fallback_pipeline_for_unknown_config_names(tmp_path):
    server = start_server(tmp_path, fallback_pipeline="test_rss")
    try:
        acqs, xml = scan(), header_xml()
        host, port = server.address
        reply = stream(acqs, xml, host=host, port=port, config="no_such_pipeline", timeout_s=60)
        assert_rss_reply(reply, acqs, xml)
        assert (
            "WARNING: unknown pipeline 'no_such_pipeline'; reconstructed with the server's fallback "
            "pipeline 'test_rss' (--fallback-pipeline)"
        ) in reply.texts
    finally:
        server.stop()


def test_idle_health_clients_are_closed_and_probes_still_answer(tmp_path):
    server = start_server(tmp_path, health_port=0)
    try:
        host, port = server.health_address
        idle = [socket.create_connection((host, port), timeout=60) for _ in range(40)]
        started = time.monotonic()
        for sock in idle:
            assert sock.recv(1024) == b""  # closed by the server: over the thread bound, or timed out
            sock.close()
        assert time.monotonic() - started < 10 * REQUEST_TIMEOUT_S
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=30) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as answer:
            text = answer.read().decode()
        assert 'mrzero_build_info{ismrmrd="' in text and "mrzero_data_dir_free_bytes" in text
        assert 'mrzero_pipeline_errors_total{kind="journal",pipeline="none"} 0.0' in text
        assert "mrzero_journal_bytes_total" in text
    finally:
        server.stop()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--max-connections", "-1"),
        ("--timeout", "-3"),
        ("--idle-timeout", "0"),
        ("--header-timeout", "nan"),
        ("--min-free-mb", "-5"),
        ("--allow", "10.0.0.300/8"),
        ("--journal-flush-s", "0"),
    ],
)
def test_serve_rejects_bad_numbers_when_parsing(option, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        mrzero(["serve", option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and repr(value) in err
