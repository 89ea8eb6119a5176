"""Helpers shared by the server tests (a module of its own: several test folders have a conftest.py)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from pipelines_for_tests import rss_image
from scans_for_tests import config_file_message, header_xml, read_reply, scan, wire_text

from mrzero.client import Reply, stream
from mrzero.pipelines.mrd_header import parse_header
from mrzero.server.framing import MessageId
from mrzero.server.limits import MB, Limits, Settings
from mrzero.server.listener import Server

TEST_LIMITS = Limits(
    max_message_bytes=16 * MB,
    pipeline_timeout_s=8.0,
    memory_limit_bytes=512 * MB,
    max_connections=16,
    idle_timeout_s=30.0,
    min_data_rate=0.0,  # the concurrent good scan pauses halfway for as long as a bad one takes
)


@contextlib.contextmanager
def mounted_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``mount -o size=``) at the new folder ``mount``, unmounted afterwards;
    skips the test where mounting is impossible (not root)."""
    import pytest

    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill_from_another_process(directory: Path) -> None:
    """Fill the file system of ``directory`` to the last byte from a separate process."""
    code = (
        "import sys\n"
        "with open(sys.argv[1], 'wb', buffering=0) as f:\n"  # unbuffered: closing writes nothing
        "    try:\n"
        "        while True: f.write(bytes(65536))\n"
        "    except OSError: pass\n"
    )
    subprocess.run([sys.executable, "-c", code, str(directory / "filler")], check=True, timeout=120)


def start_server(data_dir: Path, limits: Limits = TEST_LIMITS, **settings: Any) -> Server:
    """An in-process server on a free 127.0.0.1 port with the test pipelines; ``settings``:
    further :class:`Settings` fields."""
    return Server(
        Settings(
            port=0, data_dir=data_dir, limits=limits, pipeline_modules=("pipelines_for_tests",), **settings
        )
    ).start()


def assert_rss_reply(reply: Reply, acqs: list, xml: str) -> None:
    """The reply is exactly one image equal to the reference RSS reconstruction."""
    assert reply.errors == [] and reply.closed, reply.texts
    assert len(reply.images) == 1
    np.testing.assert_allclose(
        reply.images[0].data[0, 0], rss_image(acqs, parse_header(xml)), rtol=1e-5, atol=1e-6
    )


@contextlib.contextmanager
def concurrent_good_scan(server: Server) -> Iterator[None]:
    """A second client streams half a good scan before the ``with`` body, the rest after it,
    and must then get the correct image."""
    acqs, xml = scan(seed=7), header_xml()
    halfway, go_on = threading.Event(), threading.Event()
    result: dict[str, Reply] = {}

    def items() -> Iterator:
        for i, acq in enumerate(acqs):
            if i == len(acqs) // 2:
                halfway.set()
                go_on.wait(120)
            yield acq

    host, port = server.address
    thread = threading.Thread(
        target=lambda: result.update(
            reply=stream(items(), xml, host=host, port=port, config="test_rss", timeout_s=120)
        )
    )
    thread.start()
    assert halfway.wait(120)
    try:
        yield
    finally:
        go_on.set()
        thread.join(120)
    assert_rss_reply(result["reply"], acqs, xml)


def start(config: str = "test_rss", coils: int = 4) -> bytes:
    """Config-file and header messages, as a scan starts."""
    header = wire_text(MessageId.HEADER, header_xml(coils=coils).encode())
    return config_file_message(config.encode()) + header


def journal_of(server, sock_name: tuple[str, int]) -> h5py.File:
    """The journal of the connection that used local address ``sock_name`` (after it ended)."""
    assert server.wait_idle(120)
    matches = list(server.settings.data_dir.glob(f"*-{sock_name[0]}-{sock_name[1]}.h5"))
    assert len(matches) == 1, matches
    return h5py.File(matches[0], "r")


def run_bad(server, stream: bytes) -> tuple:
    """Send ``stream`` while a good client streams; return the reply and the journal."""
    with concurrent_good_scan(server):
        with socket.create_connection(server.address, timeout=60) as sock:
            name = sock.getsockname()
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
            reply = read_reply(sock)
    return reply, journal_of(server, name)


def only_error(reply) -> str:
    assert reply.closed and reply.images == [], reply.texts
    assert len(reply.errors) == 1, reply.texts
    return reply.errors[0]


HERE = Path(__file__).resolve().parent
MRZERO = [sys.executable, "-c", "import sys; from mrzero.cli import main; sys.exit(main())"]


def test_env() -> dict[str, str]:
    """The environment of a server subprocess that imports the test pipelines."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


@contextlib.contextmanager
def serve_process(
    data_dir: Path,
    *options: str,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[tuple[subprocess.Popen, int, list[str]]]:
    """``mrzero serve`` in a process of its own on a free port with the test pipelines; yields the
    process, its MRD port and the log lines read so far (a thread keeps reading them). Killed at
    the end if still running."""
    process = subprocess.Popen(
        [
            *MRZERO,
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--min-free-mb",
            "0",
            "--pipeline-module",
            "pipelines_for_tests",
            *options,
        ],
        env=test_env(),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    assert process.stderr is not None
    lines: list[str] = []
    port = None
    for line in process.stderr:
        lines.append(line)
        if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
            port = int(match.group(1))
            break
    assert port is not None, "".join(lines)
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        yield process, port, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(60)
        reader.join(10)
