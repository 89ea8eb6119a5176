"""F(t) from complex multi-echo data by the voxel spread function (VSF) method.

Yablonskiy et al., MRM 70:1283 (2013), the F estimator the RoAR paper uses: the signal a
voxel ``n`` shows at echo time ``t`` is the sum over voxels ``m`` of their undisturbed signal
spread into ``n`` by the imaging point-spread function, after the field inside ``m`` (taken as
linear, offset ``f_m`` Hz and gradient ``g_m`` Hz per voxel in each direction) has dephased it:

    S_n(t) = sum_m rho_m exp(i 2 pi f_m t) VSF(n, m, t),
    F_n(t) = |S_n(t)| / |S_n(0)|.

In a Fourier-encoded direction ``VSF`` is the sinc of the k-space window integrated over voxel
``m`` with the gradient's phase ramp (so a gradient shifts the echo in k-space and only loses
signal where the object changes or the shift leaves the window); in the slice-selected direction
of a 2D scan (box slice profile, no encoding) it is ``sinc(g_z t)`` on the voxel itself. This
module evaluates the in-plane sum exactly rather than over a truncated neighbourhood: every voxel
is split into ``subsamples`` x ``subsamples`` points carrying its linear phase, Fourier
transformed, cropped to the acquired k-space window and transformed back.

Everything comes from the data: the field ``f`` from the phase differences of consecutive echoes,
its gradients in all three directions from wrapped finite differences of ``f`` between
neighbouring voxels inside the mask, and ``rho`` (magnitude and phase) from the first echo.
"""

from __future__ import annotations

import math

import torch

from mrzero.pipelines.roar.signal_model import clean_f


class VsfError(ValueError):
    """Data the VSF method cannot use (shapes, real data, unequal echo spacing)."""


def echo_spacing(te: torch.Tensor) -> float:
    """The common echo spacing (s); the phase-difference field estimate needs equal spacing."""
    steps = torch.diff(te.double())
    if steps.numel() < 1 or not bool(torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-4, atol=1e-9)):
        raise VsfError(f"the VSF field estimate needs equally spaced echo times, got {te.tolist()}")
    return float(steps[0])


def frequency_map(echoes: torch.Tensor, te: torch.Tensor) -> torch.Tensor:
    """Field offset (Hz) ``[...]`` from complex echoes ``[E, ...]``.

    The phase of ``sum_e S_{e+1} conj(S_e)`` over echo pairs (signal-weighted, so late noisy
    echoes count less) divided by ``2 pi dt``. It aliases into ``[-1/(2 dt), 1/(2 dt))``, which
    is harmless: phases are only ever evaluated at multiples of ``dt`` (the echo times of the
    published protocol) and gradients are taken with wrapped differences.
    """
    if not torch.is_complex(echoes):
        raise VsfError("the VSF method needs complex echoes (magnitude and phase)")
    if echoes.shape[0] != te.numel() or te.numel() < 2:
        raise VsfError(f"echoes must be [E={te.numel()}, ...] with E >= 2, got {tuple(echoes.shape)}")
    dt = echo_spacing(te)
    pairs = (echoes[1:] * echoes[:-1].conj()).sum(0)
    return torch.angle(pairs).to(torch.float64) / (2 * math.pi * dt)


def _wrap(d: torch.Tensor, period: float) -> torch.Tensor:
    return torch.remainder(d + period / 2, period) - period / 2


def field_gradients(freq: torch.Tensor, mask: torch.Tensor, dt: float) -> torch.Tensor:
    """Field change per voxel (Hz) along each axis of ``freq`` ``[z, y, x]`` -> ``[3, z, y, x]``.

    Central differences where both neighbours are in the mask, one-sided where one is, zero where
    none is; differences are wrapped into one alias period ``1/dt`` (valid while neighbours differ
    by less than ``1/(2 dt)``, 125 Hz at 4 ms spacing).
    """
    if freq.ndim != 3 or mask.shape != freq.shape:
        raise VsfError(
            f"field and mask must share one [z, y, x] shape, got {tuple(freq.shape)}, {tuple(mask.shape)}"
        )
    period = 1.0 / dt
    out = torch.zeros((3, *freq.shape), dtype=freq.dtype, device=freq.device)
    m = mask.to(freq.dtype)
    for axis in range(3):
        n = freq.shape[axis]
        if n < 2:
            continue
        fwd = torch.zeros_like(freq)
        ok_fwd = torch.zeros_like(freq)
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        fwd[tuple(lo)] = _wrap(freq[tuple(hi)] - freq[tuple(lo)], period)
        ok_fwd[tuple(lo)] = m[tuple(hi)] * m[tuple(lo)]
        bwd = torch.zeros_like(freq)
        ok_bwd = torch.zeros_like(freq)
        bwd[tuple(hi)] = fwd[tuple(lo)]
        ok_bwd[tuple(hi)] = ok_fwd[tuple(lo)]
        count = ok_fwd + ok_bwd
        out[axis] = (fwd * ok_fwd + bwd * ok_bwd) / count.clamp_min(1.0)
    return out


def _shift_half_voxel(n: int, sub: int, device: torch.device) -> torch.Tensor:
    """Phase moving sub-sample ``s`` of a voxel from ``s / sub`` to ``(s + 1/2) / sub - 1/2`` (centred)."""
    k = torch.fft.fftfreq(n * sub, d=1.0 / sub, device=device, dtype=torch.float64)  # cycles per voxel
    return torch.exp(-2j * math.pi * k * (0.5 / sub - 0.5))


def vsf_signal(
    rho: torch.Tensor, freq: torch.Tensor, grads: torch.Tensor, t: float, subsamples: int = 4
) -> torch.Tensor:
    """Complex 2D-scan signal ``[z, y, x]`` at time ``t`` of voxels ``rho`` with linear fields.

    ``freq`` (Hz) and ``grads`` ``[3, z, y, x]`` (Hz per voxel along z, y, x): in-plane the
    VSF sum (by FFT over sub-sampled voxels), through the slice ``sinc(g_z t)``.
    """
    nz, ny, nx = rho.shape
    s = subsamples
    u = (torch.arange(s, dtype=torch.float64, device=rho.device) + 0.5) / s - 0.5
    phase = (
        freq[:, :, None, :, None]
        + grads[1][:, :, None, :, None] * u[None, None, :, None, None]
        + grads[2][:, :, None, :, None] * u[None, None, None, None, :]
    ) * t
    slice_factor = torch.sinc(grads[0] * t)
    fine = (rho * slice_factor)[:, :, None, :, None] * torch.exp(2j * math.pi * phase)
    fine = fine.reshape(nz, ny * s, nx * s)
    k = torch.fft.fft2(fine) / (s * s)
    k = k * _shift_half_voxel(ny, s, rho.device)[:, None] * _shift_half_voxel(nx, s, rho.device)[None, :]
    ky = torch.cat([torch.arange(0, (ny + 1) // 2), torch.arange(ny * s - ny // 2, ny * s)]).to(rho.device)
    kx = torch.cat([torch.arange(0, (nx + 1) // 2), torch.arange(nx * s - nx // 2, nx * s)]).to(rho.device)
    return torch.fft.ifft2(k[:, ky][:, :, kx])


def f_vsf(echoes: torch.Tensor, te: torch.Tensor, mask: torch.Tensor, subsamples: int = 4) -> torch.Tensor:
    """F(t) ``[E, z, y, x]`` of a 2D multi-slice complex mGRE volume ``[E, z, y, x]`` (slices contiguous).

    Field, gradients and ``rho`` (first echo, its field phase removed) come from the data inside
    ``mask``; F is 1 outside the mask, and values above 1.3 are set to 1 (``clean_f``).
    """
    if echoes.ndim != 4:
        raise VsfError(f"echoes must be [E, z, y, x], got shape {tuple(echoes.shape)}")
    if not torch.is_complex(echoes):
        raise VsfError("the VSF method needs complex echoes (magnitude and phase)")
    if mask.shape != echoes.shape[1:]:
        raise VsfError(f"mask {tuple(mask.shape)} does not match the echoes' {tuple(echoes.shape[1:])}")
    if subsamples < 1:
        raise VsfError(f"subsamples must be >= 1, got {subsamples}")
    data = echoes.to(torch.complex128)
    freq = frequency_map(data, te)
    grads = field_gradients(freq, mask, echo_spacing(te))
    t1 = float(te[0])
    rho = data[0] * torch.exp(-2j * math.pi * freq * t1) * mask
    reference = vsf_signal(rho, freq, torch.zeros_like(grads), 0.0, subsamples).abs()
    out = torch.ones(data.shape, dtype=torch.float64, device=data.device)
    for e, t in enumerate(te.tolist()):
        ratio = vsf_signal(rho, freq, grads, t, subsamples).abs() / reference.clamp_min(1e-12)
        out[e] = torch.where(mask, ratio, torch.ones_like(ratio))
    return clean_f(out).to(torch.float32)
