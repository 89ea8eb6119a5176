"""Where a sequence's ADC samples belong: readouts with their MRD counters (line, contrast, repetition).

A *readout* is a run of consecutive ADC events in one repetition; its samples are a contiguous
slice of ``Sequence.trajectory()`` / of the simulated signal. Builders know what each readout
means (phase-encoding line, echo, inversion block) and attach a ``ReadoutLayout`` to the
sequence; for any other sequence (a trained one, say) ``derive_layout`` finds the readouts and,
when the samples lie on the Cartesian grid, the lines. MRD export (``sequences/mrd.py``) turns
the layout into acquisition counters and the header's trajectory type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: ``ReadoutLayout.trajectory`` values, as MRD's ``trajectoryType`` spells them.
TRAJECTORIES = ("cartesian", "radial", "other")


@dataclass(frozen=True)
class Readout:
    """One readout: samples ``first .. first + n - 1`` of the sequence's ADC order, acquired in ``rep``.

    ``line`` is the phase-encoding line index 0..ny-1 on a Cartesian grid (the spoke index of
    a radial scan, a running index otherwise); ``contrast`` the echo (mGRE); ``repetition``
    the repeat of the same line/contrast (e.g. inversion block); ``centre`` the sample index
    within the readout closest to k = 0.
    """

    rep: int
    first: int
    n: int
    line: int
    contrast: int = 0
    repetition: int = 0
    centre: int = 0


@dataclass(frozen=True)
class ReadoutLayout:
    """The readouts of a sequence in acquisition order and its trajectory type (see ``TRAJECTORIES``)."""

    readouts: tuple[Readout, ...]
    trajectory: str = "cartesian"

    def __post_init__(self) -> None:
        if self.trajectory not in TRAJECTORIES:
            raise ValueError(f"trajectory must be one of {TRAJECTORIES}, got {self.trajectory!r}")

    @property
    def n_samples(self) -> int:
        return sum(r.n for r in self.readouts)

    def check(self, n_rep: int, adc: torch.Tensor) -> None:
        """Raise ``ValueError`` when the layout does not cover the ADC events of a sequence exactly."""
        counts = adc.sum(1).tolist()
        per_rep = [0] * n_rep
        expected_first = 0
        for i, r in enumerate(self.readouts):
            if not 0 <= r.rep < n_rep:
                raise ValueError(f"readout {i} names repetition {r.rep}; the sequence has {n_rep}")
            if r.first != expected_first or r.n < 1:
                raise ValueError(
                    f"readout {i} covers samples {r.first}..{r.first + r.n - 1}; "
                    f"readouts must tile the ADC samples in order from {expected_first}"
                )
            expected_first += r.n
            per_rep[r.rep] += r.n
        if per_rep != counts:
            bad = next(i for i, (a, b) in enumerate(zip(per_rep, counts, strict=True)) if a != b)
            raise ValueError(
                f"readout layout puts {per_rep[bad]} samples in repetition {bad}, "
                f"which has {counts[bad]} ADC events"
            )


def derive_layout(n_rep: int, adc: torch.Tensor, trajectory: torch.Tensor, ny: int) -> ReadoutLayout:
    """Readouts as runs of consecutive ADC events per repetition, with lines when on a Cartesian grid.

    ``trajectory`` is ``Sequence.trajectory()`` (cycles/FOV, ``[n_samples, 3]``). The scan is
    Cartesian when every readout keeps ky constant on an integer in ``-ny/2 .. ny/2 - 1``
    and steps kx by +-1 on integers; then ``line = ky + ny // 2`` and ``repetition`` counts
    repeats of a (line, contrast), ``contrast`` counts the earlier readouts of the same
    repetition (the echo index).
    Otherwise readouts are numbered in order and the trajectory is ``other``.
    """
    k = trajectory.detach().to("cpu", torch.float64)
    adc_cpu = adc.detach().to("cpu")
    runs: list[tuple[int, int, int]] = []  # (rep, first sample, n)
    first = 0
    for r in range(n_rep):
        flags = adc_cpu[r].tolist()
        e = 0
        while e < len(flags):
            if flags[e]:
                start = e
                while e < len(flags) and flags[e]:
                    e += 1
                runs.append((r, first, e - start))
                first += e - start
            else:
                e += 1
    cartesian = bool(len(runs)) and bool(torch.all((k - k.round()).abs() < 1e-4))
    for _, f, n in runs:
        seg = k[f : f + n]
        if not cartesian:
            break
        cartesian = (
            bool(torch.all(seg[:, 1] == seg[0, 1]))
            and -(ny // 2) <= float(seg[0, 1]) < ny - ny // 2
            and (n == 1 or bool(torch.all(torch.diff(seg[:, 0]).abs() == 1)))
        )
    readouts = []
    seen: dict[tuple[int, int], int] = {}
    for i, (r, f, n) in enumerate(runs):
        seg = k[f : f + n]
        centre = int(seg[:, :2].norm(dim=1).argmin())
        if cartesian:
            line = int(seg[0, 1]) + ny // 2
            echo = sum(1 for (rr, _, _) in runs[:i] if rr == r)
            repeat = seen.get((line, echo), 0)
            seen[(line, echo)] = repeat + 1
            readouts.append(Readout(r, f, n, line, contrast=echo, repetition=repeat, centre=centre))
        else:
            readouts.append(Readout(r, f, n, i, centre=centre))
    return ReadoutLayout(tuple(readouts), "cartesian" if cartesian else "other")
