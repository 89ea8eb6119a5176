"""Slice geometry of Siemens readouts: read/phase/slice directions in patient coordinates.

Positions and directions are in the patient coordinate system of DICOM and MRD (LPS: x to the
patient's left, y posterior, z head), in which Siemens writes ``sSag, sCor, sTra``.

Each readout carries the rotation of its slice as a unit quaternion ``(w, x, y, z)`` whose
rotation matrix has the columns (phase, read, slice). Where the quaternion is missing (zero,
as on noise readouts), the directions follow from the protocol's slice array: the slice normal
and the in-plane rotation, by Siemens' rule for the default phase-encoding direction of a
sagittal, coronal or transverse slice. Both routes give a right-handed (phase, read, slice):
``slice = phase x read``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Directions = tuple[np.ndarray, np.ndarray, np.ndarray]


def directions_from_quaternion(quaternion: Sequence[float]) -> Directions | None:
    """(read, phase, slice) unit vectors from a readout's quaternion; None if it is not a rotation."""
    w, x, y, z = (float(q) for q in quaternion)
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    if not 0.9 < norm < 1.1:
        return None
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    phase, read, normal = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    return read, phase, normal


def directions_from_slice(normal: Sequence[float], inplane_rotation_rad: float = 0.0) -> Directions:
    """(read, phase, slice) unit vectors from a slice normal (sag, cor, tra) and in-plane rotation.

    The default phase direction lies in the slice plane, as the scanner's slice positioning
    defines it: for a transverse slice the projection of the anterior-posterior axis, for a
    coronal or sagittal one the in-plane direction perpendicular to the head-foot axis; the
    in-plane rotation turns it about the normal. Checked against the quaternions of real data
    for rotation 0 only (``tests/twix``); the quaternion is preferred wherever a readout has one.
    """
    n = np.asarray(normal, dtype=float)
    length = float(np.linalg.norm(n))
    if length == 0.0:
        raise ValueError("slice normal is the zero vector")
    n = n / length
    sag, cor, tra = np.abs(n)
    if tra >= cor and tra >= sag:  # transverse (ties resolved towards transverse, then coronal)
        phase = np.array([0.0, n[2], -n[1]])
    elif cor >= sag:  # coronal
        phase = np.array([n[1], -n[0], 0.0])
    else:  # sagittal
        phase = np.array([-n[1], n[0], 0.0])
    phase /= np.linalg.norm(phase)
    gsl_read = np.cross(phase, n)
    if inplane_rotation_rad:
        c, s = math.cos(inplane_rotation_rad), math.sin(inplane_rotation_rad)
        phase = c * phase - s * gsl_read
    read = np.cross(n, phase)
    return read, phase, n
