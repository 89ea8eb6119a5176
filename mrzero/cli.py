"""The ``mrzero`` console command: argument parsing only, each subcommand in ``mrzero/commands``.

Every module listed in ``COMMANDS`` defines ``register(subparsers)``, which adds its parser and
sets ``func(args) -> int`` as the default; logic lives in ``server/``, ``pipelines/`` and
``sequences/``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: Subcommand modules under ``mrzero.commands``, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "serve",
    "gadgetron_external",
    "send",
    "demo",
    "pipelines",
    "convert",
    "recon",
    "roar",
    "simulate",
    "export",
    "bundle",
    "deploy",
    "train",
    "scan",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrzero",
        description="MRD reconstruction server, MRzero sequence learning and offline reprocessing.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"mrzero.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * (args.verbose + 1)
    logging.basicConfig(level=max(level, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
