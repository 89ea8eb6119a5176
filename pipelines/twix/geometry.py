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


def directions_from_quaternions(quaternions: np.ndarray) -> tuple[np.ndarray, ...]:
    """(read, phase, slice) unit vectors ``[n, 3]`` from readout quaternions ``[n, 4]``, and which
    quaternions are rotations at all (``valid [n]``; zero quaternions, as on noise readouts, are not).
    """
    q = np.asarray(quaternions, dtype=float).reshape(-1, 4)
    norm = np.linalg.norm(q, axis=1)
    valid = (norm > 0.9) & (norm < 1.1)
    w, x, y, z = (q / np.where(valid, norm, 1.0)[:, None]).T
    phase = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y + z * w), 2 * (x * z - y * w)], axis=1)
    read = np.stack([2 * (x * y - z * w), 1 - 2 * (x * x + z * z), 2 * (y * z + x * w)], axis=1)
    normal = np.stack([2 * (x * z + y * w), 2 * (y * z - x * w), 1 - 2 * (x * x + y * y)], axis=1)
    return read, phase, normal, valid


def directions_from_slice(
    normal: Sequence[float], inplane_rotation_rad: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(read, phase, slice) unit vectors from a slice normal (sag, cor, tra) and in-plane rotation.

    The default phase direction lies in the slice plane, as the scanner's slice positioning
    defines it: for a transverse slice the projection of the anterior-posterior axis, for a
    coronal or sagittal one the in-plane direction perpendicular to the head-foot axis; the
    in-plane rotation turns it about the normal. Checked against the quaternions of real data
    for rotation 0 only (``tests/pipelines/twix``); the quaternion is preferred wherever a readout has one.
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
