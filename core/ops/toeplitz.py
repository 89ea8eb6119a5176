"""The normal operator ``E^H W E`` by Toeplitz embedding: two FFTs per application.

``(E^H W E)[p, q] = T(x_p - x_q)`` with ``T(d) = sum_k w_k exp(+i 2 pi k . d) / n_x`` depends
only on the difference of pixel positions, so applying it is a convolution. ``T`` is evaluated
once on the doubled grid of differences ``(m - n) / n``, ``m = 0..2n-1`` per axis, as an adjoint
encoding of the weights with trajectory ``2k`` on a ``2n`` grid; then each application is a
circular convolution on the zero-padded ``2n`` grid (Wajer and Pruessmann 2001; Fessler et al.
2005). The iterations of ``iterative.py`` then cost two FFTs each instead of a forward and
adjoint NUFFT with their interpolations. The kernel is differentiable w.r.t. the trajectory
and the weights, since it is itself an adjoint encoding.
"""

from __future__ import annotations

import math

import torch

from mrzero.core.ops.encoding import Encoding, complex_dtype_of


class ToeplitzNormal:
    """``x -> E^H W E x`` for one coil-free encoding and optional per-sample weights ``W``.

    The kernel is computed when the operator is made, in the autograd mode of that moment, so
    make it outside ``torch.no_grad()`` when gradients must flow to the trajectory or weights.
    """

    def __init__(
        self, encoding: Encoding, weights: torch.Tensor | None = None, dtype: torch.dtype = torch.complex64
    ):
        self.shape = encoding.shape
        self.dims = tuple(range(1, len(self.shape) + 1))
        trajectory = encoding.trajectory[:, : len(self.shape)]
        doubled = Encoding(2 * trajectory, tuple(2 * n for n in self.shape), method=encoding.method)
        if weights is None:
            weights = torch.ones(encoding.n_samples, dtype=trajectory.dtype, device=trajectory.device)
        kernel = doubled.adjoint(weights.to(complex_dtype_of(dtype))[None]).to(dtype)
        kernel = kernel * math.sqrt(2 ** len(self.shape) / math.prod(self.shape))
        self.spectrum = torch.fft.fftn(torch.fft.ifftshift(kernel, dim=self.dims), dim=self.dims)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """``E^H W E image`` for ``image`` ``[batch, *shape]``."""
        doubled = tuple(2 * n for n in self.shape)
        padded = torch.zeros(image.shape[0], *doubled, dtype=image.dtype, device=image.device)
        inner = (slice(None), *(slice(0, n) for n in self.shape))
        padded[inner] = image
        spectrum = torch.fft.fftn(padded, dim=self.dims) * self.spectrum.to(image.dtype)
        return torch.fft.ifftn(spectrum, dim=self.dims)[inner]
