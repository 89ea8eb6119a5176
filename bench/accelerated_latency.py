"""Latency of an accelerated scan through the server: last acquisition to image, against the
pipeline's own compute time (issue 15: at most 1.5x for a 256 x 256, 32-coil R = 2 scan).

Dataset: ISMRMRD's generator, ``ismrmrd_generate_cartesian_shepp_logan -m 256 -c 32 -a 2 -w 32
-n 0.005 -C`` (2x readout oversampling, 32 calibration lines), repetition 0 only: one image, 128
lattice lines + 16 calibration-only lines + 1 noise scan (19 MB of samples). The ``cartesian``
pipeline calibrates GRAPPA as soon as the 32 ACS lines are complete (while the rest streams in)
and unfolds when the last line has arrived.

Measured, each the median of ``--repeats`` runs:

* latency: from the last acquisition sent to the image received, through ``mrzero serve`` (a
  subprocess on 127.0.0.1, one pipeline worker, ``--threads`` torch threads); the client sends
  the lines as fast as the socket takes them (``--tr-ms 0``, as ``bench/stream.py``) or paced at
  one line per ``--tr-ms`` milliseconds, as a scanner sends them;
* compute: the same pipeline over the same acquisitions in memory, in a separate process with
  the same thread count, measured in the same repeat.

Run: ``.venv/bin/python bench/accelerated_latency.py [--repeats 5] [--tr-ms 0 5] [--parameters '{}']``
"""

from __future__ import annotations

import argparse
import json
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream import free_port, wait_listening  # noqa: E402

from mrzero.server.framing import MessageId, MessageReader, close_message, header_message, serialized  # noqa: E402

MATRIX, COILS, ACCEL, ACS = 256, 32, 2, 32


def generate(path: Path) -> Path:
    path.unlink(missing_ok=True)
    subprocess.run(
        [
            "ismrmrd_generate_cartesian_shepp_logan",
            "-o",
            str(path),
            "-m",
            str(MATRIX),
            "-c",
            str(COILS),
            "-a",
            str(ACCEL),
            "-w",
            str(ACS),
            "-n",
            "0.005",
            "-C",
        ],
        check=True,
        capture_output=True,
    )
    return path


def scan(path: Path) -> tuple[str, list[ismrmrd.Acquisition]]:
    """Header text and the acquisitions of repetition 0 (noise scan included)."""
    from mrzero.pipelines.offline import read_acquisitions

    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        xml = dset.read_xml_header()
    xml = xml.decode() if isinstance(xml, bytes) else xml
    return xml, [a for a in read_acquisitions(path) if a.idx.repetition == 0]


def stream_once(port: int, xml: str, messages: list[bytes], parameters: str, tr_s: float) -> dict:
    """Send config, parameters, header and the acquisitions; time the last one sent and the image."""
    marks: dict[str, float] = {}
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = MessageReader(sock.makefile("rb"), 1 << 30)

        def receive() -> None:
            while (msg := reader.next()) is not None:
                if msg.id == MessageId.IMAGE:
                    marks["image"] = time.perf_counter()
                elif msg.id == MessageId.TEXT and msg.text.startswith("ERROR"):
                    marks["error"] = msg.text
                elif msg.id == MessageId.CLOSE:
                    return

        receiver = threading.Thread(target=receive)
        receiver.start()
        sock.sendall(
            serialized(ismrmrd.serialization.ConfigFile("cartesian"))
            + serialized(parameters)
            + header_message(xml)
        )
        if tr_s > 0:
            start = time.perf_counter()
            for i, message in enumerate(messages):
                while time.perf_counter() < start + i * tr_s:
                    time.sleep(min(tr_s, 0.001))
                sock.sendall(message)
        else:
            sock.sendall(b"".join(messages))
        marks["last_sent"] = time.perf_counter()
        sock.sendall(close_message())
        receiver.join()
    if "error" in marks or "image" not in marks:
        raise RuntimeError(f"the server returned no image: {marks.get('error')}")
    return marks


def compute_once(path: Path, parameters: str, threads: int) -> None:
    """Child mode: read the scan, say ready, wait for go, time one in-memory run, print it."""
    import torch

    from mrzero.pipelines import registry
    from mrzero.pipelines.base import Context
    from mrzero.pipelines.mrd_header import parse_header

    torch.set_num_threads(threads)
    xml, acqs = scan(path)
    spec = registry.get("cartesian")
    print("ready", flush=True)
    sys.stdin.readline()
    ctx = Context(header=parse_header(xml), parameters=json.loads(parameters), pipeline_name="cartesian")
    t = time.perf_counter()
    assert len(list(spec.run(iter(acqs), ctx))) == 1
    print(f"{time.perf_counter() - t:.6f}", flush=True)


def compute_time(path: Path, parameters: str, threads: int) -> float:
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--compute",
            str(path),
            "--parameters",
            parameters,
            "--threads",
            str(threads),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return float(proc.communicate()[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--tr-ms",
        type=float,
        nargs="+",
        default=[0.0, 5.0],
        help="line spacing of the client (0: as fast as the socket takes them)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of the worker and the in-memory run"
    )
    parser.add_argument("--parameters", default="{}", help="JSON parameters of the cartesian pipeline")
    parser.add_argument("--compute", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compute:
        compute_once(args.compute, args.parameters, args.threads)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    path = generate(work / "scan.h5")
    xml, acqs = scan(path)
    messages = [serialized(a) for a in acqs]
    raw_mb = sum(a.data.nbytes for a in acqs) / 1e6
    port = free_port()
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/mrzero"),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(work / "journal"),
            "--max-message-mb",
            "64",
            "--pipeline-threads",
            str(args.threads),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, server)
        print(
            f"command: .venv/bin/python bench/accelerated_latency.py --repeats {args.repeats} --tr-ms "
            f"{' '.join(f'{t:g}' for t in args.tr_ms)} --threads {args.threads} "
            f"--parameters '{args.parameters}'"
        )
        print(
            f"scan: {MATRIX} x {MATRIX}, {COILS} coils, R = {ACCEL}, {ACS} ACS lines: "
            f"{len(acqs)} acquisitions, {raw_mb:.1f} MB of samples; medians of {args.repeats} repeats\n"
        )
        stream_once(port, xml, messages, args.parameters, 0.0)  # warm-up (first worker, imports)
        for tr_ms in args.tr_ms:
            latency, compute, sending = [], [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                marks = stream_once(port, xml, messages, args.parameters, tr_ms / 1000)
                sending.append(marks["last_sent"] - t0)
                latency.append(marks["image"] - marks["last_sent"])
                compute.append(compute_time(path, args.parameters, args.threads))
            lat, comp = statistics.median(latency), statistics.median(compute)
            print(
                f"line spacing {tr_ms:g} ms (sending {statistics.median(sending):.2f} s): "
                f"last acquisition -> image {lat:.3f} s; pipeline in memory {comp:.3f} s; "
                f"ratio {lat / comp:.2f}"
            )
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
