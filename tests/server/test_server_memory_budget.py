"""The per-worker memory limits against the memory the server is given (its cgroup)."""

from __future__ import annotations

from mrzero.server.limits import MB, Limits
from mrzero.server.memory_budget import over_budget


def test_memory_limits_that_do_not_fit_are_named():
    assert over_budget(Limits(), 16 << 30) is None  # the defaults fit the shipped 16 GiB pod
    problem = over_budget(Limits(max_connections=8, memory_limit_bytes=8192 * MB), 16 << 30)
    assert problem is not None and "= 67584 MB, more than the 16384 MB" in problem
    assert "lower --memory-limit-mb to 1792" in problem
    assert over_budget(Limits(), None) is None
