"""Checks a command runs before long work: can it write its outputs, does the server answer?

A command that simulates for minutes and then finds ``/proc/x`` unwritable or the server's port
closed wastes the user's time; these checks fail first, with one line naming the path or the
host and port. They create nothing: a probe file is removed at once.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path


class UsageError(Exception):
    """A user error the command line reports as one line (exit status 2), without a traceback."""


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: Path, wanted: Path) -> None:
    """``UsageError`` unless a file can be made in ``folder``, the nearest existing ancestor of ``wanted``."""
    if not folder.is_dir():
        raise UsageError(f"{wanted}: {folder} is a file, not a folder")
    try:
        handle, name = tempfile.mkstemp(prefix=".mrzero-probe-", dir=folder)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"{wanted}: cannot write there ({reason.lower()})") from None
    os.close(handle)
    os.unlink(name)


def check_output_dir(path: Path) -> None:
    """``UsageError`` unless ``path`` is, or can become, a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a folder")
    _probe(_existing_ancestor(path), path)


def check_output_file(path: Path) -> None:
    """``UsageError`` unless a file can be written at ``path`` (a writable folder, not a folder itself)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, expected a file name")
    _probe(_existing_ancestor(path.parent), path)


def check_input_file(path: Path) -> None:
    """``UsageError`` unless ``path`` is an existing file (a folder or a missing path named as such)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, expected a file")
    if not path.exists():
        raise UsageError(f"{path}: no such file")


def check_server(host: str, port: int, timeout_s: float = 5.0) -> None:
    """``UsageError`` unless something accepts TCP connections at ``host:port`` (the probe then closes)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "connection refused" if exc.errno == errno.ECONNREFUSED else (exc.strerror or str(exc))
        raise UsageError(f"no MRD server at {host}:{port} ({reason.lower()})") from None
