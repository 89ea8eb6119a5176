"""A brain phantom the project never tuned on, for ``bench/simulate.py``.

Tissue (PD, T1, T2) comes from slice 6 of the embedded brain phantom (the tests and the earlier
benchmarks use slices 3, 0, 5 and 7), and its B0, B1 and T2' maps are replaced by seeded smooth
random fields instead of the atlas's synthetic ones:

* each field is a sum of Fourier modes up to ``MAX_CYCLES`` cycles per FOV in x and y, with
  normal random complex weights damped by ``exp(-|k|^2 / 2 CORRELATION^2)`` (a smooth Gaussian
  random field over the FOV), drawn from ``numpy.random.default_rng(seed)``;
* the field is evaluated at the voxel centres and mapped linearly so that its minimum and
  maximum over a fine ``NORM_GRID`` x ``NORM_GRID`` grid land on the ends of the map's range;
  the map is thus the same function of position at every matrix;
* ranges: B0 -80..+80 Hz, B1 0.8..1.2 (relative), T2' 20..60 ms.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mrzero.sequences.phantom import Phantom
from mrzero.sequences.phantoms.brain import brain_phantom

SLICE = 6
MAX_CYCLES = 3  # highest spatial frequency of the fields (cycles per FOV)
CORRELATION = 1.5  # cycles per FOV where a mode's weight has fallen to exp(-1/2)
NORM_GRID = 512
#: map name -> (low, high) of its range
RANGES = {"b0": (-80.0, 80.0), "b1": (0.8, 1.2), "t2dash": (0.020, 0.060)}


def _modes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies ``[m, 2]`` (cycles/FOV) and complex weights ``[m]`` of one random field."""
    k = np.arange(-MAX_CYCLES, MAX_CYCLES + 1)
    freqs = np.stack(np.meshgrid(k, k, indexing="ij"), axis=-1).reshape(-1, 2)
    damping = np.exp(-(freqs**2).sum(axis=1) / (2 * CORRELATION**2))
    weights = (rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))) * damping
    return freqs, weights


def _evaluate(freqs: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """The field's real part at the centres of an ``n`` x ``n`` grid over the unit FOV, ``[y, x]``."""
    centres = (np.arange(n) + 0.5) / n - 0.5
    phase_y = np.exp(2j * np.pi * np.outer(centres, freqs[:, 0]))  # [y, m]
    phase_x = np.exp(2j * np.pi * np.outer(centres, freqs[:, 1]))  # [x, m]
    return np.einsum("ym,xm,m->yx", phase_y, phase_x, weights).real


def smooth_field(n: int, seed: int, low: float, high: float) -> np.ndarray:
    """A seeded smooth random field on an ``n`` x ``n`` grid, spanning ``[low, high]`` (module docstring)."""
    freqs, weights = _modes(np.random.default_rng(seed))
    fine = _evaluate(freqs, weights, NORM_GRID)
    unit = (_evaluate(freqs, weights, n) - fine.min()) / (fine.max() - fine.min())
    return low + (high - low) * unit


def untuned_phantom(n: int, seed: int = 17, dtype: torch.dtype = torch.float32) -> Phantom:
    """Brain slice ``SLICE`` at ``n`` x ``n`` with seeded random B0, B1 and T2' maps (module docstring).

    The three fields use the seeds ``seed``, ``seed + 1`` and ``seed + 2``; T2' is set in every
    voxel (background included), so no voxel is without T2' dephasing.
    """
    tissue = brain_phantom((n, n), slice=SLICE, dtype=dtype)
    maps = {
        name: torch.as_tensor(smooth_field(n, seed + i, *RANGES[name]), dtype=dtype)
        for i, name in enumerate(RANGES)
    }
    return dataclasses.replace(tissue, **maps, name=f"{tissue.name}, random B0/B1/T2' (seed {seed})")
