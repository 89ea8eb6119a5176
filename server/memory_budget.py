"""Whether the per-worker memory limits fit the memory the server is given (its cgroup: the
container's or pod's limit, systemd's MemoryMax).

Each pipeline worker may grow by ``--memory-limit-mb``; ``--max-connections`` of them run at
once, beside the server process itself: its base (threads, the fork server) and per connection
the journal (at most twice ``--journal-buffer-mb``, ``mrzero.server.journal``) and the message
being read (at most ``--max-message-mb``). When their sum exceeds the cgroup's limit, the
kernel's OOM killer, not the server, ends a scan: the server says so at start.
"""

from __future__ import annotations

from pathlib import Path

from mrzero.server.limits import MB, Limits

#: What the server process and the fork server need beside the workers and the connections' data.
SERVER_BASE_BYTES = 512 * MB
#: The least reserved for the server process (the shipped defaults need 1792 MB of it).
SERVER_RESERVE_BYTES = 2048 * MB
#: ``--journal-buffer-mb``'s default (``Settings.journal_buffer_bytes``).
JOURNAL_BUFFER_BYTES = 32 * MB
_CGROUP_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def cgroup_memory_limit() -> int | None:
    """The memory limit of this process's cgroup in bytes; None where there is none or it cannot be read."""
    for path in _CGROUP_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # cgroup v1 says "no limit" with a huge number
            return int(text)
        return None
    return None


def server_bytes(limits: Limits, journal_buffer_bytes: int = JOURNAL_BUFFER_BYTES) -> int:
    """Memory the server process may need beside its workers: its base, and per connection the
    journal (its buffer and HDF5's copy of one batch) and one message being read."""
    per_connection = 2 * journal_buffer_bytes + limits.max_message_bytes
    return max(SERVER_RESERVE_BYTES, SERVER_BASE_BYTES + limits.max_connections * per_connection)


def over_budget(
    limits: Limits, available: int | None, journal_buffer_bytes: int = JOURNAL_BUFFER_BYTES
) -> str | None:
    """Why ``limits`` do not fit ``available`` bytes, or None if they do (or nothing is known)."""
    if available is None or limits.memory_limit_bytes == 0:
        return (
            None
            if available is None
            else (
                f"--memory-limit-mb 0 (unlimited workers) under a memory limit of {available // MB} MB: "
                "one scan can make the kernel kill the server"
            )
        )
    server = server_bytes(limits, journal_buffer_bytes)
    needed = limits.max_connections * limits.memory_limit_bytes + server
    if needed <= available:
        return None
    fitting = max(0, (available - server) // limits.max_connections) // MB
    return (
        f"--max-connections {limits.max_connections} x --memory-limit-mb {limits.memory_limit_bytes // MB} "
        f"+ {server // MB} MB for the server (journal buffers and messages included) = {needed // MB} MB, "
        "more than the "
        f"{available // MB} MB this server is given; lower --memory-limit-mb to {fitting} or "
        "--max-connections (docs/deployment.md, 'Memory')"
    )
