"""How often a journal survives a SIGKILL of the server at a random moment of a streaming scan.

Each round starts ``mrzero serve`` (the suite's test pipelines), streams a 128x128, 8-coil scan's
first 40 acquisitions, waits 20 flush intervals, then streams the rest of the scan and three
more passes from a second thread and kills the server after a random delay (uniform in
``[0, --max-delay-s]``). The journal is then opened with ``ismrmrd.Dataset``; counted: rounds,
journals that do not open, journals that open but hold fewer than the 40 acquisitions flushed
before the kill or data that differ from what was sent. A kill that lands while HDF5 writes a
flush can leave a file that does not open (docs/server.md, "Crash consistency"); this measures
how often. The suite checks the guaranteed case (a kill between flushes) in
``tests/server/test_server_crash.py``.

Run: ``.venv/bin/python bench/journal_crash.py [--rounds 100] [--flush-s 0.05]``
"""

from __future__ import annotations

import argparse
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "tests" / "server")]

import ismrmrd  # noqa: E402
import numpy as np  # noqa: E402
from scans_for_tests import acquisition_message, config_file_message, header_xml, scan, wire_text  # noqa: E402
from server_harness import serve_process  # noqa: E402

from mrzero.server.framing import MessageId  # noqa: E402

FIRST = 40


def one_round(data_dir: Path, flush_s: float, delay_s: float, acqs: list, xml: str) -> str:
    """Kill the server ``delay_s`` after the second part of the stream starts; the journal's outcome."""
    with serve_process(data_dir, "--journal-flush-s", str(flush_s)) as (process, port, _):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(
            config_file_message(b"test_rss")
            + wire_text(MessageId.HEADER, xml.encode())
            + b"".join(map(acquisition_message, acqs[:FIRST]))
        )
        time.sleep(20 * flush_s)

        def rest() -> None:
            try:
                for acq in acqs[FIRST:] + 3 * acqs:
                    sock.sendall(acquisition_message(acq))
            except OSError:
                pass

        sender = threading.Thread(target=rest)
        sender.start()
        time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        sender.join(60)
        sock.close()
    (path,) = data_dir.glob("*.h5")
    try:
        with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
            held = dset.number_of_acquisitions()
            same = all(
                np.array_equal(dset.read_acquisition(i).data, acqs[i % len(acqs)].data) for i in range(held)
            )
    except Exception:  # noqa: BLE001 - any failure to read is the outcome counted
        return "does not open"
    if held < FIRST:
        return "lost flushed acquisitions"
    return "opens, data equal" if same else "data differ"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="kills (default 100)")
    parser.add_argument("--flush-s", type=float, default=0.05, help="--journal-flush-s (default 0.05)")
    parser.add_argument("--max-delay-s", type=float, default=0.1, help="kill delay range (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    acqs, xml = scan(coils=8, nx=128, ny=128, seed=1), header_xml(coils=8, nx=128, ny=128)
    counts: dict[str, int] = {}
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="mrzero-crash-") as tmp:
            outcome = one_round(Path(tmp), args.flush_s, rng.uniform(0, args.max_delay_s), acqs, xml)
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"\r{i + 1}/{args.rounds} kills: {counts}", end="", flush=True)
    print()
    for outcome, n in sorted(counts.items()):
        print(f"{outcome}: {n} of {args.rounds} ({100 * n / args.rounds:.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
