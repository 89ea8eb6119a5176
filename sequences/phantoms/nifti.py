"""Load a 2D phantom slice from a multi-parametric NIfTI file (nibabel).

Accepted layouts:

* one 4D/5D file whose last axis holds the quantities, named by a JSON sidecar (same stem,
  ``.json``) with ``"quantities": [...]`` and optional ``"units": [...]``, as the ASLDRO
  ground truth does (``t1, t2, t2_star, m0, seg_label, ...``); or by ``volumes={"t1": 2, ...}``;
* any of the quantity names below, case-insensitive: PD (``pd``, ``m0``, ``proton_density``),
  ``t1``, ``t2`` (required), ``t2_star``/``t2star`` or ``t2dash``/``t2_prime`` (optional),
  ``b0`` (Hz), ``b1`` (relative), ``adc``/``diffusion``/``md`` (apparent diffusion coefficient,
  ``m^2/s`` or ``mm^2/s`` from the sidecar's units; m^2/s when none are given). Times in ``s``
  or ``ms`` (from the sidecar's units; seconds when none are given).

The slice is axial (the third axis after reorienting to RAS), shown like the embedded brain:
rows anterior -> posterior, columns patient right -> left. Every problem raises
``NiftiPhantomError`` naming the file and what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from mrzero.sequences.phantom import Phantom, PhantomError
from mrzero.sequences.phantoms.arrays import phantom_from_arrays
from mrzero.sequences.phantoms.resample import resample_phantom

ALIASES = {
    "pd": ("pd", "m0", "proton_density", "rho"),
    "t1": ("t1",),
    "t2": ("t2",),
    "t2star": ("t2_star", "t2star", "t2s"),
    "t2dash": ("t2dash", "t2_prime", "t2prime"),
    "b0": ("b0", "df", "off_resonance"),
    "b1": ("b1", "b1_rel"),
    "diffusion": ("adc", "diffusion", "md"),
}
TIME_MAPS = ("t1", "t2", "t2star", "t2dash")


class NiftiPhantomError(PhantomError):
    """A NIfTI phantom file is unreadable, incomplete or inconsistent."""


def _sidecar(path: Path) -> dict:
    stem = path.name[:-7] if path.name.endswith(".nii.gz") else path.stem
    side = path.with_name(stem + ".json")
    if not side.exists():
        return {}
    try:
        return json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise NiftiPhantomError(f"{side}: sidecar JSON is unreadable: {err}") from err


def _volume_index(path: Path, names: list[str], volumes: dict[str, int] | None) -> dict[str, int]:
    if volumes is not None:
        return {k.lower(): int(v) for k, v in volumes.items()}
    found = {}
    lowered = [n.lower() for n in names]
    for key, aliases in ALIASES.items():
        for alias in aliases:
            if alias in lowered:
                found[key] = lowered.index(alias)
                break
    return found


def load_nifti_phantom(
    path: str | Path,
    slice: int | None = None,
    size: tuple[int, int] | None = None,
    volumes: dict[str, int] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """One axial slice (default: the middle one) of a multi-parametric NIfTI file as a ``Phantom``.

    ``size = (ny, nx)`` resamples it by area averaging (see ``resample.resample_phantom``);
    ``volumes`` maps quantity names to indices along the last axis when there is no sidecar.
    The FOV comes from the voxel size (metres).
    """
    path = Path(path)
    if not path.exists():
        raise NiftiPhantomError(f"{path}: no such file")
    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
    except Exception as err:  # nibabel raises many types for a corrupt file
        raise NiftiPhantomError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from err
    if image.ndim < 3:
        raise NiftiPhantomError(f"{path}: need a 3D volume per quantity, got shape {image.shape}")
    side = _sidecar(path)
    names = [str(n) for n in side.get("quantities", [])]
    units = [str(u) for u in side.get("units", [])]
    n_vol = int(np.prod(image.shape[3:])) if image.ndim > 3 else 1
    if names and len(names) != n_vol:
        raise NiftiPhantomError(f"{path}: sidecar names {len(names)} quantities, file holds {n_vol} volumes")
    index = _volume_index(path, names, volumes)
    missing = [k for k in ("pd", "t1", "t2") if k not in index]
    if missing:
        have = ", ".join(names) if names else "no quantity names (add a sidecar or pass volumes=)"
        raise NiftiPhantomError(f"{path}: missing volume(s) {', '.join(missing)}; file has: {have}")
    bad = [f"{k}={i}" for k, i in index.items() if not 0 <= i < n_vol]
    if bad:
        raise NiftiPhantomError(f"{path}: volume index out of range 0..{n_vol - 1}: {', '.join(bad)}")
    nz = image.shape[2]
    z = nz // 2 if slice is None else slice
    if not -nz <= z < nz:
        raise NiftiPhantomError(f"{path}: slice {z} out of range, the volume has {nz} axial slices")
    data = image.dataobj
    maps = {}
    for key, i in index.items():
        if key not in ALIASES:
            raise NiftiPhantomError(f"{path}: unknown quantity {key!r}; known: {', '.join(ALIASES)}")
        vol = np.asarray(data[:, :, z, ...], dtype=np.float64)
        vol = vol.reshape(image.shape[0], image.shape[1], n_vol)[..., i]
        if not np.isfinite(vol).all():
            raise NiftiPhantomError(f"{path}: volume {key} holds NaN or inf in slice {z}")
        unit = units[i].strip().lower() if i < len(units) else "s"
        if key in TIME_MAPS:
            if unit not in ("s", "ms", ""):
                raise NiftiPhantomError(f"{path}: {key} has unit {unit!r}; expected s or ms")
            vol = vol * (1e-3 if unit == "ms" else 1.0)
        if key == "diffusion":
            unit = units[i].strip().lower().replace("^", "") if i < len(units) else ""
            if unit not in ("m2/s", "mm2/s", ""):
                raise NiftiPhantomError(f"{path}: diffusion has unit {unit!r}; expected m^2/s or mm^2/s")
            vol = vol * (1e-6 if unit.startswith("mm") else 1.0)
        maps[key] = np.ascontiguousarray(vol.T[::-1, ::-1])  # [x, y] RAS -> rows A->P, cols R->L
    if "t2star" in maps and "t2dash" in maps:
        del maps["t2star"]
    zooms = image.header.get_zooms()
    extent = zip((image.shape[0], image.shape[1], 1), zooms[:3], strict=True)
    fov = tuple(float(n * d) * 1e-3 for n, d in extent)
    try:
        phantom = phantom_from_arrays(
            **maps, fov=fov, name=f"{path.name} slice {z % nz}", device=device, dtype=dtype
        )
    except PhantomError as err:
        raise NiftiPhantomError(f"{path}: {err}") from err
    return phantom if size is None else resample_phantom(phantom, size)
