"""Gradient events as piecewise-linear waveforms, and their exact time integrals.

Both directions of the Pulseq boundary need the area of a gradient up to some instant inside a
block: the export to place the slice-select gradient's area around the RF centre, the import to
turn waveforms into per-event moments between ADC samples and RF pulses. A pypulseq gradient
(trapezoid or arbitrary/extended) is exactly piecewise linear between its corner points, so the
integral up to any time is a closed-form quadratic; no resampling is involved.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def grad_points(grad: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    """Corner times (s, from the block start) and amplitudes (Hz/m) of one pypulseq gradient event."""
    if grad.type == "trap":
        d, r, f, fa = grad.delay, grad.rise_time, grad.flat_time, grad.fall_time
        t = np.array([d, d + r, d + r + f, d + r + f + fa])
        a = np.array([0.0, grad.amplitude, grad.amplitude, 0.0])
        return t, a
    # Arbitrary and extended-trapezoid gradients: samples at ``tt`` plus the edge values.
    tt = np.asarray(grad.tt, dtype=float) + grad.delay
    w = np.asarray(grad.waveform, dtype=float)
    end = grad.delay + float(grad.shape_dur)
    t = np.concatenate([[grad.delay], tt, [end]])
    a = np.concatenate([[grad.first], w, [grad.last]])
    keep = np.concatenate([[True], np.diff(t) > 0])  # extended trapezoids already hold the edges
    return t[keep], a[keep]


def cumulative_area(t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Area (Hz/m * s = 1/m) of the piecewise-linear waveform from ``t[0]`` to each ``t[j]``."""
    return np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * np.diff(t))])


def area_at(t: np.ndarray, g: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Exact area of the piecewise-linear waveform ``(t, g)`` from ``t[0]`` up to each time in ``at``.

    ``t`` must be non-decreasing (equal neighbours mark a jump); the waveform is zero outside
    ``[t[0], t[-1]]``.
    """
    at = np.asarray(at, dtype=float)
    if len(t) < 2:
        return np.zeros_like(at)
    cum = cumulative_area(t, g)
    clipped = np.clip(at, t[0], t[-1])
    j = np.clip(np.searchsorted(t, clipped, side="right") - 1, 0, len(t) - 2)
    span = t[j + 1] - t[j]
    tau = clipped - t[j]
    slope = np.divide(g[j + 1] - g[j], span, out=np.zeros_like(span), where=span > 0)
    return cum[j] + g[j] * tau + 0.5 * slope * tau**2


def rf_integral(t: np.ndarray, values: np.ndarray) -> complex:
    """Time integral of an RF shape sampled at ``t``: raster-centre samples (uniform, more than two)
    integrate as a sum; corner-point shapes (a block pulse stored as its two ends) as trapezoids."""
    t = np.asarray(t, dtype=float)
    if len(t) > 2 and np.allclose(np.diff(t), t[1] - t[0]):
        return complex(np.sum(values) * (t[1] - t[0]))
    return complex(np.trapezoid(values, t))
