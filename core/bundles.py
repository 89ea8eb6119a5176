"""The read side of bundles: what the server (and every layer above core) needs to find and load one.

A bundle is a directory written by ``mrzero.sequences.bundle.write_bundle`` (its layout is
documented there); a *store* holds deployed copies as ``STORE/bundles/<name>/<signature>/``.
This module owns the format's constants, reads ``protocol.json`` through the project's typed
loader (``core/config.py``: the ``Protocol`` schema below; unknown or mistyped keys are refused
with the file and the dotted key), finds a
deployed bundle by name or Pulseq signature (``find_bundle``, or ``lookup_bundle`` with the
errors a scan needs) and loads its trajectory and head weights without unpickling anything.

Names and signatures arrive over the network (FIRE JSON parameters, MRD headers), so they are
checked against strict patterns before they touch a path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ismrmrd
import numpy as np
import torch
from safetensors.torch import load_file

from mrzero.core.config import ConfigError, load, setting

log = logging.getLogger(__name__)

FORMAT = "mrzero-bundle"
VERSION = 1
SEQ_FILE, REPORT_FILE, PROTOCOL_FILE = "sequence.seq", "sequence.testreport.txt", "protocol.json"
TRAJECTORY_FILE, HEAD_FILE, FIGURE_FILE = "trajectory.npy", "head.safetensors", "training.png"
DEPLOYMENT_FILE = "deployment.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SIGNATURE_PATTERN = re.compile(r"^[0-9a-f]{32}$")
#: Largest difference (cycles/FOV) allowed between trajectory.npy and the file's k-space.
TRAJECTORY_TOLERANCE = 1e-3
#: The reconstruction pipelines a bundle may name (``mrzero.pipelines.registry`` registers each of them;
#: a test keeps the two in step).
BUNDLE_PIPELINES = ("cartesian", "adjoint", "iterative_adjoint", "mrzero_head", "roar")
#: ``protocol.json`` ``recon.method`` values that only the ``iterative_adjoint`` pipeline computes:
#: a sequence trained through them gives its trained images nowhere else.
ITERATIVE_RECON_METHODS = ("iterative", "cg")
#: MRD header user parameter string that carries the Pulseq signature of the file a scan ran.
SIGNATURE_PARAMETER = "PulseqSignature"


class BundleError(ValueError):
    """A bundle (or a lookup) is invalid; the message lists every problem found."""


@dataclass(frozen=True)
class ProtocolEncoding:
    matrix: list[int]
    fov_m: list[float]
    trajectory_type: str
    n_samples: int = setting(help="ADC samples of the whole scan", ge=0)
    n_readouts: int = setting(help="readouts (ADC events)", ge=0)


@dataclass(frozen=True)
class ProtocolTrajectory:
    file: str = setting(help="k-space of every ADC sample, [n_samples, 3] float32")
    units: str = "cycles/FOV"
    shape: list[int] = field(default_factory=list)
    order: str = ""


@dataclass(frozen=True)
class ProtocolFiles:
    seq: str
    report: str | None = None
    head: str | None = None
    figure: str | None = None


@dataclass(frozen=True)
class ProtocolHead:
    config: dict[str, Any] | None = None  # the head's architecture (core/heads)
    output: Any = None  # what it returns: {"quantity", "units"} or a list of them
    sha256: str | None = None


@dataclass(frozen=True)
class Protocol:
    """The schema of ``protocol.json`` (written by ``mrzero.sequences.bundle.write_bundle``)."""

    format: Literal["mrzero-bundle"]
    version: Literal[1]
    name: str = setting(help="bundle name", pattern=NAME_PATTERN.pattern)
    signature: str = setting(help="MD5 Pulseq signature of sequence.seq", pattern=SIGNATURE_PATTERN.pattern)
    pipeline: str = setting(help="reconstruction pipeline (one of BUNDLE_PIPELINES; check_bundle checks)")
    encoding: ProtocolEncoding = setting(help="matrix, FOV and sampling of the scan")
    trajectory: ProtocolTrajectory = setting(help="the k-space trajectory file")
    files: ProtocolFiles = setting(help="the bundle's files")
    te_ms: float | None = None
    tr_ms: float | None = None
    duration_s: float | None = None
    sar_proxy_rad2: float | None = None
    mean_rf_power_hz2: float | None = None
    stretched_events: list[str] = field(default_factory=list)
    hardware: dict[str, Any] = field(default_factory=dict)
    head: ProtocolHead = field(default_factory=ProtocolHead)
    recon: dict[str, Any] | None = None  # reconstruction settings (pipelines/learned/recon.py)
    units: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def read_protocol(bundle: Path) -> dict[str, Any]:
    """``bundle``'s ``protocol.json``, checked against ``Protocol``; ``BundleError`` naming the file
    (and the dotted key) otherwise. The plain data are returned, as written."""
    path = bundle / PROTOCOL_FILE
    if not path.is_file():
        raise BundleError(f"{bundle}: no {PROTOCOL_FILE}; not a bundle directory")
    try:
        protocol = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    kind = (protocol.get("format"), protocol.get("version")) if isinstance(protocol, dict) else None
    if kind != (FORMAT, VERSION):
        raise BundleError(f"{path}: not an {FORMAT} v{VERSION} protocol")
    try:
        load(Protocol, protocol, kind="protocol key")
    except ConfigError as exc:
        raise BundleError(f"{path}: {exc}") from None
    return protocol


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the checksum ``head.sha256`` holds)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class DeployedBundle:
    """A bundle in a store, as the server uses it."""

    path: Path
    protocol: dict[str, Any]
    deployed_at: str

    @property
    def name(self) -> str:
        return self.protocol["name"]

    @property
    def signature(self) -> str:
        return self.protocol["signature"]

    @property
    def pipeline(self) -> str:
        return self.protocol["pipeline"]

    def trajectory(self) -> np.ndarray:
        """k-space of every ADC sample, ``[n_samples, 3]`` float32, cycles/FOV."""
        return np.load(self.path / self.protocol["trajectory"]["file"], allow_pickle=False)

    def head_weights(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor] | None:
        """The reconstruction head's state dict (safetensors, no unpickling), or None."""
        head = self.protocol["files"].get("head")
        return None if not head else load_file(str(self.path / head), device=str(device))


def find_bundle(
    store: str | Path, name: str | None = None, signature: str | None = None
) -> DeployedBundle | None:
    """The deployed bundle with this name and/or Pulseq signature (latest deployment wins), or None."""
    if name is None and signature is None:
        raise BundleError("find_bundle needs a name or a signature")
    if name is not None and not NAME_PATTERN.match(name):
        raise BundleError(f"invalid bundle name {name!r}: letters, digits, '.', '_' and '-' only")
    if signature is not None:
        signature = signature.lower()
        if not SIGNATURE_PATTERN.match(signature):
            raise BundleError(f"invalid Pulseq signature {signature!r}: expected 32 hexadecimal digits")
    root = Path(store) / "bundles"
    found: list[DeployedBundle] = []
    for path in root.glob(f"{name or '*'}/{signature or '*'}"):
        try:
            protocol = read_protocol(path)
            deployed_at = json.loads((path / DEPLOYMENT_FILE).read_text())["deployed_at"]
        except (BundleError, OSError, KeyError, json.JSONDecodeError) as exc:
            log.warning("skipping broken deployed bundle %s: %s", path, exc)
            continue
        found.append(DeployedBundle(path, protocol, deployed_at))
    return max(found, key=lambda b: b.deployed_at, default=None)


def lookup_bundle(store: str | Path | None, name: str | None, signature: str | None) -> DeployedBundle:
    """The deployed bundle a scan asks for by ``name`` or ``signature``; ``BundleError`` saying why not.

    A name wins over a signature. Naming a bundle (or sending a signature) that the store does not
    hold is an error: reconstructing such a scan with a guessed trajectory or head would return a
    wrong image without saying so. The store's path stays out of the message (it goes to clients).
    """
    asked = f"bundle {name!r}" if name else f"Pulseq signature {signature}"
    if store is None:
        raise BundleError(
            f"the scan asks for {asked}, but this server has no bundle store (start it with --bundle-store)"
        )
    bundle = find_bundle(store, name=name or None, signature=None if name else signature)
    if bundle is None:
        raise BundleError(
            f"no deployed bundle matches the scan's {asked} in the server's bundle store; "
            "deploy it with 'mrzero deploy BUNDLE --store STORE'"
        )
    return bundle


def header_signature(header: ismrmrd.xsd.ismrmrdHeader) -> str | None:
    """The ``PulseqSignature`` user parameter string of ``header``, or None."""
    params = header.userParameters
    for entry in params.userParameterString if params is not None else []:
        if entry.name == SIGNATURE_PARAMETER and entry.value:
            return str(entry.value).strip()
    return None
