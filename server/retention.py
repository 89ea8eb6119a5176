"""Journal retention: which journals are open, and pruning the oldest closed ones.

``--journal-keep-days`` removes closed journals older than that; ``--journal-max-gb`` removes
the oldest closed journals until the rest fit. A journal a connection has open is never
removed, and with ``--journal-prefix`` only files with this server's prefix are considered
(servers sharing one volume never prune each other's files). Every removal is logged.

A journal with a write-ahead log beside it (``<journal>.h5.wal``: open, or left by a server that
did not close it and not yet recovered) is never removed; its log and sidecar count towards
``--journal-max-gb`` with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mrzero.server.journal import sidecar_path, wal_path

log = logging.getLogger(__name__)

DAY_S = 86400.0


class JournalDirectory:
    """The journal files of one server in ``data_dir`` and the retention rules over them."""

    def __init__(
        self,
        data_dir: Path,
        prefix: str = "",
        max_bytes: int = 0,
        keep_days: float = 0.0,
        on_removed: Callable[[], None] = lambda: None,
    ):
        self.data_dir = data_dir
        self.pattern = f"{prefix}-*.h5" if prefix else "*.h5"
        self.max_bytes = max_bytes
        self.keep_days = keep_days
        self._on_removed = on_removed
        self._open: set[Path] = set()
        self._lock = threading.Lock()
        #: One prune at a time: connections that end together would race to remove the same files.
        self._pruning = threading.Lock()

    def opened(self, path: Path) -> None:
        with self._lock:
            self._open.add(path)

    def closed(self, path: Path) -> None:
        with self._lock:
            self._open.discard(path)

    def prune(self, now: float | None = None) -> list[Path]:
        """Remove what the retention rules say (nothing without rules); returns what was removed."""
        if not self.max_bytes and not self.keep_days:
            return []
        with self._pruning:
            return self._prune(time.time() if now is None else now)

    def _prune(self, now: float) -> list[Path]:
        with self._lock:  # a journal opened meanwhile is in the set before its file exists
            files = []
            kept_bytes = 0  # journals that are open or have a write-ahead log: never removed
            for path in self.data_dir.glob(self.pattern):
                if path in self._open:
                    continue
                logged = _size(wal_path(path)) + _size(sidecar_path(path))
                if logged or wal_path(path).exists():
                    kept_bytes += _size(path) + logged
                    continue
                try:
                    stat = path.stat()
                except OSError:
                    continue
                files.append((stat.st_mtime, stat.st_size, path))
            kept_bytes += sum(_size(p) + _size(wal_path(p)) + _size(sidecar_path(p)) for p in self._open)
        files.sort()
        removed = []
        total = kept_bytes + sum(size for _, size, _ in files)
        for mtime, size, path in files:
            too_old = self.keep_days and now - mtime > self.keep_days * DAY_S
            too_much = self.max_bytes and total > self.max_bytes
            if not (too_old or too_much):
                continue
            try:
                path.unlink()
            except FileNotFoundError:  # removed by someone else meanwhile (an operator)
                total -= size
                continue
            except OSError as exc:
                log.warning("retention: cannot remove journal %s: %s", path, exc)
                continue
            total -= size
            removed.append(path)
            self._on_removed()
            log.info(
                "retention: removed journal %s (%.1f MB, %.1f days old; %s)",
                path.name,
                size / 1e6,
                (now - mtime) / DAY_S,
                "older than --journal-keep-days" if too_old else "total over --journal-max-gb",
            )
        return removed


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
