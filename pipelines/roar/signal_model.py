"""The mGRE magnitude signal model of RoAR: S(t) = S0 exp(-R2* t) F(t).

F(t) accounts for macroscopic B0 inhomogeneity. For a field that varies linearly across the
voxel in the slice direction, the intra-voxel dephasing gives F(t) = |sinc(df t)| with
sinc(x) = sin(pi x) / (pi x) and ``df`` the frequency difference across the voxel (Hz),
estimated from a B0 map by the central difference over neighbouring slices,
``df ~ (f(z+1) - f(z-1)) / 2``. As in the published method, F values above 1.3 (only possible
for F maps from other estimators, e.g. the voxel spread function) are treated as unreliable and
set to 1. Everything is SI: seconds, hertz, 1/s.
"""

from __future__ import annotations

import torch

#: Echo times of the published protocol: 10 echoes, 4..40 ms in 4 ms steps (s).
PUBLISHED_TE_S: tuple[float, ...] = tuple(round(4e-3 * (i + 1), 6) for i in range(10))

#: F values above this are unreliable and replaced by 1 (published preprocessing).
F_UNRELIABLE_ABOVE = 1.3


def echo_times(
    te: torch.Tensor | tuple[float, ...] | list[float] | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Echo times (s) as a float32 tensor; ``None`` gives the published 4..40 ms protocol."""
    values = PUBLISHED_TE_S if te is None else te
    t = torch.as_tensor(values, dtype=torch.float32, device=device)
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"echo times must be a 1D list of at least 2 values, got shape {tuple(t.shape)}")
    if bool((t < 0).any()) or not bool(torch.isfinite(t).all()):
        raise ValueError("echo times must be finite and non-negative (seconds)")
    if bool((t > 1.0).any()):
        raise ValueError("echo times above 1 s: pass seconds, not milliseconds")
    return t


def slice_gradient_hz(b0_hz: torch.Tensor) -> torch.Tensor:
    """Frequency difference across a voxel in the slice direction, ``[z, ...]`` -> same shape.

    Central difference ``(f(z+1) - f(z-1)) / 2`` inside, one-sided difference at the ends.
    """
    if b0_hz.ndim < 1 or b0_hz.shape[0] < 2:
        raise ValueError(f"B0 map needs at least 2 slices along dim 0, got shape {tuple(b0_hz.shape)}")
    return torch.gradient(b0_hz, dim=0)[0]


def clean_f(f: torch.Tensor) -> torch.Tensor:
    """Replace unreliable F values (> 1.3) by 1, as the published preprocessing does."""
    return torch.where(f > F_UNRELIABLE_ABOVE, torch.ones_like(f), f)


def f_sinc(df_hz: torch.Tensor, te: torch.Tensor) -> torch.Tensor:
    """F(t) = |sinc(df t)| for a linear field across the voxel: ``[...]`` x ``[E]`` -> ``[E, ...]``."""
    te = te.to(df_hz.device, df_hz.dtype).reshape((-1,) + (1,) * df_hz.ndim)
    return clean_f(torch.sinc(df_hz.unsqueeze(0) * te).abs())


def mgre_magnitude(
    s0: torch.Tensor, r2s: torch.Tensor, te: torch.Tensor, f: torch.Tensor | None = None
) -> torch.Tensor:
    """Magnitude signal ``[E, ...]`` of S0 ``[...]`` and R2* ``[...]`` (1/s) at echo times ``te`` (s).

    ``f`` (``[E, ...]``, optional) is the B0 factor F(t); ``None`` means F = 1.
    Differentiable in ``s0`` and ``r2s``: the self-supervised loss goes through it.
    """
    if s0.shape != r2s.shape:
        raise ValueError(f"S0 shape {tuple(s0.shape)} differs from R2* shape {tuple(r2s.shape)}")
    t = te.to(r2s.device, r2s.dtype).reshape((-1,) + (1,) * r2s.ndim)
    signal = s0.unsqueeze(0) * torch.exp(-r2s.unsqueeze(0) * t)
    if f is not None:
        if f.shape != signal.shape:
            raise ValueError(f"F has shape {tuple(f.shape)}, the signal has {tuple(signal.shape)}")
        signal = signal * f
    return signal
