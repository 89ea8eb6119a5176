"""The orthonormal encoding operator ``E[k, x] = exp(-i 2 pi k . x) / sqrt(n_x)`` of ``units.py``.

``Encoding`` maps images ``[batch, *shape]`` (``shape`` = ``[ny, nx]`` or ``[nz, ny, nx]``) to
signals ``[batch, n_samples]`` for any trajectory ``[n_samples, d]`` in cycles/FOV whose columns
are (kx, ky[, kz]); pixel ``i`` of an ``n``-pixel axis sits at ``(i - n//2) / n`` (FOV units).
A 2D image sits at z = 0, so a third trajectory column does not change a 2D encoding.

Two interchangeable backends compute ``E`` and ``E^H``:

* ``exact``: the DFT itself, without approximation. The phase factor is separable,
  ``exp(-i 2 pi k.x) = prod_axes exp(-i 2 pi k_a x_a)``, so a block of samples costs a matrix
  product with a few ``[samples, n]`` factor tables instead of a ``[samples, n_x]`` matrix;
  samples are processed in blocks whose intermediate stays below ``max_elements`` entries,
  which bounds the peak memory for any trajectory length.
* ``nufft``: Kaiser-Bessel gridding (``core/ops/nufft.py``), much faster on large
  problems, accurate to about 1e-4 relative.

Both are wrapped in autograd functions whose backward passes are again encoding operations:
the gradient w.r.t. the data is the adjoint operator, and the gradient w.r.t. the trajectory
uses ``dE/dk_a = E diag(-i 2 pi x_a)``. Nothing is stored per block for the backward pass, so
training through a reconstruction stays memory-bounded too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence as SequenceABC
from typing import Protocol

import torch

#: Default budget of complex entries in one block's intermediate (2**24 entries = 128 MiB).
DEFAULT_MAX_ELEMENTS = 1 << 24

#: ``method="auto"`` uses the exact operator while samples x pixels stay below this.
AUTO_EXACT_LIMIT = 1 << 22

METHODS = ("auto", "exact", "nufft")


class EncodingError(ValueError):
    """The arguments of an encoding operation do not fit together."""


def real_dtype_of(dtype: torch.dtype) -> torch.dtype:
    """The real dtype matching a complex one (complex64 -> float32, complex128 -> float64)."""
    return torch.float64 if dtype == torch.complex128 else torch.float32


def complex_dtype_of(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real or complex one (float64/complex128 -> complex128)."""
    return torch.complex128 if dtype in (torch.float64, torch.complex128) else torch.complex64


def axis_positions(n: int, device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Pixel centres of an ``n``-pixel axis in FOV units, ``(i - n//2) / n`` (see ``units.py``)."""
    return (torch.arange(n, device=device, dtype=dtype) - n // 2) / n


def normalize_shape(matrix: int | SequenceABC[int]) -> tuple[int, ...]:
    """An image shape from ``n`` (square 2D), ``(ny, nx)`` or ``(nz, ny, nx)``; checks sizes."""
    shape = (int(matrix), int(matrix)) if isinstance(matrix, int) else tuple(int(n) for n in matrix)
    if not 1 <= len(shape) <= 3 or any(n < 1 for n in shape):
        raise EncodingError(f"image matrix must be 1 to 3 positive sizes, got {matrix!r}")
    return shape


def check_trajectory(trajectory: torch.Tensor, ndim: int) -> None:
    """Raise ``EncodingError`` unless ``trajectory`` is a finite real ``[n_samples, d]`` tensor, d >= ndim."""
    if not isinstance(trajectory, torch.Tensor):
        raise EncodingError(f"trajectory must be a torch tensor, got {type(trajectory).__name__}")
    if trajectory.dim() != 2 or not ndim <= trajectory.shape[1] <= 3:
        raise EncodingError(
            f"trajectory must be [n_samples, {ndim}..3] (kx, ky[, kz] in cycles/FOV) for a "
            f"{ndim}D image, got shape {list(trajectory.shape)}"
        )
    if trajectory.is_complex() or not trajectory.is_floating_point():
        raise EncodingError(f"trajectory must be real floating point, got {trajectory.dtype}")
    if trajectory.shape[0] == 0:
        raise EncodingError("trajectory has no samples")
    if not bool(torch.isfinite(trajectory.detach()).all()):
        raise EncodingError("trajectory contains NaN or infinite values")


class Backend(Protocol):
    """A linear encoding bound to one trajectory and image shape (no autograd inside)."""

    shape: tuple[int, ...]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[batch, *shape]`` -> ``[batch, n_samples]``."""
        ...

    def adjoint(self, signal: torch.Tensor) -> torch.Tensor:
        """``[batch, n_samples]`` -> ``[batch, *shape]``."""
        ...


class ExactBackend:
    """The DFT ``E`` evaluated exactly through its separable phase factors, in sample blocks."""

    def __init__(self, trajectory: torch.Tensor, shape: tuple[int, ...], max_elements: int):
        if max_elements < 1:
            raise EncodingError(f"max_elements must be positive, got {max_elements}")
        self.trajectory = trajectory.detach()
        self.shape = shape
        self.max_elements = max_elements
        self.lead = math.prod(shape[:-1])  # pixels of all axes but the last

    def _block(self, batch: int) -> int:
        return max(1, self.max_elements // max(1, batch * self.lead))

    def _factors(self, start: int, stop: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Phase tables of samples ``start:stop``: leading axes ``[K, lead]`` and last axis ``[K, nx]``.

        Phases are formed in float64 and reduced modulo one cycle before the complex exponential,
        so that float32 results stay accurate for large ``k . x``.
        """
        k = self.trajectory[start:stop].to(torch.float64)
        real = real_dtype_of(dtype)
        ndim = len(self.shape)
        tables = []
        for axis, n in enumerate(self.shape):
            cycles = k[:, ndim - 1 - axis, None] * axis_positions(n, k.device)[None, :]
            cycles = (cycles - torch.round(cycles)).to(real)
            tables.append(torch.polar(torch.ones_like(cycles), -2 * math.pi * cycles))
        lead = torch.ones(k.shape[0], 1, dtype=dtype, device=k.device)
        for table in tables[:-1]:
            lead = (lead[:, :, None] * table[:, None, :]).reshape(k.shape[0], -1)
        return lead, tables[-1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        batch, n_samples = image.shape[0], self.trajectory.shape[0]
        flat = image.reshape(batch, self.lead, self.shape[-1])
        out = torch.empty(batch, n_samples, dtype=image.dtype, device=image.device)
        step = self._block(batch)
        for start in range(0, n_samples, step):
            stop = min(start + step, n_samples)
            lead, last = self._factors(start, stop, image.dtype)
            partial = flat @ last.transpose(0, 1)  # [batch, lead, K]
            out[:, start:stop] = (partial * lead.transpose(0, 1)).sum(dim=1)
        return out / math.sqrt(math.prod(self.shape))

    def adjoint(self, signal: torch.Tensor) -> torch.Tensor:
        batch, n_samples = signal.shape[0], self.trajectory.shape[0]
        out = torch.zeros(batch, self.lead, self.shape[-1], dtype=signal.dtype, device=signal.device)
        step = self._block(batch)
        for start in range(0, n_samples, step):
            stop = min(start + step, n_samples)
            lead, last = self._factors(start, stop, signal.dtype)
            weighted = lead.conj().transpose(0, 1)[None] * signal[:, None, start:stop]  # [batch, lead, K]
            out += weighted @ last.conj()
        return out.reshape(batch, *self.shape) / math.sqrt(math.prod(self.shape))


def encoding_matrix(trajectory: torch.Tensor, matrix: int | SequenceABC[int]) -> torch.Tensor:
    """The dense matrix ``E`` ``[n_samples, n_x]`` (pixels in row-major order); small problems only.

    Differentiable w.r.t. ``trajectory`` through plain autograd; used as the reference that the
    fast backends are tested against.
    """
    shape = normalize_shape(matrix)
    check_trajectory(trajectory, len(shape))
    grids = torch.meshgrid(
        *[axis_positions(n, trajectory.device, trajectory.dtype) for n in shape], indexing="ij"
    )
    ndim = len(shape)
    phase = sum(trajectory[:, ndim - 1 - axis, None] * grid.reshape(1, -1) for axis, grid in enumerate(grids))
    unit = torch.polar(torch.ones_like(phase), -2 * math.pi * phase)
    return unit / math.sqrt(math.prod(shape))


def _position_weighted(image: torch.Tensor, shape: tuple[int, ...], column: int) -> torch.Tensor:
    """``-i 2 pi x_a * image`` for the image axis that trajectory column ``column`` encodes."""
    axis = len(shape) - 1 - column
    view = [1] * (len(shape) + 1)
    view[axis + 1] = shape[axis]
    pos = axis_positions(shape[axis], image.device, real_dtype_of(image.dtype)).reshape(view)
    return image * pos * (-2j * math.pi)


def _trajectory_grad(
    trajectory: torch.Tensor, backend: Backend, image: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """``sum_batch Re(conj(dE/dk_a image) * weight)`` per sample and column, ``[n_samples, d]``.

    Columns beyond the image's dimensions encode a coordinate at which every pixel sits at 0,
    so their gradient is zero.
    """
    grad = torch.zeros_like(trajectory)
    for column in range(len(backend.shape)):
        weighted = _position_weighted(image, backend.shape, column)
        derivative = _EncodingFunction.apply(weighted, trajectory, backend, False)
        grad[:, column] = (derivative.conj() * weight).real.sum(dim=0).to(trajectory.dtype)
    return grad


class _EncodingFunction(torch.autograd.Function):
    """``E(trajectory) data`` (``adjoint=False``) or ``E(trajectory)^H data`` with analytic backward passes.

    The gradient w.r.t. the data is the other direction of the same operator. W.r.t. the
    trajectory, with ``D = dE/dk`` applied to an image: forward ``Re(conj(D image) g)``; adjoint
    ``Re(conj(d(E^H s)/dk) g) = Re(conj(s) D g) = Re(conj(D g) s)``.
    """

    @staticmethod
    def forward(
        ctx, data: torch.Tensor, trajectory: torch.Tensor, backend: Backend, adjoint: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(data, trajectory)
        ctx.backend, ctx.adjoint = backend, adjoint
        return backend.adjoint(data) if adjoint else backend.forward(data)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        data, trajectory = ctx.saved_tensors
        grad_data = grad_trajectory = None
        if ctx.needs_input_grad[0]:
            grad_data = _EncodingFunction.apply(grad, trajectory, ctx.backend, not ctx.adjoint)
        if ctx.needs_input_grad[1]:
            image, weight = (grad, data) if ctx.adjoint else (data, grad)
            grad_trajectory = _trajectory_grad(trajectory, ctx.backend, image, weight)
        return grad_data, grad_trajectory, None, None


class Encoding:
    """The multi-coil encoding ``E_c = F S_c`` for one trajectory, image shape and backend.

    Without ``coil_sens`` every batch entry (coil) is encoded independently: ``forward`` maps
    ``[batch, *shape]`` to ``[batch, n_samples]`` and ``adjoint`` the reverse. With
    ``coil_sens`` ``[coils, *shape]`` the image is one object ``[1, *shape]`` (or ``[*shape]``),
    ``forward`` yields ``[coils, n_samples]`` and ``adjoint`` sums ``S_c^* F^H s_c`` into
    ``[1, *shape]``. Differentiable w.r.t. the data, the trajectory and the sensitivities.
    """

    def __init__(
        self,
        trajectory: torch.Tensor,
        matrix: int | SequenceABC[int],
        coil_sens: torch.Tensor | None = None,
        method: str = "auto",
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ):
        self.shape = normalize_shape(matrix)
        check_trajectory(trajectory, len(self.shape))
        if method not in METHODS:
            raise EncodingError(f"unknown encoding method {method!r}; choose one of {', '.join(METHODS)}")
        if coil_sens is not None and (
            coil_sens.dim() != len(self.shape) + 1 or tuple(coil_sens.shape[1:]) != self.shape
        ):
            raise EncodingError(
                f"coil_sens must be [coils, {', '.join(map(str, self.shape))}], got {list(coil_sens.shape)}"
            )
        self.trajectory = trajectory
        self.coil_sens = coil_sens
        self.n_samples = int(trajectory.shape[0])
        if method == "auto":
            method = "exact" if self.n_samples * math.prod(self.shape) <= AUTO_EXACT_LIMIT else "nufft"
        self.method = method
        if method == "exact":
            self.backend: Backend = ExactBackend(trajectory, self.shape, max_elements)
        else:
            from mrzero.core.ops.nufft import NufftBackend

            self.backend = NufftBackend(trajectory, self.shape)

    def check_image(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or not image.is_complex():
            raise EncodingError("image must be a complex torch tensor")
        if image.dim() == len(self.shape):
            image = image[None]
        if tuple(image.shape[1:]) != self.shape:
            raise EncodingError(
                f"image must be [batch, {', '.join(map(str, self.shape))}], got {list(image.shape)}"
            )
        if self.coil_sens is not None and image.shape[0] != 1:
            raise EncodingError(
                f"with coil sensitivities the image is one object [1, ...], got batch {image.shape[0]}"
            )
        return image

    def check_signal(self, signal: torch.Tensor) -> torch.Tensor:
        if not isinstance(signal, torch.Tensor) or not signal.is_complex():
            raise EncodingError("signal must be a complex torch tensor")
        if signal.dim() == 1:
            signal = signal[None]
        if signal.dim() != 2 or signal.shape[1] != self.n_samples:
            raise EncodingError(
                f"signal must be [coils, {self.n_samples}] to match the trajectory's "
                f"{self.n_samples} samples, got {list(signal.shape)}"
            )
        if self.coil_sens is not None and signal.shape[0] != self.coil_sens.shape[0]:
            raise EncodingError(
                f"signal has {signal.shape[0]} coils but coil_sens has {self.coil_sens.shape[0]}"
            )
        return signal

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``E image``: ``[batch or 1, *shape]`` -> ``[batch or coils, n_samples]``."""
        image = self.check_image(image)
        if self.coil_sens is not None:
            image = self.coil_sens.to(image.dtype) * image
        return _EncodingFunction.apply(image, self.trajectory, self.backend, False)

    def adjoint(self, signal: torch.Tensor) -> torch.Tensor:
        """``E^H signal``: ``[batch or coils, n_samples]`` -> ``[batch or 1, *shape]``."""
        signal = self.check_signal(signal)
        image = _EncodingFunction.apply(signal, self.trajectory, self.backend, True)
        if self.coil_sens is not None:
            image = (self.coil_sens.to(image.dtype).conj() * image).sum(dim=0, keepdim=True)
        return image

    def normal(self, image: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``E^H W E image`` with optional per-sample weights ``W`` (density compensation)."""
        signal = self.forward(image)
        return self.adjoint(signal if weights is None else signal * weights)

    def normal_operator(
        self,
        weights: torch.Tensor | None = None,
        toeplitz: bool | None = None,
        dtype: torch.dtype = torch.complex64,
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function ``image -> E^H W E image`` for repeated use (iterations).

        With ``toeplitz`` (default: for the NUFFT backend) the Toeplitz-embedding kernel is
        computed now, in ``dtype``, and each application costs two FFTs on a doubled grid.
        """
        if not (self.method == "nufft" if toeplitz is None else toeplitz):
            return lambda image: self.normal(image, weights)
        from mrzero.core.ops.toeplitz import ToeplitzNormal

        convolve = ToeplitzNormal(self, weights, dtype)
        if self.coil_sens is None:
            return lambda image: convolve(self.check_image(image))

        def sense_normal(image: torch.Tensor) -> torch.Tensor:
            sens = self.coil_sens.to(image.dtype)
            return (sens.conj() * convolve(sens * self.check_image(image))).sum(dim=0, keepdim=True)

        return sense_normal
