"""Which deployed bundle a scan belongs to: by name (JSON parameters) or by Pulseq signature (header).

The scanner's Pulseq interpreter (and the digital twin, ``sequences/digital_twin.py``) writes the MD5
signature of the ``.seq`` file it ran into the MRD header as the user parameter string
``PulseqSignature``; FIRE users may instead name the bundle with the JSON parameter
``{"bundle": "NAME"}``. A name wins over a signature; naming a bundle (or sending a signature)
that the store does not hold is an error, because reconstructing such a scan with a guessed
trajectory would return a wrong image without saying so.
"""

from __future__ import annotations

from mrzero.core.bundles import BundleError, DeployedBundle, header_signature, lookup_bundle
from mrzero.pipelines.base import Context, PipelineError


def scan_bundle(ctx: Context) -> DeployedBundle | None:
    """The bundle the scan names (JSON ``bundle``) or signs (header), or None if it does neither."""
    name = ctx.params.bundle
    signature = None if name else header_signature(ctx.header)
    if not name and not signature:
        return None
    try:
        bundle = lookup_bundle(ctx.bundle_store, name=name or None, signature=signature)
    except BundleError as exc:
        raise PipelineError(str(exc)) from exc
    ctx.logger.info(
        "scan uses bundle %s (signature %s, deployed %s)", bundle.name, bundle.signature, bundle.deployed_at
    )
    return bundle
