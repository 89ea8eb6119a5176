"""The pipeline-worker options ``mrzero serve`` and ``mrzero gadgetron-external`` share.

Both commands run the same worker processes under the same :class:`mrzero.server.limits.Limits`; this
module declares those options once and turns the parsed values into :class:`Settings`, so that a
limit added or changed here reaches both servers alike.
"""

from __future__ import annotations

import argparse
from typing import Any

from mrzero.server.limits import MB, Limits, Settings


def bounded(kind: type, low: float, high: float, what: str) -> Any:
    """An argparse type: a ``kind`` (int or float) in [low, high], else one clear error line."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value != value or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} ({low:g} to {high:g})")
        return value

    parse.__name__ = what  # argparse names the type in its message
    return parse


#: Seconds: 0 to about 11 days. Timeouts that must be positive use :data:`POSITIVE_SECONDS`.
SECONDS = bounded(float, 0, 1e6, "a number of seconds")
POSITIVE_SECONDS = bounded(float, 1e-3, 1e6, "a positive number of seconds")
COUNT = bounded(int, 1, 10_000, "a positive whole number")


def add_worker_options(
    p: argparse.ArgumentParser, *, timeout_example: str, idle_help: str, served: str
) -> None:
    """Add --timeout, --idle-timeout, --max-connections, --memory-limit-mb, --pipeline-threads and
    --pipeline-module. Three help texts differ by what the command serves: ``timeout_example``
    follows "for this long", ``idle_help`` describes the idle disconnect, ``served`` names what
    --max-connections counts."""
    d = Limits()
    p.add_argument(
        "--timeout",
        type=POSITIVE_SECONDS,
        default=d.pipeline_timeout_s,
        metavar="SECONDS",
        help=f"stop a pipeline that makes no progress for this long{timeout_example} (default %(default)g)",
    )
    p.add_argument(
        "--idle-timeout",
        type=POSITIVE_SECONDS,
        default=d.idle_timeout_s,
        metavar="SECONDS",
        help=f"{idle_help} (default %(default)g)",
    )
    p.add_argument(
        "--max-connections",
        type=COUNT,
        default=d.max_connections,
        help=f"{served} served at once; more get an error (default %(default)s)",
    )
    p.add_argument(
        "--memory-limit-mb",
        type=bounded(float, 0, 1 << 30, "a number of MB"),
        default=d.memory_limit_bytes / MB,
        help="address space a pipeline worker may add (RLIMIT_AS); 0 = unlimited (default %(default)g)",
    )
    p.add_argument(
        "--pipeline-threads",
        type=bounded(int, 0, 1024, "a thread count"),
        default=0,
        metavar="N",
        help="torch threads per pipeline worker; 0 = CPU cores / --max-connections, at least 1 "
        "(default %(default)s)",
    )
    p.add_argument(
        "--pipeline-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="extra Python module that registers site pipelines (repeatable)",
    )


def worker_settings(
    args: argparse.Namespace,
    max_message_bytes: int = Limits.max_message_bytes,
    limits: dict[str, Any] | None = None,
    **fields: Any,
) -> Settings:
    """:class:`Settings` from the options above plus ``args.bundle_store``; ``limits`` are the
    command's own :class:`Limits` fields, ``fields`` its own settings (host, port, ...)."""
    limits = Limits(
        max_message_bytes=max_message_bytes,
        pipeline_timeout_s=args.timeout,
        memory_limit_bytes=int(args.memory_limit_mb * MB),
        max_connections=args.max_connections,
        idle_timeout_s=args.idle_timeout,
        **(limits or {}),
    )
    return Settings(
        limits=limits,
        pipeline_modules=tuple(args.pipeline_module),
        pipeline_threads=args.pipeline_threads,
        bundle_store=args.bundle_store,
        **fields,
    )
