"""A simulated scan end to end: build a sequence, simulate it on a phantom, write MRD, reconstruct.

What ``mrzero simulate`` runs. The raw data go to ``<out>/<name>.h5`` (MRD HDF5, see
``sequences/mrd.py``), the images to ``<out>/<name>.png`` (one tile per contrast/repetition,
magnitude, root-sum-of-squares over coils) and each step's wall time to ``ScanResult.timings``.
Images come from ``mrzero.core.ops.reconstruct`` on the sequence's own trajectory: the adjoint
(with Pipe-Menon density compensation off the Cartesian grid), the seed's iterative adjoint or
conjugate gradients.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mrzero.core.ops.coils import rss
from mrzero.core.ops.reconstruct import RECON_METHODS, reconstruct
from mrzero.sequences.adc_layout import ReadoutLayout
from mrzero.sequences.builders import BUILDERS
from mrzero.sequences.mrd import ScanInfo, add_noise, layout_of, simulated_to_mrd
from mrzero.sequences.phantom import Phantom
from mrzero.sequences.phantoms import (
    brain_phantom,
    coil_sensitivities,
    load_nifti_phantom,
    sparse_synthetic,
    water_fat_phantom,
)
from mrzero.sequences.sequence import Sequence

log = logging.getLogger(__name__)

PHANTOMS = ("brain", "sparse", "water_fat")


@dataclass
class ScanResult:
    """Everything a simulated scan produced; ``images`` is ``[image, ny, nx]`` magnitude."""

    sequence: Sequence
    phantom: Phantom
    signal: torch.Tensor
    images: torch.Tensor
    raw_path: Path
    png_path: Path
    timings: dict[str, float] = field(default_factory=dict)


def make_phantom(
    spec: str,
    size: tuple[int, int],
    slice: int | None = None,
    n_coils: int = 1,
    seed: int = 0,
    device: torch.device | str | None = None,
    diffusion: bool = False,
) -> Phantom:
    """``brain`` (embedded), ``sparse`` (seed 6.2 sample), ``water_fat`` (three discs with a fat
    species) or a NIfTI path, with ``n_coils`` > 1 loop coils. ``diffusion``: the brain gets its
    tissues' ADC map; other phantoms must carry one (a NIfTI ``adc`` volume)."""
    if spec == "brain":
        phantom = brain_phantom(size, slice=3 if slice is None else slice, device=device, diffusion=diffusion)
    elif spec == "sparse":
        block = (max(1, size[0] * 3 // 8), max(1, size[1] * 3 // 8))  # the seed's 12 of 32
        phantom = sparse_synthetic(size, block=block, seed=seed, device=device)
    elif spec == "water_fat":
        phantom = water_fat_phantom(size, device=device)
    elif spec.endswith((".nii", ".nii.gz")):
        phantom = load_nifti_phantom(spec, slice=slice, size=size, device=device)
    else:
        raise ValueError(f"phantom {spec!r} unknown: use {' or '.join(PHANTOMS)} or a .nii/.nii.gz file")
    if diffusion and phantom.diffusion is None:
        raise ValueError(
            f"phantom {spec!r} has no diffusion map: use brain or a NIfTI file with an adc volume"
        )
    if n_coils > 1:
        phantom.coil_sens = coil_sensitivities(size, n_coils, device=device)
        phantom.validate()
    return phantom


def build_sequence(
    name: str, matrix: int, fov: float, device: torch.device | str | None = None, **options: float | str
) -> Sequence:
    """``BUILDERS[name]`` with the options it accepts; ``ValueError`` naming any it does not."""
    if name not in BUILDERS:
        raise ValueError(f"sequence {name!r} unknown; choose one of {', '.join(BUILDERS)}")
    builder = BUILDERS[name]
    accepted = inspect.signature(builder).parameters
    wrong = sorted(k for k in options if k not in accepted)
    if wrong:
        raise ValueError(f"sequence {name!r} has no option(s) {', '.join(wrong)}")
    return builder(matrix=matrix, fov=fov, device=device, **options)


def reconstruct_images(
    seq: Sequence,
    signal: torch.Tensor,
    method: str = "adjoint",
    iterations: int = 10,
    layout: ReadoutLayout | None = None,
) -> torch.Tensor:
    """One magnitude image per (contrast, repetition) of ``layout``'s readouts (default: all of
    ``seq``'s), ``[image, ny, nx]``."""
    layout = layout or layout_of(seq)
    traj = seq.trajectory().detach()[:, :2].to(torch.float64)
    groups: dict[tuple[int, int], list[torch.Tensor]] = {}
    for r in layout.readouts:
        groups.setdefault((r.contrast, r.repetition), []).append(torch.arange(r.first, r.first + r.n))
    density = None if layout.trajectory == "cartesian" else "pipe"
    ny, nx = seq.matrix[1], seq.matrix[0]
    images = []
    for key in sorted(groups, key=lambda c: (c[1], c[0])):
        idx = torch.cat(groups[key]).to(signal.device)
        coil_images = reconstruct(
            signal.detach()[:, idx],
            traj[idx.cpu()].to(signal.device),
            (ny, nx),
            method=method,
            iterations=iterations,
            density=density,
        )
        images.append(rss(coil_images))
    return torch.stack(images)


def save_montage(images: torch.Tensor, path: Path) -> Path:
    """Tile ``[image, ny, nx]`` magnitudes into one grey-scale PNG (rows of 5), scaled to the maximum."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    data = images.detach().cpu().numpy()
    n, ny, nx = data.shape
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    tiled = np.zeros((rows * ny, cols * nx), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        tiled[r * ny : (r + 1) * ny, c * nx : (c + 1) * nx] = data[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, tiled, cmap="gray", vmin=0, vmax=float(tiled.max()) or 1.0, origin="upper")
    return path


def simulate_scan(
    sequence: str,
    matrix: int,
    out_dir: str | Path,
    phantom: str = "brain",
    engine: str = "fast",
    device: torch.device | str | None = None,
    n_coils: int = 1,
    slice: int | None = None,
    noise_std: float = 0.0,
    recon: str = "adjoint",
    iterations: int = 10,
    seed: int = 0,
    overwrite: bool = True,
    progress: bool = False,
    **options: float | str,
) -> ScanResult:
    """Build ``sequence`` (``BUILDERS`` name, ``options`` passed on), simulate, write MRD and PNG.

    ``progress`` shows the engine's progress bar (when the engine has one).
    """
    from mrzero.sequences.simulate import (  # here: the rest works without engines
        ENGINES,
        engine_options,
        simulate,
    )

    if recon not in RECON_METHODS:
        raise ValueError(f"reconstruction {recon!r} unknown; choose one of {', '.join(RECON_METHODS)}")
    timings = {}
    start = time.perf_counter()
    ph = make_phantom(phantom, (matrix, matrix), slice=slice, n_coils=n_coils, seed=seed, device=device)
    timings["phantom"] = time.perf_counter() - start
    start = time.perf_counter()
    seq = build_sequence(sequence, matrix, ph.fov[0], device=device, **options)
    timings["build"] = time.perf_counter() - start
    log.info("%s on %s", seq.summary(), ph.name)
    start = time.perf_counter()
    with torch.no_grad():
        shows_progress = progress and engine in ENGINES and "progress" in engine_options(engine)
        extra = {"progress": True} if shows_progress else {}
        signal = simulate(seq, ph, engine=engine, device=device, **extra)
    timings["simulate"] = time.perf_counter() - start
    if noise_std:
        signal = add_noise(signal, noise_std, seed)
    out = Path(out_dir)
    stem = sequence if phantom in PHANTOMS else f"{sequence}_{Path(phantom).name.split('.')[0]}"
    start = time.perf_counter()
    raw = out / f"{stem}_{matrix}.h5"
    simulated_to_mrd(
        raw,
        seq,
        signal,
        ScanInfo(protocol_name=f"mrzero simulate {sequence}"),
        noise_std=noise_std or None,
        seed=seed + 1,
        overwrite=overwrite,
    )
    timings["write_mrd"] = time.perf_counter() - start
    start = time.perf_counter()
    images = reconstruct_images(seq, signal, method=recon, iterations=iterations)
    png = save_montage(images, out / f"{stem}_{matrix}.png")
    timings["reconstruct"] = time.perf_counter() - start
    return ScanResult(seq, ph, signal, images, raw, png, timings)
