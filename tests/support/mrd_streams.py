"""Hypothesis strategies for MRD v1 byte streams a client might send: mostly well-formed
messages (config, JSON and plain texts, header, acquisitions, close) in any order, with
garbage messages, claimed sizes off by a little or a lot, and truncations mixed in. Used by
the stream fuzzer in the suite (``tests/server/test_server_fuzz.py``) and the long run
(``bench/fuzz.py``)."""

from __future__ import annotations

import json
import struct

import ismrmrd
import numpy as np
from hypothesis import strategies as st

CONFIG_FILE, CONFIG_TEXT, HEADER, CLOSE, TEXT, ACQUISITION, WAVEFORM, IMAGE = 1, 2, 3, 4, 5, 1008, 1026, 1022
HEADER_XML = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <acquisitionSystemInformation><receiverChannels>2</receiverChannels></acquisitionSystemInformation>
  <encoding>
    <encodedSpace><matrixSize><x>16</x><y>8</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>16</x><y>8</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></reconSpace>
    <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>7</maximum>
      <center>4</center></kspace_encoding_step_1></encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>"""


def text_message(msg_id: int, text: bytes) -> bytes:
    return struct.pack("<HI", msg_id, len(text)) + text


def config_file(name: bytes) -> bytes:
    return struct.pack("<H", CONFIG_FILE) + (name + b"\0").ljust(1024, b"\0")[:1024]


def acquisition(line: int, coils: int, samples: int, value: float) -> bytes:
    acq = ismrmrd.Acquisition.from_array(np.full((coils, samples), value, np.complex64))
    acq.idx.kspace_encode_step_1 = line
    acq.scan_counter = line
    return struct.pack("<H", ACQUISITION) + acq.to_bytes()


def nested_json(depth: int) -> bytes:
    return b'{"parameters": {"x": ' + b"[" * depth + b"]" * depth + b"}}"


_CONFIGS = st.sampled_from([b"test_rss", b"savedataonly", b"test_raises", b"no_such", b"", b"\xff\xfe"])
_WELL_FORMED = st.one_of(
    _CONFIGS.map(config_file),
    _CONFIGS.map(lambda name: text_message(CONFIG_TEXT, name)),
    st.just(text_message(HEADER, HEADER_XML.encode())),
    st.binary(max_size=200).map(lambda raw: text_message(HEADER, raw)),
    st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8)), max_size=4).map(
        lambda d: text_message(TEXT, json.dumps({"parameters": d}).encode())
    ),
    st.integers(30, 3000).map(lambda depth: text_message(TEXT, nested_json(depth))),
    st.binary(max_size=100).map(lambda raw: text_message(TEXT, raw)),
    st.builds(
        acquisition,
        st.integers(0, 9),
        st.sampled_from([0, 1, 2, 3]),
        st.sampled_from([0, 1, 16, 17]),
        st.sampled_from([0.0, 1.0, float("nan")]),
    ),
    st.just(struct.pack("<H", CLOSE)),
)
_GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=64),
    st.integers(0, 0xFFFF).map(lambda msg_id: struct.pack("<H", msg_id)),
    st.tuples(st.sampled_from([HEADER, TEXT, CONFIG_TEXT]), st.integers(0, 0xFFFFFFFF)).map(
        lambda t: struct.pack("<HI", *t)
    ),
    st.sampled_from([WAVEFORM, IMAGE, ACQUISITION]).map(
        lambda msg_id: struct.pack("<H", msg_id) + b"\xff" * 8
    ),
)


@st.composite
def mrd_streams(draw: st.DrawFn) -> bytes:
    """One client's byte stream: a list of messages (well-formed ones four times as likely as
    garbage), optionally cut short or with one byte changed."""
    parts = draw(
        st.lists(
            st.one_of(_WELL_FORMED, _WELL_FORMED, _WELL_FORMED, _WELL_FORMED, _GARBAGE),
            min_size=1,
            max_size=12,
        )
    )
    raw = bytearray(b"".join(parts))
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
    if cut is not None:
        raw = raw[:cut]
    flip = draw(st.one_of(st.none(), st.tuples(st.integers(0, max(0, len(raw) - 1)), st.integers(0, 255))))
    if flip is not None and raw:
        raw[flip[0]] = flip[1]
    return bytes(raw)
