"""Pixel-wise MLP head: per pixel, the magnitudes of ``n_in`` contrast images -> ``n_out`` values.

The seed's T1 head (MRzero supporting information 6.2): three hidden layers with ReLU. Each
pixel's signal vector is divided by its largest magnitude first, so the head sees the shape of
the signal evolution, not the proton density or receive scaling, and the same weights work
on phantoms of any PD.
"""

from __future__ import annotations

import torch
from torch import nn


class PixelMLP(nn.Module):
    """``[n_in, *spatial]`` complex or real contrast images -> ``[n_out, *spatial]`` real maps."""

    def __init__(self, n_in: int, hidden: tuple[int, ...] = (64, 64, 64), n_out: int = 1,
                 scale: float = 1.0) -> None:
        super().__init__()
        if n_in < 1 or n_out < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"PixelMLP needs n_in, n_out >= 1 and positive hidden sizes, "
                             f"got n_in={n_in}, hidden={hidden}, n_out={n_out}")
        sizes = (n_in, *hidden)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], n_out))
        self.net = nn.Sequential(*layers)
        self.n_in, self.scale = n_in, float(scale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[0] != self.n_in:
            raise ValueError(f"PixelMLP expects {self.n_in} contrast images, got {images.shape[0]}")
        mag = images.abs() if images.is_complex() else images
        spatial = mag.shape[1:]
        x = mag.reshape(self.n_in, -1).T  # [pixels, n_in]
        x = x / x.amax(dim=1, keepdim=True).clamp_min(1e-12)
        return (self.net(x) * self.scale).T.reshape(-1, *spatial)
