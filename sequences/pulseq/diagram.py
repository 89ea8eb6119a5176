"""The sequence diagram of a ``.seq`` file: RF, ADC, gradients on one time axis and the k-space samples.

What ``mrzero plot FILE.seq`` draws, from the same events the import simulates (so the picture
is what the digital twin plays out): RF magnitude in uT with the ADC samples marked, the three
physical gradient axes in mT/m against time in ms, and the imaging samples' k-space positions
in cycles/FOV (navigators left out), joined in acquisition order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrzero.sequences.pulseq.file_check import ImportLimits
from mrzero.sequences.pulseq.import_ import GAMMA_HZ_PER_T, Timeline, import_seq, read_timeline


@dataclass
class DiagramSummary:
    """What the diagram shows, in its units: time span (ms), peaks (uT, mT/m), samples drawn."""

    start_ms: float
    end_ms: float
    peak_b1_ut: float
    peak_grad_mt_m: tuple[float, float, float]
    n_pulses: int
    n_samples: int
    path: Path


def _window(t: np.ndarray, start: float, end: float) -> np.ndarray:
    return (t >= start) & (t <= end)


def _rf_trace(tl: Timeline, start: float, end: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Times (s) and |B1| (uT) of the pulses inside the window, NaN-separated, and their count."""
    ts, bs, count = [], [], 0
    for centre, pulse in zip(tl.rf_time, tl.pulses, strict=True):
        t = centre - pulse.center + pulse.t
        if t[-1] < start or t[0] > end:
            continue
        count += 1
        ts += [t[:1], t, t[-1:], [np.nan]]
        bs += [[0.0], np.abs(pulse.signal) / GAMMA_HZ_PER_T * 1e6, [0.0], [np.nan]]
    if not ts:
        return np.zeros(0), np.zeros(0), 0
    return np.concatenate(ts), np.concatenate(bs), count


def plot_sequence(
    path: str | Path,
    out: str | Path,
    time_range_ms: tuple[float, float] | None = None,
    limits: ImportLimits | None = None,
    fov: tuple[float, float, float] | None = None,
) -> DiagramSummary:
    """Draw the diagram of ``path`` into the PNG ``out``; ``time_range_ms`` limits the time axes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    tl = read_timeline(path, limits)
    start, end = (
        (0.0, tl.duration) if time_range_ms is None else (1e-3 * time_range_ms[0], 1e-3 * time_range_ms[1])
    )
    if not end > start:
        raise ValueError(f"time range {time_range_ms} ms is empty; give START < END")
    imported = import_seq(path, fov=fov, limits=limits)
    fig = plt.figure(figsize=(13, 8), constrained_layout=True)
    grid = fig.add_gridspec(4, 2, width_ratios=(2.2, 1))
    axes = [fig.add_subplot(grid[i, 0]) for i in range(4)]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    t_rf, b1, n_pulses = _rf_trace(tl, start, end)
    axes[0].plot(1e3 * t_rf, b1, color="C3", lw=1)
    adc = tl.adc_time[_window(tl.adc_time, start, end)]
    top = float(np.nanmax(b1)) if len(b1) else 1.0
    axes[0].plot(1e3 * adc, np.full(len(adc), 0.5 * top), "|", color="C2", ms=6, label="ADC samples")
    axes[0].set_ylabel("|B1| (uT)")
    axes[0].legend(loc="upper right", fontsize=8)
    peaks = []
    for axis, (ax, name) in enumerate(zip(axes[1:], "xyz", strict=True)):
        t, g = tl.grad[axis]
        inside = _window(t, start, end)
        mt_m = g / GAMMA_HZ_PER_T * 1e3
        peaks.append(float(np.max(np.abs(mt_m[inside]), initial=0.0)))
        order = np.argsort(t, kind="stable")
        ax.plot(1e3 * t[order], mt_m[order], color=f"C{axis}", lw=1)
        ax.set_ylabel(f"G{name} (mT/m)")
    axes[-1].set_xlabel("time (ms)")
    axes[0].set_xlim(1e3 * start, 1e3 * end)
    k = imported.sequence.trajectory().detach().double().numpy()
    times = imported.sequence.sample_times().detach().double().numpy() + imported.lead_in
    keep = _window(times, start, end) & (imported.imaging if imported.imaging is not None else True)
    kax = fig.add_subplot(grid[:, 1])
    kax.plot(k[keep, 0], k[keep, 1], color="0.7", lw=0.5)
    kax.plot(k[keep, 0], k[keep, 1], ".", color="C0", ms=2)
    kax.set_xlabel("kx (cycles/FOV)")
    kax.set_ylabel("ky (cycles/FOV)")
    kax.set_aspect("equal", adjustable="datalim")
    kax.set_title("k-space of the imaging samples")
    fig.suptitle(
        f"{Path(path).name}: {imported.n_blocks} blocks, {tl.duration:.4f} s, "
        f"TE {1e3 * imported.te:.2f} ms, TR {1e3 * imported.tr:.2f} ms"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return DiagramSummary(
        1e3 * start,
        1e3 * end,
        float(np.nanmax(b1)) if len(b1) else 0.0,
        tuple(peaks),
        n_pulses,
        int(keep.sum()),
        out,
    )  # type: ignore[arg-type]
