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
from typing import NoReturn

#: Subcommand modules under ``mrzero.commands``, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "serve",
    "journal",
    "gadgetron_external",
    "send",
    "demo",
    "pipelines",
    "convert",
    "recon",
    "roar",
    "simulate",
    "plot",
    "export",
    "bundle",
    "deploy",
    "train",
    "scan",
)


#: ``-v``/``-vv`` everywhere (before or after the subcommand): default warnings and errors, -v adds
#: info, -vv debug (with the traceback of a failed command). ``mrzero serve --log-level`` overrides.
VERBOSITY_HELP = "more log output: -v info, -vv debug (default: warnings and errors)"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``mrzero send: argument --port: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mrzero",
        description="MRD reconstruction server, MRzero sequence learning and offline reprocessing.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSITY_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f"mrzero.commands.{name}").register(sub)
    for command in sub.choices.values():
        command.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=VERBOSITY_HELP
        )
    return parser


def log_level(verbose: int) -> int:
    """The root log level of ``-v`` given ``verbose`` times."""
    return (logging.WARNING, logging.INFO)[verbose] if verbose < 2 else logging.DEBUG


def _one_line(exc: BaseException) -> str:
    """An exception as one line: ``path: reason`` for file errors, the first line of its text otherwise."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror[0].lower()}{exc.strerror[1:]}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Parse, run the subcommand; a user error ends in one line on stderr, never a traceback."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from mrzero.commands.output_checks import UsageError

    args = build_parser().parse_args(argv)
    detail = "%(asctime)s " if args.verbose else ""  # time stamps with -v/-vv
    logging.basicConfig(level=log_level(args.verbose), format=detail + "%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(f"mrzero.{args.command}")
    try:
        with logging_redirect_tqdm():  # log lines above the progress bars, not through them
            return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"mrzero {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mrzero {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, LookupError, RuntimeError) as exc:
        log.debug("traceback", exc_info=True)
        print(f"mrzero {args.command}: {_one_line(exc)} (-vv shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
