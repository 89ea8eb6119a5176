"""How often a journal survives a SIGKILL of the server at a random moment of a streaming scan,
before and after the recovery from its write-ahead log.

Each round (``kill_mid_scan`` of ``tests/server/test_server_crash.py``) starts ``mrzero serve``
(the suite's test pipelines), streams a 128x128, 8-coil scan's first 40 acquisitions, waits until
the journal has flushed them, then streams the rest of the scan and three more passes from a
second thread and kills the server after a random delay (uniform in ``[0, --max-delay-s]``).
The journal is then opened with ``ismrmrd.Dataset`` as the kill left it ("before recovery"), then
recovered the way ``mrzero serve`` does at start (``mrzero.server.recovery.recover_all``) and
opened again ("after recovery"). Counted each time: journals that do not open, journals that open
but hold fewer than the 40 acquisitions flushed before the kill, data that differ from what was
sent. A kill that lands while HDF5 writes a flush can leave a file that does not open
(docs/server.md, "Crash consistency"); the recovery rebuilds it from the log.

Run: ``nice -n 5 .venv/bin/python bench/journal_crash.py [--rounds 100] [--flush-s 0.05]``
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "tests" / "server")]

import ismrmrd  # noqa: E402
from scans_for_tests import header_xml, scan  # noqa: E402
from test_server_crash import FIRST, kill_mid_scan  # noqa: E402

from mrzero.server.recovery import recover_all  # noqa: E402


def outcome(path: Path, acqs: list) -> str:
    """What ``ismrmrd.Dataset`` makes of the journal ``path``."""
    try:
        with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
            held = dset.number_of_acquisitions()
            same = all(
                dset.read_acquisition(i).to_bytes() == acqs[i % len(acqs)].to_bytes() for i in range(held)
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
    logging.basicConfig(level=logging.ERROR)  # each recovery logs a warning; the counts say it
    rng = random.Random(args.seed)
    acqs, xml = scan(coils=8, nx=128, ny=128, seed=1), header_xml(coils=8, nx=128, ny=128)
    counts: dict[str, dict[str, int]] = {"before recovery": {}, "after recovery": {}}
    ways: dict[str, int] = {}
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="mrzero-crash-") as tmp:
            path = kill_mid_scan(Path(tmp), acqs, xml, rng.uniform(0, args.max_delay_s), args.flush_s)
            before = outcome(path, acqs)
            recovered, failed = recover_all(Path(tmp))
            after = outcome(path, acqs)
        for when, what in (("before recovery", before), ("after recovery", after)):
            counts[when][what] = counts[when].get(what, 0) + 1
        how = recovered[0].how if recovered else f"not recovered: {failed}"
        ways[how] = ways.get(how, 0) + 1
        print(f"\r{i + 1}/{args.rounds} kills: {counts}", end="", flush=True)
    print()
    for when, by_outcome in counts.items():
        for what, n in sorted(by_outcome.items()):
            print(f"{when}: {what}: {n} of {args.rounds} ({100 * n / args.rounds:.1f} %)")
    for how, n in sorted(ways.items()):
        print(f"recovery: {how}: {n} of {args.rounds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
