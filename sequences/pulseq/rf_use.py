"""The RF use of pulses in files that do not store it (Pulseq before v1.5, or ``undefined``).

pypulseq and MATLAB guess from the flip angle alone (below 90.01 deg: excitation; a long pulse
at about -3.45 ppm: saturation; anything else: refocusing), which makes an inversion pulse a
refocusing pulse. Here the position in the block sequence is used as well:

* a pulse at the fat frequency (-3.1 to -3.7 ppm) without a readout before the next pulse:
  **saturation** (fat saturation);
* flip <= 90.01 deg: **excitation**;
* a larger flip with a readout between it and the next pulse (or the end): **refocusing**;
* a larger flip followed by an excitation without a readout in between (or by nothing):
  **inversion** (preparation);
* a larger flip followed by another large flip without a readout (a refocusing train's
  first, unsampled echoes): **refocusing**.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Chemical shift band (ppm) in which an unsampled pulse counts as fat saturation.
FAT_BAND = (-3.7, -3.1)
#: Largest flip (deg) still guessed as an excitation, as pypulseq and MATLAB do.
MAX_EXCITATION_DEG = 90.01


def guess_rf_use(
    flip_deg: Sequence[float], ppm: Sequence[float | None], sampled_after: Sequence[bool]
) -> list[str]:
    """The use of each pulse in file order.

    ``ppm``: each pulse's frequency offset in ppm of the Larmor frequency (None when unknown);
    ``sampled_after``: whether an ADC sample lies between the pulse and the next one (or the end).
    """
    n = len(flip_deg)
    exciting = [f <= MAX_EXCITATION_DEG for f in flip_deg]
    uses = []
    for i in range(n):
        fat = ppm[i] is not None and FAT_BAND[0] <= ppm[i] <= FAT_BAND[1]  # type: ignore[operator]
        if fat and not sampled_after[i]:
            uses.append("saturation")
        elif exciting[i]:
            uses.append("excitation")
        elif sampled_after[i] or (i + 1 < n and not exciting[i + 1]):
            uses.append("refocusing")
        else:
            uses.append("inversion")
    return uses
