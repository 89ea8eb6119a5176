"""Reconstructing gathered samples on any trajectory: the seed's adjoint or its iterative adjoint.

``ReconSettings.from_context`` reads, in this order of precedence, the client's JSON parameters
(declared in ``pipelines/learned/pipelines.py``, validated in ``ctx.params``), the bundle's
``protocol.json`` ``recon`` section, and the pipeline's defaults:

* ``method`` (``iterative_adjoint`` only): ``iterative`` (the seed's gradient iteration, default)
  or ``cg`` (conjugate gradients); the ``adjoint`` pipeline always computes ``E^H W s``;
* ``iterations`` (10) for the iterative methods; ``tikhonov`` (0) for ``cg``;
* ``density``: ``"none"`` (the seed's plain adjoint, what MRzero training uses) or ``"pipe"``
  (Pipe-Menon weights, which make a radial adjoint look like an image);
* ``device``: torch device of the reconstruction (``cpu``, ``cuda``; default the server's
  ``--device``/``MRZERO_DEVICE``, else cuda when present).

Each coil is reconstructed on its own (``mrzero.core.ops.reconstruct``); the stage yields one
``ReconBuffer`` of coil images ``[coil, 1, ny, nx]`` per image, ready for the Cartesian
pipeline's coil combination, scaling and output stages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mrzero.core.bundles import ITERATIVE_RECON_METHODS, DeployedBundle
from mrzero.core.device import DeviceError, select_device
from mrzero.core.ops.encoding import EncodingError
from mrzero.core.ops.reconstruct import reconstruct
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.learned.samples import ImageSamples
from mrzero.pipelines.stages.buffer import ReconBuffer

DENSITIES = ("none", "pipe")
SETTING_KEYS = ("method", "iterations", "tikhonov", "density", "device")
#: Torch devices a client or a bundle may name.
DEVICE_PATTERN = r"cpu|cuda(:\d{1,2})?"
_DEVICE = re.compile(rf"^({DEVICE_PATTERN})$")
#: Largest iteration count a client may ask for (bounds the work one scan can cause).
MAX_ITERATIONS = 500


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PipelineError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


@dataclass(frozen=True)
class ReconSettings:
    method: str = "adjoint"
    iterations: int = 10
    tikhonov: float = 0.0
    density: str = "none"
    device: str = "cpu"

    @classmethod
    def from_context(cls, ctx: Context, bundle: DeployedBundle | None, iterative: bool) -> ReconSettings:
        """Settings of the adjoint (``iterative=False``) or iterative-adjoint pipeline; see the module
        docstring. The adjoint pipeline always runs the adjoint, and refuses a bundle whose sequence
        was trained through an iterative reconstruction; the iterative one runs ``iterative`` (the
        seed's gradient steps, default) or ``cg``."""
        stored = bundle.protocol.get("recon") if bundle is not None else None
        given = {k: getattr(ctx.params, k, None) for k in SETTING_KEYS}  # None: not declared or not sent
        merged = {
            **(stored if isinstance(stored, dict) else {}),
            **{k: v for k, v in given.items() if v is not None},
        }
        trained = stored.get("method") if isinstance(stored, dict) else None
        if not iterative and trained in ITERATIVE_RECON_METHODS:
            raise PipelineError(
                f"bundle {bundle.name!r} was trained through the {trained} reconstruction, but the "
                f"{ctx.pipeline_name or 'adjoint'} pipeline computes the adjoint: its image would not be "
                "the trained one; scan it with iterative_adjoint"
            )
        method = "adjoint"
        if iterative:
            method = given["method"] or "iterative"
            if given["method"] is None and merged.get("method") in ITERATIVE_RECON_METHODS:
                method = merged["method"]
        density = merged.get("density") or "none"
        if density not in DENSITIES:
            raise PipelineError(f"density must be one of {', '.join(DENSITIES)}, got {density!r}")
        tikhonov = merged.get("tikhonov", 0.0)
        if isinstance(tikhonov, bool) or not isinstance(tikhonov, int | float) or not 0 <= tikhonov < 1e6:
            raise PipelineError(f"tikhonov must be a number in [0, 1e6), got {tikhonov!r}")
        requested = merged.get("device") or ctx.device
        if requested is not None and not _DEVICE.match(str(requested)):
            raise PipelineError(f"device must be cpu or cuda[:N], got {requested!r}")
        try:
            device = str(select_device(requested))
        except DeviceError as exc:
            raise PipelineError(str(exc)) from None
        return cls(
            method,
            _integer(merged.get("iterations", 10), "iterations", 1, MAX_ITERATIONS),
            float(tikhonov),
            density,
            device,
        )


def recon_stage(settings: ReconSettings):
    """A stage: ``ImageSamples`` in, ``ReconBuffer`` of coil images ``[coil, 1, ny, nx]`` out."""

    def run(items: Iterable[ImageSamples], ctx: Context) -> Iterator[ReconBuffer]:
        for group in items:
            signal, trajectory = group.stacked()
            nx, ny, nz = group.geometry.recon_matrix
            if nz != 1:
                raise PipelineError(
                    f"only 2D images are reconstructed here; the header's recon matrix is {nx} x {ny} x {nz}"
                )
            start = time.perf_counter()
            try:
                images = reconstruct(
                    signal.to(settings.device),
                    trajectory[:, :2].to(settings.device),
                    (ny, nx),
                    method=settings.method,
                    iterations=settings.iterations,
                    density=None if settings.density == "none" else settings.density,
                    tikhonov=settings.tikhonov,
                )
            except EncodingError as exc:
                raise PipelineError(f"image {group.key[1:]}: {exc}") from exc
            ctx.logger.info(
                "image %s: %s reconstruction of %d samples x %d coils in %.3f s",
                group.key[1:],
                settings.method,
                signal.shape[1],
                signal.shape[0],
                time.perf_counter() - start,
            )
            assert group.reference is not None
            yield ReconBuffer(images[:, None], group.reference, group.key[1:], group.encoding)

    return run
