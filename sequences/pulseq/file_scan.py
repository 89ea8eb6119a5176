"""A simulated scan of any ``.seq`` file: import, simulate on a phantom, write MRD raw data and images.

What ``mrzero simulate FILE.seq`` runs. The phantom is resampled to the file's nominal matrix
(or ``matrix``) and given the file's FOV (in-plane) and slice thickness, so that the object fills
the field of view as on a scanner. The raw data carry the file's own labels (LIN, ECO, REP, ...)
as acquisition counters (``sequences/digital_twin.py``); images come from the imaging readouts
(navigators left out) on the file's trajectory, as for the builders (``sequences/builder_scan.py``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from mrzero.sequences.adc_layout import ReadoutLayout, derive_layout
from mrzero.sequences.builder_scan import ScanResult, make_phantom, reconstruct_images, save_montage
from mrzero.sequences.digital_twin import adc_layout
from mrzero.sequences.mrd import ScanInfo, add_noise, simulated_to_mrd
from mrzero.sequences.pulseq.file_check import ImportLimits
from mrzero.sequences.pulseq.import_ import ImportedSequence, import_seq

log = logging.getLogger(__name__)

#: Largest phantom matrix a file's nominal matrix is simulated on unless ``matrix`` says otherwise.
MAX_AUTO_MATRIX = 256


def file_model(
    path: str | Path,
    limits: ImportLimits | None = None,
    field_strength: float | None = None,
    fov: tuple[float, float, float] | None = None,
    split_gradients: bool = False,
) -> ImportedSequence:
    """The imported file with its readout layout from the file's labels (``fov`` in m for files
    that define none; ``split_gradients`` for diffusion, see ``import_seq``)."""
    imported = import_seq(
        path, fov=fov, limits=limits, field_strength=field_strength, split_gradients=split_gradients
    )
    seq = imported.sequence
    derived = derive_layout(seq.n_rep, seq.adc, seq.trajectory(), seq.matrix[1])
    seq.readouts = adc_layout(path, seq, derived.trajectory)
    seq.validate()
    return imported


def _imaging_layout(imported: ImportedSequence) -> ReadoutLayout:
    """The readouts of imaging samples only (navigators dropped)."""
    layout = imported.sequence.readouts
    assert layout is not None
    imaging = imported.imaging
    kept = tuple(
        r for r in layout.readouts if imaging is None or bool(imaging[r.first : r.first + r.n].all())
    )
    return ReadoutLayout(kept, layout.trajectory)


def simulate_file(
    path: str | Path,
    out_dir: str | Path,
    phantom: str = "brain",
    matrix: int | None = None,
    engine: str = "fast",
    device: torch.device | str | None = None,
    n_coils: int = 1,
    slice: int | None = None,
    noise_std: float = 0.0,
    recon: str = "adjoint",
    iterations: int = 10,
    seed: int = 0,
    limits: ImportLimits | None = None,
    field_strength: float | None = None,
    progress: bool = False,
    fov: tuple[float, float, float] | None = None,
    diffusion: bool = False,
) -> ScanResult:
    """Import ``path``, simulate it on ``phantom``, write ``<out>/<stem>.h5`` and ``<out>/<stem>.png``.

    ``diffusion``: the phantom diffuses (the brain gets its tissues' ADCs) and the file is
    imported with its gradients split at their corners, so that its b-values are reproduced.
    Without it, a phantom that diffuses anyway (a NIfTI ``adc`` volume) is refused by the engine.
    """
    from mrzero.sequences.simulate import ENGINES, engine_options, simulate  # the rest works without

    timings = {}
    start = time.perf_counter()
    imported = file_model(
        path, limits=limits, field_strength=field_strength, fov=fov, split_gradients=diffusion
    )
    seq = imported.sequence
    if seq.n_samples == 0:
        raise ValueError(f"{path}: the file acquires no ADC samples: no raw data or image to simulate")
    timings["import"] = time.perf_counter() - start
    nx, ny = (
        (matrix, matrix)
        if matrix
        else (min(seq.matrix[0], MAX_AUTO_MATRIX), min(seq.matrix[1], MAX_AUTO_MATRIX))
    )
    start = time.perf_counter()
    ph = make_phantom(
        phantom,
        (max(ny, 2), max(nx, 2)),
        slice=slice,
        n_coils=n_coils,
        seed=seed,
        device=device,
        diffusion=diffusion,
    )
    ph = replace(ph, fov=seq.fov)
    timings["phantom"] = time.perf_counter() - start
    log.info("%s on %s", seq.summary(), ph.name)
    start = time.perf_counter()
    with torch.no_grad():
        extra = (
            {"progress": True}
            if progress and engine in ENGINES and "progress" in engine_options(engine)
            else {}
        )
        signal = simulate(seq, ph, engine=engine, device=device, **extra)
    timings["simulate"] = time.perf_counter() - start
    if noise_std:
        signal = add_noise(signal, noise_std, seed)
    out = Path(out_dir)
    stem = Path(path).stem
    start = time.perf_counter()
    raw = out / f"{stem}.h5"
    info = ScanInfo(
        field_strength_t=imported.field_strength, protocol_name=f"mrzero simulate {Path(path).name}"
    )
    simulated_to_mrd(raw, seq, signal, info, noise_std=noise_std or None, seed=seed + 1, overwrite=True)
    timings["write_mrd"] = time.perf_counter() - start
    start = time.perf_counter()
    images = reconstruct_images(
        seq, signal, method=recon, iterations=iterations, layout=_imaging_layout(imported)
    )
    png = save_montage(images, out / f"{stem}.png")
    timings["reconstruct"] = time.perf_counter() - start
    return ScanResult(seq, ph, signal, images, raw, png, timings)
