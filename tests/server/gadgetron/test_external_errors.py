"""Bad input from Gadgetron's side: a clear error in the log and in Gadgetron's (its error
message), and a clean end of that connection, after which the gadget serves the next one."""

from __future__ import annotations

import logging
import socket
import struct
import time

import pytest

from mrzero.client import open_mrd
from mrzero.server.framing import header_message, serialized
from mrzero.server.gadgetron.peer import CLOSE, config_message, opening, run_chain

pytestmark = [pytest.mark.needs_ismrmrd_tools]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture(autouse=True)
def _session_info_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mrzero.server.gadgetron")


@pytest.fixture
def scan(shepp_logan):
    mrd = open_mrd(shepp_logan)
    return mrd.header_xml, list(mrd.items)


def assert_refused(answer, caplog, gadget, *fragments: str) -> None:
    assert answer.closed and answer.illegal is None and answer.images == []
    assert len(answer.errors) == 1, answer.errors
    assert all(f in answer.errors[0] for f in fragments), answer.errors
    assert gadget.wait_idle(60)
    assert any(all(f in text for f in fragments) for text in errors_logged(caplog)), caplog.text


def test_unknown_pipeline_is_refused_with_the_known_names(gadget, scan, caplog):
    header, acqs = scan
    answer = run_chain(gadget.address, opening({"pipeline": "nope"}, header), acqs[:10])
    assert_refused(answer, caplog, gadget, "unknown pipeline 'nope'", "cartesian")


def test_an_undeclared_or_invalid_property_is_refused_by_name(gadget, scan, caplog):
    header, acqs = scan
    properties = {"pipeline": "cartesian", "combine": "sos"}
    answer = run_chain(gadget.address, opening(properties, header), acqs[:10])
    assert_refused(answer, caplog, gadget, "combine: expected one of 'rss', 'adaptive'", "got 'sos'")
    properties = {"pipeline": "roar", "iterations": "3"}  # a property value that parses as JSON is a number
    answer = run_chain(gadget.address, opening(properties, header), acqs[:10])
    assert_refused(answer, caplog, gadget, "pipeline 'roar': unknown JSON parameter 'iterations' (= 3)")


@pytest.mark.parametrize(
    "payload, fragments",
    [
        (
            struct.pack("<H", 1023) + bytes(64),
            ("IsmrmrdReconData buffer (1023)", "AcquisitionAccumulateTrigger"),
        ),
        (struct.pack("<H", 1050) + bytes(64), ("AcquisitionBucket (1050)",)),
        (struct.pack("<H", 7777) + bytes(64), ("unsupported message id 7777", "acquisitions (1008)")),
    ],
    ids=["recon-data", "bucket", "unknown-id"],
)
def test_data_types_no_pipeline_takes_are_refused(gadget, scan, caplog, payload, fragments):
    header, acqs = scan
    answer = run_chain(gadget.address, opening({"pipeline": "cartesian"}, header), [*acqs[:3], payload])
    assert_refused(answer, caplog, gadget, *fragments)


def test_data_before_the_header_is_refused(gadget, scan, caplog):
    _, acqs = scan
    answer = run_chain(gadget.address, config_message("<configuration/>"), acqs[:3])
    assert_refused(answer, caplog, gadget, "acquisition before the MRD header")


@pytest.mark.parametrize(
    "config, fragment",
    [
        ("<configuration><property name='pipeline'", "configuration is not XML"),
        ("<configuration><property name='pipeline'/></configuration>", "lacks a name or value"),
    ],
    ids=["not-xml", "no-value"],
)
def test_bad_configurations_are_refused(gadget, scan, caplog, config, fragment):
    header, acqs = scan
    answer = run_chain(gadget.address, config_message(config) + header_message(header), acqs[:3])
    assert_refused(answer, caplog, gadget, fragment)


def test_a_failing_pipeline_is_reported_and_the_rest_read_until_close(gadget, scan, caplog):
    header, acqs = scan
    answer = run_chain(gadget.address, opening({"pipeline": "test_fail_at_5"}, header), acqs)
    assert_refused(answer, caplog, gadget, "pipeline 'test_fail_at_5' failed: test pipeline refuses item 5")
    assert any(f"{len(acqs)} items in" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("cut", [0, 100], ids=["between-messages", "inside-a-message"])
def test_gadgetron_disconnecting_mid_stream_ends_the_connection(gadget, scan, caplog, cut):
    header, acqs = scan
    with socket.create_connection(gadget.address, timeout=30) as sock:
        sock.sendall(opening({"pipeline": "cartesian"}, header))
        for acq in acqs[:20]:
            sock.sendall(serialized(acq))
        sock.sendall(serialized(acqs[20])[:cut])
    # nothing comes back to a peer that is gone: wait for the session's last log line
    deadline = time.monotonic() + 60
    while not any("ended by disconnect" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the session did not end"
        time.sleep(0.05)
    logged = errors_logged(caplog)
    assert any("disconnected mid-stream" in text and "pipeline cartesian stopped" in text for text in logged)
    answer = run_chain(gadget.address, opening({"pipeline": "cartesian"}, header), acqs)
    assert answer.closed and answer.errors == [] and len(answer.images) == 1


def test_a_header_without_configuration_uses_the_default_pipeline(gadget, scan):
    header, acqs = scan
    answer = run_chain(gadget.address, header_message(header), acqs)
    assert answer.closed and answer.errors == [] and len(answer.images) == 1


def test_close_right_after_the_configuration_is_answered_with_close(gadget):
    answer = run_chain(gadget.address, config_message("<configuration/>"), end=CLOSE)
    assert answer.closed and answer.errors == [] and answer.images == []
