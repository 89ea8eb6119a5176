"""A ``Phantom`` from plain arrays (numpy or torch), filling the maps you leave out."""

from __future__ import annotations

import numpy as np
import torch

from mrzero.sequences.phantom import Phantom, PhantomError
from mrzero.sequences.phantoms.tissue import t2dash_from_t2star

ArrayLike = np.ndarray | torch.Tensor


def _tensor(name: str, value: ArrayLike, device, dtype: torch.dtype) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError) as err:
        raise PhantomError(f"{name} is not a numeric array: {err}") from err
    if t.is_complex():
        raise PhantomError(f"{name} must be real, got a complex array")
    return t.to(device=device, dtype=dtype)


def phantom_from_arrays(
    pd: ArrayLike,
    t1: ArrayLike,
    t2: ArrayLike,
    *,
    t2dash: ArrayLike | None = None,
    t2star: ArrayLike | None = None,
    b0: ArrayLike | None = None,
    b1: ArrayLike | None = None,
    coil_sens: ArrayLike | None = None,
    diffusion: ArrayLike | None = None,
    fov: tuple[float, float, float] = (0.2, 0.2, 0.005),
    name: str = "arrays",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """Build a ``Phantom`` from ``[ny, nx]`` (or ``[nz, ny, nx]``) maps in SI units.

    PD is relative, T1/T2/T2'/T2* in seconds, B0 in Hz, B1 relative, the diffusion coefficient
    (ADC) in m^2/s. Give T2' directly or T2* (then ``1/T2' = 1/T2* - 1/T2``), not both; missing
    maps mean no T2' dephasing, B0 = 0, B1 = 1 and no diffusion. Voxels with PD = 0 get
    T1 = T2 = 1 s where they hold 0, so engines never divide by zero. Shape and value problems
    raise ``PhantomError`` naming the map.
    """
    if t2dash is not None and t2star is not None:
        raise PhantomError("give t2dash or t2star, not both")
    maps = {
        "pd": _tensor("pd", pd, device, dtype),
        "t1": _tensor("t1", t1, device, dtype),
        "t2": _tensor("t2", t2, device, dtype),
    }
    shape = maps["pd"].shape
    for key in ("t1", "t2"):
        if maps[key].shape == shape:
            maps[key] = torch.where((maps["pd"] == 0) & (maps[key] <= 0), 1.0, maps[key])
    if t2star is not None:
        maps["t2dash"] = t2dash_from_t2star(maps["t2"], _tensor("t2star", t2star, device, dtype))
    else:
        maps["t2dash"] = (
            torch.zeros(shape, device=device, dtype=dtype)
            if t2dash is None
            else _tensor("t2dash", t2dash, device, dtype)
        )
    zeros = torch.zeros(shape, device=device, dtype=dtype)
    maps["b0"] = zeros if b0 is None else _tensor("b0", b0, device, dtype)
    maps["b1"] = torch.ones_like(zeros) if b1 is None else _tensor("b1", b1, device, dtype)
    coils = None
    if coil_sens is not None:
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        coils = torch.as_tensor(coil_sens).to(device=device, dtype=complex_dtype)
    adc = None if diffusion is None else _tensor("diffusion", diffusion, device, dtype)
    return Phantom(**maps, fov=tuple(float(f) for f in fov), coil_sens=coils, diffusion=adc, name=name)
