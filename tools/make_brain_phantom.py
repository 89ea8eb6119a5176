"""Build ``data/brain2d.npz``, the embedded 2D brain phantom, from the ICBM-based ASLDRO phantom.

Run once by a developer (the result is committed; nothing reads the source at run time)::

    .venv/bin/python tools/make_brain_phantom.py ../shared/data/phantom/hrgt_icbm_2009a_nls_3t.nii.gz

Source: ``hrgt_icbm_2009a_nls_3t.nii.gz`` from the ``asldro`` 2.2.0 wheel (MIT, LICENSE.asldro
beside the output): 197x233x189 voxels of 1 mm, RAS axes, volume 6 ``seg_label`` with
1 grey matter, 2 white matter, 3 CSF.

What the file holds (axial slices, image rows anterior -> posterior, columns patient right ->
left as on a scanner console, a 200 mm x 200 mm field of view at 1 mm):

``counts``  uint8 ``[slice, tissue, 200, 200]``: how many of the ``thickness_mm`` 1 mm source
            slices that make up each output slice carry label GM/WM/CSF. Fractions are
            ``counts / thickness_mm``; in-plane resampling to any matrix happens at load time
            (``brain.py``), so partial volume stays exact.
``b0``      float16 ``[slice, 200, 200]``, Hz: a synthetic air-tissue field (see ``b0_field``).
``b0_dz``   float16 ``[slice, 200, 200]``, Hz/m: its derivative along the slice direction,
            for models of through-slice dephasing (RoAR).
``b1``      float16 ``[slice, 200, 200]``: a relative transmit field (see ``b1_field``).
``z_mm``    float32 ``[slice]``: slice centres in MNI/RAS millimetres.
``thickness_mm``, ``fov_mm``: scalars.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

log = logging.getLogger(__name__)

#: Output grid: 200 x 200 voxels of 1 mm, centred on the brain's bounding box (x 26..170, y 27..207).
FOV_MM = 200
CENTRE_XY_VOXEL = (98, 117)
#: Slab: 8 slices of 4 mm from z = +2 mm (basal ganglia) to z = +34 mm (above the ventricles).
FIRST_Z_VOXEL, N_SLICES, THICKNESS_MM = 74, 8, 4

#: Larmor frequency at 3 T (Hz) and the susceptibility difference air - tissue (SI, ~9.4 ppm).
LARMOR_HZ = 127.7e6
DELTA_CHI_AIR = 9.4e-6
#: Air cavities as spheres (centre x, y, z in RAS mm; radius mm): frontal/ethmoid sinus and the
#: two ear canals/mastoid air cells, placed below the slab as in a head.
AIR_SPHERES = (
    ((0.0, 62.0, -36.0), 16.0),
    ((-64.0, -20.0, -40.0), 12.0),
    ((64.0, -20.0, -40.0), 12.0),
)


def b0_field(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Off-resonance (Hz) at RAS positions (mm) from the air spheres, before shimming.

    Outside a sphere of susceptibility difference ``dchi`` in B0 || z the field is a dipole,
    ``dB/B0 = dchi/3 (a/r)^3 (3 cos^2 theta - 1)``; this gives the classic frontal and temporal
    off-resonance of the human head (tens to a few hundred Hz near the cavities at 3 T).
    """
    field = np.zeros(np.broadcast(x, y, z).shape)
    for (cx, cy, cz), radius in AIR_SPHERES:
        dx, dy, dz = x - cx, y - cy, z - cz
        r2 = np.maximum(dx * dx + dy * dy + dz * dz, radius * radius)
        field += DELTA_CHI_AIR / 3 * LARMOR_HZ * radius**3 * (3 * dz * dz / r2 - 1) / r2**1.5
    return field


def b1_field(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Relative transmit field: the central brightening of a 3 T head coil (about 0.8..1.2).

    A broad Gaussian bump slightly off-centre (dielectric standing wave) over a flat floor,
    normalised later to mean 1 inside the brain.
    """
    r2 = (x - 6.0) ** 2 + (y + 10.0) ** 2 + 0.5 * (z - 20.0) ** 2
    return 0.8 + 0.45 * np.exp(-r2 / (2 * 55.0**2))


def shim(
    field: np.ndarray, coords: tuple[np.ndarray, ...], mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Remove the best constant + linear (first-order shim) fit over ``mask``, as a scanner would.

    Returns the shimmed field and the removed coefficients (constant, then one per coordinate).
    """
    basis = np.stack([np.ones_like(coords[0])] + list(coords), axis=-1)
    coef, *_ = np.linalg.lstsq(basis[mask], field[mask], rcond=None)
    return field - basis @ coef, coef


def read_labels(source: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``seg_label`` volume ``[x, y, z]`` (uint8) and the affine of the ASLDRO ground truth."""
    image = nib.load(str(source))
    if image.ndim != 5 or image.shape[-1] < 7:
        raise ValueError(f"{source}: expected the 5D ASLDRO ground truth with 7 volumes, got {image.shape}")
    return np.asarray(image.dataobj[..., 0, 6]).round().astype(np.uint8), image.affine


def output_grid() -> tuple[np.ndarray, np.ndarray]:
    """Source voxel indices of the output columns (patient right -> left) and rows (anterior -> posterior)."""
    cx, cy = CENTRE_XY_VOXEL
    half = FOV_MM // 2
    return np.arange(cx + half - 1, cx - half - 1, -1), np.arange(cy + half - 1, cy - half - 1, -1)


def slab_counts(labels: np.ndarray, first_z: int, n_slices: int = N_SLICES) -> np.ndarray:
    """uint8 ``[slice, tissue, FOV_MM, FOV_MM]``: GM/WM/CSF counts of the ``THICKNESS_MM`` source
    slices in each output slice, from source slice ``first_z`` upwards."""
    xs, ys = output_grid()
    okx = (xs >= 0) & (xs < labels.shape[0])
    oky = (ys >= 0) & (ys < labels.shape[1])
    counts = np.zeros((n_slices, 3, FOV_MM, FOV_MM), dtype=np.uint8)
    for s in range(n_slices):
        for k in range(first_z + s * THICKNESS_MM, first_z + (s + 1) * THICKNESS_MM):
            padded = np.zeros((FOV_MM, FOV_MM), dtype=np.uint8)
            padded[np.ix_(oky, okx)] = labels[np.ix_(xs[okx], ys[oky], [k])][..., 0].T
            for t in range(3):
                counts[s, t] += padded == t + 1
    return counts


def build(source: Path) -> dict[str, np.ndarray]:
    """Cut the slab out of the source labels and compute the fields on the output grid."""
    labels, affine = read_labels(source)
    xs, ys = output_grid()
    counts = slab_counts(labels, FIRST_Z_VOXEL)
    # RAS millimetres of the output voxel centres
    x_mm = affine[0, 0] * xs + affine[0, 3]
    y_mm = affine[1, 1] * ys + affine[1, 3]
    z_first = affine[2, 2] * FIRST_Z_VOXEL + affine[2, 3]
    z_mm = z_first + THICKNESS_MM * np.arange(N_SLICES) + (THICKNESS_MM - 1) / 2
    zz, yy, xx = np.meshgrid(z_mm, y_mm, x_mm, indexing="ij")
    brain = counts.sum(axis=1) > 0
    b0, coef = shim(b0_field(xx, yy, zz), (xx, yy, zz), brain)
    step = 0.5  # mm: central difference of the unshimmed field, minus the shim's z slope (Hz/mm)
    slope = (b0_field(xx, yy, zz + step) - b0_field(xx, yy, zz - step)) / (2 * step) - coef[3]
    b0_dz = slope * 1e3  # Hz/m
    b1 = b1_field(xx, yy, zz)
    b1 /= b1[brain].mean()
    log.info(
        "B0 in brain: %.1f..%.1f Hz; dB0/dz %.0f..%.0f Hz/m; B1 %.2f..%.2f",
        b0[brain].min(),
        b0[brain].max(),
        b0_dz[brain].min(),
        b0_dz[brain].max(),
        b1[brain].min(),
        b1[brain].max(),
    )
    return {
        "counts": counts,
        "b0": b0.astype(np.float16),
        "b0_dz": b0_dz.astype(np.float16),
        "b1": b1.astype(np.float16),
        "z_mm": z_mm.astype(np.float32),
        "thickness_mm": np.float32(THICKNESS_MM),
        "fov_mm": np.float32(FOV_MM),
    }


def run(
    argv: list[str] | None, description: str, default: Path, build: Callable[[Path], dict[str, np.ndarray]]
) -> int:
    """Command line of the atlas tools: read the ICBM source, ``build`` the arrays, write ``default``
    (or ``-o``) as a compressed ``.npz`` with the atlas licence beside it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "source", type=Path, help="hrgt_icbm_2009a_nls_3t.nii.gz (its LICENSE.asldro beside it)"
    )
    parser.add_argument("-o", "--output", type=Path, default=default)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    arrays = build(args.source)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    licence = args.source.with_name("LICENSE.asldro")
    if licence.exists():
        shutil.copyfile(licence, args.output.with_name("LICENSE.asldro"))
    log.info("wrote %s (%.0f kB)", args.output, args.output.stat().st_size / 1e3)
    return 0


def main(argv: list[str] | None = None) -> int:
    default = Path(__file__).resolve().parents[1] / "core" / "data" / "brain2d.npz"
    return run(argv, __doc__.splitlines()[0], default, build)


if __name__ == "__main__":
    raise SystemExit(main())
