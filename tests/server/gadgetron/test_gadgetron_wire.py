"""Gadgetron's configuration documents and error messages, byte for byte."""

from __future__ import annotations

import struct

import pytest

from mrzero.server.framing import ProtocolError
from mrzero.server.gadgetron.peer import configuration
from mrzero.server.gadgetron.wire import error_message, parse_configuration


def test_properties_are_json_where_they_parse_and_strings_otherwise():
    sent = configuration(
        {
            "pipeline": "cartesian",
            "prewhiten": "false",
            "adaptive_kernel": "5",
            "scale": "0.5",
            "combine": "adaptive",
            "series_index": "[1]",
        }
    )
    assert parse_configuration(sent) == {
        "pipeline": "cartesian",
        "prewhiten": False,
        "adaptive_kernel": 5,
        "scale": 0.5,
        "combine": "adaptive",
        "series_index": [1],
    }


@pytest.mark.parametrize(
    "sent",
    ['<?xml version="1.0"?>\n', "", "<configuration/>"],
    ids=["node-without-configuration", "empty", "empty-element"],
)
def test_documents_without_properties_have_none(sent):
    assert parse_configuration(sent) == {}


def test_a_property_without_a_value_is_named_in_the_error():
    with pytest.raises(ProtocolError, match='lacks a name or value attribute: <property name="combine"'):
        parse_configuration('<configuration><property name="combine"/></configuration>')


def test_error_messages_are_id_8_with_a_uint64_length():
    assert error_message("bad ä") == struct.pack("<HQ", 8, 6) + "bad ä".encode()
