"""Recovery of a journal the server did not close, from its write-ahead log.

A journal is written by the server's own :class:`Journal` until a flush; its files as of that
moment are copied (what a SIGKILL then leaves on disk), the copy of the HDF5 file is damaged the
way a kill during an HDF5 flush damages it, and the copy is recovered. The references are
independent of the journal's writer: the acquisitions as sent (``Acquisition.to_bytes``), read
back with ``ismrmrd.Dataset``, and the log read with ismrmrd's own ``ProtocolDeserializer``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import h5py
import ismrmrd
import pytest
import server_harness
from ismrmrd.serialization import ConfigFile, ProtocolDeserializer
from scans_for_tests import header_xml, scan

from mrzero.server.framing import MessageId
from mrzero.server.journal import Journal, sidecar_path, wal_path
from mrzero.server.recovery import InUse, RecoveryError, recover
from mrzero.server.retention import DAY_S, JournalDirectory

CONFIG, TEXT, CLIENT = "test_rss", '{"note": "a text message"}', "127.0.0.1:4242"


def _journal_as_of_a_flush(tmp_path: Path, acqs: list) -> Path:
    """A journal of ``acqs`` (config, header, a text, the server's client attribute) copied as of
    its last flush into ``tmp_path / "crashed"``: what a kill then leaves. The original is
    closed normally, which removes its log and sidecar (checked)."""
    path = tmp_path / "live" / "scan.h5"
    journal = Journal(path, flush_interval_s=0.01)
    journal.set_attribute("client", CLIENT)
    journal.set_attribute("config", CONFIG)
    journal.header(header_xml(coils=4, nx=32, ny=32))
    journal.text(TEXT)
    for acq in acqs:
        journal.data(MessageId.ACQUISITION, memoryview(acq.to_bytes()))
    deadline = time.monotonic() + 30
    while journal.held < len(acqs) or journal.buffered_bytes:
        assert time.monotonic() < deadline, "the journal's writer did not flush"
        time.sleep(0.01)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for source in (path, wal_path(path), sidecar_path(path)):
        shutil.copyfile(source, crashed / source.name)
    journal.close("client closed")
    assert journal.failure is None
    assert path.exists() and not wal_path(path).exists() and not sidecar_path(path).exists()
    return crashed / path.name


def _assert_holds(path: Path, acqs: list) -> None:
    """``ismrmrd.Dataset`` opens the file and reads every acquisition byte-equal to the one sent."""
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        assert dset.number_of_acquisitions() == len(acqs)
        for i, acq in enumerate(acqs):
            assert dset.read_acquisition(i).to_bytes() == acq.to_bytes(), i
        assert dset.read_xml_header().decode() == header_xml(coils=4, nx=32, ny=32)


def _reads_all(path: Path, acqs: list) -> bool:
    try:
        _assert_holds(path, acqs)
    except Exception:  # noqa: BLE001 - whatever the damage makes ismrmrd raise
        return False
    return True


def _tear(path: Path, how: str) -> None:
    """Damage the HDF5 file as a kill during an HDF5 flush may: cut short, or metadata overwritten."""
    raw = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "metadata overwritten":  # the root group's object header, right after the superblock
        raw[96:2048] = bytes(2048 - 96)
        path.write_bytes(raw)
    elif how == "missing":  # killed before the HDF5 file was created
        path.unlink()


def test_the_log_reads_with_ismrmrds_own_deserializer(tmp_path):
    acqs = scan(seed=11)
    journal = _journal_as_of_a_flush(tmp_path, acqs)
    with ProtocolDeserializer(str(wal_path(journal))) as reader:
        got = []
        try:
            for obj in reader.deserialize():
                got.append(obj)
        except EOFError:  # the log has no close message: it ends where the kill left it
            pass
    assert isinstance(got[0], ConfigFile) and got[0] == ConfigFile(CONFIG)
    assert got[1].toXML() == ismrmrd.xsd.CreateFromDocument(header_xml(coils=4, nx=32, ny=32)).toXML()
    assert got[2] == TEXT
    assert [acq.to_bytes() for acq in got[3:]] == [acq.to_bytes() for acq in acqs]
    assert json.loads(sidecar_path(journal).read_text()) == {"client": CLIENT}


@pytest.mark.parametrize("how", ["truncated", "metadata overwritten", "missing"])
def test_a_torn_journal_is_rebuilt_from_its_log(tmp_path, how):
    acqs = scan(seed=12)
    journal = _journal_as_of_a_flush(tmp_path, acqs)
    _tear(journal, how)
    assert not _reads_all(journal, acqs)
    with open(wal_path(journal), "ab") as log:  # the kill also cut the next record short
        log.write(struct.pack("<H", MessageId.ACQUISITION) + acqs[0].to_bytes()[:500])
    result = recover(journal)
    assert (result.how, result.acquisitions, result.torn) == ("rebuilt", len(acqs), 502)
    _assert_holds(journal, acqs)
    with h5py.File(journal, "r") as f:
        attrs = f["dataset"].attrs
        assert attrs["journal"] == (
            "incomplete: recovered from its write-ahead log after the server stopped without "
            f"closing it ({len(acqs)} acquisitions)"
        )
        assert attrs["acquisitions"] == len(acqs)
        assert (attrs["config"], attrs["client"], json.loads(attrs["texts"])) == (CONFIG, CLIENT, [TEXT])
        assert "ended" not in attrs
    assert sorted(p.name for p in journal.parent.iterdir()) == [journal.name]


def test_a_journal_that_holds_everything_is_only_marked(tmp_path):
    acqs = scan(seed=13)
    journal = _journal_as_of_a_flush(tmp_path, acqs)
    result = recover(journal)
    assert (result.how, result.acquisitions) == ("marked", len(acqs))
    _assert_holds(journal, acqs)
    with h5py.File(journal, "r") as f:
        assert f["dataset"].attrs["journal"].startswith("incomplete: the server stopped without closing it")
        assert f["dataset"].attrs["client"] == CLIENT
    assert not wal_path(journal).exists() and not sidecar_path(journal).exists()


def test_a_journal_missing_rows_of_its_log_is_rebuilt(tmp_path):
    """The HDF5 file opens but lacks the last batch (killed after the log's write, before
    HDF5's flush): rebuilt, not marked."""
    acqs = scan(seed=14)
    journal = _journal_as_of_a_flush(tmp_path, acqs[:-5])
    with open(wal_path(journal), "ab") as log:
        for acq in acqs[-5:]:
            log.write(struct.pack("<H", MessageId.ACQUISITION) + acq.to_bytes())
    assert recover(journal).how == "rebuilt"
    _assert_holds(journal, acqs)


def test_a_log_that_does_not_parse_leaves_both_files(tmp_path):
    acqs = scan(seed=15)
    journal = _journal_as_of_a_flush(tmp_path, acqs)
    _tear(journal, "truncated")
    with open(wal_path(journal), "ab") as log:
        log.write(struct.pack("<H", 999) + bytes(5000))
    before = {p.name: p.read_bytes() for p in journal.parent.iterdir()}
    with pytest.raises(RecoveryError, match="does not parse at byte"):
        recover(journal)
    assert {p.name: p.read_bytes() for p in journal.parent.iterdir()} == before
    done = subprocess.run(
        [*server_harness.MRZERO, "journal", "recover", str(journal.parent)],
        capture_output=True,
        text=True,
        env=server_harness.test_env(),
    )
    assert done.returncode == 1, done
    assert "NOT recovered" in done.stderr


def test_a_log_a_running_journal_holds_is_left_alone(tmp_path):
    path = tmp_path / "open.h5"
    journal = Journal(path)
    try:
        with pytest.raises(InUse):
            recover(path)
        assert wal_path(path).exists()
    finally:
        journal.close("done")
    assert not wal_path(path).exists()


def test_retention_keeps_a_journal_with_a_log_and_counts_the_log(tmp_path):
    """Files of 1000 bytes, oldest first: ``a`` has a leftover log of 2000 bytes (not recovered
    yet), so it stays, and with its log it takes 3000 of the 4500 allowed: the two oldest
    journals without a log go."""
    journals = []
    for age, name in enumerate("abcd"):
        path = tmp_path / f"{name}.h5"
        path.write_bytes(bytes(1000))
        stamp = time.time() - (10 - age) * DAY_S
        os.utime(path, (stamp, stamp))
        journals.append(path)
    wal_path(journals[0]).write_bytes(bytes(2000))
    removed = JournalDirectory(tmp_path, max_bytes=4500).prune()
    assert removed == journals[1:3]
    assert journals[0].exists() and journals[3].exists()


def test_disk_full_closes_the_journal_readable_and_removes_its_log(tmp_path):
    """A 14 MB tmpfs, 8.5 MB of acquisitions (the log doubles what a batch needs): the journal
    fails before a write, is cut back to its last flush, marked and closed readable; its log goes
    with a normal close. Every acquisition it holds equals the one sent."""
    acqs = scan(coils=16, nx=256, ny=256, seed=16)
    with server_harness.mounted_tmpfs(tmp_path / "tmpfs", "14m") as mount:
        path = mount / "full.h5"
        journal = Journal(path, flush_interval_s=0.01)
        journal.header(header_xml(coils=16, nx=256, ny=256))
        for acq in acqs:
            journal.data(MessageId.ACQUISITION, memoryview(acq.to_bytes()))
        journal.close("client closed")
        assert journal.failure is not None and "disk is nearly full" in journal.failure
        assert 0 < journal.held < len(acqs)
        assert sorted(p.name for p in mount.iterdir()) == [path.name]
        with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
            assert dset.number_of_acquisitions() == journal.held
            for i in range(journal.held):
                assert dset.read_acquisition(i).to_bytes() == acqs[i].to_bytes()
        with h5py.File(path, "r") as f:
            assert f["dataset"].attrs["journal"].startswith("incomplete: writing the journal")


def test_a_server_started_over_leftover_logs_recovers_and_counts_them(tmp_path):
    """``mrzero serve`` recovers before it listens: one journal torn (rebuilt), one whole
    (marked), one with a log that does not parse (failed, files kept); /metrics counts each."""
    acqs = scan(seed=16)
    torn, whole, broken = (_journal_as_of_a_flush(tmp_path / name, acqs) for name in ("a", "b", "c"))
    _tear(torn, "truncated")
    with open(wal_path(broken), "ab") as log:
        log.write(struct.pack("<H", 999) + bytes(5000))
    _tear(broken, "truncated")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for path in (torn, whole, broken):
        for source in (path, wal_path(path), sidecar_path(path)):
            shutil.move(source, data_dir / source.name.replace("scan", path.parent.parent.name))
    server = server_harness.start_server(data_dir)
    try:
        counted = {
            line.split('"')[1]: float(line.split()[-1])
            for line in server.metrics.render().decode().splitlines()
            if line.startswith("mrzero_journals_recovered_total{")
        }
    finally:
        server.stop()
    assert counted == {"marked": 1.0, "rebuilt": 1.0, "failed": 1.0}
    _assert_holds(data_dir / "a.h5", acqs)
    _assert_holds(data_dir / "b.h5", acqs)
    assert wal_path(data_dir / "c.h5").exists()
