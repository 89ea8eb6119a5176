"""Disk faults with a real file system: a small tmpfs as the journal directory. The scan keeps
its images, the client is told, the journal is readable and says what it holds."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
from scans_for_tests import header_xml, scan
from server_harness import assert_rss_reply, fill_from_another_process, mounted_tmpfs, start_server

from mrzero.client import stream
from mrzero.server.framing import MessageId
from mrzero.server.journal import Journal
from mrzero.server.listener import Server


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs (room for the first journal batches, not the whole scan)."""
    with mounted_tmpfs(tmp_path / "tmpfs", "6m") as mount:
        yield mount


def big_scan(seed: int = 3) -> tuple[list[ismrmrd.Acquisition], str]:
    """About 8.6 MB of raw data: more than the tmpfs holds."""
    return scan(coils=8, nx=256, ny=512, seed=seed), header_xml(coils=8, nx=256, ny=512)


def run_scan(server: Server, acqs: list, xml: str):
    host, port = server.address
    return stream(acqs, xml, host=host, port=port, config="test_rss", timeout_s=120)


def journal_warning(texts: list[str]) -> str:
    warnings = [text for text in texts if text.startswith("WARNING: the raw data of this scan were not")]
    assert len(warnings) == 1, texts
    return warnings[0]


def errors_counted(server: Server, kind: str) -> float:
    return server.metrics.errors.labels(kind, "test_rss")._value.get()


def test_disk_full_mid_scan_keeps_the_images_and_a_readable_journal(tmpfs):
    server = start_server(tmpfs)
    try:
        acqs, xml = big_scan()
        reply = run_scan(server, acqs, xml)
        assert reply.errors == [] and reply.closed, reply.texts
        assert_rss_reply(reply, acqs, xml)
        assert "the disk is nearly full" in journal_warning(reply.texts)
        assert errors_counted(server, "journal") == 1
        summary = reply.texts[-1]
        assert "raw data journal incomplete, it holds" in summary
        held = int(summary.split("it holds ")[1].split()[0])
        assert 0 < held < len(acqs)
        (path,) = tmpfs.glob("*.h5")
        with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
            assert dset.number_of_acquisitions() == held
            for i in (0, held - 1):
                np.testing.assert_array_equal(dset.read_acquisition(i).data, acqs[i].data)
        with h5py.File(path, "r") as f:
            attrs = f["dataset"].attrs
            assert str(attrs["journal"]).startswith("incomplete: writing the journal")
            assert "the disk is nearly full" in attrs["journal"] and attrs["ended"] == "close"
    finally:
        server.stop()


def test_journal_that_cannot_be_created_leaves_no_file_and_the_scan_goes_on(tmpfs):
    _fill(tmpfs)
    server = start_server(tmpfs)
    try:
        acqs, xml = scan(seed=2), header_xml()
        reply = run_scan(server, acqs, xml)
        assert reply.errors == [] and reply.closed, reply.texts
        assert_rss_reply(reply, acqs, xml)
        assert "cannot create the journal" in journal_warning(reply.texts)
        assert list(tmpfs.glob("*.h5")) == []
    finally:
        server.stop()


def _fill(directory: Path) -> None:
    """Fill the file system of ``directory`` to the last byte."""
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_below_min_free_space_scans_are_refused_and_not_ready(tmp_path):
    server = start_server(tmp_path, min_free_bytes=1 << 60)
    try:
        ready, reason = server.readiness()
        assert not ready and "disk nearly full" in reason and "--min-free-mb" in reason
        reply = run_scan(server, scan(), header_xml())
        assert reply.closed and reply.images == []
        assert len(reply.errors) == 1 and "server disk nearly full" in reply.errors[0]
        assert "scan refused" in reply.errors[0]
        assert list(tmp_path.glob("*.h5")) == []
    finally:
        server.stop()


def test_read_only_journal_directory_keeps_the_images(tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    server = start_server(tmpfs)
    try:
        acqs, xml = scan(seed=8), header_xml()
        reply = run_scan(server, acqs, xml)
        assert_rss_reply(reply, acqs, xml)
        assert "Read-only file system" in journal_warning(reply.texts)
    finally:
        server.stop()


def _journal_marks(path: Path) -> dict:
    """Every attribute of a journal, read as an operator would (any unreadable one raises)."""
    with h5py.File(path, "r") as f:
        return {key: f["dataset"].attrs[key] for key in f["dataset"].attrs}


def test_another_process_filling_the_disk_mid_scan_leaves_a_readable_marked_journal(tmp_path):
    """The disk fills from elsewhere while the scan streams: the scan keeps its images, and the
    journal opens, with its marks readable, saying incomplete and how many acquisitions it holds."""
    acqs, xml = big_scan(seed=5)
    with mounted_tmpfs(tmp_path / "tmpfs", "24m") as mount:
        server = start_server(mount)
        try:

            def items() -> Iterator[ismrmrd.Acquisition]:
                for i, acq in enumerate(acqs):
                    if i == 200:  # once the journal has flushed some of the scan (a loaded machine is slow)
                        deadline = time.monotonic() + 30
                        while not server.metrics.registry.get_sample_value("mrzero_journal_bytes_total"):
                            assert time.monotonic() < deadline, "the journal flushed nothing"
                            time.sleep(0.01)
                        fill_from_another_process(mount)
                    yield acq

            reply = run_scan(server, items(), xml)
            assert_rss_reply(reply, acqs, xml)
            assert "the disk is nearly full" in journal_warning(reply.texts)
            held = int(reply.texts[-1].split("it holds ")[1].split()[0])
            (path,) = mount.glob("*.h5")
            marks = _journal_marks(path)
            assert marks["journal"].startswith("incomplete: writing the journal")
            assert marks["acquisitions"] == held and marks["ended"] == "close"
            assert 0 < held < len(acqs)  # what was written before the disk filled (timing-dependent)
            with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
                assert dset.number_of_acquisitions() == held
                for i in range(held):
                    np.testing.assert_array_equal(dset.read_acquisition(i).data, acqs[i].data)
        finally:
            server.stop()


@pytest.mark.parametrize("fill_at", [3, 17, 40, 66])
def test_journal_filled_out_by_another_process_at_any_moment_stays_readable(tmp_path, fill_at):
    """Before the space reservation every one of these journals had unreadable attributes (the
    closing marks' heap space was never written). Fill points: before the first flush, mid-batch."""
    acqs = scan(coils=32, nx=512, ny=96, seed=fill_at)  # 131 KB each
    with mounted_tmpfs(tmp_path / "tmpfs", "16m") as mount:
        journal = Journal(mount / "j.h5", flush_interval_s=0.01)
        journal.header(header_xml(coils=32, nx=512, ny=96))
        journal.text('{"parameters": {"config": "test_rss"}}')
        for i, acq in enumerate(acqs):
            if i == fill_at:
                fill_from_another_process(mount)
            journal.data(MessageId.ACQUISITION, memoryview(acq.to_bytes()))
        journal.close("close")
        assert journal.failure is not None and "nearly full" in journal.failure
        marks = _journal_marks(mount / "j.h5")
        assert marks["journal"].startswith("incomplete: writing the journal")
        assert marks["acquisitions"] == journal.held and marks["ended"] == "close"
        with ismrmrd.Dataset(str(mount / "j.h5"), "dataset", create_if_needed=False) as dset:
            assert dset.number_of_acquisitions() == journal.held
            for i in range(journal.held):
                np.testing.assert_array_equal(dset.read_acquisition(i).data, acqs[i].data)
