"""Streaming benchmark: the MRD server against the real python-ismrmrd-server.

Dataset: 32 coils x 512 samples x 256 lines of complex64 (32 MiB of samples per scan) with a
Cartesian header (2x readout oversampling). The servers run as separate processes on 127.0.0.1:
``mrzero serve`` and python-ismrmrd-server's own ``main.py`` from ``/work/shared/peers``
(``--peer``), once with ``-s`` (saves every connection's data, one connection at a time) and once
with ``-s -m`` (a process per connection); never copied, only run.

Measured, each as the median of ``--repeats`` rounds in which the runs take turns (interleaved,
so that all see the same machine load):

* ingest with the journal on, raw MB/s (acquisition samples) from connect to the server's close
  (mrzero: ``savedataonly`` pipeline; peer: config ``savedataonly`` with ``-s``), with two
  senders and the same data: the peer's own ``client.py`` (a process reading the MRD file,
  end to end including its start), and a fast sender in this process writing pre-serialised
  bytes (the servers' own rate); 1 client, and 4 concurrent fast clients (peer ``-m``); and
  one fast sender streaming one scan of ``--sustained`` repetitions (336 MB by default), the
  rate a connection sustains once it runs (start and close are 10-25 % of a 33.6 MB scan);
* latency: from the last acquisition sent to the last image received, mrzero with the
  ``cartesian`` pipeline, against the pipeline's own compute time: the same pipeline over the
  same acquisitions in memory, in 1 or 4 separate processes started together (as the server's
  workers, with the same thread count), measured in the same round.

With ``--baseline DIR`` (a checkout of an earlier commit, e.g. ``git worktree add DIR HEAD~3``)
that commit's ``mrzero serve`` runs as one more server, ``mrzero@base``, in the same rounds:
before/after figures of a change measured under the same load. The checkout needs the
import-root links of an installed tree (``for d in core server pipelines sequences; do ln -s
../$d DIR/mrzero/$d; done``); it runs with ``PYTHONPATH=DIR`` from a neutral directory.

Run: ``.venv/bin/python bench/stream.py [--repeats 3] [--peer DIR] [--skip-latency] [--baseline DIR]
[--sustained N]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ismrmrd
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrzero.server.framing import MessageId, MessageReader, close_message, header_message, serialized  # noqa: E402

COILS, SAMPLES, LINES = 32, 512, 256
#: Torch threads per reconstruction, in the server's workers and in the in-memory runs alike.
PIPELINE_THREADS = 1
HEADER = f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <acquisitionSystemInformation><receiverChannels>{COILS}</receiverChannels></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>123000000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{SAMPLES}</x><y>{LINES}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>512</x><y>256</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{SAMPLES // 2}</x><y>{LINES}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></reconSpace>
    <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{LINES - 1}</maximum>
      <center>{LINES // 2}</center></kspace_encoding_step_1></encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>"""


def acquisitions(seed: int = 0, repetitions: int = 1) -> list[ismrmrd.Acquisition]:
    """The scan's lines, ``repetitions`` times (``idx.repetition`` counting; the same samples)."""
    rng = np.random.default_rng(seed)
    shape = (LINES, COILS, SAMPLES)
    lines = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    acqs = []
    for rep in range(repetitions):
        for ky in range(LINES):
            acq = ismrmrd.Acquisition.from_array(lines[ky])
            acq.idx.kspace_encode_step_1, acq.idx.repetition = ky, rep
            acq.scan_counter, acq.center_sample = rep * LINES + ky, SAMPLES // 2
            if ky == 0:
                acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
            if ky == LINES - 1:
                acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
            acqs.append(acq)
    return acqs


# -- the peer: the real python-ismrmrd-server, as a process -----------------------------------
PEER = Path("/work/shared/peers/python-ismrmrd-server")


def start_peer(peer: Path, port: int, data_dir: Path, multiprocess: bool) -> subprocess.Popen:
    """``main.py -s`` (``-m``): saves every connection's data to ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "main.py", "-H", "127.0.0.1", "-p", str(port), "-s", "-S", str(data_dir)]
    return subprocess.Popen(
        command + (["-m"] if multiprocess else []),
        cwd=peer,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def peer_client(peer: Path, port: int, source: Path, out: Path) -> float:
    """Seconds for python-ismrmrd-server's own ``client.py`` to send ``source`` and get the close."""
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "client.py",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            "savedataonly",
            "-o",
            str(out),
            "-q",
            str(source),
        ],
        cwd=peer,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )
    return time.perf_counter() - t0


# -- clients ----------------------------------------------------------------------------------
def run_client(port: int, stream_body: bytes, config: str, out: dict) -> None:
    """Send config + header + body + close; time the last byte of data, images and close."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        t0 = time.perf_counter()
        reader = MessageReader(sock.makefile("rb"), 1 << 30)
        marks: dict[str, float] = {}

        def receive() -> None:
            while (msg := reader.next()) is not None:
                if msg.id == MessageId.IMAGE:
                    marks["image"] = time.perf_counter()
                elif msg.id == MessageId.CLOSE:
                    marks["close"] = time.perf_counter()
                    return

        receiver = threading.Thread(target=receive)
        receiver.start()
        try:
            sock.sendall(serialized(ismrmrd.serialization.ConfigFile(config)) + header_message(HEADER))
            sock.sendall(stream_body)
            last_sent = time.perf_counter()
            sock.sendall(close_message())
        except OSError as exc:  # the server dropped the connection: no close, counted as failed
            out.update(error=str(exc))
            return
        receiver.join()
    out.update(t0=t0, last_sent=last_sent, **marks)


def run_clients(port: int, body: bytes, config: str, n: int) -> list[dict]:
    results = [dict() for _ in range(n)]
    threads = [threading.Thread(target=run_client, args=(port, body, config, r)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compute_once() -> None:
    """Child mode: build the scan, say ready, wait for go, time one in-memory cartesian run."""
    import torch

    from mrzero.pipelines import registry
    from mrzero.pipelines.base import Context
    from mrzero.pipelines.mrd_header import parse_header

    torch.set_num_threads(PIPELINE_THREADS)
    acqs, spec = acquisitions(), registry.get("cartesian")
    ctx = Context(header=parse_header(HEADER), pipeline_name="cartesian")
    print("ready", flush=True)
    sys.stdin.readline()
    t = time.perf_counter()
    assert list(spec.run(iter(acqs), ctx))
    print(f"{time.perf_counter() - t:.6f}", flush=True)


def compute_time(n: int) -> float:
    """The pipeline's own time for ``n`` scans at once: ``n`` processes (as the server's workers,
    same thread count) reconstruct in memory, started together; the slowest one's time."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--compute"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(n)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    times = [float(proc.communicate()[0]) for proc in procs]
    return max(times)


def ingest_round(
    servers: dict[str, int], body: bytes, raw_mb: float, n: int, dropped: dict[str, int]
) -> dict[str, float]:
    """MB/s of ``n`` concurrent fast senders against each server, in turn: the data of the clients
    that got the server's close over the time until the last close; ``dropped`` counts the others."""
    rates = {}
    for name, port in servers.items():
        results = [r for r in run_clients(port, body, "savedataonly", n) if "close" in r]
        dropped[name] = dropped.get(name, 0) + n - len(results)
        if results:
            wall = max(r["close"] for r in results) - min(r["t0"] for r in results)
            rates[name] = len(results) * raw_mb / wall
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer", type=Path, default=PEER, help="python-ismrmrd-server checkout")
    parser.add_argument("--skip-latency", action="store_true", help="ingest only")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="checkout of an earlier commit to measure as mrzero@base"
    )
    parser.add_argument(
        "--sustained",
        type=int,
        default=10,
        metavar="N",
        help="also stream one scan of N repetitions (N x 33.6 MB) per server and round: the rate "
        "sustained once a connection runs (0: skip)",
    )
    parser.add_argument("--compute", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compute:
        compute_once()
        return

    from mrzero.core.mrd_file import write_raw_file

    every = acquisitions(repetitions=max(args.sustained, 1))  # its first repetition is the scan
    acqs = every[:LINES]
    body = b"".join(serialized(a) for a in acqs)
    raw_mb = sum(a.data.nbytes for a in acqs) / 1e6
    long_body = body + b"".join(serialized(a) for a in every[LINES:]) if args.sustained else b""
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    source = work / "scan.h5"
    write_raw_file(source, HEADER, acqs)
    names = ("mrzero", "peer -s", "peer -s -m") + (("mrzero@base",) if args.baseline else ())
    ports = {name: free_port() for name in names}
    options = [
        "--max-message-mb",
        "64",
        "--pipeline-threads",
        str(PIPELINE_THREADS),
        "--max-connections",
        "8",
        "--min-free-mb",
        "0",
    ]
    servers = {
        "mrzero": subprocess.Popen(
            [str(ROOT / ".venv/bin/mrzero"), "serve", "--port", str(ports["mrzero"])]
            + ["--data-dir", str(work / "mrzero"), *options],
            stderr=subprocess.DEVNULL,
        ),
        "peer -s": start_peer(args.peer, ports["peer -s"], work / "peer", False),
        "peer -s -m": start_peer(args.peer, ports["peer -s -m"], work / "peer-m", True),
    }
    if args.baseline:
        servers["mrzero@base"] = subprocess.Popen(
            [sys.executable, "-m", "mrzero.cli", "serve", "--port", str(ports["mrzero@base"])]
            + ["--data-dir", str(work / "base"), *options],
            stderr=subprocess.DEVNULL,
            cwd=work,
            env={**os.environ, "PYTHONPATH": str(args.baseline.resolve())},
        )
    try:
        for name, proc in servers.items():
            wait_listening(ports[name], proc)
        # not counted: a server's first connection may wait until it is ready (mrzero accepts
        # into the backlog while its fork server imports the pipelines)
        ingest_round(ports, body, raw_mb, 1, {})
        print(
            f"command: .venv/bin/python bench/stream.py --repeats {args.repeats}"
            + (" --skip-latency" if args.skip_latency else "")
            + (f" --baseline {args.baseline}" if args.baseline else "")
            + f" --sustained {args.sustained}"
        )
        print(f"dataset: {COILS} coils x {SAMPLES} samples x {LINES} lines = {raw_mb:.1f} MB raw per scan")
        print(
            f"machine: shared and noisy (2 CPU cores, other jobs running); medians of {args.repeats} "
            "interleaved rounds\n"
        )
        fast: dict[str, list[float]] = {name: [] for name in ports}
        fast4: dict[str, list[float]] = {name: [] for name in ports if name != "peer -s"}
        client: dict[str, list[float]] = {name: [] for name in ports}
        sustained: dict[str, list[float]] = {name: [] for name in ports}
        dropped: dict[str, int] = {}
        for k in range(args.repeats):
            for name, rate in ingest_round(ports, body, raw_mb, 1, dropped).items():
                fast[name].append(rate)
            if args.sustained:
                for name, rate in ingest_round(ports, long_body, args.sustained * raw_mb, 1, dropped).items():
                    sustained[name].append(rate)
            for name, port in ports.items():
                client[name].append(raw_mb / peer_client(args.peer, port, source, work / f"out-{k}.h5"))
            for name, rate in ingest_round({n: ports[n] for n in fast4}, body, raw_mb, 4, dropped).items():
                fast4[name].append(rate)
        med = {
            label: {name: statistics.median(v) for name, v in table.items()}
            for label, table in (("fast", fast), ("client", client), ("fast4", fast4), ("long", sustained))
            if all(table.values())
        }
        for label, title in (
            ("client", "1 client, the peer's client.py (end to end)"),
            ("fast", "1 client, fast pre-serialised sender"),
            ("long", f"1 fast sender, one scan of {args.sustained} x {raw_mb:.1f} MB (sustained)"),
            ("fast4", "4 concurrent fast senders (aggregate)"),
        ):
            if label not in med:
                continue
            row = med[label]
            best_peer = max(v for name, v in row.items() if name.startswith("peer"))
            print(
                f"{title}: "
                + "   ".join(f"{name} {v:7.1f} MB/s" for name, v in row.items())
                + f"   mrzero / best peer {row['mrzero'] / best_peer:5.2f}"
            )
        print(
            "connections dropped without the server's close (fast senders, all rounds): "
            + ", ".join(f"{name} {count}" for name, count in dropped.items())
        )
        print(journal_check(work / "mrzero", {LINES, LINES * max(args.sustained, 1)}))
        if not args.skip_latency:
            latency_table(ports["mrzero"], body, args.repeats)
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def journal_check(data_dir: Path, sizes: set[int]) -> str:
    """What mrzero's journals of the savedataonly scans hold, read back with ``h5py``: every one
    closed by its client and holding a whole scan (``sizes`` acquisitions)."""
    import h5py

    counts, bad = [], []
    for path in sorted(data_dir.glob("*.h5")):
        with h5py.File(path, "r") as f:
            group = f["dataset"]
            if group.attrs.get("pipeline") != "savedataonly":
                continue
            counts.append(group["data"].shape[0])
            if group.attrs.get("ended") != "close" or counts[-1] not in sizes:
                bad.append(path.name)
    return f"mrzero journals of the ingest scans: {len(counts)} files, {sum(counts)} acquisitions; " + (
        f"NOT whole: {', '.join(bad)}" if bad else "each closed and whole"
    )


def latency_table(port: int, body: bytes, repeats: int) -> None:
    """Last acquisition -> last image (``cartesian``) against the pipeline's own time."""
    for n in (1, 4):
        image_latency, compute = [], []
        for _ in range(repeats):
            results = run_clients(port, body, "cartesian", n)
            image_latency.append(max(r["image"] - r["last_sent"] for r in results))
            compute.append(compute_time(n))
        lat, comp = statistics.median(image_latency), statistics.median(compute)
        print(
            f"{n} client(s): last acquisition -> last image (cartesian) {lat:6.3f} s; {n} pipeline "
            f"run(s) in memory {comp:6.3f} s; ratio {lat / comp:5.2f}"
        )


if __name__ == "__main__":
    main()
