"""Paired ingest of one fast sender against several checkouts of mrzero: before/after a change.

``bench/stream.py --baseline`` gives the median of a few rounds beside the peers; on a shared,
noisy machine the rate of one 33.6 MB scan (a fraction of a second) moves by 2x between rounds,
so a 10 % change needs many rounds. This runs ``mrzero serve`` from each checkout (journal on,
``savedataonly``, the options of ``bench/stream.py``), then sends the same scan with
``bench/stream.py``'s fast pre-serialised sender to each in turn, the order rotating every
round, ``--rounds`` times; it prints each server's median and quartiles of MB/s (acquisition
samples, connect to the server's close) and the median of the per-round ratio to the first
checkout (the same round: the same machine load).

A checkout is ``NAME=DIR``: a tree with the import-root links of an installed one, e.g.
``mkdir /tmp/base && git archive d89c64e | tar -x -C /tmp/base && for d in core server
pipelines sequences; do ln -s ../$d /tmp/base/mrzero/$d; done`` (the same for the working tree
with ``git archive HEAD``); each server runs with ``PYTHONPATH=DIR`` from a neutral directory.

Run: ``nice -n 5 .venv/bin/python bench/ingest_ab.py --rounds 60 base=/tmp/base new=/tmp/new``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream  # noqa: E402


def checkout(text: str) -> tuple[str, Path]:
    name, _, directory = text.partition("=")
    if not name or not Path(directory).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=DIR with an existing DIR")
    return name, Path(directory).resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=checkout, metavar="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args(argv)
    trees = dict(args.checkouts)
    acqs = stream.acquisitions()
    body = b"".join(stream.serialized(a) for a in acqs)
    raw_mb = sum(a.data.nbytes for a in acqs) / 1e6
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-ab-"))
    ports = {name: stream.free_port() for name in trees}
    options = ["--max-message-mb", "64", "--pipeline-threads", str(stream.PIPELINE_THREADS)]
    options += ["--max-connections", "8", "--min-free-mb", "0"]
    servers = {
        name: subprocess.Popen(
            [sys.executable, "-m", "mrzero.cli", "serve", "--port", str(ports[name])]
            + ["--data-dir", str(work / name), *options],
            stderr=subprocess.DEVNULL,
            cwd=work,
            env={**os.environ, "PYTHONPATH": str(directory)},
        )
        for name, directory in trees.items()
    }
    try:
        for name, process in servers.items():
            stream.wait_listening(ports[name], process)
        names = list(trees)
        rates: dict[str, list[float]] = {name: [] for name in names}
        dropped: dict[str, int] = {}
        for k in range(args.rounds):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                got = stream.ingest_round({name: ports[name]}, body, raw_mb, 1, dropped)
                rates[name].append(got.get(name, float("nan")))
        print(f"{args.rounds} rounds, 1 fast sender, {raw_mb:.1f} MB per scan, load {os.getloadavg()[0]:.1f}")
        for name in names:
            low, _, high = statistics.quantiles(rates[name], n=4)
            ratio = statistics.median(a / b for a, b in zip(rates[name], rates[names[0]], strict=True))
            print(
                f"{name}: median {statistics.median(rates[name]):.1f} MB/s (quartiles {low:.1f}-{high:.1f}), "
                f"per-round ratio to {names[0]}: median {ratio:.3f}"
            )
        print(f"connections dropped without the server's close: {dropped}")
    finally:
        for process in servers.values():
            process.kill()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
