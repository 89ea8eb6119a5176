"""Offline reprocessing: twix ``.dat`` or MRD ``.h5`` raw files through a registered pipeline.

Each input file is reconstructed with exactly the pipeline the server runs inline (looked up in
``mrzero.pipelines.registry``) and its images are written to ``OUTDIR/<name>/``: the MRD images
(``<name>_images.h5``), NIfTI volumes (``<name>_s<series>.nii.gz``), PNG previews and, on request,
DICOM files (``dicom/<name>_s<series>_<n>.dcm``). The
files of one input are first written to a hidden temporary folder that is renamed when all of
them are complete, so a failure leaves nothing behind. A folder input processes every
``.dat``/``.h5`` file below it, continues past files that fail, and returns a
:class:`Summary` of what succeeded and what failed and why.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ismrmrd
from tqdm import tqdm

from mrzero.pipelines import offline, registry
from mrzero.pipelines.base import Context
from mrzero.pipelines.dicom import write_dicom
from mrzero.pipelines.image_files import write_images_h5, write_pngs
from mrzero.pipelines.nifti import write_nifti
from mrzero.pipelines.twix import load_twix

log = logging.getLogger(__name__)

#: Suffixes of the raw files a folder run picks up.
RAW_SUFFIXES = (".dat", ".h5")


@dataclass
class Outcome:
    """What happened to one input file."""

    source: Path
    output: Path | None = None
    images: int = 0
    raw_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Summary:
    """The outcomes of a reprocessing run, in input order."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def succeeded(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def report(self) -> str:
        """A human-readable summary: counts, then one line per file."""
        lines = [
            f"{len(self.succeeded)} of {len(self.outcomes)} file(s) reconstructed, {len(self.failed)} failed"
        ]
        for o in self.outcomes:
            if o.ok:
                lines.append(f"  ok      {o.source}: {o.images} image(s) -> {o.output} ({o.seconds:.1f} s)")
            else:
                lines.append(f"  FAILED  {o.source}: {o.error}")
        return "\n".join(lines)


def find_inputs(path: str | os.PathLike[str]) -> list[Path]:
    """``path`` itself if it is a file, else every raw file below the folder, sorted."""
    path = Path(path)
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in RAW_SUFFIXES and not p.name.startswith(".")
        )
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return [path]


def _raw_stream(path: Path) -> tuple[ismrmrd.xsd.ismrmrdHeader, Iterator[ismrmrd.Acquisition], int]:
    """Header, acquisitions and raw size of a twix or MRD file (chosen by content, not name)."""
    with open(path, "rb") as f:
        is_hdf5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
    if is_hdf5:
        return offline.read_header(path), offline.read_acquisitions(path), path.stat().st_size
    measurement = load_twix(path)
    return measurement.header, measurement.acquisitions(), measurement.raw_bytes


def reconstruct_images(
    path: str | os.PathLike[str],
    pipeline: str = "",
    parameters: dict[str, Any] | None = None,
    bundle_store: Path | None = None,
) -> tuple[list[ismrmrd.Image], int]:
    """The images the registered ``pipeline`` makes from a raw file, and its raw size in bytes.

    ``bundle_store`` is where MRzero pipelines find the scan's bundle, as the server's
    ``--bundle-store``.
    """
    spec = registry.get(pipeline)
    header, acquisitions, raw_bytes = _raw_stream(Path(path))
    ctx = Context(
        header=header,
        parameters=dict(parameters or {}),
        pipeline_name=spec.name,
        logger=logging.getLogger(f"pipelines.{spec.name}"),
        bundle_store=bundle_store,
    )
    images = list(spec.run(acquisitions, ctx))
    if not images:
        raise ValueError(f"pipeline {spec.name!r} made no images")
    return images, raw_bytes


def reconstruct_file(
    path: Path,
    out_dir: Path,
    pipeline: str = "",
    parameters: dict[str, Any] | None = None,
    force: bool = False,
    bundle_store: Path | None = None,
    dicom: bool = False,
) -> Outcome:
    """Reconstruct one file into ``out_dir`` (MRD images, NIfTI, PNG and, with ``dicom``, DICOM in
    ``out_dir/dicom``); errors go into the outcome."""
    outcome = Outcome(path)
    start = time.perf_counter()
    staging: Path | None = None
    try:
        if out_dir.exists() and not force:
            raise FileExistsError(f"output folder {out_dir} exists (use --force to replace it)")
        images, outcome.raw_bytes = reconstruct_images(path, pipeline, parameters, bundle_store)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
        stem = out_dir.name
        write_images_h5(images, staging / f"{stem}_images.h5")
        write_nifti(images, staging, stem)
        write_pngs(images, staging / "png", stem)
        if dicom:
            write_dicom(images, staging / "dicom", stem, _raw_stream(path)[0], registry.get(pipeline).name)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        staging = None
        outcome.output, outcome.images = out_dir, len(images)
    except Exception as exc:  # one bad file must not stop a folder of thousands
        message, prefix = str(exc), f"{path}: "  # the report names the file once
        outcome.error = (
            message[len(prefix) :] if message.startswith(prefix) else f"{type(exc).__name__}: {message}"
        )
        log.error("%s: %s", path, outcome.error)
        log.debug("%s: traceback", path, exc_info=True)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        outcome.seconds = time.perf_counter() - start
    return outcome


def _output_names(files: list[Path], root: Path) -> list[Path]:
    """Output folder (relative) per input: the relative path without suffix, unique in the run."""
    names = [(f.relative_to(root) if root.is_dir() else Path(f.name)).with_suffix("") for f in files]
    duplicated = {n for n in names if names.count(n) > 1}
    return [
        n.with_name(f"{n.name}_{f.suffix.lstrip('.')}") if n in duplicated else n
        for n, f in zip(names, files, strict=True)
    ]


def reprocess(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    pipeline: str = "",
    parameters: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
    bundle_store: Path | None = None,
    dicom: bool = False,
) -> Summary:
    """Reconstruct a raw file, or every raw file below a folder, into ``out_dir`` (``dicom``: DICOM too)."""
    source, out_dir = Path(source), Path(out_dir)
    registry.get(pipeline)  # an unknown pipeline fails before any file is touched
    inside_output = out_dir.resolve()  # a rerun must not take earlier outputs for inputs
    files = [f for f in find_inputs(source) if inside_output not in f.resolve().parents]
    if not files:
        raise FileNotFoundError(f"{source}: no {' or '.join(RAW_SUFFIXES)} files below this folder")
    summary = Summary()
    bar = tqdm(
        list(zip(files, _output_names(files, source), strict=True)),
        desc="reprocessing",
        unit="file",
        disable=not progress or len(files) < 2,
    )
    for path, name in bar:
        bar.set_postfix_str(path.name)
        outcome = reconstruct_file(path, out_dir / name, pipeline, parameters, force, bundle_store, dicom)
        summary.outcomes.append(outcome)
        log.info("%s: %s", path, "ok" if outcome.ok else f"failed: {outcome.error}")
    return summary
