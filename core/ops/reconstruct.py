"""One call from signal and trajectory to complex images: adjoint, iterative adjoint or CG.

This is what the ``adjoint``/``iterative_adjoint`` pipelines and the MRzero training loop call;
it only validates arguments, builds the ``Encoding`` and picks the solver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence as SequenceABC

import torch

from mrzero.core.ops.density import pipe_menon_density
from mrzero.core.ops.encoding import DEFAULT_MAX_ELEMENTS, Encoding, EncodingError, real_dtype_of
from mrzero.core.ops.iterative import conjugate_gradient, gradient_iteration

RECON_METHODS = ("adjoint", "iterative", "cg")

log = logging.getLogger(__name__)


def _weights(
    density: str | torch.Tensor | None,
    trajectory: torch.Tensor,
    matrix: int | SequenceABC[int],
    n_samples: int,
) -> torch.Tensor | None:
    if density is None:
        return None
    if isinstance(density, str):
        if density != "pipe":
            raise EncodingError(f"unknown density compensation {density!r}; use 'pipe', a tensor or None")
        return pipe_menon_density(trajectory, matrix)
    if density.shape != (n_samples,) or density.is_complex():
        raise EncodingError(
            f"density weights must be real [{n_samples}], got {density.dtype} {list(density.shape)}"
        )
    return density


def reconstruct(
    signal: torch.Tensor,
    trajectory: torch.Tensor,
    matrix: int | SequenceABC[int],
    method: str = "adjoint",
    iterations: int = 10,
    coil_sens: torch.Tensor | None = None,
    density: str | torch.Tensor | None = None,
    tikhonov: float = 0.0,
    step: float | None = None,
    operator: str = "auto",
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> torch.Tensor:
    """Complex images ``[coils or 1, *matrix]`` from ``signal`` ``[coils, n_samples]`` (or ``[n_samples]``).

    ``trajectory`` is ``[n_samples, 2 or 3]`` in cycles/FOV; ``matrix`` is ``n``, ``(ny, nx)`` or
    ``(nz, ny, nx)``. ``method``: ``adjoint`` (``E^H W s``), ``iterative`` (the seed's gradient
    iteration, ``iterations`` steps of size ``step``, default from a power iteration) or ``cg``
    (conjugate gradients, optional ``tikhonov`` lambda). ``density``: ``None``, ``"pipe"``
    (Pipe-Menon weights) or real weights ``[n_samples]``. With ``coil_sens`` ``[coils, *matrix]``
    the coils are combined into one image (SENSE); without, each coil is reconstructed on its own.
    ``operator``: ``exact``, ``nufft`` or ``auto`` (exact for small problems).
    """
    if method not in RECON_METHODS:
        raise EncodingError(
            f"unknown reconstruction method {method!r}; choose one of {', '.join(RECON_METHODS)}"
        )
    start = time.perf_counter()
    encoding = Encoding(trajectory, matrix, coil_sens=coil_sens, method=operator, max_elements=max_elements)
    signal = encoding.check_signal(signal)
    weights = _weights(density, trajectory, encoding.shape, encoding.n_samples)
    if weights is not None:
        weights = weights.to(device=signal.device, dtype=real_dtype_of(signal.dtype))
    if method == "adjoint":
        images = encoding.adjoint(signal if weights is None else signal * weights)
    elif method == "iterative":
        images = gradient_iteration(encoding, signal, iterations=iterations, step=step, weights=weights)
    else:
        images = conjugate_gradient(
            encoding, signal, iterations=iterations, tikhonov=tikhonov, weights=weights
        )
    log.debug(
        "%s reconstruction (%s operator, %d samples x %d coils -> %s, %s iterations) in %.3f s",
        method,
        encoding.method,
        encoding.n_samples,
        signal.shape[0],
        list(images.shape),
        iterations if method != "adjoint" else 0,
        time.perf_counter() - start,
    )
    return images
