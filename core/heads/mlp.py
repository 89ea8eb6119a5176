"""Pixel-wise MLP head: per pixel, the signals of ``n_in`` contrast images -> ``n_out`` values.

The seed's T1 head (MRzero supporting information 6.2): three hidden layers with ReLU. What
the network sees of a pixel (``features``) is made independent of its proton density, receive
scaling and phase, so the same weights work on any phantom:

* ``magnitude``: ``|s_k| / max_k |s_k|``, the shape of the signal evolution (``n_in`` inputs);
* ``complex``: ``s_k conj(s_ref) / |s_ref|^2`` with ``ref`` the strongest readout, as real and
  imaginary parts (``2 n_in`` inputs). The phase relative to that readout keeps the sign of the
  magnetisation (an inversion-recovery signal changes sign at its null, which the magnitude
  folds away) and drops the B0, B1 and receiver phase that all readouts share.
"""

from __future__ import annotations

import torch
from torch import nn

FEATURES = ("magnitude", "complex")


class PixelMLP(nn.Module):
    """``[n_in, *spatial]`` complex or real contrast images -> ``[n_out, *spatial]`` real maps."""

    def __init__(
        self,
        n_in: int,
        hidden: tuple[int, ...] = (64, 64, 64),
        n_out: int = 1,
        scale: float = 1.0,
        features: str = "magnitude",
    ) -> None:
        super().__init__()
        if n_in < 1 or n_out < 1 or not hidden or min(hidden) < 1:
            raise ValueError(
                f"PixelMLP needs n_in, n_out >= 1 and positive hidden sizes, "
                f"got n_in={n_in}, hidden={hidden}, n_out={n_out}"
            )
        if features not in FEATURES:
            raise ValueError(f"PixelMLP features must be one of {FEATURES}, got {features!r}")
        sizes = ((2 if features == "complex" else 1) * n_in, *hidden)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], n_out))
        self.net = nn.Sequential(*layers)
        self.n_in, self.scale, self.features = n_in, float(scale), features

    def pixel_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[pixels, inputs]``: what the network sees of each pixel (see the module docstring)."""
        x = images.reshape(self.n_in, -1).T  # [pixels, n_in]
        if self.features == "magnitude":
            mag = x.abs() if x.is_complex() else x
            return mag / mag.amax(dim=1, keepdim=True).clamp_min(1e-12)
        z = x if x.is_complex() else x.to(torch.complex64)
        ref = torch.gather(z, 1, z.abs().argmax(dim=1, keepdim=True))
        rel = z * ref.conj() / (ref.abs() ** 2).clamp_min(1e-24)
        return torch.cat([rel.real, rel.imag], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[0] != self.n_in:
            raise ValueError(f"PixelMLP expects {self.n_in} contrast images, got {images.shape[0]}")
        out = self.net(self.pixel_features(images)) * self.scale
        return out.T.reshape(-1, *images.shape[1:])
