"""Build ``pipelines/roar/data/heldout_anatomy.npz``: RoAR test anatomy the training never sees.

Run once by a developer (the result is committed; nothing reads the source at run time)::

    .venv/bin/python tools/make_roar_heldout.py ../shared/data/phantom/hrgt_icbm_2009a_nls_3t.nii.gz

RoAR trains on random warps of the embedded 8-slice slab (``core/data/brain2d.npz``, MNI
z = +2..+34 mm, ``tools/make_brain_phantom.py``). The only other brain anatomy available to this
project is the rest of the same ICBM 2009a volume, so the test slabs are cut from it above and
below that slab, with the same grid (200 x 200 mm at 1 mm, 4 mm slices, rows anterior -> posterior,
columns patient right -> left):

* ``inferior``: MNI z = -30..+2 mm (orbitofrontal cortex, temporal lobes, brain stem and
  cerebellum: the region next to the frontal sinus and the ear canals);
* ``superior``: MNI z = +34..+66 mm (upper cerebrum, centrum semiovale to the vertex region).

``counts`` uint8 ``[slab, slice, tissue, 200, 200]`` (GM/WM/CSF counts of the four 1 mm source
slices), ``z_mm`` float32 ``[slab, slice]``, ``names``, ``thickness_mm``, ``fov_mm``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_brain_phantom import FIRST_Z_VOXEL, FOV_MM, N_SLICES, THICKNESS_MM, read_labels, run, slab_counts  # noqa: E402

log = logging.getLogger(__name__)

#: First source slice of each held-out slab: directly below and directly above the training slab.
SLABS = {
    "inferior": FIRST_Z_VOXEL - N_SLICES * THICKNESS_MM,
    "superior": FIRST_Z_VOXEL + N_SLICES * THICKNESS_MM,
}


def build(source: Path) -> dict[str, np.ndarray]:
    labels, affine = read_labels(source)
    counts = np.stack([slab_counts(labels, first) for first in SLABS.values()])
    z_first = np.array([affine[2, 2] * first + affine[2, 3] for first in SLABS.values()])
    z_mm = z_first[:, None] + THICKNESS_MM * np.arange(N_SLICES)[None, :] + (THICKNESS_MM - 1) / 2
    for name, c, z in zip(SLABS, counts, z_mm, strict=True):
        log.info("%s slab: z %.1f..%.1f mm, %d tissue voxels (1 mm)", name, z[0], z[-1], int(c.sum()))
    return {
        "counts": counts,
        "z_mm": z_mm.astype(np.float32),
        "names": np.array(list(SLABS)),
        "thickness_mm": np.float32(THICKNESS_MM),
        "fov_mm": np.float32(FOV_MM),
    }


def main(argv: list[str] | None = None) -> int:
    default = Path(__file__).resolve().parents[1] / "pipelines" / "roar" / "data" / "heldout_anatomy.npz"
    return run(argv, __doc__.splitlines()[0], default, build)


if __name__ == "__main__":
    raise SystemExit(main())
