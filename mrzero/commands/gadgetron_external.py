"""``mrzero gadgetron-external``: serve the pipelines to Gadgetron as an external gadget."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from server.limits import DEFAULT_HOST, MB, Limits

#: The port of Gadgetron's own examples of ``<external><connect port="..."/>``.
DEFAULT_PORT = 18000


def register(sub: argparse._SubParsersAction) -> None:
    d = Limits()
    p = sub.add_parser(
        "gadgetron-external", help="serve the pipelines to a Gadgetron chain as an external gadget",
        description="Listen for Gadgetron's <external><connect address=... port=.../></external> node "
                    "(see deploy/gadgetron/): reconstruct what the chain sends (acquisitions, waveforms, "
                    "images, image arrays) with the pipeline named by the node's 'pipeline' property "
                    "(else --pipeline; see `mrzero pipelines`) and send the images back into the chain. "
                    "The node's other properties are the pipeline's parameters.")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default %(default)s; 0.0.0.0 if Gadgetron runs on another host)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="TCP port, the node's <connect port=...> (default %(default)s)")
    p.add_argument("--pipeline", default="",
                   help="pipeline for nodes without a 'pipeline' property (default: the registry's default)")
    p.add_argument("--timeout", type=float, default=d.pipeline_timeout_s, metavar="SECONDS",
                   help="stop a pipeline that makes no progress for this long (default %(default)g)")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout_s, metavar="SECONDS",
                   help="end a connection on which Gadgetron sends nothing for this long "
                        "(default %(default)g)")
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="reconstructions served at once; more get an error (default %(default)s)")
    p.add_argument("--memory-limit-mb", type=float, default=d.memory_limit_bytes / MB,
                   help="address space a pipeline worker may add (RLIMIT_AS); 0 = unlimited "
                        "(default %(default)g)")
    p.add_argument("--pipeline-threads", type=int, default=0, metavar="N",
                   help="torch threads per pipeline worker; 0 = CPU cores / --max-connections, at least 1 "
                        "(default %(default)s)")
    p.add_argument("--bundle-store", type=Path, default=None, metavar="STORE",
                   help="bundle store (mrzero deploy --store) where the MRzero pipelines find a scan's "
                        "trajectory and head (default: none)")
    p.add_argument("--pipeline-module", action="append", default=[], metavar="MODULE",
                   help="extra Python module that registers site pipelines (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.registry import UnknownPipelineError
    from server.gadgetron.listener import ExternalServer
    from server.limits import Settings

    limits = Limits(pipeline_timeout_s=args.timeout, idle_timeout_s=args.idle_timeout,
                    max_connections=args.max_connections, memory_limit_bytes=int(args.memory_limit_mb * MB))
    settings = Settings(host=args.host, port=args.port, limits=limits, pipeline_threads=args.pipeline_threads,
                        pipeline_modules=tuple(args.pipeline_module), bundle_store=args.bundle_store)
    try:
        server = ExternalServer(settings, args.pipeline)
    except UnknownPipelineError as exc:
        logging.getLogger("mrzero.gadgetron").error("--pipeline: %s", exc)
        return 2
    return 0 if server.serve_forever() else 1  # Ctrl-C/SIGTERM: drain, then stop
