"""Writing a RoAR bundle: the U-Net's weights file beside the mGRE ``.seq`` of its echo times.

Offline authoring (``mrzero roar bundle``): it needs the sequence builders and the bundle writer of
``mrzero.sequences`` and the RoAR weights file of ``mrzero.pipelines``, so it lives at the command
layer, the one layer that may use both. What the bundle holds is described in
``pipelines/roar/bundle.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from mrzero.core.bundles import HEAD_FILE, PROTOCOL_FILE, BundleError, file_sha256
from mrzero.pipelines.roar.bundle import DEFAULT_NAME, OUTPUTS, REBUILD
from mrzero.pipelines.roar.weights_file import load_weights
from mrzero.sequences.builders.mgre import mgre
from mrzero.sequences.bundle import check_bundle, write_bundle
from mrzero.sequences.checkpoint import Checkpoint


def write_roar_bundle(
    weights: str | Path,
    out: str | Path,
    name: str = DEFAULT_NAME,
    matrix: int = 64,
    rebuild: tuple[str, ...] = REBUILD,
) -> dict[str, Any]:
    """Bundle the RoAR weights file with the mGRE ``.seq`` of its echo times (``matrix``^2, 200 mm FOV).

    ``out`` must not exist or be empty. Returns the protocol, after ``check_bundle`` accepted it.
    """
    weights, out = Path(weights), Path(out)
    model, te, info = load_weights(weights)
    te_s = [round(float(t), 6) for t in te]  # float32 metadata -> whole microseconds
    spacing = [round(b - a, 6) for a, b in zip(te_s, te_s[1:], strict=False)]
    if len(te_s) < 2 or len(set(spacing)) != 1:
        raise BundleError(
            f"{weights}: echo times {te_s} s are not equally spaced; the mGRE builder "
            "makes equally spaced echoes"
        )
    seq = mgre(matrix, n_echoes=len(te_s), te_first=te_s[0], echo_spacing=spacing[0])
    metadata = {
        "head_config": {"kind": "roar_unet", **model.config.to_dict(), "te_ms": [t * 1e3 for t in te_s]},
        "head_output": list(OUTPUTS),
        "provenance": {"training": info, "weights_source": str(weights), "rebuild": list(rebuild)},
    }
    protocol = write_bundle(Checkpoint(seq, metadata=metadata), out, name=name, pipeline="roar")
    shutil.copyfile(weights, out / HEAD_FILE)
    protocol["files"]["head"] = HEAD_FILE
    protocol["head"]["sha256"] = file_sha256(out / HEAD_FILE)
    (out / PROTOCOL_FILE).write_text(json.dumps(protocol, indent=2, sort_keys=True) + "\n")
    return check_bundle(out)
