"""Gadgetron external-gadget benchmark: ``mrzero gadgetron-external`` against the ``gadgetron``
package's own external gadget (``gadgetron.external.Connection`` running its example
``recon_acquisitions``: noise prewhitening, oversampling removal, accumulation, FFT, RSS).

Dataset: Debian's ``ismrmrd_generate_cartesian_shepp_logan`` (``--matrix``, ``--coils``, with a
noise-adjust scan and 2x readout oversampling). Both gadgets run as subprocesses on 127.0.0.1
with one compute thread each (mrzero: ``--pipeline-threads 1``; peer: OMP/BLAS threads 1); this
process plays Gadgetron (``mrzero.server.gadgetron.peer``): configuration, header, pre-serialised
acquisitions, close, reading the images concurrently. Measured per scan, from connect to the
gadget's close: the median of ``--repeats`` scans each, alternating between the two; and, in the
same repeats, the ``cartesian`` pipeline alone over the same acquisitions in this process (one
torch thread), which shows what the worker process and the sockets add to the reconstruction.

Run: ``.venv/bin/python bench/gadgetron.py [--repeats 7] [--matrix 128] [--coils 8]``
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrzero.client import open_mrd  # noqa: E402
from mrzero.pipelines import registry  # noqa: E402
from mrzero.pipelines.base import Context  # noqa: E402
from mrzero.pipelines.mrd_header import fix_header_text, parse_header  # noqa: E402
from mrzero.server.framing import serialized  # noqa: E402
from mrzero.server.gadgetron.peer import CLOSE, Answer, opening, run_chain  # noqa: E402
from mrzero.shepp_logan_demo import generate_shepp_logan  # noqa: E402

#: The peer: the gadgetron package's Connection and example reconstruction, one scan at a time.
PEER = """
import socket, sys
from gadgetron.external import Connection
from gadgetron.examples.recon_acquisitions import recon_acquisitions
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
while True:
    sock, _ = listener.accept()
    with Connection(sock) as connection:
        recon_acquisitions(connection)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(command: list[str], ready: str, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if ready in line:
            return proc
    raise RuntimeError(f"{command[:4]} exited with {proc.wait()} before listening")


def _scan(port: int, start: bytes, items: list[bytes]) -> tuple[float, Answer]:
    t0 = time.perf_counter()
    answer = run_chain(("127.0.0.1", port), start, items, CLOSE, timeout_s=600)
    elapsed = time.perf_counter() - t0
    if answer.errors or not answer.closed or not answer.images:
        raise RuntimeError(f"gadget on port {port} failed: {answer.errors or answer.illegal}")
    return elapsed, answer


def _in_memory(acquisitions: list, header_xml: str) -> float:
    """Seconds the ``cartesian`` pipeline takes over ``acquisitions`` in this process."""
    spec = registry.get("cartesian")
    ctx = Context(header=parse_header(header_xml), pipeline_name=spec.name)
    t0 = time.perf_counter()
    images = list(spec.run(iter(acquisitions), ctx))
    elapsed = time.perf_counter() - t0
    if not images:
        raise RuntimeError("the in-memory pipeline made no image")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--matrix", type=int, default=128)
    parser.add_argument("--coils", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        raw = generate_shepp_logan(Path(tmp) / "shepp_logan.h5", args.matrix, args.coils)
        mrd = open_mrd(raw)
        header = fix_header_text(mrd.header_xml)  # the peer's header parser rejects version 8
        acquisitions = list(mrd.items)
        items = [serialized(acq) for acq in acquisitions]
    mb = sum(len(item) for item in items) / 1e6
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        GADGETRON_EXTERNAL_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    ours_port, peer_port = _free_port(), _free_port()
    ours = _start(
        [
            sys.executable,
            "-m",
            "mrzero.cli",
            "-v",
            "gadgetron-external",
            "--port",
            str(ours_port),
            "--pipeline",
            "cartesian",
            "--pipeline-threads",
            "1",
        ],
        "listening on",
        env,
    )
    peer = _start([sys.executable, "-c", PEER, str(peer_port)], "listening", env)
    try:
        ours_start = opening({"pipeline": "cartesian"}, header)
        peer_start = opening({}, header)
        _scan(ours_port, ours_start, items), _scan(peer_port, peer_start, items)  # warm-up
        torch.set_num_threads(1)  # as the gadget's worker (--pipeline-threads 1)
        times: dict[str, list[float]] = {"mrzero": [], "peer": [], "memory": []}
        for _ in range(args.repeats):
            times["mrzero"].append(_scan(ours_port, ours_start, items)[0])
            times["peer"].append(_scan(peer_port, peer_start, items)[0])
            times["memory"].append(_in_memory(acquisitions, header))
    finally:
        for proc in (ours, peer):
            proc.terminate()
            proc.wait(30)
            proc.stdout.close()
    load = os.getloadavg()
    ours_s, peer_s, memory_s = (statistics.median(times[k]) for k in ("mrzero", "peer", "memory"))
    print(
        f"command: .venv/bin/python bench/gadgetron.py --repeats {args.repeats} --matrix {args.matrix} "
        f"--coils {args.coils}"
    )
    print(
        f"data: Shepp-Logan {args.matrix}x{args.matrix}, {args.coils} coils, {len(items)} acquisitions, "
        f"{mb:.1f} MB; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(
        f"connect -> close, median of {args.repeats}: mrzero external gadget (cartesian) {ours_s:.3f} s, "
        f"gadgetron package example {peer_s:.3f} s, ratio mrzero/peer {ours_s / peer_s:.2f}"
    )
    print(
        f"the cartesian pipeline alone, in memory, one thread: {memory_s:.3f} s; mrzero external gadget / "
        f"in memory {ours_s / memory_s:.2f}"
    )
    for name, runs in times.items():
        print(f"all runs, {name} (s): " + " ".join(f"{t:.3f}" for t in runs))


if __name__ == "__main__":
    main()
