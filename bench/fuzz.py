"""Long stream-fuzz run against a real ``mrzero serve`` process.

The streams are the suite's (``tests/support/mrd_streams.py``, hypothesis): well-formed MRD
messages in any order mixed with garbage, wrong sizes, nested JSON, NaN data and truncations,
against the test pipelines (one reconstructs, one raises). Every case is one connection that
sends its bytes, half-closes and reads the answer.

Counted: cases; crashes (an ``internal`` error text or metric, or the server process gone);
hangs (no close within ``--case-timeout`` seconds); after the run, once the server is idle,
leaked descriptors and processes (the server's open files and descendant processes against
those before the run) and memory growth (the server's resident memory after against before,
both after a warm-up of 50 cases).

Run: ``.venv/bin/python bench/fuzz.py [--cases 2000]``
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "tests" / "server")]

from hypothesis import HealthCheck, given, settings  # noqa: E402
from mrd_streams import mrd_streams  # noqa: E402

from mrzero.client import Reply, receive  # noqa: E402

WARM_UP = 50


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle(health: int, timeout_s: float = 120) -> None:
    """Wait until the server runs no connection (its /metrics say so)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/metrics", timeout=10) as answer:
            if re.search(rb"^mrzero_connections_active 0\.0$", answer.read(), re.M):
                return
        time.sleep(0.2)
    raise TimeoutError("the server did not become idle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--case-timeout", type=float, default=30.0)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="mrzero-fuzz-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "server"), str(ROOT)]))
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from mrzero.cli import main; sys.exit(main())",
            "serve",
            "--port",
            "0",
            "--health-port",
            "0",
            "--data-dir",
            str(data),
            "--pipeline-module",
            "pipelines_for_tests",
            "--min-free-mb",
            "0",
            "--idle-timeout",
            "2",
            "--header-timeout",
            "2",
            "--timeout",
            "5",
            "--max-connections",
            "4",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    port = None
    for line in server.stderr:
        if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
            port = int(match.group(1))
            break
    assert port is not None
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True).start()  # type: ignore[arg-type]
    health = None
    while health is None:
        time.sleep(0.1)
        found = [re.search(r"health and metrics on http://127\.0\.0\.1:(\d+)", line) for line in lines]
        health = next((int(m.group(1)) for m in found if m), None)
    counts = {"cases": 0, "crashes": 0, "hangs": 0}
    baseline: dict[str, float] = {}
    started = time.monotonic()

    @settings(max_examples=args.cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(mrd_streams())
    def case(raw: bytes) -> None:
        counts["cases"] += 1
        if counts["cases"] == WARM_UP:
            idle(health)
            baseline.update(
                fds=descriptors(server.pid), procs=len(descendants(server.pid)), rss=rss_mb(server.pid)
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=args.case_timeout) as sock:
                try:
                    sock.sendall(raw)
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                reply = receive(sock, Reply())
        except OSError:
            reply = Reply(texts=["ERROR: connect failed"])
        if any("timed out" in text for text in reply.texts):
            counts["hangs"] += 1
        if any("internal" in text for text in reply.texts) or server.poll() is not None:
            counts["crashes"] += 1

    case()
    idle(health)
    with urllib.request.urlopen(f"http://127.0.0.1:{health}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    internal = sum(float(v) for v in re.findall(r'kind="internal"[^}]*} (\S+)', metrics))
    after = dict(fds=descriptors(server.pid), procs=len(descendants(server.pid)), rss=rss_mb(server.pid))
    server.terminate()
    server.wait(120)
    print(
        f"cases {counts['cases']}, crashes {counts['crashes']} (internal-error metric {internal:g}), "
        f"hangs {counts['hangs']}, in {time.monotonic() - started:.0f} s"
    )
    print(
        f"after the run (idle) vs after {WARM_UP} warm-up cases: descriptors {baseline['fds']:g} -> "
        f"{after['fds']:g}, descendant processes {baseline['procs']:g} -> {after['procs']:g}, "
        f"resident memory {baseline['rss']:.0f} -> {after['rss']:.0f} MB; "
        f"server exit code {server.returncode}"
    )


if __name__ == "__main__":
    main()
