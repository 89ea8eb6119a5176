"""One way to choose the torch device, for every command, pipeline and training loop.

``select_device(None)`` (or ``"auto"``) is the first CUDA device when torch sees one, else the
CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and ``"mps"`` are taken as asked, and a device that torch
cannot use fails at once with ``DeviceError`` saying what torch sees, instead of an obscure
error deep inside the first tensor operation.
"""

from __future__ import annotations

import torch

AUTO = "auto"


class DeviceError(ValueError):
    """The requested device is malformed or not available on this machine."""


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def select_device(requested: str | torch.device | None = None, source: str = "") -> torch.device:
    """The torch device for ``requested`` (None or ``"auto"``: CUDA when available, else CPU);
    ``source`` (e.g. ``"--device / MRZERO_DEVICE"``) says in an error where the request came from."""
    where = f" ({source})" if source else ""
    if requested is None or (isinstance(requested, str) and requested.strip().lower() == AUTO):
        return torch.device("cuda" if _cuda_count() else "cpu")
    try:
        device = torch.device(requested.strip() if isinstance(requested, str) else requested)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(
            f"device {requested!r}{where} is not a torch device (use auto, cpu, cuda or cuda:N)"
        ) from exc
    if device.type == "cuda":
        count = _cuda_count()
        index = device.index or 0
        if index >= count:
            seen = "no CUDA device" if count == 0 else f"{count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            build = "" if torch.version.cuda else " (this torch is a CPU-only build)"
            raise DeviceError(f"device {str(device)!r} asked for{where}, but torch sees {seen}{build}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {str(device)!r} asked for{where}, but the MPS backend is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {str(device)!r}{where}: use auto, cpu, cuda, cuda:N or mps")
    return device
