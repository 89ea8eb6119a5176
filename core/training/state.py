"""The resume state file of a training run: written atomically, read with ``weights_only=True``.

A state is a dict of tensors, numbers, strings and nested dicts/lists of those (the only types
``torch.load(weights_only=True)`` accepts), tagged with ``format`` so that a foreign file is
refused with a message instead of continuing from garbage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

STATE_FORMAT = "mrzero-training-state/2"  # /2: one loop for MRzero and RoAR


class TrainingError(RuntimeError):
    """Training cannot go on (NaN, unusable resume state); the message says what happened."""


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": STATE_FORMAT, **state}, tmp)
    tmp.replace(path)


def load_state(path: Path, device: torch.device, hint: str = "run without resuming first") -> dict[str, Any]:
    """The state in ``path``; ``TrainingError`` when it is missing or not a training state."""
    if not path.is_file():
        raise TrainingError(f"--resume: no {path} to continue from ({hint})")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # foreign or truncated files raise many exception types
        raise TrainingError(f"{path}: not a training state ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path}: not a {STATE_FORMAT} file")
    return state
