"""The per-worker memory limits against the memory the server is given (its cgroup)."""

from __future__ import annotations

from mrzero.server.limits import MB, Limits, Settings
from mrzero.server.memory_budget import JOURNAL_BUFFER_BYTES, over_budget


def test_memory_limits_that_do_not_fit_are_named():
    assert over_budget(Limits(), 16 << 30) is None  # the defaults fit the shipped 16 GiB pod
    problem = over_budget(Limits(max_connections=8, memory_limit_bytes=8192 * MB), 16 << 30)
    # the server: 512 MB + 8 connections x (2 x 32 MB journal + 256 MB message) = 3072 MB
    assert problem is not None and "= 68608 MB, more than the 16384 MB" in problem
    assert "lower --memory-limit-mb to 1664" in problem
    assert over_budget(Limits(), None) is None


def test_journal_buffers_count_in_the_budget():
    assert JOURNAL_BUFFER_BYTES == Settings().journal_buffer_bytes
    # 4 x 3072 MB + 512 MB + 4 x (2 x 1024 + 256) MB = 21990 MB > 16 GiB
    problem = over_budget(Limits(), 16 << 30, journal_buffer_bytes=1024 * MB)
    assert problem is not None and "+ 9728 MB for the server" in problem
