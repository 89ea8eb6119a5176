"""Journal retention over real files: the oldest closed journals go first, a journal in use and
another server's files never."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from mrzero.server.retention import DAY_S, JournalDirectory


def journal(directory: Path, name: str, size: int, age_days: float) -> Path:
    path = directory / name
    path.write_bytes(b"\0" * size)
    stamp = time.time() - age_days * DAY_S
    os.utime(path, (stamp, stamp))
    return path


def test_keep_days_removes_old_closed_journals_only(tmp_path):
    old, in_use, recent = (
        journal(tmp_path, f"{n}.h5", 10, age) for n, age in (("a", 40), ("b", 50), ("c", 1))
    )
    other = journal(tmp_path, "notes.txt", 10, 90)
    journals = JournalDirectory(tmp_path, keep_days=30)
    journals.opened(in_use)
    assert journals.prune() == [old]
    assert in_use.exists() and recent.exists() and other.exists()
    journals.closed(in_use)
    assert journals.prune() == [in_use]


def test_max_bytes_removes_the_oldest_until_the_rest_fit(tmp_path):
    files = [journal(tmp_path, f"{n}.h5", 1000, age) for n, age in (("a", 5), ("b", 4), ("c", 3), ("d", 2))]
    journals = JournalDirectory(tmp_path, max_bytes=2500)
    journals.opened(files[0])  # in use: counts, is never removed
    assert journals.prune() == files[1:3]
    assert [f.exists() for f in files] == [True, False, False, True]


def test_a_prefix_limits_pruning_to_this_servers_files(tmp_path):
    mine = journal(tmp_path, "pod-a-1.h5", 10, 40)
    theirs = journal(tmp_path, "pod-b-1.h5", 10, 40)
    assert JournalDirectory(tmp_path, prefix="pod-a", keep_days=30).prune() == [mine]
    assert theirs.exists()


def test_connections_that_end_together_prune_each_file_once_without_warnings(tmp_path, caplog):
    files = [journal(tmp_path, f"{n:03d}.h5", 10, 40) for n in range(300)]
    journals, removed = JournalDirectory(tmp_path, keep_days=30), []
    start = threading.Barrier(4)

    def prune() -> None:
        start.wait()
        removed.extend(journals.prune())

    threads = [threading.Thread(target=prune) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(removed) == files and not any(f.exists() for f in files)
    assert "cannot remove" not in caplog.text


def test_no_rules_no_removal(tmp_path):
    old = journal(tmp_path, "a.h5", 10, 400)
    assert JournalDirectory(tmp_path).prune() == [] and old.exists()


def test_the_server_prunes_at_start_and_counts_it(tmp_path):
    from server_harness import start_server

    old = journal(tmp_path, "old.h5", 10, 40)
    server = start_server(tmp_path, journal_keep_days=30)
    try:
        assert not old.exists()
        assert server.metrics.journals_pruned._value.get() == 1
    finally:
        server.stop()
