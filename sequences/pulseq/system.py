"""Scanner hardware limits for the Pulseq export: presets (a Siemens Prisma and a conservative
default) that every field of which can be overridden, in SI units.

The export never builds an event that needs more than these limits: it stretches gap events
where time is missing and refuses (with the event and the excess named) where a limit cannot be
met by stretching, e.g. a readout gradient stronger than ``max_grad``. Optional limits: the
gradient and slew of the vector over all axes (``n`` axes at once get ``vector / sqrt(n)`` each,
``axis_limits``) and the RMS of B1 over the file (``max_b1_rms``, a SAR bound). Training uses the
same limits (``mrzero.sequences.training.hardware``), so that what is learned is what is exported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import pypulseq as pp

from mrzero.core.units import GAMMA_HZ_PER_T, tesla_per_m_to_hz_per_m

#: Limits that may be unset (``None``: not enforced).
OPTIONAL = ("max_grad_vector", "max_slew_vector", "max_b1_rms")


@dataclass(frozen=True)
class HardwareLimits:
    """Gradient, RF and ADC limits and rasters of one scanner (SI: T/m, T/m/s, s, T)."""

    name: str
    max_grad: float  # T/m, per axis
    max_slew: float  # T/m/s, per axis
    max_b1: float  # T, peak RF amplitude
    rf_dead_time: float  # s before an RF pulse in its block
    rf_ringdown_time: float  # s after an RF pulse in its block
    adc_dead_time: float  # s before and after an ADC in its block
    grad_raster_time: float = 10e-6
    rf_raster_time: float = 1e-6
    adc_raster_time: float = 100e-9
    block_duration_raster: float = 10e-6
    b0: float = 3.0  # T
    max_grad_vector: float | None = None  # T/m, |G| over all axes (None: per axis only)
    max_slew_vector: float | None = None  # T/m/s, |dG/dt| over all axes (None: per axis only)
    max_b1_rms: float | None = None  # T, RMS of the RF amplitude over the whole file (a SAR bound)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in OPTIONAL and value is None:
                continue
            if f.name != "name" and not value >= 0:
                raise ValueError(f"hardware limit {f.name} must be a non-negative number, got {value!r}")
        for name in (
            "max_grad",
            "max_slew",
            "max_b1",
            "grad_raster_time",
            "rf_raster_time",
            "adc_raster_time",
            "block_duration_raster",
            *(n for n in OPTIONAL if getattr(self, n) is not None),
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"hardware limit {name} must be positive, got {getattr(self, name)}")

    @property
    def max_grad_hz(self) -> float:
        """Maximum gradient in Pulseq's unit Hz/m."""
        return tesla_per_m_to_hz_per_m(self.max_grad)

    @property
    def max_slew_hz(self) -> float:
        """Maximum slew rate in Pulseq's unit Hz/m/s."""
        return tesla_per_m_to_hz_per_m(self.max_slew)

    @property
    def max_b1_hz(self) -> float:
        """Maximum RF amplitude in Pulseq's unit Hz."""
        return self.max_b1 * GAMMA_HZ_PER_T

    def axis_limits(self, axes: int = 1) -> tuple[float, float]:
        """Gradient (Hz/m) and slew (Hz/m/s) each of ``axes`` simultaneously active axes may use:
        the per-axis limits, lowered to ``vector / sqrt(axes)`` where a vector limit is set (then
        no direction of the summed gradient exceeds it)."""
        g, s = self.max_grad_hz, self.max_slew_hz
        root = math.sqrt(max(axes, 1))
        if self.max_grad_vector is not None:
            g = min(g, tesla_per_m_to_hz_per_m(self.max_grad_vector) / root)
        if self.max_slew_vector is not None:
            s = min(s, tesla_per_m_to_hz_per_m(self.max_slew_vector) / root)
        return g, s

    def max_area(self, time: np.ndarray, axes: int = 1) -> np.ndarray:
        """Largest gradient area (1/m, per axis) a trapezoid reaches in ``time`` (s) within the
        limits of ``axes`` active axes (``axis_limits``), ramps included: a triangle ``S T^2 / 4``
        while ``T <= 2 G / S``, else ``G (T - G / S)`` (continuous time; raster rounding is the
        caller's margin)."""
        g, s = self.axis_limits(axes)
        t = np.maximum(np.asarray(time, dtype=float), 0.0)
        return np.where(t <= 2 * g / s, s * t**2 / 4, g * (t - g / s))

    def min_time(self, area: np.ndarray, axes: int = 1) -> np.ndarray:
        """Shortest time (s) of a trapezoid of ``area`` (1/m): the inverse of ``max_area``."""
        g, s = self.axis_limits(axes)
        a = np.abs(np.asarray(area, dtype=float))
        return np.where(a <= g * g / s, 2 * np.sqrt(a / s), a / g + g / s)

    def to_opts(self, axes: int = 1) -> pp.Opts:
        """The same limits as a pypulseq ``Opts``, per axis for ``axes`` active axes (``axis_limits``)."""
        g, s = self.axis_limits(axes)
        return pp.Opts(
            max_grad=g,
            grad_unit="Hz/m",
            max_slew=s,
            slew_unit="Hz/m/s",
            rf_dead_time=self.rf_dead_time,
            rf_ringdown_time=self.rf_ringdown_time,
            adc_dead_time=self.adc_dead_time,
            grad_raster_time=self.grad_raster_time,
            rf_raster_time=self.rf_raster_time,
            adc_raster_time=self.adc_raster_time,
            block_duration_raster=self.block_duration_raster,
            gamma=GAMMA_HZ_PER_T,
            B0=self.b0,
        )

    def as_dict(self) -> dict:
        return asdict(self)


#: Presets by name. ``default`` stays well inside every current clinical system, in any direction
#: (its limits hold for the vector, so a rotated or oblique slice cannot exceed them); ``prisma``
#: is Siemens' per-axis specification.
PRESETS: dict[str, HardwareLimits] = {
    "default": HardwareLimits(
        name="default",
        max_grad=28e-3,
        max_slew=150.0,
        max_b1=20e-6,
        rf_dead_time=100e-6,
        rf_ringdown_time=30e-6,
        adc_dead_time=10e-6,
        max_grad_vector=28e-3,
        max_slew_vector=150.0,
    ),
    "prisma": HardwareLimits(
        name="prisma",
        max_grad=80e-3,
        max_slew=200.0,
        max_b1=23e-6,
        rf_dead_time=100e-6,
        rf_ringdown_time=30e-6,
        adc_dead_time=10e-6,
        b0=2.89,
    ),
}


def hardware(preset: str = "default", **overrides: float) -> HardwareLimits:
    """A preset's limits with any field overridden (SI units), e.g. ``hardware("prisma", max_slew=150)``.

    Where the preset's vector limit equals its per-axis one (``default``), overriding only the
    per-axis limit moves the vector limit with it."""
    try:
        base = PRESETS[preset]
    except KeyError:
        raise ValueError(
            f"unknown hardware preset {preset!r}; presets: {', '.join(sorted(PRESETS))}"
        ) from None
    known = {f.name for f in fields(HardwareLimits)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"unknown hardware limit(s) {', '.join(unknown)}; fields: {', '.join(sorted(known))}"
        )
    for axis, vector in (("max_grad", "max_grad_vector"), ("max_slew", "max_slew_vector")):
        if axis in overrides and vector not in overrides and getattr(base, vector) == getattr(base, axis):
            overrides[vector] = overrides[axis]
    return replace(base, **overrides)
