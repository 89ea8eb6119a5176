"""Pulseq files (written with pypulseq) for the digital-twin EPI test, and the scans they make.

``write_epi`` writes a single-shot, blipped, ramp-sampled 2D EPI: a 90 degree hard pulse, the
readout pre-phaser, three phase-correction navigators at ky = 0 (forward, reflected, forward),
the phase pre-phaser, then one readout per line with a ky blip between lines. Every readout is the
same trapezoid (``TRAPEZOID``; the ADC starts 20 us into the ramp up and ends 20 us before the end
of the ramp down), alternating in sign. The deliberate odd/even echo shift: an x blip of
``+shift`` encoded-grid steps before each reflected readout and ``-shift`` after it, so that every
reflected readout (navigator included) is displaced by exactly ``shift`` steps along kx.

``write_cartesian`` writes the fully sampled Cartesian reference: one line per 90 degree
excitation, a flat readout of ``n`` samples with k = 0 on sample ``n // 2``, and a repetition time
long enough for full recovery of the test phantom (T1 = T2 = ``RELAXATION_S``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pypulseq as pp
import torch

from mrzero.core.ops.epi import TrapezoidReadout

FOV_M = 0.22
#: The EPI readout lobe: 100 us ramps, 200 us flat top; 80 samples of 4.5 us from 20 us on.
TRAPEZOID = TrapezoidReadout(100e-6, 200e-6, 100e-6, 20e-6, 4.5e-6, 80)
#: Readout oversampling of the EPI (encoded x = 2 n).
OVERSAMPLING = 2
RELAXATION_S = 1.0
_BLIP_S = 100e-6


def _system() -> pp.Opts:
    return pp.Opts(
        max_grad=40,
        grad_unit="mT/m",
        max_slew=150,
        slew_unit="T/m/s",
        rf_ringdown_time=20e-6,
        rf_dead_time=100e-6,
        adc_dead_time=0.0,
    )


def _new_sequence(system: pp.Opts) -> pp.Sequence:
    seq = pp.Sequence(system)
    seq.set_definition("FOV", [FOV_M, FOV_M, 5e-3])
    return seq


def write_epi(path: Path, n: int, shift: float) -> TrapezoidReadout:
    """The EPI of an ``n`` x ``n`` matrix at ``path``; ``shift`` in encoded-grid steps (1 / (2 FOV))."""
    system = _system()
    seq = _new_sequence(system)
    r = TRAPEZOID
    n_grid = OVERSAMPLING * n
    amplitude = (n_grid / (OVERSAMPLING * FOV_M)) / r.window_area()  # the ADC window spans n_grid steps
    gx = pp.make_trapezoid(
        "x",
        amplitude=amplitude,
        rise_time=r.ramp_up_s,
        flat_time=r.flat_top_s,
        fall_time=r.ramp_down_s,
        system=system,
    )
    gx_reflected = pp.make_trapezoid(
        "x",
        amplitude=-amplitude,
        rise_time=r.ramp_up_s,
        flat_time=r.flat_top_s,
        fall_time=r.ramp_down_s,
        system=system,
    )
    adc = pp.make_adc(r.n_samples, dwell=r.dwell_s, delay=r.adc_delay_s, system=system)
    delta_kx = shift / (OVERSAMPLING * FOV_M)
    into_reflected = pp.make_trapezoid("x", area=delta_kx, duration=_BLIP_S, system=system)
    out_of_reflected = pp.make_trapezoid("x", area=-delta_kx, duration=_BLIP_S, system=system)
    blip = pp.make_trapezoid("y", area=1.0 / FOV_M, duration=_BLIP_S, system=system)

    seq.add_block(pp.make_block_pulse(np.pi / 2, duration=100e-6, delay=system.rf_dead_time, system=system))
    seq.add_block(pp.make_trapezoid("x", area=-gx.area / 2, duration=300e-6, system=system))
    readouts = 0

    def readout(y_blip_after: bool) -> None:
        nonlocal readouts
        reflected = readouts % 2 == 1
        seq.add_block(gx_reflected if reflected else gx, adc)
        readouts += 1
        x_blip = out_of_reflected if reflected else into_reflected
        seq.add_block(
            *([x_blip] if abs(shift) > 0 else []), *([blip] if y_blip_after else []), pp.make_delay(_BLIP_S)
        )

    for _ in range(3):  # navigators at ky = 0
        readout(y_blip_after=False)
    seq.add_block(pp.make_trapezoid("y", area=-(n // 2) / FOV_M, duration=300e-6, system=system))
    for _ in range(n):
        readout(y_blip_after=True)
    seq.write(str(path))
    return r


def write_cartesian(path: Path, n: int) -> None:
    """The fully sampled ``n`` x ``n`` Cartesian reference at ``path`` (see the module docstring)."""
    system = _system()
    seq = _new_sequence(system)
    dwell = 10e-6
    gx = pp.make_trapezoid("x", flat_area=n / FOV_M, flat_time=n * dwell, system=system)
    adc = pp.make_adc(n, duration=n * dwell, delay=gx.rise_time, system=system)
    # k = 0 on sample n // 2: samples sit mid-dwell, so half a step less pre-phasing
    pre = -gx.area / 2 - 0.5 / FOV_M
    for line in range(n):
        seq.add_block(
            pp.make_block_pulse(np.pi / 2, duration=100e-6, delay=system.rf_dead_time, system=system)
        )
        seq.add_block(
            pp.make_trapezoid("x", area=pre, duration=500e-6, system=system),
            pp.make_trapezoid("y", area=(line - n // 2) / FOV_M, duration=500e-6, system=system),
        )
        seq.add_block(gx, adc)
        seq.add_block(pp.make_delay(10 * RELAXATION_S))
    seq.write(str(path))


def twin_phantom(n: int, coils: int):
    """The brain phantom (``n - n // 4`` pixels wide, zero-padded to ``n`` so that the half-FOV
    ghost band lies outside the head) with T1 = T2 = ``RELAXATION_S``, no T2', no B0, loop coils."""
    from mrzero.sequences.phantom import Phantom
    from mrzero.sequences.phantoms.brain import brain_phantom
    from mrzero.sequences.phantoms.coils import coil_sensitivities

    inner = n - n // 4
    brain = brain_phantom((inner, inner))
    pad = (n - inner) // 2
    pd = torch.zeros(n, n)
    pd[pad : pad + inner, pad : pad + inner] = brain.pd
    ones = torch.full((n, n), RELAXATION_S)
    return Phantom(
        pd=pd,
        t1=ones,
        t2=ones.clone(),
        t2dash=torch.zeros(n, n),
        b0=torch.zeros(n, n),
        b1=torch.ones(n, n),
        fov=(FOV_M, FOV_M, 5e-3),
        coil_sens=coil_sensitivities((n, n), coils),
        name="padded brain",
    )
