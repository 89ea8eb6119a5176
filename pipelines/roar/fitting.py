"""Voxel-wise R2*/S0 baselines: batched Levenberg-Marquardt NLLS, ARLO and log-linear fits.

All fits take magnitude signals ``[E, ...]`` (echo first), echo times ``[E]`` (s) and an
optional B0 factor F ``[E, ...]``, and return ``(s0, r2s)`` maps of shape ``[...]`` (R2* in
1/s). They are vectorised over voxels in torch (CPU or CUDA), processed in chunks to bound
memory. The NLLS is the reference voxel-wise method of the RoAR paper; ARLO (Pei et al. 2015)
and the log-linear fit are fast closed-form alternatives, and the log-linear fit seeds NLLS.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Default bounds of the NLLS R2* estimate (1/s): physically plausible brain values and beyond.
R2S_BOUNDS: tuple[float, float] = (0.0, 250.0)

_TINY = 1e-12
#: NLLS convergence: proposed steps below these (R2* in 1/s, S0 relative) end a voxel's fit.
STEP_TOL_R2S = 1e-3
STEP_TOL_REL = 1e-5


def _flatten(
    signal: torch.Tensor, te: torch.Tensor, f: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
    """Checks shapes and returns signal ``[E, N]``, te ``[E, 1]``, F ``[E, N]`` and the map shape."""
    if signal.ndim < 1 or signal.shape[0] != te.numel():
        raise ValueError(
            f"signal must be [E={te.numel()}, ...] (echo first), got shape {tuple(signal.shape)}"
        )
    if torch.is_complex(signal):
        raise ValueError("signal must be real magnitudes; take .abs() of complex images first")
    if f is not None and f.shape != signal.shape:
        raise ValueError(f"F has shape {tuple(f.shape)}, the signal has {tuple(signal.shape)}")
    shape = tuple(signal.shape[1:])
    dtype = torch.float32 if signal.dtype not in (torch.float32, torch.float64) else signal.dtype
    y = signal.reshape(te.numel(), -1).to(dtype)
    t = te.to(y.device, dtype).reshape(-1, 1)
    ff = None if f is None else f.reshape(te.numel(), -1).to(y.device, dtype)
    return y, t, ff, shape


Maps = tuple[torch.Tensor, torch.Tensor]


def _chunked(
    fit: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], Maps],
    signal: torch.Tensor,
    te: torch.Tensor,
    f: torch.Tensor | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    y, t, ff, shape = _flatten(signal, te, f)
    s0, r2 = [], []
    for start in range(0, y.shape[1], chunk):
        sl = slice(start, start + chunk)
        a, b = fit(y[:, sl], t, None if ff is None else ff[:, sl])
        s0.append(a)
        r2.append(b)
    if not s0:
        empty = y.new_zeros(shape)
        return empty, empty.clone()
    return torch.cat(s0).reshape(shape), torch.cat(r2).reshape(shape)


def _loglinear(y: torch.Tensor, t: torch.Tensor, f: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Line through log(y / F) against t, per voxel, weighted by y^2.

    The weights undo the noise amplification of the logarithm (var log y ~ sigma^2 / y^2), so
    that echoes lost in noise (small or negative magnitudes) barely pull the slope.
    """
    z = y if f is None else y / f.clamp_min(1e-3)
    w = y.clamp_min(0.0) ** 2 + _TINY
    logy = torch.log(z.clamp_min(_TINY))
    sw = w.sum(0)
    tm = (w * t).sum(0) / sw
    lm = (w * logy).sum(0) / sw
    tc = t - tm
    slope = (w * tc * (logy - lm)).sum(0) / (w * tc * tc).sum(0).clamp_min(_TINY)
    return torch.exp(lm - slope * tm), -slope


def fit_loglinear(
    signal: torch.Tensor, te: torch.Tensor, f: torch.Tensor | None = None, chunk: int = 1 << 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted log-linear fit: log(S / F) = log S0 - R2* t. Fast, biased at low SNR."""
    return _chunked(_loglinear, signal, te, f, chunk)


def _arlo(y: torch.Tensor, t: torch.Tensor, f: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """ARLO: the Simpson integral over two echo spacings equals T2* times the signal drop."""
    z = y if f is None else y / f.clamp_min(1e-3)
    dt = float(t[1, 0] - t[0, 0])
    integral = dt / 3.0 * (z[:-2] + 4.0 * z[1:-1] + z[2:])
    drop = z[:-2] - z[2:]
    r2 = (drop * drop).sum(0) / (integral * drop).sum(0).clamp_min(_TINY)
    s0 = (z * torch.exp(-r2 * t)).sum(0) / torch.exp(-2.0 * r2 * t).sum(0)
    return s0, r2


def fit_arlo(
    signal: torch.Tensor, te: torch.Tensor, f: torch.Tensor | None = None, chunk: int = 1 << 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """ARLO (auto-regression on linear operations) for equally spaced echoes; F divides the signal."""
    if te.numel() < 3:
        raise ValueError("ARLO needs at least 3 echoes")
    steps = torch.diff(te.double())
    if not bool(torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-4, atol=1e-9)):
        raise ValueError(f"ARLO needs equally spaced echo times, got {te.tolist()}")
    return _chunked(_arlo, signal, te, f, chunk)


def fit_nlls(
    signal: torch.Tensor,
    te: torch.Tensor,
    f: torch.Tensor | None = None,
    iterations: int = 100,
    r2s_bounds: tuple[float, float] = R2S_BOUNDS,
    chunk: int = 1 << 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-linear least squares of S0 exp(-R2* t) F(t), Levenberg-Marquardt batched over voxels.

    Each voxel has its own damping; a step is kept only if it lowers that voxel's cost, and R2*
    is projected onto ``r2s_bounds`` and S0 onto [0, inf) after each step. Starts from the
    log-linear fit; a voxel is done when its proposed step is below ``STEP_TOL_R2S`` in R2* and
    ``STEP_TOL_REL`` relative in S0, and the loop runs on the unfinished voxels only.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    lo, hi = r2s_bounds
    if not lo < hi:
        raise ValueError(f"r2s_bounds must be (low, high) with low < high, got {r2s_bounds}")

    def fit(y: torch.Tensor, t: torch.Tensor, ff: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        fac = torch.ones_like(y) if ff is None else ff
        s0, r2 = _loglinear(y, t, ff)
        out_s0 = torch.nan_to_num(s0, nan=0.0, posinf=0.0).clamp_min(0.0)
        out_r2 = torch.nan_to_num(r2, nan=lo).clamp(lo, hi)
        # the loop works on the voxels still moving; finished ones are written back and dropped
        active = torch.arange(y.shape[1], device=y.device)
        s0, r2 = out_s0.clone(), out_r2.clone()

        def cost(a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            return ((a * torch.exp(-r * t) * fac - y) ** 2).sum(0)

        current = cost(s0, r2)
        damping = torch.full_like(s0, 1e-3)
        for _ in range(iterations):
            basis = torch.exp(-r2 * t) * fac  # d model / d S0
            d_r2 = -t * s0 * basis  # d model / d R2*
            res = s0 * basis - y
            jaa, jab, jbb = (basis * basis).sum(0), (basis * d_r2).sum(0), (d_r2 * d_r2).sum(0)
            ga, gb = (basis * res).sum(0), (d_r2 * res).sum(0)
            haa, hbb = jaa * (1 + damping), jbb * (1 + damping)
            det = (haa * hbb - jab * jab).clamp_min(_TINY)
            new_s0 = (s0 - (hbb * ga - jab * gb) / det).clamp_min(0.0)
            new_r2 = (r2 - (haa * gb - jab * ga) / det).clamp(lo, hi)
            new_cost = cost(new_s0, new_r2)
            better = new_cost < current
            small = ((new_r2 - r2).abs() < STEP_TOL_R2S) & ((new_s0 - s0).abs() <= STEP_TOL_REL * s0 + _TINY)
            s0 = torch.where(better, new_s0, s0)
            r2 = torch.where(better, new_r2, r2)
            current = torch.where(better, new_cost, current)
            damping = torch.where(better, damping * 0.3, damping * 10.0).clamp(1e-9, 1e9)
            done = small | (damping >= 1e9)
            if bool(done.any()):
                out_s0[active[done]], out_r2[active[done]] = s0[done], r2[done]
                keep = ~done
                active, s0, r2, current, damping = (
                    active[keep],
                    s0[keep],
                    r2[keep],
                    current[keep],
                    damping[keep],
                )
                y, fac = y[:, keep], fac[:, keep]
                if active.numel() == 0:
                    break
        out_s0[active], out_r2[active] = s0, r2
        return out_s0, out_r2

    return _chunked(fit, signal, te, f, chunk)
