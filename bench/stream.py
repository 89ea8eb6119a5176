"""Streaming benchmark: the MRD server against a python-ismrmrd-server-style "savedata" peer.

Dataset: 32 coils x 512 samples x 256 lines of complex64 (32 MiB of samples per scan) with a
Cartesian header (2x readout oversampling). Both servers run as subprocesses on 127.0.0.1; the
clients run in this process and send pre-serialised bytes, so the figures are the servers'.

Measured, each as the median of ``--repeats`` runs, for 1 client and for 4 concurrent clients:

* ingest: raw MB/s (acquisition messages) from connect to the server's close, journal on
  (mrzero: ``savedataonly`` pipeline; peer: ``ProtocolDeserializer`` -> ``ismrmrd.Dataset``,
  one ``append_acquisition`` per acquisition, as python-ismrmrd-server's savedata does);
* latency: from the last acquisition sent to the last image received, mrzero with the
  ``cartesian`` pipeline, against the pipeline's own compute time: the same pipeline over the
  same acquisitions in memory, in 1 or 4 separate processes started together (as the server's
  workers, with the same thread count), measured in the same repeat as the latency so that both
  see the same machine load.

Run: ``.venv/bin/python bench/stream.py [--repeats 3]``
"""

from __future__ import annotations

import argparse
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


def acquisitions(seed: int = 0) -> list[ismrmrd.Acquisition]:
    rng = np.random.default_rng(seed)
    acqs = []
    for ky in range(LINES):
        data = (rng.standard_normal((COILS, SAMPLES)) + 1j * rng.standard_normal((COILS, SAMPLES)))
        acq = ismrmrd.Acquisition.from_array(data.astype(np.complex64))
        acq.idx.kspace_encode_step_1, acq.scan_counter, acq.center_sample = ky, ky, SAMPLES // 2
        if ky == 0:
            acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
        if ky == LINES - 1:
            acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
        acqs.append(acq)
    return acqs


# -- the peer: a python-ismrmrd-server-style savedata server -------------------------------
def peer_server(port: int, data_dir: Path) -> None:
    """Thread per connection; socket -> ProtocolDeserializer -> ismrmrd.Dataset; close back."""
    from ismrmrd.serialization import ProtocolDeserializer

    listener = socket.create_server(("127.0.0.1", port))
    count = iter(range(1 << 30))

    def serve(sock: socket.socket) -> None:
        with sock, ismrmrd.Dataset(str(data_dir / f"peer{next(count)}.h5"), "dataset") as dset:
            try:
                for item in ProtocolDeserializer(sock.makefile("rb")).deserialize():
                    if isinstance(item, ismrmrd.Acquisition):
                        dset.append_acquisition(item)
                    elif isinstance(item, ismrmrd.xsd.ismrmrdHeader):
                        dset.write_xml_header(item.toXML().encode())
            except EOFError:  # a connection probe
                return
            sock.sendall(close_message())

    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


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
        sock.sendall(serialized(ismrmrd.serialization.ConfigFile(config)) + header_message(HEADER))
        sock.sendall(stream_body)
        last_sent = time.perf_counter()
        sock.sendall(close_message())
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
    procs = [subprocess.Popen([sys.executable, __file__, "--compute"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    times = [float(proc.communicate()[0]) for proc in procs]
    return max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-server", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--compute", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compute:
        compute_once()
        return
    if args.peer_server:
        peer_server(int(args.peer_server[0]), Path(args.peer_server[1]))
        return

    acqs = acquisitions()
    body = b"".join(serialized(a) for a in acqs)
    raw_mb = sum(a.data.nbytes for a in acqs) / 1e6
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    mine_port, peer_port = free_port(), free_port()
    mrzero = [str(ROOT / ".venv/bin/mrzero"), "serve", "--port", str(mine_port), "--data-dir",
              str(work / "mrzero"), "--max-message-mb", "64", "--pipeline-threads", str(PIPELINE_THREADS)]
    (work / "peer").mkdir()
    peer = [sys.executable, __file__, "--peer-server", str(peer_port), str(work / "peer")]
    servers = [subprocess.Popen(mrzero, stderr=subprocess.DEVNULL), subprocess.Popen(peer)]
    try:
        for port, proc in zip((mine_port, peer_port), servers, strict=True):
            wait_listening(port, proc)
        print(f"command: .venv/bin/python bench/stream.py --repeats {args.repeats}")
        print(f"dataset: {COILS} coils x {SAMPLES} samples x {LINES} lines = {raw_mb:.1f} MB raw per scan")
        print("machine: shared and noisy (2 CPU cores, other jobs running); medians of "
              f"{args.repeats} repeats\n")
        for n in (1, 4):
            ingest = {"mrzero": [], "peer": []}
            close_latency = {"mrzero": [], "peer": []}
            image_latency, compute = [], []
            for _ in range(args.repeats):
                for name, port in (("mrzero", mine_port), ("peer", peer_port)):
                    results = run_clients(port, body, "savedataonly", n)
                    wall = max(r["close"] for r in results) - min(r["t0"] for r in results)
                    ingest[name].append(n * raw_mb / wall)
                    close_latency[name].append(max(r["close"] - r["last_sent"] for r in results))
                results = run_clients(mine_port, body, "cartesian", n)
                image_latency.append(max(r["image"] - r["last_sent"] for r in results))
                compute.append(compute_time(n))
            mine, peer = statistics.median(ingest["mrzero"]), statistics.median(ingest["peer"])
            print(f"{n} client(s): ingest with journal  mrzero {mine:7.1f} MB/s   "
                  f"peer savedata {peer:7.1f} MB/s   ratio {mine / peer:5.2f}")
            mc, pc = statistics.median(close_latency["mrzero"]), statistics.median(close_latency["peer"])
            print(f"{n} client(s): last acquisition -> close (savedata)  mrzero {mc * 1e3:7.1f} ms   "
                  f"peer {pc * 1e3:7.1f} ms")
            lat, comp = statistics.median(image_latency), statistics.median(compute)
            print(f"{n} client(s): last acquisition -> last image (cartesian) {lat:6.3f} s; {n} pipeline "
                  f"run(s) in memory {comp:6.3f} s; ratio {lat / comp:5.2f}\n")
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
