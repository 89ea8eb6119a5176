"""Inversion-prepared spoiled GRE blocks for T1 mapping (MRzero supporting information 6.2)."""

from __future__ import annotations

import math
from collections.abc import Sequence as Seq

import torch

from mrzero.sequences.builders.blocks import (
    RF_SPOIL_INCREMENT,
    Draft,
    check_matrix,
    gre_echoes,
    phase_order,
    rf_spoil_phases,
)
from mrzero.sequences.sequence import INVERSION, Sequence

#: Default inversion times (s) of the 10 blocks: a standard IR spread over the brain's T1 range.
DEFAULT_TI = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.2, 1.6, 2.4, 3.2)


def inversion_gre(
    matrix: int = 32,
    ti: Seq[float] = DEFAULT_TI,
    trec: Seq[float] | float = 0.0,
    te: float = 8e-3,
    tr: float = 15e-3,
    flip: float = math.radians(5),
    order: str = "centric",
    dwell: float = 50e-6,
    spoiler: float = 1.5,
    rf_increment: float = RF_SPOIL_INCREMENT,
    fov: float = 0.2,
    slice_thickness: float = 5e-3,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Sequence:
    """One inversion-prepared GRE image per entry of ``ti``: the seed's T1-mapping sequence.

    Defaults are the seed's (6.2): matrix 32, TR 15 ms, TE 8 ms, flip 5 deg (``flip`` in rad),
    centric order, 10 blocks; the seed learns TI and Trec from 0, here TI defaults to
    ``DEFAULT_TI`` and Trec to 0 s. Block ``b`` is three parts, all as repetitions:

    1. an inversion (flip pi, ``rf_kind`` INVERSION) whose one event lasts ``ti[b]`` seconds (from
       the inversion to the first excitation, which with centric order acquires ky = 0) and
       carries a crusher of ``2 * spoiler`` cycles per pixel;
    2. ``matrix`` RF- and gradient-spoiled GRE repetitions as in ``flash``;
    3. a recovery repetition with flip 0 whose one event lasts ``trec[b]`` seconds.

    Every image is ``repetition = b`` in the readout layout. TI and Trec sit in ``duration`` at
    (block start, 0) and (block end, 0), ready to be made learnable.
    """
    check_matrix("inversion_gre", matrix, dwell, fov)
    ti = [float(t) for t in ti]
    trec = [float(trec)] * len(ti) if isinstance(trec, int | float) else [float(t) for t in trec]
    if not ti or len(trec) != len(ti):
        raise ValueError(f"inversion_gre: need one Trec per TI, got {len(ti)} TI and {len(trec)} Trec")
    if min(ti + trec) < 0:
        raise ValueError("inversion_gre: TI and Trec must be non-negative seconds")
    lines = phase_order(matrix, order)
    per_block = matrix + 2
    draft = Draft(len(ti) * per_block, matrix + 2)
    phases = rf_spoil_phases(len(ti) * matrix, rf_increment)
    for b, (t_inv, t_rec) in enumerate(zip(ti, trec, strict=True)):
        first = b * per_block
        draft.rf(first, math.pi, 0.0, INVERSION)
        draft.event(first, 0, t_inv, (2 * spoiler * matrix, 0.0))
        for i, ky in enumerate(lines):
            r = first + 1 + i
            draft.rf(r, flip, float(phases[b * matrix + i]))
            gre_echoes(
                draft,
                "inversion_gre",
                r,
                matrix,
                dwell,
                [te],
                tr,
                k0=(0.0, float(ky)),
                spoiler=spoiler * matrix,
                line=ky + matrix // 2,
                repetition=b,
            )
        draft.rf(first + per_block - 1, 0.0)
        draft.event(first + per_block - 1, 0, t_rec)
    return draft.build(
        f"inversion gre {matrix}x{matrix} x{len(ti)}",
        fov,
        matrix,
        slice_thickness,
        dwell,
        "cartesian",
        dtype,
        device,
    )
