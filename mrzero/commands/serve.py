"""``mrzero serve``: run the MRD streaming reconstruction server."""

from __future__ import annotations

import argparse
from pathlib import Path

from server.limits import DEFAULT_HOST, DEFAULT_PORT, MB, Limits, Settings


def register(sub: argparse._SubParsersAction) -> None:
    d = Limits()
    p = sub.add_parser(
        "serve", help="run the MRD streaming reconstruction server",
        description="Serve MRD v1 streaming clients (scanner/FIRE, mrzero send, python-ismrmrd-server "
                    "clients): journal every connection's raw data, reconstruct with the pipeline its "
                    "config name selects (see `mrzero pipelines`), stream images back.")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default %(default)s; use 0.0.0.0 to accept remote scanners)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default %(default)s)")
    p.add_argument("--data-dir", type=Path, default=Settings().data_dir,
                   help="directory of the raw-data journal, one MRD HDF5 file per connection "
                        "(default %(default)s)")
    p.add_argument("--timeout", type=float, default=d.pipeline_timeout_s, metavar="SECONDS",
                   help="stop a pipeline that makes no progress for this long, e.g. after the last "
                        "acquisition (default %(default)g)")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout_s, metavar="SECONDS",
                   help="disconnect a client that sends nothing for this long (default %(default)g)")
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="connections served at once; more get an error (default %(default)s)")
    p.add_argument("--max-message-mb", type=float, default=d.max_message_bytes / MB,
                   help="largest single message accepted, refused before allocating (default %(default)g)")
    p.add_argument("--memory-limit-mb", type=float, default=d.memory_limit_bytes / MB,
                   help="address space a pipeline worker may add (RLIMIT_AS); 0 = unlimited "
                        "(default %(default)g)")
    p.add_argument("--pipeline-threads", type=int, default=0, metavar="N",
                   help="torch threads per pipeline worker; 0 = CPU cores / --max-connections, at least 1 "
                        "(default %(default)s)")
    p.add_argument("--bundle-store", type=Path, default=None, metavar="STORE",
                   help="bundle store (mrzero deploy --store) where the MRzero pipelines find a scan's "
                        "trajectory and head by bundle name or Pulseq signature (default: none)")
    p.add_argument("--pipeline-module", action="append", default=[], metavar="MODULE",
                   help="extra Python module that registers site pipelines (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from server.listener import Server

    limits = Limits(max_message_bytes=int(args.max_message_mb * MB), pipeline_timeout_s=args.timeout,
                    memory_limit_bytes=int(args.memory_limit_mb * MB), max_connections=args.max_connections,
                    idle_timeout_s=args.idle_timeout)
    settings = Settings(host=args.host, port=args.port, data_dir=args.data_dir, limits=limits,
                        pipeline_modules=tuple(args.pipeline_module), pipeline_threads=args.pipeline_threads,
                        bundle_store=args.bundle_store)
    Server(settings).serve_forever()
    return 0
