"""Real clients' quirks: golden byte streams over real sockets, and the framing adapter."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import ismrmrd
import numpy as np
import pytest
from ismrmrd.serialization import ProtocolDeserializer
from scans_for_tests import acquisition_message, config_file_message, exchange, header_xml, scan, wire_text
from server_harness import assert_rss_reply, concurrent_good_scan

from mrzero.server.framing import (
    MessageId,
    MessageReader,
    ProtocolError,
    TruncatedMessage,
    config_override,
    decode,
    decode_wire,
    parse_parameters,
    serialized,
)

GOLDEN = Path(__file__).parent / "golden"


def golden_scan(name: str) -> tuple[list[ismrmrd.Acquisition], str]:
    """The acquisitions and header inside a golden stream, read back with the framing adapter."""
    reader = MessageReader(io.BytesIO((GOLDEN / name).read_bytes()), 1 << 20)
    acqs, xml = [], ""
    while (msg := reader.next()) is not None and msg.id != MessageId.CLOSE:
        if msg.id == MessageId.ACQUISITION:
            acqs.append(decode(msg))
        elif msg.id == MessageId.HEADER:
            xml = msg.text
    return acqs, xml


@pytest.mark.parametrize("name", ["fire_quirks.bin", "json_override.bin", "no_close.bin"])
def test_golden_quirky_client_gets_the_right_image(server, name):
    acqs, xml = golden_scan(name)
    assert len(acqs) == 16 and not xml.endswith("\0")
    with concurrent_good_scan(server):
        reply = exchange(server.address, (GOLDEN / name).read_bytes())
    assert_rss_reply(reply, acqs, xml)
    assert any("pipeline test_rss: 16 acquisitions" in text for text in reply.texts)


def test_dependency_query_is_answered_with_close_only(server):
    reply = exchange(server.address, (GOLDEN / "dependency_query.bin").read_bytes())
    assert reply.closed and reply.images == [] and reply.texts == []


def test_header_without_config_selects_the_default_pipeline(server):
    xml = header_xml()
    stream = wire_text(MessageId.HEADER, xml.encode()) + b"".join(acquisition_message(a) for a in scan())
    reply = exchange(server.address, stream + struct.pack("<H", MessageId.CLOSE))
    assert reply.errors == [] and reply.closed
    assert len(reply.images) >= 1
    assert any("pipeline cartesian:" in text for text in reply.texts)


def test_config_file_is_cut_at_the_first_nul_and_decoded_leniently():
    msg = MessageReader(io.BytesIO(config_file_message(b"test_rss", b"\xff\xfe junk")), 4096).next()
    assert msg.id == MessageId.CONFIG_FILE and msg.text == "test_rss"


def test_text_messages_lose_trailing_nuls():
    msg = MessageReader(io.BytesIO(wire_text(MessageId.TEXT, b'{"a": 1}\0\0')), 4096).next()
    assert msg.text == '{"a": 1}'


@pytest.mark.parametrize(
    "stream, fragment",
    [
        (struct.pack("<HI", MessageId.TEXT, 10) + b"abc", "inside a text message: got 3 of 10"),
        (struct.pack("<H", MessageId.ACQUISITION) + b"\0" * 100, "inside an acquisition header"),
        (b"\x05", "inside a message id"),
    ],
)
def test_truncated_messages_are_named(stream, fragment):
    with pytest.raises(TruncatedMessage, match=fragment):
        MessageReader(io.BytesIO(stream), 1 << 20).next()


def test_clean_end_between_messages_is_a_disconnect():
    assert MessageReader(io.BytesIO(b""), 10).next() is None


def test_fire_parameters_choose_the_pipeline():
    params = parse_parameters(json.dumps({"parameters": {"config": "a", "customconfig": "b"}}))
    assert params == {"config": "a", "customconfig": "b"}
    assert config_override(params) == "b"
    assert config_override({"config": "a", "customconfig": " "}) == "a"
    assert config_override({}) is None
    assert parse_parameters("plain log line") is None
    assert parse_parameters("[1, 2]") is None


def test_claimed_sizes_are_checked_before_reading():
    class NoBigReads(io.BytesIO):
        def read(self, n=-1):
            assert n <= 1024, f"asked to read {n} bytes"
            return super().read(n)

    head = ismrmrd.AcquisitionHeader()
    head.number_of_samples, head.active_channels = 65535, 1024
    raw = struct.pack("<H", MessageId.ACQUISITION) + bytes(head)
    with pytest.raises(ProtocolError, match="acquisition .* claims 536862720 bytes"):
        MessageReader(NoBigReads(raw), 1 << 20).next()


def test_fast_acquisition_decoding_equals_the_ismrmrd_deserializer():
    acq = scan(coils=3, nx=8, ny=8)[5]
    acq.resize(number_of_samples=8, active_channels=3, trajectory_dimensions=2)
    acq.data[:] = np.arange(24).reshape(3, 8) * (1 + 2j)
    acq.traj[:] = np.arange(16, dtype=np.float32).reshape(8, 2)
    wire = serialized(acq)
    reference = next(ProtocolDeserializer(io.BytesIO(wire)).deserialize())
    fast = decode_wire(wire)
    assert bytes(fast.getHead()) == bytes(reference.getHead())
    assert np.array_equal(fast.data, reference.data) and np.array_equal(fast.traj, reference.traj)
    fast.data[0, 0] = 7  # pipelines may work in place


@pytest.mark.parametrize(
    "config_text, fragment",
    [
        (b"test_rss\0", None),
        (b'{"parameters": {"customconfig": "test_rss"}}', None),
        (b"<configuration><reader/></configuration>", "XML configurations (config text messages)"),
    ],
)
def test_config_text_names_json_or_refused_xml(server, config_text, fragment):
    acqs, xml = scan(seed=2), header_xml()
    stream = (
        wire_text(MessageId.CONFIG_TEXT, config_text)
        + wire_text(MessageId.HEADER, xml.encode())
        + b"".join(map(acquisition_message, acqs))
        + struct.pack("<H", MessageId.CLOSE)
    )
    reply = exchange(server.address, stream)
    if fragment is None:
        assert_rss_reply(reply, acqs, xml)
    else:
        assert len(reply.errors) == 1 and fragment in reply.errors[0] and reply.images == []
