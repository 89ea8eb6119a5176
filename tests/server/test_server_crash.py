"""The server process itself failing: SIGKILL mid-scan (the journal keeps all but the last flush
interval) and too few file descriptors (the accept loop backs off and goes on)."""

from __future__ import annotations

import resource
import signal
import socket
import threading
import time

import h5py
import ismrmrd
import numpy as np
import pytest
from scans_for_tests import acquisition_message, config_file_message, header_xml, read_reply, scan, wire_text
from server_harness import assert_rss_reply, serve_process

from mrzero.client import stream
from mrzero.server.framing import MessageId

FLUSH_S = 0.05


@pytest.mark.parametrize("kill_after_s", [0.0, 0.02, 0.06])
def test_sigkill_mid_scan_loses_at_most_the_last_flush_interval(tmp_path, kill_after_s):
    acqs, xml = scan(coils=8, nx=128, ny=128, seed=1), header_xml(coils=8, nx=128, ny=128)
    first = 40
    with serve_process(tmp_path, "--journal-flush-s", str(FLUSH_S)) as (process, port, _):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(
            config_file_message(b"test_rss")
            + wire_text(MessageId.HEADER, xml.encode())
            + b"".join(map(acquisition_message, acqs[:first]))
        )
        time.sleep(20 * FLUSH_S)  # the first acquisitions are older than a flush interval

        def rest() -> None:  # the scan's lines, then three more passes (journaled while the kill comes)
            try:
                for acq in acqs[first:] + 3 * acqs:
                    sock.sendall(acquisition_message(acq))
            except OSError:
                pass

        sender = threading.Thread(target=rest)
        sender.start()
        time.sleep(kill_after_s)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        sender.join(60)
        sock.close()
    (path,) = tmp_path.glob("*.h5")
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        held = dset.number_of_acquisitions()
        assert held >= first
        for i in range(held):
            np.testing.assert_array_equal(dset.read_acquisition(i).data, acqs[i % len(acqs)].data)
        assert dset.read_xml_header().decode() == xml
    with h5py.File(path, "r") as f:
        assert f["dataset"].attrs["journal"].startswith("incomplete: not closed by the server")
        assert "ended" not in f["dataset"].attrs


def test_out_of_file_descriptors_the_accept_loop_backs_off_and_goes_on(tmp_path):
    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (60, 60))

    with serve_process(
        tmp_path, "--max-connections", "100", "--header-timeout", "3", preexec_fn=few_descriptors
    ) as (process, port, lines):
        idle = []
        for _ in range(70):  # more than the server has descriptors for
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=60))
        deadline = time.monotonic() + 60
        while not any("EMFILE" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any("accept failed (EMFILE" in line for line in lines), "".join(lines)
        # the header timeout frees the descriptors of the idle clients; the server then goes on
        for sock in idle:
            reply = read_reply(sock)
            sock.close()
        assert reply.errors == ["ERROR: no XML header within 3 s of connecting (header timeout); closing"]
        acqs, xml = scan(seed=6), header_xml()
        assert_rss_reply(stream(acqs, xml, port=port, config="test_rss", timeout_s=120), acqs, xml)
        assert process.poll() is None
