"""Bad input over real sockets: each gets a clear error, the journal keeps what arrived, and a
second client streaming at the same time still gets its correct image."""

from __future__ import annotations

import struct

import ismrmrd
import numpy as np
import pytest
from scans_for_tests import acquisition_message, config_file_message, scan, wire_text
from server_harness import only_error, run_bad, start

from mrzero.server.framing import MessageId, close_message

CLOSE = close_message()


def test_truncated_acquisition_keeps_the_complete_ones(server):
    acqs = scan()
    partial = acquisition_message(acqs[5])[:-100]
    reply, journal = run_bad(server, start() + b"".join(map(acquisition_message, acqs[:5])) + partial)
    assert "stream ended inside acquisition data" in only_error(reply)
    with journal:
        data = journal["dataset/data"]
        assert data.shape == (5,)
        assert np.array_equal(data[4]["data"].view(np.complex64).reshape(4, 32), acqs[4].data)


def test_unknown_message_id(server):
    reply, journal = run_bad(server, start() + acquisition_message(scan()[0]) + struct.pack("<H", 0x7777))
    assert "unknown or unsupported message id 30583" in only_error(reply)
    with journal:
        assert journal["dataset/data"].shape == (1,)


@pytest.mark.parametrize(
    "stream, fragment",
    [
        (struct.pack("<HI", MessageId.TEXT, 3 << 30), "a text message claims 3221225472 bytes"),
        (struct.pack("<HI", MessageId.HEADER, 0xFFFFFFFF), "a header message claims 4294967295 bytes"),
    ],
)
def test_huge_claimed_length_is_refused(server, stream, fragment):
    reply, journal = run_bad(server, config_file_message(b"test_rss") + stream)
    error = only_error(reply)
    assert fragment in error and "limit of 16777216 bytes" in error
    journal.close()


def test_huge_acquisition_is_refused(server):
    head = ismrmrd.AcquisitionHeader()
    head.number_of_samples, head.active_channels = 65535, 65535
    reply, journal = run_bad(server, start() + struct.pack("<H", MessageId.ACQUISITION) + bytes(head))
    assert "claims 34358689800 bytes" in only_error(reply)
    journal.close()


def test_malformed_xml_header(server):
    stream = config_file_message(b"test_rss") + wire_text(MessageId.HEADER, b"<ismrmrdHeader><encoding>")
    reply, journal = run_bad(server, stream + b"".join(map(acquisition_message, scan()[:3])) + CLOSE)
    assert "malformed MRD header" in only_error(reply)
    with journal:
        assert journal["dataset/data"].shape == (3,)  # raw data kept for a later look


def test_acquisition_with_fewer_coils_than_the_header(server):
    acqs = scan(coils=3)
    reply, journal = run_bad(server, start(coils=4) + b"".join(map(acquisition_message, acqs)) + CLOSE)
    assert "acquisition 0 (scan counter 0) has 3 coils but the header announces 4" in only_error(reply)
    with journal:
        assert journal["dataset/data"].shape == (32,)


def test_acquisition_outside_the_encoded_matrix(server):
    acqs = scan()
    acqs[3].idx.kspace_encode_step_1 = 40
    reply, journal = run_bad(server, start() + b"".join(map(acquisition_message, acqs)) + CLOSE)
    assert "acquisition 3 (scan counter 3) has k-space indices (ky 40" in only_error(reply)
    journal.close()


def test_nan_samples(server):
    acqs = scan()
    data = acqs[7].data.copy()
    data[1, 2] = np.nan
    acqs[7].data[:] = data
    reply, journal = run_bad(server, start() + b"".join(map(acquisition_message, acqs)) + CLOSE)
    assert "acquisition 7 (scan counter 7) contains NaN" in only_error(reply)
    with journal:
        assert journal["dataset/data"].shape == (32,)


def test_zero_coils(server):
    acq = ismrmrd.Acquisition.from_array(np.zeros((0, 32), np.complex64))
    reply, journal = run_bad(server, start() + acquisition_message(acq) + CLOSE)
    assert "acquisition 0 (scan counter 0) has zero coils" in only_error(reply)
    journal.close()


def test_data_before_the_header(server):
    stream = config_file_message(b"test_rss") + acquisition_message(scan()[0]) + CLOSE
    reply, journal = run_bad(server, stream)
    assert "acquisition before the XML header" in only_error(reply)
    journal.close()


def test_unknown_config_name_lists_the_known_pipelines(server):
    reply, journal = run_bad(server, start("no_such_pipeline") + acquisition_message(scan()[0]) + CLOSE)
    journal.close()
    error = only_error(reply)
    assert "unknown pipeline 'no_such_pipeline'" in error
    assert "test_rss" in error and "cartesian" in error and "savedataonly" in error
