"""GRAPPA (Griswold et al., MRM 2002): missing k-space lines from their acquired neighbours.

Arrays are ``[coil, kz, ky, kx]`` (``kz = 1`` for 2D); ``sampled`` is a bool mask ``[kz, ky]``
of the acquired phase-encoding positions (every readout sample of an acquired line is acquired).
Undersampling is a regular lattice with steps ``(R_y, R_z)`` and any first-line offsets; lines
acquired in addition (calibration lines embedded in the imaging data) are kept as acquired.

**Kernel geometry.** A missing point at offset ``(d_z, d_y)`` (``0 <= d_y < R_y``,
``0 <= d_z < R_z``, not both 0) from the lattice point below it is a linear combination, over all
coils, of the acquired lattice points at ky offsets ``R_y * j`` (``kernel_size[1]`` blocks,
``j = -1, 0, 1, 2`` for 4), kz offsets ``R_z * j`` (``kz_blocks`` blocks: 2 by default when
``R_z > 1``, 3 for 3D data without kz acceleration, since the coils' z profiles spread each line
over neighbouring kz planes; likewise the 3 neighbouring ky lines when ``R_y = 1`` in 3D) and kx
offsets ``-2..2`` (``kernel_size[0]`` readout points). One set of weights predicts every missing
offset of a cell at once (the multi-target kernel of Gadgetron's ``grappa2d``). ``kernel_size``
is ``(readout points, ky blocks)``, Gadgetron's kRO x kE1.

**Calibration** fits the weights on a fully sampled block (the ACS) by regularised least
squares over every kernel position that fits inside it: ``W = T S^H (S S^H + lambda I)^-1``,
``lambda = regularization * trace(S S^H) / n_sources``. The normal equations are formed in
complex64 and solved in complex128.

**Application** is the same kernel slid over the lattice, as matrix products over blocks of
cells (memory bounded by ``max_elements``); samples outside the array count as zero. Missing
points are filled between the first and the last acquired lattice line, and up to one cell
beyond them (the array's edges when the lattice starts at an offset); missing points further
out (a partial-Fourier gap) stay zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GrappaKernel", "grappa_calibrate", "grappa_apply", "sampling_lattice"]


@dataclass(frozen=True, eq=False)
class GrappaKernel:
    """Calibrated GRAPPA weights and the geometry they belong to.

    ``weights`` ``[n_targets * coils, coils * n_sources]`` (complex), rows ordered
    (target offset, output coil), columns (input coil, source offset). ``sources`` are the
    source offsets ``(z, y, x)`` in *lattice* units for z/y (multiply by ``R``) and samples
    for x; ``targets`` are the missing offsets ``(d_z, d_y)`` in samples.
    """

    weights: torch.Tensor
    accel: tuple[int, int]
    kernel_size: tuple[int, int]
    kz_blocks: int
    coils: int
    sources: tuple[tuple[int, int, int], ...]
    targets: tuple[tuple[int, int], ...]

    def to(self, device: torch.device | str) -> GrappaKernel:
        """The same kernel with its weights on ``device``."""
        return GrappaKernel(
            self.weights.to(device),
            self.accel,
            self.kernel_size,
            self.kz_blocks,
            self.coils,
            self.sources,
            self.targets,
        )


def _blocks(n: int) -> list[int]:
    """Lattice offsets of ``n`` source blocks around a target: 4 -> -1..2, 5 -> -2..2, 1 -> 0."""
    return list(range(-((n - 1) // 2), n // 2 + 1))


def _readout(n: int) -> list[int]:
    """Readout offsets of ``n`` kernel points, centred: 5 -> -2..2, 4 -> -2..1."""
    return list(range(-(n // 2), n - n // 2))


def _check_accel(accel: tuple[int, int]) -> tuple[int, int]:
    try:
        ry, rz = (int(a) for a in accel)
    except (TypeError, ValueError) as error:
        raise ValueError(f"accel must be (R_y, R_z), got {accel!r}") from error
    if ry < 1 or rz < 1:
        raise ValueError(f"acceleration factors must be >= 1, got R_y={ry}, R_z={rz}")
    if ry * rz == 1:
        raise ValueError("R_y = R_z = 1: nothing is missing, GRAPPA has nothing to fill")
    return ry, rz


def _check_kspace(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_complex():
        raise ValueError(f"{name} must be a complex torch tensor")
    if x.dim() != 4:
        raise ValueError(f"{name} must be [coil, kz, ky, kx] (kz = 1 for 2D), got shape {tuple(x.shape)}")


def grappa_calibrate(
    acs: torch.Tensor,
    accel: tuple[int, int],
    kernel_size: tuple[int, int] = (5, 4),
    regularization: float = 1e-4,
    kz_blocks: int | None = None,
) -> GrappaKernel:
    """Fit GRAPPA weights on the fully sampled calibration block ``acs`` ``[coil, kz_acs, ky_acs, kx]``.

    ``accel = (R_y, R_z)``; ``kernel_size = (readout points, ky blocks)``; ``kz_blocks`` source
    planes in kz (default: 1 for a 2D block, 2 lattice planes for ``R_z > 1``, else the 3
    neighbouring planes). Raises ``ValueError`` when the block is too
    small for the kernel (fewer fitting positions than unknowns per target).
    """
    _check_kspace("acs", acs)
    ry, rz = _check_accel(accel)
    nkx, nby = (int(k) for k in kernel_size)
    if nkx < 1 or nby < 1:
        raise ValueError(f"kernel_size must be positive (readout points, ky blocks), got {kernel_size!r}")
    if ry > 1 and nby < 2:
        raise ValueError(f"R_y = {ry} needs at least 2 ky blocks in the kernel, got {nby}")
    nc, hz, hy, hx = acs.shape
    if ry == 1:  # no ky acceleration: the neighbouring lines (what coil profiles spread over)
        nby = min(3, hy)
    if kz_blocks is None:  # 3D: the coils' z profiles spread every line over neighbouring kz planes
        kz_blocks = 1 if hz == 1 else (min(3, hz) if rz == 1 else 2)
    nbz = int(kz_blocks)
    if rz > 1 and nbz < 2:
        raise ValueError(f"R_z = {rz} needs at least 2 kz blocks in the kernel, got {nbz}")
    if nbz < 1:
        raise ValueError(f"kz_blocks must be positive, got {nbz}")
    if regularization < 0:
        raise ValueError(f"regularization must be non-negative, got {regularization}")
    by, bz, bx = _blocks(nby), _blocks(nbz), _readout(nkx)
    sources = tuple((jz, jy, jx) for jz in bz for jy in by for jx in bx)
    targets = tuple((dz, dy) for dz in range(rz) for dy in range(ry) if (dz, dy) != (0, 0))

    # kernel positions (lattice origin z0, y0, x0) whose sources and targets lie in the block
    def span(blocks: list[int], r: int, n: int, axis: str) -> range:
        lo = -r * min(blocks)
        hi = n - 1 - max(r * max(blocks), r - 1)
        if hi < lo:
            need = max(r * max(blocks), r - 1) - r * min(blocks) + 1
            raise ValueError(
                f"the calibration block has {n} {axis} lines; the kernel ({len(blocks)} "
                f"{axis} blocks at R={r}) spans {need}: too few ACS lines for the kernel"
            )
        return range(lo, hi + 1)

    zs, ys, xs = span(bz, rz, hz, "kz"), span(by, ry, hy, "ky"), span(bx, 1, hx, "kx")
    equations = len(zs) * len(ys) * len(xs)
    unknowns = nc * len(sources)
    if equations < unknowns:
        raise ValueError(
            f"too few ACS lines for the kernel: the calibration block "
            f"[{hz} kz x {hy} ky x {hx} kx] gives {equations} kernel positions for "
            f"{unknowns} unknowns per target (coils x kernel points); acquire more "
            "calibration lines or use a smaller kernel"
        )

    def window(z: int, y: int, x: int) -> torch.Tensor:  # [nc, len(zs), len(ys), len(xs)]
        return acs[:, zs.start + z : zs.stop + z, ys.start + y : ys.stop + y, xs.start + x : xs.stop + x]

    src = torch.stack([window(rz * jz, ry * jy, jx) for jz, jy, jx in sources], dim=1)
    src = src.reshape(unknowns, equations).to(torch.complex64)  # [nc * nsrc, eq]
    tgt = torch.stack([window(dz, dy, 0) for dz, dy in targets], dim=0)
    tgt = tgt.reshape(len(targets) * nc, equations).to(torch.complex64)  # [ntgt * nc, eq]
    gram = (src @ src.conj().T).to(torch.complex128)
    rhs = (tgt @ src.conj().T).to(torch.complex128)
    lam = regularization * gram.diagonal().real.sum() / unknowns
    eye = torch.eye(unknowns, dtype=gram.dtype, device=gram.device)
    # W (S S^H + lam I) = T S^H  <=>  (S S^H + lam I)^H W^H = (T S^H)^H
    weights = torch.linalg.solve(gram + lam * eye, rhs.conj().T).conj().T
    return GrappaKernel(weights.to(acs.dtype), (ry, rz), (nkx, nby), nbz, nc, sources, targets)


def sampling_lattice(sampled: torch.Tensor, accel: tuple[int, int]) -> tuple[int, int]:
    """The lattice offsets ``(o_y, o_z)`` of a mask ``[kz, ky]`` sampled with ``accel = (R_y, R_z)``.

    Extra acquired lines (ACS) are allowed. Raises ``ValueError`` when no lattice of these steps
    is complete between its first and last acquired line, or when the data are sampled more
    densely than ``accel`` says.
    """
    ry, rz = (int(a) for a in accel)
    if sampled.dim() != 2 or sampled.dtype != torch.bool:
        raise ValueError(f"sampled must be a bool mask [kz, ky], got {sampled.dtype} {tuple(sampled.shape)}")
    if not bool(sampled.any()):
        raise ValueError("no line is sampled")
    best, best_count = None, -1
    for oz in range(min(rz, sampled.shape[0])):
        for oy in range(min(ry, sampled.shape[1])):
            count = int(sampled[oz::rz, oy::ry].sum())
            if count > best_count:
                best, best_count = (oy, oz), count
    oy, oz = best
    lattice = sampled[oz::rz, oy::ry]
    zi = torch.nonzero(lattice.any(dim=1)).flatten()
    yi = torch.nonzero(lattice.any(dim=0)).flatten()
    box = lattice[int(zi[0]) : int(zi[-1]) + 1, int(yi[0]) : int(yi[-1]) + 1]
    if not bool(box.all()):
        missing = int((~box).sum())
        raise ValueError(
            f"the sampling does not match R_y={ry}, R_z={rz}: the best lattice of these "
            f"steps misses {missing} of its {box.numel()} lines between its first and last "
            "acquired line"
        )
    # denser than stated: some other lattice offset is complete over the same extent too
    z0, z1 = oz + rz * int(zi[0]), oz + rz * int(zi[-1])
    y0, y1 = oy + ry * int(yi[0]), oy + ry * int(yi[-1])
    for dz in range(rz):
        for dy in range(ry):
            if (dz, dy) == (0, 0):
                continue
            shifted = sampled[z0 + dz : z1 + dz + 1 : rz, y0 + dy : y1 + dy + 1 : ry]
            if shifted.numel() > 1 and bool(shifted.all()):
                raise ValueError(
                    f"the sampling does not match R_y={ry}, R_z={rz}: the k-space is sampled more "
                    f"densely (the lattice shifted by {dy} ky and {dz} kz lines is acquired too)"
                )
    return oy, oz


def grappa_apply(
    kernel: GrappaKernel, kspace: torch.Tensor, sampled: torch.Tensor, max_elements: int = 1 << 24
) -> torch.Tensor:
    """Fill the missing lines of ``kspace`` ``[coil, kz, ky, kx]`` (zeros where not ``sampled``).

    ``sampled`` ``[kz, ky]`` bool; acquired lines are returned unchanged. ``max_elements``
    bounds the source-patch buffer (complex entries) per block of cells.
    """
    _check_kspace("kspace", kspace)
    nc, nz, ny, nx = kspace.shape
    if nc != kernel.coils:
        raise ValueError(f"kspace has {nc} coils, the kernel was calibrated for {kernel.coils}")
    if not isinstance(sampled, torch.Tensor) or tuple(sampled.shape) != (nz, ny):
        raise ValueError(
            f"sampled must be a bool mask [kz, ky] = [{nz}, {ny}], got {tuple(getattr(sampled, 'shape', ()))}"
        )
    sampled = sampled.to(device=kspace.device, dtype=torch.bool)
    ry, rz = kernel.accel
    oy, oz = sampling_lattice(sampled, (ry, rz))
    data = kspace * sampled[None, :, :, None].to(kspace.dtype)
    weights = kernel.weights.to(device=kspace.device, dtype=kspace.dtype)
    lattice = data[:, oz::rz, oy::ry]  # [nc, lz, ly, nx]
    lz, ly = lattice.shape[1], lattice.shape[2]
    jz = [s[0] for s in kernel.sources]
    jy = [s[1] for s in kernel.sources]
    jx = [s[2] for s in kernel.sources]
    # cells b in [-1 or 0, l - 1]: cell b predicts positions o + R b + d
    first_z, first_y = (-1 if rz > 1 else 0), (-1 if ry > 1 else 0)
    cz, cy = lz - first_z, ly - first_y
    pad_z = (max(0, -(first_z + min(jz))), max(0, max(jz)))
    pad_y = (max(0, -(first_y + min(jy))), max(0, max(jy)))
    pad_x = (max(0, -min(jx)), max(0, max(jx)))
    padded = torch.nn.functional.pad(lattice, (*pad_x, *pad_y, *pad_z))
    # fill region: the extent of acquired lattice lines plus one cell on each side
    lat = sampled[oz::rz, oy::ry]
    zi = torch.nonzero(lat.any(dim=1)).flatten()
    yi = torch.nonzero(lat.any(dim=0)).flatten()
    zlo, zhi = oz + rz * (int(zi[0]) - 1) + 1, oz + rz * (int(zi[-1]) + 1) - 1
    ylo, yhi = oy + ry * (int(yi[0]) - 1) + 1, oy + ry * (int(yi[-1]) + 1) - 1

    out = data.clone()
    nsrc = len(kernel.sources)
    rows = max(1, max_elements // max(1, nc * nsrc * cy * nx))
    for b0 in range(0, cz, rows):
        b1 = min(cz, b0 + rows)
        nbz = b1 - b0
        patches = torch.stack(
            [
                padded[
                    :,
                    pad_z[0] + first_z + b0 + z : pad_z[0] + first_z + b1 + z,
                    pad_y[0] + first_y + y : pad_y[0] + first_y + cy + y,
                    pad_x[0] + x : pad_x[0] + x + nx,
                ]
                for z, y, x in kernel.sources
            ],
            dim=1,
        )  # [nc, nsrc, nbz, cy, nx]
        pred = weights @ patches.reshape(nc * nsrc, -1)  # [ntgt * nc, nbz * cy * nx]
        pred = pred.reshape(len(kernel.targets), nc, nbz, cy, nx)
        for t, (dz, dy) in enumerate(kernel.targets):
            z = oz + rz * (first_z + torch.arange(b0, b1, device=kspace.device)) + dz
            y = oy + ry * (first_y + torch.arange(cy, device=kspace.device)) + dy
            zok = (z >= max(0, zlo)) & (z <= min(nz - 1, zhi))
            yok = (y >= max(0, ylo)) & (y <= min(ny - 1, yhi))
            if not bool(zok.any()) or not bool(yok.any()):
                continue
            zsel, ysel = torch.nonzero(zok).flatten(), torch.nonzero(yok).flatten()
            zz, yy = z[zsel], y[ysel]
            block = pred[t][:, zsel][:, :, ysel]  # [nc, nzs, nys, nx]
            keep = sampled[zz][:, yy]  # acquired: unchanged
            current = out[:, zz][:, :, yy]
            merged = torch.where(keep[None, :, :, None], current, block)
            out[:, zz[:, None], yy[None, :]] = merged
    return out
