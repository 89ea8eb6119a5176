"""RoAR weights on disk: a safetensors file whose metadata carries the U-Net config and protocol.

Only tensors and JSON strings are read back, never pickled objects, so a weights file from
anywhere is safe to load. The shipped small model is the head of the bundle
``pipelines/roar/bundles/roar_small`` (``pipelines/roar/bundle.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mrzero.pipelines.roar.unet import RoarUNet, UNetConfig


def save_weights(model: RoarUNet, path: Path, te: torch.Tensor, info: dict[str, Any]) -> None:
    """Write the model's weights with its config, echo times (s) and free-form ``info`` as metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "config": json.dumps(model.config.to_dict()),
        "te_s": json.dumps(te.tolist()),
        "info": json.dumps(info),
    }
    save_file(tensors, str(path), metadata=meta)


def load_weights(
    path: Path | str, device: torch.device | str = "cpu"
) -> tuple[RoarUNet, torch.Tensor, dict[str, Any]]:
    """The model (in eval mode), its echo times (s) and info from a file written by ``save_weights``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RoAR weights not found: {path}")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if "config" not in meta or "te_s" not in meta:
        raise ValueError(f"{path} is not a RoAR weights file (no U-Net config in its metadata)")
    model = RoarUNet(UNetConfig(**json.loads(meta["config"])))
    model.load_state_dict(load_file(str(path)))
    te = torch.tensor(json.loads(meta["te_s"]), dtype=torch.float32)
    return model.to(device).eval(), te, json.loads(meta.get("info", "{}"))
