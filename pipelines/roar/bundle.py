"""The RoAR model as a deployable bundle, and which bundle the ``roar`` pipeline uses for a scan.

A RoAR bundle (written by ``mrzero roar bundle``, ``mrzero/roar_bundle.py``) is an ordinary
bundle (``sequences/bundle.py``, checked by ``mrzero bundle check`` and installed by
``mrzero deploy``) whose Pulseq file is the 2D multi-echo GRE the network was trained for
(``sequences/builders/mgre.py`` at the network's echo times) and whose head is the U-Net's
weights file exactly as training wrote it (safetensors with the U-Net config, echo times and
training config in its metadata). ``protocol.json`` says ``pipeline: roar`` and holds, under
``head``, the U-Net config, the echo times (ms), the outputs with units and the weights' SHA-256,
and under ``provenance`` the training config, its validation figures and the rebuild commands.

The small model ships in ``pipelines/roar/bundles/roar_small``. For a scan the pipeline takes
the bundle named by the JSON parameter ``bundle``, else the deployed bundle whose Pulseq
signature the header carries, else the deployed ``roar_small``, else the shipped one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrzero.core.bundles import PROTOCOL_FILE, BundleError, find_bundle, header_signature, read_protocol
from mrzero.pipelines.base import Context, PipelineError

#: Name of the bundle the pipeline uses when a scan names none.
DEFAULT_NAME = "roar_small"
#: The small model shipped with the project (rebuild: ``REBUILD`` below, docs/roar.md).
SHIPPED_BUNDLE = Path(__file__).with_name("bundles") / DEFAULT_NAME
#: Commands that rebuild the shipped bundle from scratch (stored in its provenance).
REBUILD = (
    "OMP_NUM_THREADS=1 mrzero roar train pipelines/roar/roar_small.yaml",
    "rm -r pipelines/roar/bundles/roar_small",
    "mrzero roar bundle runs/roar_small/model.safetensors -o pipelines/roar/bundles/roar_small",
)
#: What the network returns, as written into the protocol.
OUTPUTS = ({"quantity": "S0", "units": "a.u. (mean first echo = 1)"}, {"quantity": "R2*", "units": "1/s"})


@dataclass(frozen=True)
class RoarModelSource:
    """Where a scan's network comes from: the weights file, its expected SHA-256 and a label for logs."""

    weights: Path
    sha256: str | None
    label: str


def _source(path: Path, protocol: dict[str, Any], label: str) -> RoarModelSource:
    if protocol.get("pipeline") != "roar":
        raise PipelineError(f"{label} is a bundle for the {protocol.get('pipeline')!r} pipeline, not roar")
    head = (protocol.get("files") or {}).get("head")
    if not head:
        raise PipelineError(f"{label} has no network weights (no head file in its {PROTOCOL_FILE})")
    return RoarModelSource(path / head, (protocol.get("head") or {}).get("sha256"), label)


def shipped_source() -> RoarModelSource:
    """The shipped ``roar_small`` bundle's weights."""
    try:
        protocol = read_protocol(SHIPPED_BUNDLE)
    except BundleError as exc:
        raise PipelineError(f"roar: the shipped bundle is unreadable: {exc}") from exc
    return _source(SHIPPED_BUNDLE, protocol, f"shipped bundle {DEFAULT_NAME}")


def scan_source(ctx: Context) -> RoarModelSource:
    """The network for this scan: JSON ``bundle`` name, else header signature, else ``roar_small``
    deployed in the store, else the shipped bundle (see the module docstring)."""
    name = ctx.params.bundle
    signature = None if name else header_signature(ctx.header)
    store = ctx.bundle_store
    try:
        deployed = None
        if store is not None and name:
            deployed = find_bundle(store, name=name)
        elif store is not None:
            deployed = (find_bundle(store, signature=signature) if signature else None) or find_bundle(
                store, name=DEFAULT_NAME
            )
    except BundleError as exc:
        raise PipelineError(f"roar: {exc}") from exc
    if deployed is not None:
        return _source(
            deployed.path, deployed.protocol, f"bundle {deployed.name} (deployed {deployed.deployed_at})"
        )
    if name and name != DEFAULT_NAME:
        where = "the bundle store" if store is not None else "this server (it has no bundle store)"
        raise PipelineError(
            f"roar: no bundle named {name!r} is deployed in {where}; deploy it with "
            "'mrzero deploy BUNDLE --store STORE'"
        )
    return shipped_source()
