"""Small CNN head: image -> image, a residual stack of 3x3 convolutions on (real, imaginary) channels.

The seed's path II (a network layer after the adjoint reconstruction) for targets that are not
MR images, e.g. a segmentation mask. The output starts as the input magnitude (the last layer
is zero-initialised), so training begins from the plain reconstruction.
"""

from __future__ import annotations

import torch
from torch import nn


class ImageCNN(nn.Module):
    """``[n_in, ny, nx]`` complex images -> ``[n_out, ny, nx]`` real images."""

    def __init__(self, n_in: int = 1, channels: int = 16, layers: int = 3, n_out: int = 1) -> None:
        super().__init__()
        if min(n_in, channels, layers, n_out) < 1:
            raise ValueError(
                f"ImageCNN needs positive sizes, got n_in={n_in}, channels={channels}, "
                f"layers={layers}, n_out={n_out}"
            )
        convs: list[nn.Module] = [nn.Conv2d(3 * n_in, channels, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 1):
            convs += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        last = nn.Conv2d(channels, n_out, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        convs.append(last)
        self.net = nn.Sequential(*convs)
        self.n_in, self.n_out = n_in, n_out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 3 or images.shape[0] != self.n_in:
            raise ValueError(f"ImageCNN expects [{self.n_in}, ny, nx] images, got {list(images.shape)}")
        z = images if images.is_complex() else images.to(torch.complex64)
        mag = z.abs()
        x = torch.cat([z.real, z.imag, mag])[None]
        base = mag.mean(0, keepdim=True).expand(self.n_out, -1, -1)
        return base + self.net(x)[0]
