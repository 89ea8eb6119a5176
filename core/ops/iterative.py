"""Iterative reconstructions on top of the encoding operator: the seed's iterative adjoint and CG.

The MRzero seed (supporting information, "radial MR", Eq. 2) solves ``E x = s`` by gradient
descent from ``x_0 = 0``: ``x_{n+1} = x_n - alpha E^H (E x_n - s)`` (the seed's ``2 alpha``
written as ``alpha``); one step is the plain adjoint, and about ten steps remove the blur of
radially oversampled k-space centres. The step ``alpha`` defaults to ``1 / ||E^H W E||`` from a
power iteration: every eigencomponent converges for steps below ``2 / ||E^H W E||``, and the
largest one converges in a single step at ``1 / ||E^H W E||``. Conjugate gradients on the normal equations
``(E^H W E + lambda I) x = E^H W s`` converge much faster for the same cost per iteration.

Both are plain torch loops, so autograd differentiates through every iteration (w.r.t. the
signal, the trajectory and coil sensitivities). The power-iteration step size is a constant
for autograd (computed without gradient). ``W`` is an optional per-sample weight (density
compensation, ``density.py``); a batch of independent images (coils without sensitivities)
is solved as independent systems.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mrzero.core.ops.encoding import Encoding


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of ``<a, b>`` per batch entry, shaped to broadcast over ``a``."""
    dims = tuple(range(1, a.dim()))
    return (a.conj() * b).real.sum(dim=dims, keepdim=True)


def _check_iterations(iterations: int) -> None:
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")


def power_iteration(
    normal: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor, iterations: int = 20, seed: int = 0
) -> float:
    """Estimate of the largest eigenvalue of ``normal`` (e.g. ``Encoding.normal_operator``).

    Starts from seeded noise shaped, typed and placed like ``like`` (one batch entry), runs
    without gradient.
    """
    _check_iterations(iterations)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, *like.shape[1:], dtype=like.dtype, generator=generator).to(like.device)
    estimate = 0.0
    with torch.no_grad():
        for _ in range(iterations):
            x = x / x.norm()
            y = normal(x)
            estimate = float(torch.vdot(x.flatten(), y.flatten()).real)
            x = y
    if not estimate > 0:
        raise ValueError("the encoding operator is zero (all weights zero?); cannot choose a gradient step")
    return estimate


def gradient_iteration(
    encoding: Encoding,
    signal: torch.Tensor,
    iterations: int = 10,
    step: float | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The seed's iterative adjoint: ``iterations`` steps of ``x <- x - step E^H W (E x - s)`` from 0.

    ``step`` defaults to ``1 / ||E^H W E||`` (power iteration); steps of ``2 / ||E^H W E||``
    or more diverge. Returns ``[batch or 1, *shape]``.
    """
    _check_iterations(iterations)
    if step is not None and not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    rhs = encoding.adjoint(signal if weights is None else signal * weights)
    normal = encoding.normal_operator(weights, dtype=signal.dtype)
    if step is None:
        step = 1.0 / power_iteration(normal, rhs)
    x = step * rhs
    for _ in range(iterations - 1):
        x = x - step * (normal(x) - rhs)
    return x


def conjugate_gradient(
    encoding: Encoding,
    signal: torch.Tensor,
    iterations: int = 10,
    tikhonov: float = 0.0,
    weights: torch.Tensor | None = None,
    tolerance: float = 1e-6,
) -> torch.Tensor:
    """CG on ``(E^H W E + tikhonov I) x = E^H W s`` from 0, at most ``iterations`` steps.

    Stops early once every batch entry's residual norm fell below ``tolerance`` times its
    initial one. Returns ``[batch or 1, *shape]``.
    """
    rhs = encoding.adjoint(signal if weights is None else signal * weights)
    normal = encoding.normal_operator(weights, dtype=signal.dtype)
    return conjugate_gradient_solve(normal, rhs, iterations, tikhonov, tolerance)


def conjugate_gradient_solve(
    normal: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    iterations: int = 10,
    tikhonov: float = 0.0,
    tolerance: float = 1e-6,
) -> torch.Tensor:
    """CG on ``(N + tikhonov I) x = rhs`` from 0 for any Hermitian non-negative operator ``N``.

    ``rhs`` is ``[batch, ...]``; each batch entry is an independent system. The loop behind
    ``conjugate_gradient`` (which supplies ``N = E^H W E`` and ``rhs = E^H W s``); also used by
    the Cartesian SENSE operator (``sense.py``), whose normal operator is FFT-based.
    """
    _check_iterations(iterations)
    if tikhonov < 0:
        raise ValueError(f"tikhonov must be non-negative, got {tikhonov}")
    x = torch.zeros_like(rhs)
    residual, direction = rhs, rhs
    rs = _batch_dot(residual, residual)
    threshold = tolerance**2 * rs.detach()
    for _ in range(iterations):
        if bool((rs.detach() <= threshold).all()):
            break
        applied = normal(direction) + tikhonov * direction
        curvature = _batch_dot(direction, applied)
        positive = curvature > 0
        alpha = torch.where(positive, rs / torch.where(positive, curvature, torch.ones_like(curvature)), 0)
        x = x + alpha * direction
        residual = residual - alpha * applied
        rs_new = _batch_dot(residual, residual)
        nonzero = rs > 0
        beta = torch.where(nonzero, rs_new / torch.where(nonzero, rs, torch.ones_like(rs)), 0)
        direction = residual + beta * direction
        rs = rs_new
    return x
