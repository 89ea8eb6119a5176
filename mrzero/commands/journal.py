"""``mrzero journal recover``: make journals whole that a server did not close (killed, crashed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrzero.commands.serve import journal_prefix


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "journal",
        help="operator tools for the server's raw-data journal",
        description="Operator tools for the raw-data journal of `mrzero serve` (docs/server.md).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = actions.add_parser(
        "recover",
        help="recover journals from their write-ahead logs",
        description="Recover journals that a server did not close (SIGKILL, out of memory, crash) "
        "from the write-ahead log beside each (<journal>.h5.wal). A journal that opens and holds "
        "everything its log holds is only marked; any other is rebuilt from the log (a torn last "
        "record is dropped) and marked `journal = incomplete: recovered from its write-ahead log "
        "...`. The log is removed once the journal reads back with every acquisition. Logs that "
        "a running server holds open are left alone. `mrzero serve` does the same for its own "
        "journals at start.",
        epilog="Exit status: 0 when every journal found was recovered (or is in use by a running "
        "server), 1 when one could not be recovered (its files are left as they were), 2 on a "
        "usage error.",
    )
    r.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="a journal (.h5), its log (.h5.wal), or a directory: every journal with a log in it",
    )
    r.add_argument(
        "--journal-prefix",
        type=journal_prefix,
        default=None,
        metavar="PREFIX",
        help="in directories, only journals named PREFIX-* (a server's --journal-prefix)",
    )
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.server.journal import wal_path
    from mrzero.server.recovery import InUse, RecoveryError, leftover_logs, recover

    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"mrzero journal recover: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    failed = 0
    journals = leftover_logs(args.paths, args.journal_prefix or "")
    for journal in journals:
        if not wal_path(journal).exists():
            print(f"{journal}: no write-ahead log, nothing to recover")
            continue
        try:
            result = recover(journal)
        except InUse as exc:
            print(f"{journal}: {exc}")
            continue
        except (RecoveryError, OSError) as exc:
            print(f"{journal}: NOT recovered, its files are left as they were: {exc}", file=sys.stderr)
            failed += 1
            continue
        how = "held everything, marked" if result.how == "marked" else "rebuilt from its write-ahead log"
        torn = f"; torn last record of {result.torn} bytes dropped" if result.torn else ""
        print(f"{journal}: {how} ({result.acquisitions} acquisitions{torn})")
    if not journals:
        print("no journal with a write-ahead log found")
    return 1 if failed else 0
