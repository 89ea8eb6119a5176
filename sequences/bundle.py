"""Deployable bundles: how a trained sequence and its reconstruction reach scanner and server.

A bundle is a directory::

    protocol.json             name, Pulseq signature, pipeline, encoding, TE/TR, units, provenance,
                              head config and output (quantity, units), recon settings (training's; or null)
    sequence.seq              the Pulseq file the scanner runs
    sequence.testreport.txt   pypulseq's test report of that file
    trajectory.npy            k-space position of every ADC sample, float32 [n_samples, 3], cycles/FOV
    head.safetensors          reconstruction-head weights (optional; protocol head.sha256, when
                              present, is their checksum and is checked)
    training.png              the training report figure (optional)

``write_bundle`` makes one from a checkpoint, ``check_bundle`` validates it (signature matches
the file, trajectory matches the file's k-space by pypulseq, weights load without unpickling,
the pipeline exists) and ``deploy_bundle`` installs a valid bundle into a store, the directory
the server searches with ``find_bundle`` by name or by Pulseq signature. Store layout::

    STORE/bundles/<name>/<signature>/   a copy of the bundle plus deployment.json

Names and signatures arrive over the network (FIRE JSON parameters, MRD headers), so they are
checked against strict patterns before they touch a path.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pypulseq as pp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mrzero.core.bundles import (
    BUNDLE_PIPELINES,
    DEPLOYMENT_FILE,
    FIGURE_FILE,
    FORMAT,
    HEAD_FILE,
    ITERATIVE_RECON_METHODS,
    NAME_PATTERN,
    PROTOCOL_FILE,
    REPORT_FILE,
    SEQ_FILE,
    TRAJECTORY_FILE,
    TRAJECTORY_TOLERANCE,
    VERSION,
    BundleError,
    file_sha256,
    read_protocol,
)
from mrzero.sequences.adc_layout import derive_layout
from mrzero.sequences.checkpoint import Checkpoint
from mrzero.sequences.pulseq.export import ExportOptions, export
from mrzero.sequences.pulseq.import_ import import_seq
from mrzero.sequences.pulseq.signature import SignatureError, verified_signature
from mrzero.sequences.pulseq.system import HardwareLimits

log = logging.getLogger(__name__)


def bundle_name(text: str) -> str:
    """A store-safe bundle name from free text ("flash 48x48" -> "flash_48x48")."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:64]
    if not NAME_PATTERN.match(name):
        raise BundleError(f"cannot make a bundle name from {text!r}; use letters, digits, '.', '_' or '-'")
    return name


def write_bundle(
    checkpoint: Checkpoint,
    out: str | Path,
    name: str | None = None,
    pipeline: str | None = None,
    limits: HardwareLimits | None = None,
    options: ExportOptions | None = None,
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Export ``checkpoint`` as a bundle directory ``out`` (must not exist yet); returns the protocol."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} exists and is not empty; choose a new bundle directory")
    seq = checkpoint.sequence
    meta = checkpoint.metadata
    layout = seq.readouts or derive_layout(seq.n_rep, seq.adc, seq.trajectory(), seq.matrix[1])
    pipeline = pipeline or meta.get("pipeline") or ("cartesian" if layout.trajectory == "cartesian" else None)
    if pipeline is None:
        raise BundleError(
            f"sequence {seq.name!r} is not Cartesian: name its reconstruction pipeline "
            f"(one of {', '.join(BUNDLE_PIPELINES)})"
        )
    if pipeline not in BUNDLE_PIPELINES:
        raise BundleError(f"unknown pipeline {pipeline!r}; known pipelines: {', '.join(BUNDLE_PIPELINES)}")
    trained = (meta.get("recon") or {}).get("method")
    if trained in ITERATIVE_RECON_METHODS and pipeline in ("adjoint", "mrzero_head"):
        raise BundleError(
            f"sequence {seq.name!r} was trained through the {trained} reconstruction, but the {pipeline} "
            "pipeline computes the adjoint: its images would not be the trained ones; use iterative_adjoint"
        )
    name = bundle_name(name or meta.get("name") or seq.name)
    out.mkdir(parents=True, exist_ok=True)
    result = export(seq, out / SEQ_FILE, limits=limits, options=options)
    trajectory = seq.trajectory().detach().cpu().float().numpy()
    np.save(out / TRAJECTORY_FILE, trajectory, allow_pickle=False)
    if checkpoint.head is not None:
        weights = {k: v.detach().cpu().contiguous() for k, v in checkpoint.head.items()}
        save_file(weights, str(out / HEAD_FILE))
    if checkpoint.figure_png is not None:
        (out / FIGURE_FILE).write_bytes(checkpoint.figure_png)
    written = import_seq(out / SEQ_FILE)  # TE/TR of the file as written (stretches included)
    te, tr = written.te, written.tr
    protocol = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "signature": result.signature,
        "pipeline": pipeline,
        "encoding": {
            "matrix": [int(m) for m in seq.matrix],
            "fov_m": [float(f) for f in seq.fov],
            "trajectory_type": layout.trajectory,
            "n_samples": int(seq.n_samples),
            "n_readouts": len(layout.readouts),
        },
        "trajectory": {
            "file": TRAJECTORY_FILE,
            "units": "cycles/FOV",
            "shape": list(trajectory.shape),
            "order": "ADC sample order of the .seq file",
        },
        "files": {
            "seq": SEQ_FILE,
            "report": REPORT_FILE,
            "head": HEAD_FILE if checkpoint.head is not None else None,
            "figure": FIGURE_FILE if checkpoint.figure_png is not None else None,
        },
        "te_ms": te * 1e3,
        "tr_ms": tr * 1e3,
        "duration_s": result.duration,
        "sar_proxy_rad2": result.sar_proxy,
        "mean_rf_power_hz2": result.mean_rf_power,
        "stretched_events": [str(s) for s in result.stretches],
        "hardware": result.limits.as_dict(),
        "head": {"config": meta.get("head_config"), "output": meta.get("head_output")},
        "recon": meta.get("recon"),
        "units": {
            "te_ms": "ms",
            "tr_ms": "ms",
            "duration_s": "s",
            "fov_m": "m",
            "trajectory": "cycles/FOV",
            "sar_proxy_rad2": "rad^2 (sum of squared flip angles)",
            "mean_rf_power_hz2": "Hz^2",
        },
        "provenance": {
            **meta.get("provenance", {}),
            "checkpoint": str(source) if source else None,
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    (out / PROTOCOL_FILE).write_text(json.dumps(protocol, indent=2, sort_keys=True) + "\n")
    log.info("bundle %s written to %s (pipeline %s, signature %s)", name, out, pipeline, result.signature)
    return protocol


def check_bundle(bundle: str | Path) -> dict[str, Any]:
    """Validate a bundle directory; returns its protocol or raises ``BundleError`` listing every problem."""
    bundle = Path(bundle)
    protocol = read_protocol(bundle)
    problems: list[str] = []
    if not NAME_PATTERN.match(str(protocol.get("name", ""))):
        problems.append(f"name {protocol.get('name')!r} is not a valid bundle name")
    files = protocol.get("files", {})
    seq_path = bundle / str(files.get("seq", SEQ_FILE))
    if not seq_path.is_file():
        problems.append(f"the Pulseq file {seq_path.name} is missing")
    else:
        try:
            signature = verified_signature(seq_path)
            if signature != protocol.get("signature"):
                problems.append(
                    f"signature in {PROTOCOL_FILE} ({protocol.get('signature')}) is not the "
                    f"file's ({signature})"
                )
        except SignatureError as exc:
            problems.append(str(exc))
        problems += _check_trajectory(bundle, protocol, seq_path)
    if files.get("head"):
        expected, head_path = (protocol.get("head") or {}).get("sha256"), bundle / files["head"]
        if expected and head_path.is_file() and file_sha256(head_path) != expected:
            problems.append(f"head weights {files['head']} do not match the SHA-256 in {PROTOCOL_FILE}")
        try:
            weights = load_file(str(bundle / files["head"]))
            bad = [k for k, v in weights.items() if not torch.isfinite(v).all()]
            if bad:
                problems.append(f"head weights {', '.join(bad[:5])} hold NaN or inf")
        except (OSError, SafetensorError) as exc:
            problems.append(f"head weights {files['head']} do not load as safetensors: {exc}")
    if protocol.get("pipeline") not in BUNDLE_PIPELINES:
        problems.append(
            f"pipeline {protocol.get('pipeline')!r} is not a bundle pipeline "
            f"(known: {', '.join(BUNDLE_PIPELINES)})"
        )
    if problems:
        listed = "; ".join(f"({i + 1}) {p}" for i, p in enumerate(problems))
        raise BundleError(f"bundle {bundle} is invalid: {listed}")
    return protocol


def _check_trajectory(bundle: Path, protocol: dict[str, Any], seq_path: Path) -> list[str]:
    """trajectory.npy against pypulseq's own k-space of the file (cycles/FOV)."""
    path = bundle / str(protocol.get("trajectory", {}).get("file", TRAJECTORY_FILE))
    try:
        trajectory = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return [f"trajectory {path.name} does not load: {exc}"]
    seq = pp.Sequence()
    try:
        seq.read(str(seq_path))
        k_adc = seq.calculate_kspace()[0].T
    except Exception as exc:  # pypulseq raises assorted errors on malformed files
        return [f"pypulseq cannot compute the k-space of {seq_path.name}: {type(exc).__name__}: {exc}"]
    fov = np.asarray(protocol.get("encoding", {}).get("fov_m", []), dtype=float)
    if trajectory.shape != k_adc.shape or fov.shape != (3,):
        return [
            f"trajectory has shape {trajectory.shape}, the file samples {k_adc.shape} (FOV {fov.tolist()})"
        ]
    worst = float(np.max(np.abs(k_adc * fov - trajectory), initial=0.0))
    if worst > TRAJECTORY_TOLERANCE:
        return [f"trajectory differs from the file's k-space by up to {worst:.4f} cycles/FOV"]
    return []


def deploy_bundle(bundle: str | Path, store: str | Path) -> Path:
    """Validate ``bundle`` and install it as ``STORE/bundles/<name>/<signature>``, replacing an older copy."""
    bundle, store = Path(bundle), Path(store)
    protocol = check_bundle(bundle)
    target = store / "bundles" / protocol["name"] / protocol["signature"]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".deploy-", dir=target.parent))
    try:
        copy = staging / "bundle"
        shutil.copytree(bundle, copy)
        deployed = {
            "deployed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
            "source": str(bundle.resolve()),
        }
        (copy / DEPLOYMENT_FILE).write_text(json.dumps(deployed, indent=2) + "\n")
        if target.exists():  # two renames: the store is never without this bundle for long
            target.rename(staging / "previous")
        copy.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "deployed bundle %s (signature %s, pipeline %s) to %s",
        protocol["name"],
        protocol["signature"],
        protocol["pipeline"],
        target,
    )
    return target
