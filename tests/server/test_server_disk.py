"""Disk faults with a real file system: a small tmpfs as the journal directory. The scan keeps
its images, the client is told, the journal is readable and says what it holds."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
from scans_for_tests import header_xml, scan
from server_harness import assert_rss_reply, start_server

from mrzero.client import stream
from mrzero.server.listener import Server


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs (room for the first journal batches of 128 acquisitions, not the whole scan), unmounted
    afterwards."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


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
