"""The server process itself failing: SIGKILL mid-scan (the journal keeps what was flushed; at
any moment, with the recovery from its write-ahead log) and too few file descriptors (the accept
loop backs off and goes on)."""

from __future__ import annotations

import random
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
import server_harness
from scans_for_tests import acquisition_message, config_file_message, header_xml, read_reply, scan, wire_text
from server_harness import MRZERO, assert_rss_reply, serve_process

from mrzero.client import stream
from mrzero.server.framing import MessageId
from mrzero.server.journal import wal_path

FLUSH_S = 0.05
#: Acquisitions streamed and flushed before the kill of :func:`kill_mid_scan`.
FIRST = 40


@pytest.mark.parametrize("passes", [0, 1, 3])
def test_sigkill_mid_scan_loses_nothing_flushed(tmp_path, passes):
    """Killed mid-scan (no end of the scan) once the writer has flushed what arrived: the journal
    opens without any recovery, holds every acquisition sent, equal to the originals, and says it
    was not closed. (A kill at any moment, a flush included, needs the recovery from the
    write-ahead log: the tests below.)"""
    acqs, xml = scan(coils=8, nx=128, ny=128, seed=1), header_xml(coils=8, nx=128, ny=128)
    sent = acqs[:40] + passes * acqs
    with serve_process(tmp_path, "--journal-flush-s", str(FLUSH_S)) as (process, port, _):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(
            config_file_message(b"test_rss")
            + wire_text(MessageId.HEADER, xml.encode())
            + b"".join(map(acquisition_message, sent))
        )
        path = next(iter(tmp_path.glob("*.h5")), None)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (path is None or _flushed(path) < len(sent)):
            time.sleep(20 * FLUSH_S)
            path = next(iter(tmp_path.glob("*.h5")), None)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        sock.close()
    assert path is not None
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        assert dset.number_of_acquisitions() == len(sent)
        for i, acq in enumerate(sent):
            np.testing.assert_array_equal(dset.read_acquisition(i).data, acq.data)
        assert dset.read_xml_header().decode() == xml
    with h5py.File(path, "r") as f:
        assert f["dataset"].attrs["journal"].startswith("incomplete: not closed by the server")
        assert "ended" not in f["dataset"].attrs


def _flushed(path) -> int:
    """Acquisitions a reader sees in the journal on disk now (0 while it does not read)."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f["dataset/data"].shape[0]) if "dataset/data" in f else 0
    except OSError:
        return 0


def kill_mid_scan(
    data_dir: Path, acqs: list, xml: str, delay_s: float, flush_s: float = FLUSH_S, *options: str
) -> Path:
    """Run ``mrzero serve`` over ``data_dir``, stream a scan's config, header and first
    :data:`FIRST` acquisitions, wait until its journal has flushed them, then stream the rest of
    ``acqs`` and three more passes from a second thread and SIGKILL the server ``delay_s`` into
    that. ``options``: more options of ``mrzero serve``. Returns the journal's path."""
    before = set(data_dir.glob("*.h5"))
    with serve_process(data_dir, "--journal-flush-s", str(flush_s), *options) as (process, port, _):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(
            config_file_message(b"test_rss")
            + wire_text(MessageId.HEADER, xml.encode())
            + b"".join(map(acquisition_message, acqs[:FIRST]))
        )
        deadline = time.monotonic() + 60
        while not (paths := set(data_dir.glob("*.h5")) - before) or _flushed(next(iter(paths))) < FIRST:
            assert time.monotonic() < deadline, "the journal did not flush the first acquisitions"
            time.sleep(flush_s)

        def rest() -> None:
            try:
                for acq in acqs[FIRST:] + 3 * acqs:
                    sock.sendall(acquisition_message(acq))
            except OSError:
                pass  # the server is gone

        sender = threading.Thread(target=rest)
        sender.start()
        time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        sock.close()
        sender.join(60)
    (path,) = paths
    return path


def _assert_recovered(path: Path, acqs: list) -> None:
    """The journal opens with ``ismrmrd.Dataset`` and holds at least the :data:`FIRST` acquisitions
    flushed before the kill, each equal to the one sent; its write-ahead log is gone."""
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        held = dset.number_of_acquisitions()
        assert held >= FIRST, path
        for i in range(held):
            assert dset.read_acquisition(i).to_bytes() == acqs[i % len(acqs)].to_bytes(), (path, i)
    with h5py.File(path, "r") as f:
        assert f["dataset"].attrs["acquisitions"] == held
        assert f["dataset"].attrs["journal"].startswith("incomplete:")
    assert not wal_path(path).exists()


def _kills(data_dir: Path, rounds: int, seed: int) -> tuple[list, list[Path]]:
    """``rounds`` servers killed mid-scan over ``data_dir``, each with a journal prefix of its own
    (a server recovers only its own journals at start: the earlier rounds' logs stay, checked)."""
    acqs, xml = scan(coils=8, nx=128, ny=128, seed=1), header_xml(coils=8, nx=128, ny=128)
    rng = random.Random(seed)
    paths = []
    for i in range(rounds):
        delay = rng.uniform(0, 0.1)
        paths.append(kill_mid_scan(data_dir, acqs, xml, delay, FLUSH_S, "--journal-prefix", f"kill{i}"))
    assert all(wal_path(path).exists() for path in paths)
    return acqs, paths


def test_sigkill_at_random_moments_then_restart_recovers_every_journal(tmp_path):
    """Killed at random moments of a streaming scan (a flush included), three times; the server
    restarted over the same directory recovers every journal from its write-ahead log before it
    listens."""
    acqs, paths = _kills(tmp_path, 3, seed=1)
    with serve_process(tmp_path) as (_, _, lines):  # no prefix: every journal is this server's
        assert sum("from its write-ahead log" in line for line in lines) >= len(paths), "".join(lines)
    for path in paths:
        _assert_recovered(path, acqs)


def test_journal_recover_command_on_a_killed_servers_directory(tmp_path):
    acqs, paths = _kills(tmp_path, 2, seed=2)
    command = [*MRZERO, "journal", "recover", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=server_harness.test_env())
    assert done.returncode == 0, done
    assert len(done.stdout.splitlines()) == len(paths), done.stdout
    for path in paths:
        _assert_recovered(path, acqs)
    again = subprocess.run(command, capture_output=True, text=True)
    assert (again.returncode, again.stdout) == (0, "no journal with a write-ahead log found\n")


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
