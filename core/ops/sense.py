"""Coil sensitivities by ESPIRiT and Cartesian SENSE by conjugate gradients.

**ESPIRiT** (Uecker et al., MRM 2014), as BART's ``ecalib`` computes its first set of maps:

1. The calibration matrix ``A`` holds every ``k x k (x k)`` patch of the fully sampled
   calibration block (all coils), one patch per row. The rows of ``V^H`` with singular values
   ``sigma_i >= threshold * sigma_0`` (``V_par``) span the k-space patches the coils can produce
   (found from the eigen-decomposition of the smaller of ``A^H A`` and ``A A^H``). BART's
   default threshold 0.001 applies to ``sigma_i^2``: 0.0316 here.
2. In the image, the projection onto that subspace acts pixel by pixel: at position ``x`` it is
   ``M(x) = (1/K) sum_q g_q(x) g_q(x)^H`` with ``g_q(x)_c = sum_kappa V_par[c, kappa, q]
   exp(+i 2 pi kappa . x)`` and ``K`` kernel points. ``M`` is the inverse FFT of the
   autocorrelation of the kernels (``(2k-1)`` points per axis), so it is computed on a grid of any
   size from ``P = V_par V_par^H`` without forming the kernel images.
3. The sensitivities are the eigenvectors of ``M(x)`` of eigenvalue 1; where the largest
   eigenvalue is below ``crop`` (outside the object) the maps are zero. The phase of each
   pixel's eigenvector is fixed relative to the first principal component of the coils (a
   virtual body coil), as BART does, so that maps are smooth.

The eigen-decomposition runs on a grid of ``grid`` points per axis (default: the image size up to
64 per in-plane axis; maps are smooth) and the maps and eigenvalues are interpolated to the
image (cubic, periodic, on the pixel positions of ``core/units.py``) before cropping.

**SENSE** (Pruessmann et al., MRM 1999): ``min_x ||M F S x - y||^2 + lambda ||x||^2`` with the
Cartesian mask ``M`` over ``[kz, ky]``, the centred orthonormal FFT ``F`` (``fft.py``) and the
maps ``S``, solved by the project's conjugate gradients (``iterative.conjugate_gradient_solve``)
on the normal equations ``(S^H F^H M F S + lambda I) x = S^H F^H y``.
"""

from __future__ import annotations

import math

import torch

from mrzero.core.ops.fft import fftc, ifftc
from mrzero.core.ops.iterative import conjugate_gradient_solve

__all__ = ["estimate_sensitivities", "sense_reconstruct", "espirit_eigen"]


def _check_kspace(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_complex():
        raise ValueError(f"{name} must be a complex torch tensor")
    if x.dim() != 4:
        raise ValueError(f"{name} must be [coil, kz, ky, kx] (kz = 1 for 2D), got shape {tuple(x.shape)}")


def _central(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """The central ``sizes`` of the last dims of ``x`` (centre index ``n // 2`` stays centre)."""
    for axis, size in zip(range(-len(sizes), 0), sizes, strict=True):
        n = x.shape[axis]
        if size < n:
            x = x.narrow(axis, n // 2 - size // 2, size)
    return x


def _patches(block: torch.Tensor, kernel: tuple[int, int, int]) -> torch.Tensor:
    """Calibration matrix: every patch of ``block`` ``[c, z, y, x]``, ``[positions, c * K]``."""
    nc = block.shape[0]
    p = block.unfold(1, kernel[0], 1).unfold(2, kernel[1], 1).unfold(3, kernel[2], 1)
    # [c, pz, py, px, kz, ky, kx] -> [pz, py, px, c, kz, ky, kx]
    p = p.permute(1, 2, 3, 0, 4, 5, 6)
    return p.reshape(-1, nc * math.prod(kernel))


def _patch_subspace(a: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values of ``a`` and the basis ``[nc * K, keep]`` of its rows with ``s_i >= threshold s_0``.

    ``a = U S V^H`` row by row: every patch (row) is a combination of the rows of ``V^H``. The
    eigen-decomposition of the smaller Gram matrix (``A^H A`` or ``A A^H``) gives them at a
    fraction of a full SVD's cost.
    """
    rows, cols = a.shape
    small = a.conj().T @ a if rows >= cols else a @ a.conj().T
    evals, evecs = torch.linalg.eigh(small.to(torch.complex128))
    sv = evals.flip(0).clamp_min(0).sqrt()
    if not float(sv[0]) > 0:
        raise ValueError("the calibration block is zero: no coil sensitivities can be estimated")
    keep = int((sv >= threshold * sv[0]).sum())
    if rows >= cols:  # eigenvectors are the columns of V: the rows of V^H are their conjugates
        basis = evecs.flip(1)[:, :keep].conj()
    else:  # eigenvectors are the columns of U: V^H = S^-1 U^H A
        basis = ((evecs.flip(1)[:, :keep].conj().T @ a.to(torch.complex128)) / sv[:keep, None]).T
    return sv, basis


def espirit_eigen(
    acs: torch.Tensor,
    grid: tuple[int, int, int],
    kernel: int = 6,
    threshold: float = 0.0316,
    calibration_size: int = 24,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ESPIRiT's first eigenvectors and eigenvalues on ``grid`` ``(gz, gy, gx)``.

    Returns ``(maps [coil, gz, gy, gx], eigenvalues [gz, gy, gx])`` with unit-norm maps
    (phase relative to the coils' first principal component) and eigenvalues near 1 inside
    the object.
    """
    nc = acs.shape[0]
    block = _central(acs, (calibration_size,) * 3)
    ksize = tuple(min(kernel, n, (g + 1) // 2) for n, g in zip(block.shape[1:], grid, strict=True))
    positions = math.prod(n - k + 1 for n, k in zip(block.shape[1:], ksize, strict=True))
    if positions < 1:
        raise ValueError(f"the calibration block {tuple(block.shape[1:])} is smaller than the kernel {ksize}")
    a = _patches(block.to(torch.complex64), ksize)  # [positions, nc * K]
    _, v = _patch_subspace(a, threshold)  # [nc * K, keep]
    k_total = math.prod(ksize)
    proj = (v @ v.conj().T).reshape(nc, *ksize, nc, *ksize)
    # autocorrelation C[i, j, dz, dy, dx] = sum_{kappa - kappa' = delta} P[i, kappa, j, kappa']
    kz, ky, kx = ksize
    corr = torch.zeros(nc, nc, 2 * kz - 1, 2 * ky - 1, 2 * kx - 1, dtype=proj.dtype, device=proj.device)
    for az in range(kz):
        for ay in range(ky):
            for ax in range(kx):
                # kappa' = (az, ay, ax); delta = kappa - kappa' + (k - 1) as index
                corr[
                    :,
                    :,
                    kz - 1 - az : 2 * kz - 1 - az,
                    ky - 1 - ay : 2 * ky - 1 - ay,
                    kx - 1 - ax : 2 * kx - 1 - ax,
                ] += proj[:, :, :, :, :, az, ay, ax].permute(0, 4, 1, 2, 3)
    padded = torch.zeros(nc, nc, *grid, dtype=torch.complex64, device=acs.device)
    starts = [g // 2 - (k - 1) for g, k in zip(grid, ksize, strict=True)]
    padded[
        :,
        :,
        starts[0] : starts[0] + 2 * kz - 1,
        starts[1] : starts[1] + 2 * ky - 1,
        starts[2] : starts[2] + 2 * kx - 1,
    ] = corr.to(torch.complex64)
    ndim = 3 if grid[0] > 1 else 2
    m = ifftc(padded, ndim=ndim) * (math.sqrt(math.prod(grid[-ndim:])) / k_total)  # [nc, nc, *grid]
    m = m.permute(2, 3, 4, 0, 1).reshape(-1, nc, nc)
    m = 0.5 * (m + m.conj().transpose(1, 2))
    # phase relative to the coils' first principal component (a virtual body coil)
    flat = block.reshape(nc, -1).to(torch.complex64)
    u = torch.linalg.eigh(flat @ flat.conj().T)[1][:, -1]
    lam, vec = torch.linalg.eigh(m)
    top, val = vec[:, :, -1], lam[:, -1]  # [pix, nc], [pix]
    ref = top @ u.conj()
    top = top * torch.exp(-1j * torch.angle(ref))[:, None].to(top.dtype)
    maps = top.T.reshape(nc, *grid).to(acs.dtype)
    return maps, val.reshape(grid).to(torch.float32)


def _interpolate_axis(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """Cubic (Keys, a = -0.5) interpolation of a periodic axis from ``m`` to ``n`` pixels.

    Pixel centres as in ``units.py``: output pixel ``i`` at ``(i - n//2) / n`` of the FOV.
    """
    m = x.shape[dim]
    if m == n:
        return x
    pos = (torch.arange(n, dtype=torch.float64, device=x.device) - n // 2) / n * m + m // 2
    base = torch.floor(pos)
    t = pos - base
    shape = [1] * x.dim()
    shape[dim] = n
    out = None
    for offset in (-1, 0, 1, 2):
        d = (t - offset).abs()
        w = torch.where(d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2)
        term = x.index_select(dim, (base.long() + offset) % m) * w.to(torch.float32).reshape(shape)
        out = term if out is None else out + term
    return out


def estimate_sensitivities(
    acs: torch.Tensor,
    shape: tuple[int, int, int],
    kernel: int = 6,
    threshold: float = 0.0316,
    crop: float = 0.8,
    calibration_size: int = 24,
    grid: tuple[int, int, int] | None = None,
    max_grid: int = 64,
) -> torch.Tensor:
    """ESPIRiT coil sensitivities ``[coil, nz, ny, nx]`` from a fully sampled calibration block.

    ``acs`` ``[coil, kz_acs, ky_acs, kx]`` is the centre of k-space (its index ``n // 2`` on each
    axis is k = 0); ``shape = (nz, ny, nx)`` is the image the maps are for (the k-space
    matrix; ``nz = 1`` for 2D). Options: ``kernel`` (points per axis, BART's 6), ``threshold``
    (singular values kept relative to the largest), ``crop`` (eigenvalue below which maps are
    zero; 0 keeps everything), ``calibration_size`` (central points per axis of ``acs`` used),
    ``grid`` (eigen-decomposition grid; default the image size capped at ``max_grid`` in y and
    x, the image's nz in z).
    """
    _check_kspace("acs", acs)
    try:
        nz, ny, nx = (int(n) for n in shape)
    except (TypeError, ValueError) as error:
        raise ValueError(f"shape must be (nz, ny, nx), got {shape!r}") from error
    if min(nz, ny, nx) < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    if kernel < 1 or not 0 < threshold < 1 or not 0 <= crop < 1:
        raise ValueError(
            f"need kernel >= 1, 0 < threshold < 1, 0 <= crop < 1; got {kernel}, {threshold}, {crop}"
        )
    if acs.shape[1] > nz or acs.shape[2] > ny or acs.shape[3] > nx:
        raise ValueError(f"the calibration block {tuple(acs.shape[1:])} is larger than the image {shape}")
    if nz > 1 and acs.shape[1] < 2:
        raise ValueError("a 3D image needs a calibration block with more than one kz line")
    if grid is None:
        grid = (nz, min(ny, max_grid), min(nx, max_grid))
    grid = tuple(int(g) for g in grid)
    maps, val = espirit_eigen(acs, grid, kernel, threshold, calibration_size)
    for dim, n in zip((1, 2, 3), (nz, ny, nx), strict=True):
        maps = _interpolate_axis(maps, n, dim)
        val = _interpolate_axis(val[None], n, dim)[0]
    maps = maps / torch.linalg.vector_norm(maps, dim=0, keepdim=True).clamp_min(1e-12)
    return maps * (val > crop)[None].to(maps.dtype)


class CartesianSense:
    """``E = M F S`` on ``[nz, ny, nx]`` images: Cartesian mask ``[kz, ky]``, centred orthonormal FFT.

    ``adjoint(kspace [coil, kz, ky, kx]) -> [1, nz, ny, nx]``; ``normal_operator()`` returns
    ``x -> E^H E x``, the interface of ``Encoding`` that ``conjugate_gradient`` uses.
    """

    def __init__(self, sampled: torch.Tensor, maps: torch.Tensor):
        self.maps = maps
        self.mask = sampled[None, :, :, None].to(maps.dtype)
        self.ndim = 3 if maps.shape[1] > 1 else 2

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.mask * fftc(self.maps * image, self.ndim)

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * ifftc(self.mask * kspace, self.ndim)).sum(dim=0, keepdim=True)

    def normal_operator(self, weights=None, dtype=None):
        return lambda image: self.adjoint(self.forward(image))


def sense_reconstruct(
    kspace: torch.Tensor,
    sampled: torch.Tensor,
    maps: torch.Tensor,
    iterations: int = 30,
    regularization: float = 0.0,
    tolerance: float = 1e-6,
) -> torch.Tensor:
    """SENSE image ``[nz, ny, nx]`` (complex) from undersampled ``kspace`` ``[coil, kz, ky, kx]``.

    ``sampled`` ``[kz, ky]`` bool (or ``[kz, ky, kx]`` for masks that vary along the readout);
    ``maps`` ``[coil, nz, ny, nx]`` with the k-space's matrix. ``regularization`` is the
    Tikhonov ``lambda`` relative to the largest eigenvalue of ``E^H E`` (1 for unit-norm maps
    and orthonormal FFTs): absolute, not scaled with the data.
    """
    _check_kspace("kspace", kspace)
    if not isinstance(maps, torch.Tensor) or tuple(maps.shape) != tuple(kspace.shape):
        raise ValueError(
            f"maps must be [coil, nz, ny, nx] = {list(kspace.shape)} like the k-space, "
            f"got {list(getattr(maps, 'shape', []))}"
        )
    if not isinstance(sampled, torch.Tensor) or sampled.dtype != torch.bool:
        raise ValueError("sampled must be a bool tensor [kz, ky]")
    nz, ny, nx = kspace.shape[1:]
    if tuple(sampled.shape) not in ((nz, ny), (nz, ny, nx)):
        raise ValueError(
            f"sampled must be [kz, ky] = [{nz}, {ny}] (or [kz, ky, kx]), got {list(sampled.shape)}"
        )
    mask = sampled
    if regularization < 0:
        raise ValueError(f"regularization must be non-negative, got {regularization}")
    maps = maps.to(device=kspace.device, dtype=kspace.dtype)
    op = CartesianSense(mask.to(kspace.device), maps)
    if mask.dim() == 3:
        op.mask = mask.to(device=kspace.device, dtype=kspace.dtype)[None]
    rhs = op.adjoint(kspace)
    x = conjugate_gradient_solve(op.normal_operator(), rhs, iterations, regularization, tolerance)
    return x[0]
