"""Applying a bundle's reconstruction head (``core/heads``) to the reconstructed images.

All images of the scan (one per contrast/repetition, in counter order) are coil-combined
(single coil: the complex coil image, as in training; several: adaptive combination, which
keeps the phase a CNN head may use) and stacked ``[n_images, ny, nx]``; the head maps the stack
to ``[n_out, ny, nx]`` real maps, one MRD image each.

Where no input image holds signal (``mask_threshold``, default 0.05 of the 99th percentile of the
peak magnitude) the maps are 0: a head maps background noise to plausible-looking values.
Maps leave as float32 images (``{"output": "float"}``, the default) or, with
``{"output": "uint16"}``, as integers with ``RescaleSlope``/``RescaleIntercept`` meta so that
``value = pixel * slope + intercept``; either way the meta carries ``Quantity`` and ``Units``
(from the bundle's ``protocol.json`` ``head.output``, e.g. ``{"quantity": "T1", "units": "s"}``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import ismrmrd
import numpy as np
import torch
from safetensors import SafetensorError

from mrzero.core.bundles import DeployedBundle
from mrzero.core.heads import HeadError, load_head
from mrzero.core.ops.coils import adaptive_combine
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.images import as_numpy, make_image
from mrzero.pipelines.stages.buffer import ReconBuffer

MAP_OUTPUTS = ("float", "uint16")
#: Integer levels a uint16 map spans (12 bits, as DICOM viewers expect of quantitative maps).
MAP_LEVELS = 4095


def bundle_head(bundle: DeployedBundle | None, device: str) -> tuple[torch.nn.Module, dict[str, str]]:
    """The bundle's head in eval mode and its output description; ``PipelineError`` if unusable."""
    if bundle is None:
        raise PipelineError(
            "mrzero_head needs the scan's bundle: name it with the JSON parameter "
            "'bundle' or send the Pulseq signature in the header"
        )
    head_info = bundle.protocol.get("head") or {}
    config = head_info.get("config")
    if not bundle.protocol.get("files", {}).get("head") or not config:
        raise PipelineError(
            f"bundle {bundle.name} has no reconstruction head; use the adjoint or iterative_adjoint pipeline"
        )
    try:
        weights = bundle.head_weights()
        head = load_head(config, weights or {}, device)
    except (HeadError, SafetensorError, OSError) as exc:
        raise PipelineError(f"bundle {bundle.name}: the head weights fail to load: {exc}") from exc
    output = head_info.get("output") or {}
    return head, {
        "quantity": str(output.get("quantity", "head output")),
        "units": str(output.get("units", "a.u.")),
    }


def _combined(buf: ReconBuffer) -> torch.Tensor:
    """One complex image ``[ny, nx]`` from coil images ``[coil, 1, ny, nx]``."""
    coils = buf.data[:, 0]
    return coils[0] if coils.shape[0] == 1 else adaptive_combine(coils)


def signal_mask(stack: torch.Tensor, threshold: float) -> torch.Tensor:
    """``[ny, nx]`` 1 where some image of ``stack`` ``[n, ny, nx]`` holds signal, else 0.

    Signal: the peak magnitude over the images at least ``threshold`` times the 99th percentile of
    that peak (robust to a few bright pixels). Outside, the head's maps are background noise
    mapped to plausible-looking values, so they are set to 0 as scanners blank their maps.
    """
    peak = stack.abs().amax(0)
    if threshold <= 0:
        return torch.ones_like(peak)
    level = torch.quantile(peak.flatten().float(), 0.99)
    return (peak >= threshold * level).to(peak.dtype)


def head_stage(bundle: DeployedBundle | None, device: str):
    """A stage: coil-image ``ReconBuffer`` items in, the head's maps as MRD images out."""

    def run(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ismrmrd.Image]:
        head, described = bundle_head(bundle, device)
        output, series = ctx.params.output, ctx.params.series_index
        buffers = list(items)
        stack = torch.stack([_combined(b) for b in buffers])
        n_in = getattr(head, "n_in", stack.shape[0])
        if stack.shape[0] != n_in:
            raise PipelineError(
                f"bundle {bundle.name}'s head takes {n_in} images, the scan gave {stack.shape[0]}"
            )
        with torch.no_grad():
            maps = head(stack.to(device)).float() * signal_mask(stack, ctx.params.mask_threshold).to(device)
        reference = buffers[0].reference  # the first image (counter order) gives the geometry
        ctx.logger.info(
            "head of bundle %s: %d images -> %d map(s) of %s [%s]",
            bundle.name,
            stack.shape[0],
            maps.shape[0],
            described["quantity"],
            described["units"],
        )
        for index, values in enumerate(as_numpy(maps), start=1):
            yield _map_image(values.astype(np.float32), reference, ctx, series, index, output, described)

    return run


def _map_image(
    values: np.ndarray,
    reference: ismrmrd.AcquisitionHeader,
    ctx: Context,
    series: int,
    index: int,
    output: str,
    described: dict[str, str],
) -> ismrmrd.Image:
    slope, data = 1.0, values
    if output == "uint16":
        top = float(np.abs(values).max(initial=0.0))
        slope = top / MAP_LEVELS if top > 0 else 1.0
        data = np.clip(np.rint(values / slope), 0, MAP_LEVELS).astype(np.uint16)
    image = make_image(
        data[None],
        reference,
        ctx.header,
        series=series,
        index=index,
        role="Quantitative",
        history=("MRZERO", "MRZERO_HEAD"),
        description=f"{described['quantity']} map",
        comment=f"{described['quantity']} [{described['units']}]",
        window_meta=_window(values / slope),
    )
    meta = ismrmrd.Meta.deserialize(image.attribute_string)
    meta["Quantity"] = described["quantity"]
    meta["Units"] = described["units"]
    meta["RescaleSlope"] = repr(slope)
    meta["RescaleIntercept"] = "0.0"
    image.attribute_string = meta.serialize()
    return image


def _window(data: np.ndarray) -> tuple[float, float]:
    """Window over the 1st..99th percentile of the map's non-zero pixels (background excluded)."""
    values = data[data != 0]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    return (lo + hi) / 2, max(hi - lo, 1e-6)
