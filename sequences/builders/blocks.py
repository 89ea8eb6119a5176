"""Building blocks shared by the sequence builders: phase order, RF spoiling, gradient-echo repetitions.

All inputs are SI (seconds, radians); moments in cycles/FOV (see ``core/units.py``).
A readout of ``n`` samples along the unit direction ``u`` through the offset ``k0`` puts sample
``i`` at ``k0 + (i - n//2) u``: on a Cartesian axis the integer grid ``-n/2 .. n/2 - 1`` with
k = 0 at sample ``n//2``. Each sample event carries the moment ``u`` (one sample's worth), so
the prewinder before it moves k to ``k0 - (n//2 + 1) u``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mrzero.sequences.adc_layout import Readout, ReadoutLayout
from mrzero.sequences.sequence import EXCITATION, ExportHints, Sequence

#: The RF-spoiling phase increment of Zur et al. (1991), in radians.
RF_SPOIL_INCREMENT = math.radians(117.0)
#: Golden angle for full spokes (180 deg / golden ratio), in radians.
GOLDEN_ANGLE = math.pi * (math.sqrt(5) - 1) / 2
ORDERS = ("linear", "centric")


def phase_order(n: int, order: str = "linear") -> list[int]:
    """ky of each line in acquisition order, on ``-n//2 .. n - n//2 - 1``.

    ``linear`` runs from the most negative line up; ``centric`` starts at ky = 0 and
    alternates outwards (0, -1, +1, -2, +2, ...), so the first lines set the contrast.
    """
    if order not in ORDERS:
        raise ValueError(f"phase order {order!r} unknown; choose one of {ORDERS}")
    lines = list(range(-(n // 2), n - n // 2))
    if order == "linear":
        return lines
    return sorted(lines, key=lambda k: (abs(k), k))


def rf_spoil_phases(n: int, increment: float = RF_SPOIL_INCREMENT) -> torch.Tensor:
    """Quadratic RF-spoiling phases (rad, wrapped to [0, 2 pi)): ``phi_j = increment * j (j + 1) / 2``.

    Consecutive phases differ by ``increment, 2 increment, 3 increment, ...``, i.e. the
    phase increment itself grows by ``increment`` each repetition.
    """
    j = torch.arange(n, dtype=torch.float64)
    return torch.remainder(increment * j * (j + 1) / 2, 2 * math.pi)


def _need(builder: str, what: str, spare: float, needed_for: str, fix: str) -> None:
    """Raise when ``spare`` (s) is negative: ``what`` is that much too short for ``needed_for``."""
    if spare < -1e-12:
        raise ValueError(f"{builder}: {what} is {-spare * 1e3:.3f} ms too short for {needed_for}; {fix}")


@dataclass
class Draft:
    """Sequence tensors being filled in, ``R`` repetitions x ``E`` events, float64 on the CPU."""

    n_rep: int
    n_event: int
    readouts: list[Readout] = field(default_factory=list)

    def __post_init__(self) -> None:
        r, e = self.n_rep, self.n_event
        self.flip = torch.zeros(r, dtype=torch.float64)
        self.rf_phase = torch.zeros(r, dtype=torch.float64)
        self.rf_kind = torch.full((r,), EXCITATION, dtype=torch.int64)
        self.adc_phase = torch.zeros(r, dtype=torch.float64)
        self.duration = torch.zeros(r, e, dtype=torch.float64)
        self.moment = torch.zeros(r, e, 3, dtype=torch.float64)
        self.adc = torch.zeros(r, e, dtype=torch.bool)
        self._samples = 0

    def rf(self, r: int, flip: float, phase: float = 0.0, kind: int = EXCITATION) -> None:
        """The RF pulse of repetition ``r``; the ADC follows its phase (+90 deg, see ``gre_echoes``)."""
        self.flip[r], self.rf_phase[r], self.rf_kind[r] = flip, phase, kind
        self.adc_phase[r] = phase + math.pi / 2

    def event(self, r: int, e: int, duration: float, moment: tuple[float, float] = (0.0, 0.0)) -> None:
        self.duration[r, e] = duration
        self.moment[r, e, 0], self.moment[r, e, 1] = moment

    def readout(self, r: int, e: int, n: int, dwell: float, u: tuple[float, float], **counters: int) -> None:
        """``n`` ADC events from event ``e``, each a dwell long with moment ``u``; records the ``Readout``."""
        self.duration[r, e : e + n] = dwell
        self.moment[r, e : e + n, 0], self.moment[r, e : e + n, 1] = u
        self.adc[r, e : e + n] = True
        self.readouts.append(Readout(r, self._samples, n, centre=n // 2, **counters))
        self._samples += n

    def build(
        self,
        name: str,
        fov: float,
        matrix: int,
        slice_thickness: float,
        dwell: float,
        trajectory: str,
        dtype: torch.dtype,
        device: torch.device | str | None,
    ) -> Sequence:
        """The finished ``Sequence`` (float fields in ``dtype`` on ``device``) with its readout layout."""
        hints = ExportHints(slice_thickness=slice_thickness, readout_dwell=dwell)
        seq = Sequence(
            flip=self.flip,
            rf_phase=self.rf_phase,
            duration=self.duration,
            moment=self.moment,
            adc=self.adc,
            adc_phase=self.adc_phase,
            rf_kind=self.rf_kind,
            fov=(fov, fov, slice_thickness),
            matrix=(matrix, matrix, 1),
            name=name,
            hints=hints,
            readouts=ReadoutLayout(tuple(self.readouts), trajectory),
        )
        return seq.to(device=device, dtype=dtype)


def check_matrix(builder: str, n: int, dwell: float, fov: float) -> None:
    """Refuse impossible sizes early, with the builder's name."""
    if n < 2:
        raise ValueError(f"{builder}: matrix must be at least 2, got {n}")
    if dwell <= 0 or fov <= 0:
        raise ValueError(f"{builder}: dwell and fov must be positive (s, m), got {dwell}, {fov}")


def gre_echoes(
    draft: Draft,
    builder: str,
    r: int,
    n: int,
    dwell: float,
    tes: list[float],
    tr: float,
    u: tuple[float, float] = (1.0, 0.0),
    k0: tuple[float, float] = (0.0, 0.0),
    spoiler: float = 0.0,
    **counters: int,
) -> None:
    """Fill repetition ``r`` with gradient echoes at ``tes`` (s after the RF) and end it at ``tr``.

    Events: prewinder to ``k0 - (n//2 + 1) u`` (lasting until the first echo's centre is at
    ``tes[0]``), per echo ``n`` readout samples (``contrast`` = echo index), between echoes a
    monopolar flyback of moment ``-n u``, and a last event that rewinds k to 0 and adds the
    gradient spoiler ``(spoiler, 0)`` cycles/FOV, lasting until ``tr``. Uses
    ``len(tes) * (n + 1) + 1`` events. Raises ``ValueError`` when the times do not fit.
    """
    ux, uy = u
    half = n // 2
    _need(
        builder,
        f"TE {tes[0] * 1e3:.2f} ms",
        tes[0] - (half + 1) * dwell,
        f"the {half + 1} samples of {dwell * 1e6:.0f} us up to the echo centre",
        "raise TE or shorten the dwell time",
    )
    draft.event(r, 0, tes[0] - (half + 1) * dwell, (k0[0] - (half + 1) * ux, k0[1] - (half + 1) * uy))
    e = 1
    for j, te in enumerate(tes):
        if j:
            gap = te - tes[j - 1] - n * dwell
            _need(
                builder,
                f"echo spacing {(te - tes[j - 1]) * 1e3:.2f} ms",
                gap,
                f"a {n}-sample readout of {dwell * 1e6:.0f} us",
                "raise the echo spacing or shorten the dwell time",
            )
            draft.event(r, e, gap, (-n * ux, -n * uy))
            e += 1
        draft.readout(r, e, n, dwell, u, contrast=j, **counters)
        e += n
    end = (k0[0] + (n - 1 - half) * ux, k0[1] + (n - 1 - half) * uy)
    tail = tr - tes[-1] - (n - 1 - half) * dwell
    _need(
        builder,
        f"TR {tr * 1e3:.2f} ms",
        tail,
        "the last echo and the rest of its readout",
        "raise TR, lower TE or shorten the dwell time",
    )
    draft.event(r, e, tail, (spoiler - end[0], -end[1]))
