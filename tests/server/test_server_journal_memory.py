"""The journal's memory is bounded in bytes (``--journal-buffer-mb``), not in items: a scan of
large acquisitions arriving faster than the disk takes them cannot grow the server's memory."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import ismrmrd
import numpy as np
from scans_for_tests import acquisition_message, config_file_message, header_xml, read_reply, wire_text
from server_harness import serve_process

from mrzero.server.framing import MessageId
from mrzero.server.journal import Journal

COILS, SAMPLES = 32, 8192  # 2 MiB per acquisition
CLOSE = struct.pack("<H", MessageId.CLOSE)


def large_acquisitions(n: int, distinct: int = 4) -> list[ismrmrd.Acquisition]:
    """``n`` acquisitions of 2 MiB (``distinct`` different sample arrays, cycled)."""
    rng = np.random.default_rng(n)
    data = [
        (rng.standard_normal((COILS, SAMPLES)) + 1j * rng.standard_normal((COILS, SAMPLES))).astype(
            np.complex64
        )
        for _ in range(distinct)
    ]
    acqs = []
    for k in range(n):
        acq = ismrmrd.Acquisition.from_array(data[k % distinct])
        acq.scan_counter = acq.idx.kspace_encode_step_1 = k
        acqs.append(acq)
    return acqs


def _status_kb(pid: int | str, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def test_a_producer_faster_than_the_disk_waits_at_the_buffer_bound(tmp_path):
    bound = 8 << 20
    acqs = large_acquisitions(48)  # 96 MiB, put as fast as memory allows
    bodies = [memoryview(acq.to_bytes()) for acq in acqs]
    journal = Journal(tmp_path / "j.h5", buffer_bytes=bound, flush_interval_s=0.05)
    peak, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], journal.buffered_bytes)
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    rss = _status_kb("self", "VmRSS")
    for body in bodies:
        journal.data(MessageId.ACQUISITION, body)
        peak[0] = max(peak[0], journal.buffered_bytes)
    grown_mb = (_status_kb("self", "VmRSS") - rss) / 1024
    journal.close("close")
    done.set()
    watcher.join()
    assert journal.failure is None and journal.held == 48
    assert bound // 2 <= peak[0] <= bound  # reached (the writer was slower), never passed
    assert grown_mb < 48  # the buffer, HDF5's copy of one batch, allocator slack; unbounded: 96+
    with ismrmrd.Dataset(str(tmp_path / "j.h5"), "dataset", create_if_needed=False) as dset:
        assert dset.number_of_acquisitions() == 48
        for k in (0, 21, 47):
            np.testing.assert_array_equal(dset.read_acquisition(k).data, acqs[k].data)


def test_a_scan_of_large_acquisitions_does_not_grow_the_server_process(tmp_path):
    """Peak memory of a server process (VmHWM, reset before the scan) while 160 MiB of 2 MiB
    acquisitions stream in: within its journal buffer and a few messages. Before the bound in
    bytes and the cache eviction, HDF5 alone held the whole scan twice (about 320 MiB)."""
    acqs = large_acquisitions(80)
    xml = header_xml(coils=COILS, nx=SAMPLES, ny=80)
    start = config_file_message(b"savedataonly") + wire_text(MessageId.HEADER, xml.encode())
    with serve_process(tmp_path, "--journal-buffer-mb", "8", "--max-message-mb", "16") as (process, port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:  # warm up: threads, buffers
            sock.sendall(start + acquisition_message(acqs[0]) + CLOSE)
            assert read_reply(sock).closed
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = _status_kb(process.pid, "VmHWM")
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(start + b"".join(map(acquisition_message, acqs)) + CLOSE)
            reply = read_reply(sock)
        peak_mb = (_status_kb(process.pid, "VmHWM") - before) / 1024
    assert reply.closed and reply.errors == [], reply.texts
    assert "80 acquisitions" in reply.texts[-1]
    assert peak_mb < 64, f"the server process grew by {peak_mb:.0f} MiB"
    (_, journal) = sorted(tmp_path.glob("*.h5"))
    with ismrmrd.Dataset(str(journal), "dataset", create_if_needed=False) as dset:
        assert dset.number_of_acquisitions() == 80
        np.testing.assert_array_equal(dset.read_acquisition(79).data, acqs[79].data)
