"""Whether the per-worker memory limits fit the memory the server is given (its cgroup: the
container's or pod's limit, systemd's MemoryMax).

Each pipeline worker may grow by ``--memory-limit-mb``; ``--max-connections`` of them run at
once, beside the server process itself (journal batches, sockets, the fork server). When their
sum exceeds the cgroup's limit, the kernel's OOM killer, not the server, ends a scan: the
server says so at start.
"""

from __future__ import annotations

from pathlib import Path

from mrzero.server.limits import MB, Limits

#: What the server process and the fork server need beside the workers.
SERVER_RESERVE_BYTES = 2048 * MB
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


def over_budget(limits: Limits, available: int | None) -> str | None:
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
    needed = limits.max_connections * limits.memory_limit_bytes + SERVER_RESERVE_BYTES
    if needed <= available:
        return None
    fitting = max(0, (available - SERVER_RESERVE_BYTES) // limits.max_connections) // MB
    return (
        f"--max-connections {limits.max_connections} x --memory-limit-mb {limits.memory_limit_bytes // MB} "
        f"+ {SERVER_RESERVE_BYTES // MB} MB for the server = {needed // MB} MB, more than the "
        f"{available // MB} MB this server is given; lower --memory-limit-mb to {fitting} or "
        "--max-connections (docs/deployment.md, 'Memory')"
    )
