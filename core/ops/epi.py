"""EPI readouts: ramp-sampling regridding, line reversal and odd/even (Nyquist ghost) phase correction.

**Trajectory.** An EPI readout is a trapezoidal gradient lobe (ramp up, flat top, ramp down) with
the ADC starting ``adc_delay`` after the start of the ramp up and sample ``i`` taken at the middle
of its dwell, ``adc_delay + (i + 0.5) dwell`` (the convention of Pulseq and of Siemens' regridding
parameters). With the gradient normalised to 1 on the flat top, the k position of a sample is the
area under the lobe up to its time, minus half the lobe's area (the pre-phaser puts k = 0 in the
middle of the lobe), scaled so that the ADC window spans ``n_grid`` grid steps: the readout's
encoded matrix (``encodedSpace.matrixSize.x``), one step being 1 / encoded FOV. Reflected
(``ACQ_IS_REVERSE``) lines run the same lobe with the opposite sign, so their samples sit at minus
those positions.

**Regridding** (:class:`Regridder`): sinc interpolation with density compensation. Each sample is
weighted by its share of k (half the distance to its two neighbours, ``density_weights``), the
weighted samples are taken to the ``n_grid`` image positions of the encoded FOV (a discrete
adjoint Fourier transform, the exact inverse for band-limited data sampled on the grid) and back to
the uniform grid ``k = m - n_grid // 2``; in one step this is convolution with the periodic sinc
(Dirichlet) kernel of ``n_grid`` points. The operator is a ``[n_grid, n_samples]`` matrix per
polarity, built once per trajectory. Regridding a reflected line with its mirrored trajectory also
puts its samples in grid order: no separate reversal is needed for EPI lines.
:func:`reverse_readout` reverses a line sampled on the grid itself (reflected lines of Cartesian,
non-EPI readouts), keeping the echo centre where it was.

**Phase correction** (:func:`navigator_correction`): the three phase-correction navigators of an
EPI shot (ky = 0, alternating polarity; Feinberg's reference scan, as Bruder et al. use it,
Magn Reson Med 1992) give the phase difference between reflected and forward readouts along x.
The two navigators of one polarity are averaged (their mean is centred in time on the middle one,
which cancels off-resonance evolution to first order). The coil-combined product
``sum_coils neg(x) conj(pos(x))`` gives the difference; its linear term comes from the phase of its
lag-one autocorrelation (Ahn and Cho, IEEE TMI 1987), its constant term from the phase of its sum
once the slope is removed. :class:`PhaseCorrection` applies half of it to each polarity with
opposite signs (forward lines ``exp(+i phi(x)/2)``, reflected lines ``exp(-i phi(x)/2)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mrzero.core.ops.fft import fftc, ifftc


class EpiError(ValueError):
    """EPI parameters or data the operators cannot use; the message says why."""


@dataclass(frozen=True)
class TrapezoidReadout:
    """One EPI readout lobe and its ADC, in seconds (MRD headers state microseconds)."""

    ramp_up_s: float
    flat_top_s: float
    ramp_down_s: float
    #: ADC start after the start of the ramp up.
    adc_delay_s: float
    dwell_s: float
    n_samples: int

    def __post_init__(self) -> None:
        if min(self.ramp_up_s, self.ramp_down_s, self.adc_delay_s) < 0 or self.flat_top_s <= 0:
            raise EpiError(
                f"impossible readout lobe: ramps {self.ramp_up_s}/{self.ramp_down_s} s, flat top "
                f"{self.flat_top_s} s, ADC delay {self.adc_delay_s} s"
            )
        if self.dwell_s <= 0 or self.n_samples < 2:
            raise EpiError(f"impossible ADC: {self.n_samples} samples of {self.dwell_s} s")
        end = self.adc_delay_s + self.n_samples * self.dwell_s
        if end > self.duration_s * (1 + 1e-6) + 1e-9:
            raise EpiError(
                f"the ADC ({self.n_samples} x {self.dwell_s * 1e6:.4g} us after "
                f"{self.adc_delay_s * 1e6:.4g} us) ends at {end * 1e6:.4g} us, after the readout "
                f"lobe ({self.duration_s * 1e6:.4g} us)"
            )

    @property
    def duration_s(self) -> float:
        return self.ramp_up_s + self.flat_top_s + self.ramp_down_s

    def area(self, t: np.ndarray) -> np.ndarray:
        """Area under the lobe (amplitude 1 on the flat top) from its start to ``t`` (s)."""
        t = np.clip(np.asarray(t, dtype=np.float64), 0.0, self.duration_s)
        up, top, down = self.ramp_up_s, self.flat_top_s, self.ramp_down_s
        rising = np.minimum(t, up)
        area = np.where(up > 0, 0.5 * rising**2 / max(up, 1e-30), 0.0)
        area = area + np.clip(t - up, 0.0, top)
        falling = np.clip(t - up - top, 0.0, down)
        return area + np.where(down > 0, falling - 0.5 * falling**2 / max(down, 1e-30), 0.0)

    def window_area(self) -> float:
        """Lobe area covered by the ADC window (start of the first to end of the last dwell)."""
        start = self.adc_delay_s
        return float(self.area(start + self.n_samples * self.dwell_s) - self.area(start))

    def sample_k(self, n_grid: int) -> np.ndarray:
        """k of each sample of a forward line, in grid steps (the grid is ``m - n_grid // 2``)."""
        times = self.adc_delay_s + (np.arange(self.n_samples) + 0.5) * self.dwell_s
        centre = 0.5 * float(self.area(self.duration_s))
        return (self.area(times) - centre) * n_grid / self.window_area()

    def grid_dwell_s(self, n_grid: int) -> float:
        """Dwell time of a flat readout that covers the same k per time as this one's flat top."""
        return self.window_area() / n_grid


def density_weights(k: np.ndarray) -> np.ndarray:
    """Each sample's share of k: half the distance between its neighbours (a full step at the ends)."""
    order = np.argsort(k)
    ks = k[order]
    gaps = np.diff(ks)
    if np.any(gaps <= 0):
        raise EpiError("EPI samples must have distinct k positions")
    shares = np.empty_like(ks)
    shares[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
    shares[0], shares[-1] = gaps[0], gaps[-1]
    weights = np.empty_like(ks)
    weights[order] = shares
    return weights


def grid_positions(n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    """The uniform grid ``k = m - n//2`` and image positions ``(j - n//2) / n`` (``core/units.py``)."""
    index = np.arange(n_grid) - n_grid // 2
    return index.astype(np.float64), index / n_grid


def sinc_regridding_matrix(k: np.ndarray, n_grid: int) -> np.ndarray:
    """``[n_grid, len(k)]`` density-compensated sinc interpolation from samples at ``k`` to the grid."""
    grid, x = grid_positions(n_grid)
    adjoint = np.exp(2j * np.pi * np.outer(x, k)) * density_weights(k)[None, :]  # [x, sample]
    forward = np.exp(-2j * np.pi * np.outer(grid, x)) / n_grid  # [grid k, x]
    return forward @ adjoint


class Regridder:
    """Regrids EPI lines ``[..., n_samples]`` of one trapezoid to the uniform grid ``[..., n_grid]``."""

    def __init__(self, readout: TrapezoidReadout, n_grid: int):
        if n_grid < 2:
            raise EpiError(f"the encoded readout matrix must have at least 2 samples, got {n_grid}")
        self.readout, self.n_grid = readout, n_grid
        k = readout.sample_k(n_grid)
        self._matrices = {
            False: torch.from_numpy(sinc_regridding_matrix(k, n_grid).astype(np.complex64)),
            True: torch.from_numpy(sinc_regridding_matrix(-k, n_grid).astype(np.complex64)),
        }

    def __call__(self, lines: torch.Tensor, reflected: bool) -> torch.Tensor:
        """Regridded ``lines``; ``reflected``: acquired with the negative lobe (``ACQ_IS_REVERSE``)."""
        if lines.shape[-1] != self.readout.n_samples:
            raise EpiError(
                f"an EPI line has {lines.shape[-1]} samples, its trajectory {self.readout.n_samples}"
            )
        matrix = self._matrices[reflected].to(lines.device)
        return lines.to(torch.complex64) @ matrix.T


def reverse_readout(lines: torch.Tensor, center: int) -> torch.Tensor:
    """Lines ``[..., n]`` sampled on the grid but acquired backwards, in forward order.

    Sample ``i`` of the result is the acquired sample ``2 center - i`` (the echo centre stays at
    ``center``); positions that were not acquired are zero.
    """
    n = lines.shape[-1]
    source = 2 * center - torch.arange(n, device=lines.device)
    valid = (source >= 0) & (source < n)
    out = torch.zeros_like(lines)
    out[..., valid] = lines[..., source[valid]]
    return out


@dataclass(frozen=True)
class PhaseCorrection:
    """Phase of reflected minus forward readouts along x: ``constant + slope * (j - n//2)`` (radians)."""

    constant: float
    #: Radians per pixel of the encoded readout; a k shift of ``d`` grid steps is ``2 pi d / n``.
    slope: float

    def phase(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        pixel = torch.arange(n, device=device, dtype=torch.float64) - n // 2
        return self.constant + self.slope * pixel

    def __call__(self, lines: torch.Tensor, reflected: bool) -> torch.Tensor:
        """Corrected grid-ordered lines ``[..., n]``: half the difference taken off each polarity."""
        sign = -0.5 if reflected else 0.5
        factor = torch.polar(
            torch.ones(1, dtype=torch.float64, device=lines.device),
            sign * self.phase(lines.shape[-1], lines.device),
        ).to(torch.complex64)
        return fftc(ifftc(lines.to(torch.complex64), ndim=1) * factor, ndim=1)


def linear_phase(difference: torch.Tensor) -> PhaseCorrection:
    """Constant and slope of the phase of ``difference`` ``[n]`` (complex, magnitude-weighted)."""
    n = difference.shape[-1]
    lag = (difference[1:] * difference[:-1].conj()).sum()
    if float(lag.abs()) == 0.0:
        raise EpiError("the phase-correction navigators hold no signal")
    slope = float(torch.angle(lag))
    pixel = torch.arange(n, device=difference.device, dtype=torch.float64) - n // 2
    unwound = difference.to(torch.complex128) * torch.polar(torch.ones_like(pixel), -slope * pixel)
    return PhaseCorrection(float(torch.angle(unwound.sum())), slope)


def navigator_correction(navigators: Sequence[tuple[torch.Tensor, bool]]) -> PhaseCorrection:
    """The correction from regridded navigator lines ``(data [coil, n], reflected)`` of one shot."""
    forward = [data for data, reflected in navigators if not reflected]
    backward = [data for data, reflected in navigators if reflected]
    if not forward or not backward:
        raise EpiError(
            f"phase-correction navigators of both polarities are needed, got {len(forward)} "
            f"forward and {len(backward)} reflected"
        )
    pos = ifftc(torch.stack(forward).mean(0), ndim=1)
    neg = ifftc(torch.stack(backward).mean(0), ndim=1)
    return linear_phase((neg * pos.conj()).sum(0))
