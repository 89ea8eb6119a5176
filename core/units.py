"""Units and sign conventions of the whole project, written once.

Both the simulation (`sequences/`) and the reconstruction (`pipelines/`) import this module,
so it lives with the operators (``sequences`` may import ``mrzero.core.ops``, not the reverse).

Units inside the code are SI: seconds, metres, hertz, tesla, radians. Degrees and milliseconds
appear only at the user interface; convert with the helpers below.

Spatial encoding
    Gradient moments inside the simulation are in *cycles per field of view* (k times FOV,
    dimensionless). Spin positions are in units of the FOV, in [-0.5, 0.5). On an ``N``-pixel
    axis the pixel with index ``i`` (0-based, array order) sits at ``(i - N//2) / N``, so the
    centre pixel ``N//2`` is at position 0, exactly as the centred FFT below expects.
    Conversion to 1/m happens once, at the Pulseq boundary: ``k[1/m] = k[cycles/FOV] / FOV[m]``.

Sign convention (Bloch equation dM/dt = gamma M x B with gamma > 0)
    Transverse magnetisation is the complex number ``Mxy = Mx + i My``.

    * RF: a pulse of flip angle ``alpha`` and phase ``phi`` rotates M about the transverse axis
      ``(cos phi, sin phi, 0)`` in the sense of the Bloch equation, so that from equilibrium
      ``Mxy = i sin(alpha) exp(i phi) Mz``: phase 0 (B1 along +x) tips M towards +y.
    * Off-resonance ``df`` (Hz) for a time ``t``: ``Mxy <- Mxy exp(-i 2 pi df t)``.
    * A gradient moment ``k`` (cycles/FOV) at position ``x`` (FOV units):
      ``Mxy <- Mxy exp(-i 2 pi k . x)``.
    * Receiver: ``signal = sum_voxels Mxy exp(-i phi_adc)``.

    Hence the signal is the forward Fourier transform of the transverse magnetisation,
    ``s(k) = sum_x m(x) exp(-i 2 pi k . x)``, and the image is its inverse. The orthonormal
    encoding operator used by the reconstruction is ``E[k, x] = exp(-i 2 pi k . x) / sqrt(n_x)``,
    so that for a fully sampled Cartesian scan ``E^H`` is exactly the centred orthonormal
    inverse FFT (``ifftshift -> ifft(norm="ortho") -> fftshift``).

Array layout
    Complex data are ``complex64``. k-space is ``[coil, ..., ky, kx]``; images are
    ``[..., y, x]`` with row 0 at the top of the displayed image. The y axis of positions and
    moments increases with the row index (image "down"), x with the column index.
"""

from __future__ import annotations

import math

#: Gyromagnetic ratio of 1H over 2 pi, in Hz/T (CODATA 2018).
GAMMA_HZ_PER_T: float = 42.577478518e6

#: Default complex dtype of k-space and images.
COMPLEX_DTYPE_NAME = "complex64"


def deg_to_rad(deg: float) -> float:
    """Degrees (user interface) to radians (inside)."""
    return deg * math.pi / 180.0


def rad_to_deg(rad: float) -> float:
    """Radians (inside) to degrees (user interface)."""
    return rad * 180.0 / math.pi


def ms_to_s(ms: float) -> float:
    """Milliseconds (user interface) to seconds (inside)."""
    return ms * 1e-3


def s_to_ms(s: float) -> float:
    """Seconds (inside) to milliseconds (user interface)."""
    return s * 1e3


def cycles_per_fov_to_per_m(k: float, fov_m: float) -> float:
    """A gradient moment in cycles/FOV to the Pulseq unit 1/m along an axis of FOV ``fov_m``."""
    if fov_m <= 0:
        raise ValueError(f"field of view must be positive, got {fov_m} m")
    return k / fov_m


def per_m_to_cycles_per_fov(k_per_m: float, fov_m: float) -> float:
    """A k-space position in 1/m (Pulseq) to cycles/FOV along an axis of FOV ``fov_m``."""
    if fov_m <= 0:
        raise ValueError(f"field of view must be positive, got {fov_m} m")
    return k_per_m * fov_m


def pixel_positions(n: int) -> list[float]:
    """Positions (FOV units) of the ``n`` pixel centres of one axis, in array order."""
    return [(i - n // 2) / n for i in range(n)]


def hz_per_m_to_tesla_per_m(g_hz_per_m: float) -> float:
    """Gradient amplitude from Pulseq's Hz/m to T/m."""
    return g_hz_per_m / GAMMA_HZ_PER_T


def tesla_per_m_to_hz_per_m(g_t_per_m: float) -> float:
    """Gradient amplitude from T/m to Pulseq's Hz/m."""
    return g_t_per_m * GAMMA_HZ_PER_T
