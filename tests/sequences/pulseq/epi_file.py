"""A small fat-saturated EPI with navigators, written by pypulseq, for the import tests.

Blocks: [fat-sat Gaussian at -3.4 ppm + spoiler] (optional), a non-selective 90 deg block pulse,
a readout prephaser, three navigator readouts (NAV label set, alternating polarity, ky = 0), the
ky prephaser, then ``n`` blipped readouts from ky = -n/2. Every readout crosses kx = 0 at its
centre, so the navigators reach the global k-space minimum before the imaging echo does.
"""

from __future__ import annotations

import math
from pathlib import Path

import pypulseq as pp

FOV = 0.2
FAT_HZ = -3.4e-6 * 42.577478e6 * 3.0


def write_epi(path: Path, n: int = 16, fat_sat: bool = True, dwell: float = 10e-6) -> pp.Sequence:
    """Write the EPI to ``path`` and return the pypulseq sequence."""
    system = pp.Opts(max_grad=32, grad_unit="mT/m", max_slew=130, slew_unit="T/m/s", B0=3.0)
    seq = pp.Sequence(system)
    seq.set_definition("FOV", [FOV, FOV, 5e-3])
    if fat_sat:
        seq.add_block(
            pp.make_gauss_pulse(
                math.radians(110),
                duration=8e-3,
                bandwidth=abs(FAT_HZ),
                freq_offset=FAT_HZ,
                system=system,
                use="saturation",
            )
        )
        seq.add_block(pp.make_trapezoid("z", area=40 / 5e-3, system=system))
    seq.add_block(pp.make_block_pulse(math.pi / 2, duration=0.3e-3, system=system, use="excitation"))
    read = pp.make_trapezoid("x", flat_area=n / FOV, flat_time=n * dwell, system=system)
    adc = pp.make_adc(n, dwell=dwell, delay=read.rise_time, system=system)
    seq.add_block(pp.make_trapezoid("x", area=-read.area / 2, system=system))
    nav_on, nav_off = (pp.make_label(label="NAV", type="SET", value=v) for v in (1, 0))
    for i in range(3):
        seq.add_block(pp.scale_grad(read, (-1) ** i), adc, nav_on)
    seq.add_block(pp.make_trapezoid("y", area=-(n // 2) / FOV, system=system), nav_off)
    blip = pp.make_trapezoid("y", area=1 / FOV, system=system)
    for line in range(n):  # the last navigator ended at +kmax: the first line runs backwards
        seq.add_block(pp.scale_grad(read, (-1) ** (line + 1)), adc)
        if line < n - 1:
            seq.add_block(blip)
    seq.add_block(pp.make_delay(5e-3))
    seq.write(str(path), create_signature=False)
    return seq
