"""The server started exactly as the container image starts it, then probed, scanned and stopped.

The command and environment come from ``docker/Dockerfile``'s runtime stage (its ``ENV``,
``ENTRYPOINT``, ``USER`` and ``WORKDIR``), parsed here, so that a change there is tested here.
The only differences from the container, because no container engine runs here:

* ``MRZERO_HOST`` is 127.0.0.1 and ``MRZERO_PORT``/``MRZERO_HEALTH_PORT`` are 0 (the server
  takes free ports and logs them), so that parallel test runs do not collide;
* ``MRZERO_DATA_DIR``/``MRZERO_BUNDLE_STORE`` and the working directory are a temporary
  ``/data`` of the image's user, ``HOME`` is that directory (Docker sets it from the user's
  passwd entry, ``/data``), and ``/opt/mrzero`` in ``PATH`` is this project's virtual environment;
* the drain-timeout test sets ``MRZERO_DRAIN_TIMEOUT`` (1 s) and ``MRZERO_JOURNAL_PREFIX`` as the
  Kubernetes manifest does.

When the tests run as root, the server runs as the image's ``USER`` through ``setpriv``. Where
this environment's Python lies in a directory that user may not enter (a pyenv build under
``/root``), the user gets the one capability ``CAP_DAC_READ_SEARCH`` (read and search any file,
as everyone may read the image's ``/opt/mrzero``); writing stays limited to what the user owns.
Scans are Debian's ISMRMRD Shepp-Logan raw data streamed with the project's client.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mrzero.client import Reply, open_mrd, send_file, stream
from mrzero.pipelines.offline import reconstruct_file
from mrzero.server.framing import close_message, header_message, serialized
from mrzero.shepp_logan_demo import generate_shepp_logan

pytestmark = [pytest.mark.needs_ismrmrd_tools]

ROOT = Path(__file__).resolve().parents[2]
#: PATH of the image's base (python:3.11-slim), which the Dockerfile's ``$PATH`` extends.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STARTUP_S = 180.0


@dataclass
class Image:
    """What the runtime stage of a Dockerfile says about how the server runs."""

    env: dict[str, str]
    entrypoint: list[str]
    user: tuple[int, int]
    workdir: str


def read_dockerfile(path: Path) -> Image:
    """ENV, ENTRYPOINT, USER and WORKDIR of the last stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    env: dict[str, str] = {"PATH": BASE_PATH}
    entrypoint, user, workdir = None, None, "/"
    for line in lines[last_from + 1 :]:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
        elif instruction == "ENTRYPOINT":
            entrypoint = json.loads(args)
        elif instruction == "USER":
            uid, _, gid = args.strip().partition(":")
            user = (int(uid), int(gid or uid))
        elif instruction == "WORKDIR":
            workdir = args.strip()
    assert entrypoint and user, f"{path} has no ENTRYPOINT or USER in its runtime stage"
    return Image(env, entrypoint, user, workdir)


def test_the_runtime_stage_is_read_as_docker_would():
    image = read_dockerfile(ROOT / "docker/Dockerfile")
    assert image.entrypoint == ["/usr/bin/tini", "--", "mrzero", "serve"]  # tini as PID 1 in the container
    assert image.user == (10001, 10001) and image.workdir == "/data"
    assert image.env["PATH"] == "/opt/mrzero/bin:" + BASE_PATH
    assert "PIP_NO_CACHE_DIR" not in image.env  # the build stage's ENV does not reach the runtime
    for key in ("MRZERO_HOST", "MRZERO_PORT", "MRZERO_HEALTH_PORT", "MRZERO_DATA_DIR", "MRZERO_BUNDLE_STORE"):
        assert key in image.env, f"the image sets no {key}"
    cuda = read_dockerfile(ROOT / "docker/Dockerfile.cuda")
    assert cuda.entrypoint == image.entrypoint and cuda.env["MRZERO_DEVICE"] == "cuda"


@dataclass
class Running:
    """A server process started as the image starts it."""

    process: subprocess.Popen
    data: Path
    log: list[str] = field(default_factory=list)
    port: int = 0
    health: str = ""

    @property
    def journal(self) -> Path:
        return self.data / "journal"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.health + path, timeout=30) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metrics(self) -> dict[str, float]:
        """Every sample, keyed ``name`` or ``name{label=value}``."""
        status, text = self.get("/metrics")
        assert status == 200, text
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples

    def wait_for(self, condition: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
        """Poll ``condition`` until true (``limit_s`` only bounds a hang; nothing is timed)."""
        deadline = time.monotonic() + limit_s
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}:\n" + self.text
            assert self.process.poll() is None, f"the server exited while waiting for {what}:\n" + self.text
            time.sleep(0.1)

    @property
    def text(self) -> str:
        return "".join(self.log)


def _read_log(running: Running, ready: threading.Event) -> None:
    assert running.process.stdout is not None
    for line in running.process.stdout:
        running.log.append(line)
        if match := re.search(r"MRD server listening on 127\.0\.0\.1:(\d+)", line):
            running.port = int(match.group(1))
        if match := re.search(r"health and metrics on (http://127\.0\.0\.1:\d+)", line):
            running.health = match.group(1)
        if running.port and running.health:
            ready.set()
    ready.set()


def world_searchable(path: Path) -> bool:
    """Whether any user may enter ``path`` and every folder above it."""
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in (path.resolve(), *path.resolve().parents))


@pytest.fixture
def start_image_server() -> Iterator:
    """``start(command=None, **overrides)`` runs ``command`` (default: the image's entry point) as
    the image does; every server is stopped at the end."""
    image = read_dockerfile(ROOT / "docker/Dockerfile")
    started: list[Running] = []
    folders: list[str] = []

    def start(command: list[str] | None = None, **overrides: str) -> Running:
        data = Path(tempfile.mkdtemp(prefix="mrzero-image-data-"))
        folders.append(str(data))
        for sub in ("journal", "bundles"):  # as the image's RUN mkdir -p /data/journal /data/bundles
            (data / sub).mkdir()
        env = dict(image.env)
        env["PATH"] = env["PATH"].replace("/opt/mrzero", sys.prefix)
        env["HOME"] = str(data)
        env.update(
            MRZERO_HOST="127.0.0.1",
            MRZERO_PORT="0",
            MRZERO_HEALTH_PORT="0",
            MRZERO_DATA_DIR=str(data / "journal"),
            MRZERO_BUNDLE_STORE=str(data / "bundles"),
        )
        env.update(overrides)
        command = list(command or image.entrypoint)
        if command[:2] == ["/usr/bin/tini", "--"]:  # the image's init: here the test is the parent
            command = command[2:]
        if os.geteuid() == 0:  # run as the image's USER, as the container does
            uid, gid = image.user
            for path in (data, data / "journal", data / "bundles"):
                os.chown(path, uid, gid)
            command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *command]
            if not all(world_searchable(Path(p)) for p in (sys.prefix, sys.base_prefix)):
                command[4:4] = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        process = subprocess.Popen(
            command, env=env, cwd=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        running = Running(process, data)
        started.append(running)
        ready = threading.Event()
        threading.Thread(target=_read_log, args=(running, ready), daemon=True).start()
        assert ready.wait(STARTUP_S) and running.port and running.health, (
            "the server did not report its ports:\n" + running.text
        )
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(30)
        assert running.process.stdout is not None
        running.process.stdout.close()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shepp_logan(tmp_path_factory.mktemp("scan") / "shepp_logan.h5", matrix=64, coils=4)


def wire_bytes(raw: Path) -> int:
    """Bytes the project's client sends for ``raw``: header, acquisitions, close (no config)."""
    mrd = open_mrd(raw)
    data = sum(len(serialized(acquisition)) for acquisition in mrd.items)
    return len(header_message(mrd.header_xml)) + data + len(close_message())


class SlowScan:
    """Streams ``raw`` from a thread: ``first`` acquisitions, then waits for :meth:`go_on`, then
    the rest with a short pause after each (a scanner delivers data as it measures)."""

    def __init__(self, raw: Path, port: int, first: int = 5):
        self.mrd = open_mrd(raw)
        self.first = first
        self.sent_first = threading.Event()
        self._go_on = threading.Event()
        self.reply: Reply | None = None
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True)
        self._thread.start()

    def _items(self) -> Iterator:
        pause = threading.Event()
        for i, acquisition in enumerate(self.mrd.items):
            if i == self.first:
                self.sent_first.set()
                assert self._go_on.wait(120)
            elif i > self.first:
                pause.wait(0.005)
            yield acquisition

    def _run(self, port: int) -> None:
        self.reply = stream(self._items(), self.mrd.header_xml, host="127.0.0.1", port=port, timeout_s=120)

    def go_on(self) -> Reply:
        self._go_on.set()
        self._thread.join(120)
        assert self.reply is not None, "the client did not finish"
        return self.reply


def journal_of(path: Path) -> tuple[int, str]:
    """(acquisitions, ``ended`` attribute) of a journal file."""
    with h5py.File(path, "r") as f:
        group = f["dataset"]
        return (group["data"].shape[0] if "data" in group else 0), str(group.attrs.get("ended", ""))


def test_image_entrypoint_serves_probes_counts_and_drains_on_sigterm(start_image_server, raw):
    server = start_image_server()
    assert server.get("/healthz") == (200, "alive\n")
    status, text = server.get("/readyz")
    assert status == 200 and re.match(r"ready: 0 of [1-9]\d* connections", text), text  # the image's limit
    assert server.get("/nope")[0] == 404

    # one scan through the server: the images equal the offline run of the same pipeline
    reply = send_file(raw, port=server.port, progress=False, timeout_s=120)
    assert reply.errors == [] and reply.closed, reply.texts
    offline = reconstruct_file(raw, "cartesian")
    assert len(reply.images) == len(offline) == 1
    assert np.array_equal(reply.images[0].data, offline[0].data)

    n = open_mrd(raw).count
    m = server.metrics()
    assert m["mrzero_connections_total"] == 1 and m["mrzero_connections_active"] == 0
    assert m["mrzero_acquisitions_total"] == n
    assert m["mrzero_received_bytes_total"] == wire_bytes(raw)
    assert m["mrzero_images_sent_total"] == 1
    assert sum(v for k, v in m.items() if k.startswith("mrzero_pipeline_errors_total")) == 0
    assert m["mrzero_pipeline_errors_total{kind=drain_timeout,pipeline=none}"] == 0  # every kind is exported
    assert m["mrzero_journal_files_total"] == 1
    assert m["mrzero_scan_latency_seconds_count"] == 1 and m["mrzero_scan_latency_seconds_sum"] >= 0
    assert m["mrzero_draining"] == 0

    # SIGTERM during a slow scan: no longer ready, no new connections, the scan finishes
    slow = SlowScan(raw, server.port)
    assert slow.sent_first.wait(60)
    server.wait_for(
        lambda: server.metrics()["mrzero_acquisitions_total"] >= n + slow.first,
        "the slow scan's first acquisitions",
    )
    server.process.send_signal(signal.SIGTERM)
    server.wait_for(lambda: server.get("/readyz")[0] == 503, "readiness to turn false")
    assert server.get("/readyz") == (503, "draining: no new connections\n")
    assert server.get("/healthz") == (200, "alive, draining\n")  # draining is not dead
    assert server.metrics()["mrzero_draining"] == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
    reply = slow.go_on()
    assert reply.errors == [] and reply.closed and len(reply.images) == 1, reply.texts
    assert np.array_equal(reply.images[0].data, offline[0].data)
    assert server.process.wait(120) == 0, server.text
    assert "stopped: every connection ended" in server.text

    journals = sorted(server.journal.glob("*.h5"))
    assert len(journals) == 2
    assert [journal_of(j) for j in journals] == [(n, "close"), (n, "close")]


def test_scan_still_running_after_the_drain_timeout_is_ended_with_an_error(start_image_server, raw):
    server = start_image_server(MRZERO_DRAIN_TIMEOUT="1", MRZERO_JOURNAL_PREFIX="pod-a")
    slow = SlowScan(raw, server.port, first=7)
    assert slow.sent_first.wait(60)
    server.wait_for(lambda: server.metrics()["mrzero_acquisitions_total"] == 7, "the first acquisitions")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(120) == 0, server.text  # the client still holds the scan open
    reply = slow.go_on()
    assert reply.closed and not reply.images
    assert len(reply.errors) == 1 and "drain timeout of 1 s" in reply.errors[0], reply.texts
    assert "drain timeout: ending 1 scan(s) still running" in server.text

    (journal,) = server.journal.glob("*.h5")
    assert journal.name.startswith("pod-a-")
    acquisitions, ended = journal_of(journal)
    assert acquisitions == 7
    assert ended.startswith("drain timeout; failed: server shutting down"), ended


def test_a_second_sigterm_ends_the_drain_at_once(start_image_server, raw):
    server = start_image_server()  # the default drain timeout (90 s): only the second signal ends it
    slow = SlowScan(raw, server.port)
    assert slow.sent_first.wait(60)
    server.wait_for(
        lambda: server.metrics()["mrzero_acquisitions_total"] == slow.first, "the first acquisitions"
    )
    server.process.send_signal(signal.SIGTERM)
    server.wait_for(lambda: server.get("/readyz")[0] == 503, "the drain to start")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0, server.text
    reply = slow.go_on()
    assert len(reply.errors) == 1 and "server shutting down" in reply.errors[0], reply.texts
    assert "second stop signal (SIGTERM): ending the running scans now" in server.text
    (journal,) = server.journal.glob("*.h5")
    acquisitions, ended = journal_of(journal)
    assert acquisitions == slow.first and ended.startswith("drain timeout; failed: server shutting down")


def test_the_fire_start_script_runs_the_same_server(start_image_server, raw):
    """The chroot's start command, with the image's environment (as inside the FIRE chroot, which
    is the image's file system): it keeps what is set and passes its arguments on."""
    script = str(ROOT / "deploy/fire/start-fire-server.sh")
    server = start_image_server([script, "--max-connections", "3"])
    assert server.get("/readyz") == (200, "ready: 0 of 3 connections running\n")
    reply = send_file(raw, port=server.port, progress=False, timeout_s=120)
    assert reply.errors == [] and len(reply.images) == 1, reply.texts
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(120) == 0, server.text
    assert [journal_of(j)[1] for j in server.journal.glob("*.h5")] == ["close"]
