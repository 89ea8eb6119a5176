"""Build a head from a plain config dict and load its weights safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from mrzero.core.heads.cnn import ImageCNN
from mrzero.core.heads.mlp import PixelMLP

KINDS = ("mlp", "cnn")


class HeadError(ValueError):
    """A head config or weights file is unusable; the message names what is wrong."""


def build_head(config: dict[str, Any]) -> nn.Module:
    """``{"kind": "mlp", "n_in": 10, "hidden": [64, 64, 64], "scale": 1.0}`` or
    ``{"kind": "cnn", "n_in": 1, "channels": 16, "layers": 3}`` -> a freshly initialised head."""
    options = dict(config)
    kind = options.pop("kind", None)
    if kind not in KINDS:
        raise HeadError(f"head kind must be one of {KINDS}, got {kind!r}")
    cls = PixelMLP if kind == "mlp" else ImageCNN
    if "hidden" in options:
        options["hidden"] = tuple(int(h) for h in options["hidden"])
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise HeadError(f"head config {config}: {exc}") from exc


def load_head(
    config: dict[str, Any], weights: dict[str, torch.Tensor] | str | Path, device: torch.device | str = "cpu"
) -> nn.Module:
    """A head from ``config`` with ``weights`` (a state dict, a ``.safetensors`` file or a
    ``torch.save`` file read with ``weights_only=True``), in eval mode on ``device``."""
    if not isinstance(weights, dict):
        path = Path(weights)
        if not path.is_file():
            raise HeadError(f"{path}: no such head weights file")
        try:
            weights = (
                load_file(str(path))
                if path.suffix == ".safetensors"
                else torch.load(path, map_location="cpu", weights_only=True)
            )
        except Exception as exc:  # foreign or tampered files raise many exception types
            raise HeadError(f"{path}: not a safe weights file ({type(exc).__name__}: {exc})") from exc
        if not isinstance(weights, dict):
            raise HeadError(f"{path}: expected a dict of tensors, got {type(weights).__name__}")
    head = build_head(config)
    try:
        head.load_state_dict(weights)
    except RuntimeError as exc:
        raise HeadError(f"head weights do not fit the config {config}: {exc}") from exc
    return head.to(device).eval()
