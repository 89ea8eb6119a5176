"""Training checkpoints: a Sequence, optional reconstruction-head weights, metadata and a figure.

A checkpoint is one ``torch.save`` file of plain containers only (dicts, lists, strings, numbers,
bytes and tensors), so it loads with ``torch.load(..., weights_only=True)`` and nothing in it is
ever unpickled as code. Layout (``version`` 1)::

    {"format": "mrzero-checkpoint", "version": 1,
     "sequence": {"tensors": {field: tensor}, "free": {field: bool tensor}, "fov": [m, m, m],
                  "matrix": [nx, ny, nz], "name": str, "hints": {ExportHints fields},
                  "readouts": None | {"trajectory": str, "rows": [[rep, first, n, line, contrast,
                                                                  repetition, centre], ...]}},
     "head": None | {parameter name: tensor},       # a state_dict
     "metadata": JSON text,                         # pipeline name, head config, provenance, ...
     "figure_png": None | bytes}                    # the training report figure

``mrzero export`` turns a checkpoint into a deployable bundle (``sequences/bundle.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from mrzero.sequences.adc_layout import Readout, ReadoutLayout
from mrzero.sequences.sequence import TENSOR_FIELDS, ExportHints, RfOffsets, Sequence

FORMAT = "mrzero-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unsafe, of another format or malformed; the message says which."""


@dataclass
class Checkpoint:
    """What a training run leaves behind for export."""

    sequence: Sequence
    head: dict[str, torch.Tensor] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    figure_png: bytes | None = None


def _sequence_to_plain(seq: Sequence) -> dict[str, Any]:
    readouts = None
    if seq.readouts is not None:
        rows = [
            [r.rep, r.first, r.n, r.line, r.contrast, r.repetition, r.centre] for r in seq.readouts.readouts
        ]
        readouts = {"trajectory": seq.readouts.trajectory, "rows": rows}
    return {
        "tensors": {name: getattr(seq, name).detach().cpu().clone() for name in TENSOR_FIELDS},
        "free": {name: mask.detach().cpu().clone() for name, mask in seq.free.items()},
        "fov": [float(f) for f in seq.fov],
        "matrix": [int(m) for m in seq.matrix],
        "name": seq.name,
        "hints": asdict(seq.hints),
        "readouts": readouts,
        "rf_offsets": None
        if seq.rf_offsets is None
        else {k: None if v is None else v.detach().cpu().clone() for k, v in vars(seq.rf_offsets).items()},
        "joined_gradients": seq.joined_gradients,
    }


def _sequence_from_plain(plain: dict[str, Any]) -> Sequence:
    try:
        tensors = plain["tensors"]
        missing = [name for name in TENSOR_FIELDS if name not in tensors]
        if missing:
            raise CheckpointError(f"checkpoint sequence lacks the tensor(s) {', '.join(missing)}")
        known_hints = {f.name for f in fields(ExportHints)}
        hints = ExportHints(**{k: v for k, v in plain.get("hints", {}).items() if k in known_hints})
        layout = None
        if plain.get("readouts") is not None:
            rows = plain["readouts"]["rows"]
            layout = ReadoutLayout(
                tuple(Readout(*map(int, row)) for row in rows), plain["readouts"]["trajectory"]
            )
        offsets = plain.get("rf_offsets")
        return Sequence(
            **{name: tensors[name] for name in TENSOR_FIELDS},
            fov=tuple(float(f) for f in plain["fov"]),  # type: ignore[arg-type]
            matrix=tuple(int(m) for m in plain["matrix"]),  # type: ignore[arg-type]
            name=str(plain["name"]),
            hints=hints,
            free=dict(plain.get("free", {})),
            readouts=layout,
            rf_offsets=None if offsets is None else RfOffsets(**offsets),
            joined_gradients=bool(plain.get("joined_gradients", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint sequence is malformed: {type(exc).__name__}: {exc}") from exc


def save_checkpoint(
    path: str | Path,
    sequence: Sequence,
    head: torch.nn.Module | dict[str, torch.Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
    figure_png: bytes | None = None,
) -> Path:
    """Write a checkpoint; ``metadata`` must be JSON-serialisable (it is stored as JSON text).

    Useful metadata keys (read by ``mrzero export``): ``pipeline`` (the reconstruction pipeline's
    registry name), ``head_config`` (how to rebuild the head), ``head_output`` (what its maps are,
    ``{"quantity": "T1", "units": "s"}``), ``recon`` (settings for the MRzero pipelines, e.g.
    ``{"method": "cg", "iterations": 20}``), ``provenance`` (loss, iterations, phantom, seed, ...).
    """
    if head is not None and isinstance(head, torch.nn.Module):
        head = head.state_dict()
    if head is not None:
        bad = [k for k, v in head.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(
                f"head weights must be tensors; not tensors: {', '.join(map(str, bad[:5]))}"
            )
        head = {str(k): v.detach().cpu().clone() for k, v in head.items()}
    try:
        meta_text = json.dumps(metadata or {}, sort_keys=True)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint metadata must be JSON-serialisable: {exc}") from exc
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "sequence": _sequence_to_plain(sequence),
        "head": head,
        "metadata": meta_text,
        "figure_png": figure_png,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint safely (``weights_only=True``); the sequence and head land on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... on foreign files
        # torch's own text runs to a page of advice about weights_only; the type name says enough
        raise CheckpointError(f"{path}: not a safe torch checkpoint ({type(exc).__name__})") from exc
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != FORMAT:
        raise CheckpointError(f"{path}: not an {FORMAT} file (found {found!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')} is not supported (this is {VERSION})"
        )
    try:
        metadata = json.loads(payload.get("metadata") or "{}")
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is not JSON: {exc}") from exc
    sequence = _sequence_from_plain(payload.get("sequence") or {}).to(device)
    head = payload.get("head")
    if head is not None:
        head = {k: v.to(device) for k, v in head.items()}
    figure = payload.get("figure_png")
    if figure is not None and not isinstance(figure, bytes):
        raise CheckpointError(f"{path}: figure_png must be PNG bytes, got {type(figure).__name__}")
    return Checkpoint(sequence, head, metadata, figure)
