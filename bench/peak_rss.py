"""Peak resident memory of a code section, for ``bench/simulate.py`` and its MRzero-Core peer.

``ru_maxrss`` is the process's high-water mark since it started, so a section that needs less
than an earlier peak (importing torch, loading a phantom) would read as 0 MB. Linux resets the
mark when ``5`` is written to ``/proc/self/clear_refs``; :func:`reset` does that, and
:func:`increase_mb` then gives the section's peak over the resident size at the reset.
Standard library only: the peer's Python (without this project) imports it too.
"""

from __future__ import annotations

import resource


def _resident_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def reset() -> int:
    """Reset the high-water mark to the current resident size (kB), which is returned."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _resident_kb()


def increase_mb(start_kb: int) -> float:
    """Peak resident size since :func:`reset` over ``start_kb``, in MB."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_kb) / 1024.0
