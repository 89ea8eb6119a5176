"""``mrzero gadgetron-external``: serve the pipelines to Gadgetron as an external gadget."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mrzero.commands.server_options import add_worker_options, worker_settings
from mrzero.server.limits import DEFAULT_HOST

#: The port of Gadgetron's own examples of ``<external><connect port="..."/>``.
DEFAULT_PORT = 18000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gadgetron-external",
        help="serve the pipelines to a Gadgetron chain as an external gadget",
        description="Listen for Gadgetron's <external><connect address=... port=.../></external> node "
        "(see deploy/gadgetron/): reconstruct what the chain sends (acquisitions, waveforms, "
        "images, image arrays) with the pipeline named by the node's 'pipeline' property "
        "(else --pipeline; see `mrzero pipelines`) and send the images back into the chain. "
        "The node's other properties are the pipeline's parameters.",
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind (default %(default)s; 0.0.0.0 if Gadgetron runs on another host)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="TCP port, the node's <connect port=...> (default %(default)s)",
    )
    p.add_argument(
        "--pipeline",
        default="",
        help="pipeline for nodes without a 'pipeline' property (default: the registry's default)",
    )
    add_worker_options(
        p,
        timeout_example="",
        served="reconstructions",
        idle_help="end a connection on which Gadgetron sends nothing for this long",
    )
    p.add_argument(
        "--bundle-store",
        type=Path,
        default=None,
        metavar="STORE",
        help="bundle store (mrzero deploy --store) where the MRzero pipelines find a scan's "
        "trajectory and head (default: none)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.pipelines.registry import UnknownPipelineError
    from mrzero.server.gadgetron.listener import ExternalServer

    settings = worker_settings(args, host=args.host, port=args.port)
    try:
        server = ExternalServer(settings, args.pipeline)
    except UnknownPipelineError as exc:
        logging.getLogger("mrzero.gadgetron").error("--pipeline: %s", exc)
        return 2
    return 0 if server.serve_forever() else 1  # Ctrl-C/SIGTERM: drain, then stop
