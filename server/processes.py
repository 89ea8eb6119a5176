"""Where the server's child processes come from: one ``forkserver`` for the whole server.

The fork server imports the pipeline catalog once; each pipeline worker is then a fork of that
clean, single-threaded process: it starts in milliseconds without imports and inherits no lock
held by one of the server's threads.
"""

from __future__ import annotations

import multiprocessing
import os
import threading

CONTEXT = multiprocessing.get_context("forkserver")
_PRELOAD = ["mrzero.pipelines.catalog", "mrzero.server.worker", "mrzero.server.header_check"]
_lock = threading.Lock()


def warm_up(modules: tuple[str, ...] = ()) -> None:
    """Start the fork server (with ``modules`` preloaded too) before the first connection."""
    with _lock:
        CONTEXT.set_forkserver_preload(_PRELOAD + list(modules))
        from multiprocessing import forkserver

        forkserver.ensure_running()
        probe = CONTEXT.Process(target=os.getpid)  # returns once the preload imports are done
        probe.start()
        probe.join()


def forkserver_alive() -> bool:
    """Whether the fork server that starts pipeline workers is running (False before ``warm_up``).

    Checked without reaping it (``WNOWAIT``), so that ``multiprocessing`` still sees and restarts
    a dead one; the pid is ``multiprocessing.forkserver``'s own record of its process.
    """
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid is None:
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:  # already reaped by multiprocessing: it will start a new one
        return False
