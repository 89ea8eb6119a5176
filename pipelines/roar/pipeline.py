"""``roar``: inline R2*/S0 maps from Cartesian multi-echo GRE raw data with the RoAR U-Net.

The Cartesian pipeline's stages reconstruct one magnitude image per echo (the ``contrast``
counter) and slice: scan check (what cannot be reconstructed is refused), prewhitening,
oversampling removal, accumulation with calibration capture, parallel imaging (GRAPPA/SENSE),
partial Fourier (POCS by default), FFT, coil combination, crop; the same parameters as the
``cartesian`` pipeline select the methods (``docs/reconstruction.md``). EPI readouts are refused.
The echo images stream back at once (float, series ``series_index``); when the scan
ends, each volume (slices of one phase/repetition/set) is masked, divided by the mean
first-echo signal in the mask and passed slice by slice through the U-Net, which returns S0
(series + 1, in units of that mean first-echo signal) and R2* (series + 2, 1/s).

The brain mask (``pipelines/roar/mask.py``) thresholds the first-echo magnitude at
``mask_threshold`` (JSON parameter, default 0.15) times its 99th percentile, drops small
islands and fills holes. The network comes from a RoAR bundle
(``pipelines/roar/bundle.py``: the one the JSON parameter ``bundle`` names or the header's Pulseq
signature identifies in the server's bundle store, else ``roar_small`` from the store, else the
shipped one), or from the weights file a server-side caller passes to ``roar_pipeline``; never
from a path a client sends. Weights whose SHA-256 differs from their bundle's protocol, or that
do not load, stop the scan with an error naming the bundle. The scan's echo times (header
``TE``) must match those the network was trained with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ismrmrd
import numpy as np
import torch
from safetensors import SafetensorError

from mrzero.core.bundles import file_sha256
from mrzero.core.device import DeviceError, select_device
from mrzero.pipelines.base import Context, PipelineError, Stage, chain
from mrzero.pipelines.cartesian import CARTESIAN_IMAGE_STAGES
from mrzero.pipelines.cartesian_parameters import ReconstructionParameters
from mrzero.pipelines.images import make_image
from mrzero.pipelines.parameters import (
    CoilParameters,
    PrewhitenParameters,
    SeriesParameters,
    TriggerParameters,
    parameter,
)
from mrzero.pipelines.registry import register
from mrzero.pipelines.roar.bundle import RoarModelSource, scan_source
from mrzero.pipelines.roar.mask import DEFAULT_THRESHOLD, brain_mask
from mrzero.pipelines.roar.unet import RoarUNet
from mrzero.pipelines.roar.weights_file import load_weights
from mrzero.pipelines.stages.buffer import IMAGE_COUNTERS, ReconBuffer
from mrzero.pipelines.stages.noise import prewhiten_stage
from mrzero.pipelines.stages.scan_check import scan_check

_CONTRAST = IMAGE_COUNTERS.index("contrast")
_SLICE = IMAGE_COUNTERS.index("slice")


@lru_cache(maxsize=4)
def _cached_model(path: str, sha256: str, device: str) -> tuple[RoarUNet, torch.Tensor]:
    model, te, _ = load_weights(path, device)
    return model, te


def load_model(source: RoarModelSource, device: str) -> tuple[RoarUNet, torch.Tensor]:
    """The network of ``source`` on ``device`` (cached by content), after checking its SHA-256."""
    try:
        actual = file_sha256(source.weights)
    except OSError as exc:
        raise PipelineError(f"roar: the weights of {source.label} are missing or unreadable: {exc}") from exc
    if source.sha256 is not None and actual != source.sha256:
        raise PipelineError(
            f"roar: the weights of {source.label} ({source.weights.name}) do not match "
            f"the SHA-256 in its protocol (file {actual[:12]}..., protocol "
            f"{source.sha256[:12]}...); redeploy the bundle"
        )
    try:
        return _cached_model(str(source.weights), actual, device)
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:  # broken weights
        raise PipelineError(
            f"roar: the weights of {source.label} do not load: {type(exc).__name__}: {exc}"
        ) from exc


def check_echo_times(header: ismrmrd.xsd.ismrmrdHeader, te: torch.Tensor, ctx: Context) -> None:
    """Refuse a scan whose header TEs (ms) differ from the network's (s) by more than 1 %."""
    params = header.sequenceParameters
    scan = [float(t) * 1e-3 for t in (params.TE if params is not None and params.TE else [])]
    if not scan:
        ctx.logger.warning(
            "roar: the header has no TE; assuming the network's %s ms",
            [round(t * 1e3, 3) for t in te.tolist()],
        )
        return
    if len(scan) != te.numel() or any(abs(a - b) > 0.01 * b for a, b in zip(scan, te.tolist(), strict=True)):
        raise PipelineError(
            f"roar: the scan's echo times {[round(t * 1e3, 3) for t in scan]} ms differ from "
            f"the network's {[round(t * 1e3, 3) for t in te.tolist()]} ms"
        )


@torch.no_grad()
def estimate_maps(
    model: RoarUNet, echoes: torch.Tensor, mask: torch.Tensor, batch: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """S0 and R2* ``[z, y, x]`` from magnitudes ``[E, z, y, x]``, slice by slice, masked.

    The input is masked and divided by the mean first-echo signal in the mask over the whole
    volume, as in training; S0 comes back in units of that mean.
    """
    if not bool(mask.any()):
        raise PipelineError("roar: the mask is empty (no signal above the threshold)")
    device = next(model.parameters()).device
    scale = echoes[0][mask].mean()
    x = (echoes * mask / scale).transpose(0, 1)  # [z, E, y, x]
    out = torch.cat([model(x[i : i + batch].to(device)).cpu() for i in range(0, x.shape[0], batch)])
    return out[:, 0] * mask, out[:, 1] * mask


def _meta_image(
    data: np.ndarray,
    ref: ReconBuffer,
    ctx: Context,
    series: int,
    index: int,
    kind: str,
    units: str,
    window: tuple[float, float] | None = None,
) -> ismrmrd.Image:
    image = make_image(
        data.astype(np.float32),
        ref.reference,
        ctx.header,
        series=series,
        index=index,
        role="Quantitative" if kind != "echo" else "Image",
        history=("MRZERO", "ROAR", kind.upper()),
        description=f"roar {kind}",
        comment=f"RoAR {kind} ({units})",
        encoding=ref.encoding,
        window_meta=window,
    )
    meta = ismrmrd.Meta.deserialize(image.attribute_string)
    meta["Units"] = units
    meta["RoarMap"] = kind
    image.attribute_string = meta.serialize()
    return image


def _volume_maps(
    volume: dict[int, dict[int, ReconBuffer]], model: RoarUNet, n_echoes: int, threshold: float, ctx: Context
) -> Iterator[tuple[ReconBuffer, torch.Tensor, torch.Tensor]]:
    """(first-echo buffer, S0, R2*) per complete slice of one volume (``slice -> echo -> buffer``)."""
    complete = {s: e for s, e in sorted(volume.items()) if sorted(e) == list(range(n_echoes))}
    if len(complete) < len(volume):
        missing = sorted(set(volume) - set(complete))
        ctx.notify(f"roar: slices {missing} lack some of the {n_echoes} echoes; no maps for them")
        ctx.logger.warning("roar: incomplete slices %s skipped", missing)
    if not complete:
        return
    echoes = torch.stack(
        [torch.cat([e[c].data.abs().float() for e in complete.values()]) for c in range(n_echoes)]
    )  # [E, z, y, x]
    mask = torch.from_numpy(brain_mask(echoes[0].numpy(), threshold))
    s0, r2 = estimate_maps(model, echoes, mask)
    ctx.logger.info(
        "roar: %d slices, %d voxels in the mask, median R2* %.1f 1/s",
        len(complete),
        int(mask.sum()),
        float(r2[mask].median()),
    )
    z = 0
    for echo_buffers in complete.values():
        ref = echo_buffers[0]
        depth = ref.data.shape[0]
        yield ref, s0[z : z + depth], r2[z : z + depth]
        z += depth


def roar_stage_for(weights: Path | None = None) -> Stage:
    """The stage that turns combined echo images into echo, S0 and R2* image series, with the
    network in ``weights`` (a server-side choice) or, when None, the scan's RoAR bundle."""

    def stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ismrmrd.Image]:
        source = RoarModelSource(weights, None, str(weights)) if weights is not None else scan_source(ctx)
        try:
            device = str(select_device(ctx.device))
        except DeviceError as exc:
            raise PipelineError(f"roar: {exc}") from None
        model, te = load_model(source, device)
        ctx.logger.info("roar: network from %s on %s", source.label, device)
        check_echo_times(ctx.header, te, ctx)
        series, threshold = ctx.params.series_index, ctx.params.mask_threshold
        # volume key (encoding, phase, repetition, set) -> slice -> echo -> combined image
        volumes: dict[tuple, dict[int, dict[int, ReconBuffer]]] = {}
        for count, buf in enumerate(items, start=1):
            yield _meta_image(buf.data.abs().numpy(), buf, ctx, series, count, "echo", "a.u.")
            rest = tuple(v for i, v in enumerate(buf.key) if i not in (_CONTRAST, _SLICE))
            volume = volumes.setdefault((buf.encoding, *rest), {})
            volume.setdefault(buf.key[_SLICE], {})[buf.key[_CONTRAST]] = buf
        index = 0
        for volume in volumes.values():
            for ref, s0, r2 in _volume_maps(volume, model, te.numel(), float(threshold), ctx):
                index += 1
                s0_units, r2_units = "a.u. (mean first echo = 1)", "1/s"
                yield _meta_image(s0.numpy(), ref, ctx, series + 1, index, "s0", s0_units, (1.0, 2.0))
                yield _meta_image(r2.numpy(), ref, ctx, series + 2, index, "r2star", r2_units, (25.0, 50.0))

    return stage


def roar_pipeline(weights: Path | None = None) -> Stage:
    """The whole ``roar`` chain; ``weights``: a weights file chosen on the server side, or None
    for the scan's bundle (``pipelines/roar/bundle.py``)."""
    return chain(
        scan_check(epi_stage=False),
        prewhiten_stage,
        *CARTESIAN_IMAGE_STAGES,
        roar_stage_for(weights),
    )


@dataclass(frozen=True)
class RoarParameters(
    ReconstructionParameters, SeriesParameters, CoilParameters, TriggerParameters, PrewhitenParameters
):
    """The echo images' chain and the maps: echoes in ``series_index``, S0 and R2* in the next two."""

    mask_threshold: float = parameter(
        DEFAULT_THRESHOLD, "brain mask: first-echo magnitude above this x its 99th percentile", gt=0, lt=1
    )


roar = register(
    "roar",
    "RoAR: multi-echo GRE -> echo images, S0 and R2* maps (U-Net trained through S0 exp(-R2* t) F(t))",
    RoarParameters,
)(roar_pipeline())
