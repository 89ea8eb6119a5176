"""The RoAR U-Net: echo magnitudes ``[B, E, H, W]`` -> S0 and R2* maps ``[B, 2, H, W]``.

The published network: a 3x3 convolution to ``width`` channels, ``depth`` encoder levels of
three 3x3 convolutions with ReLU (and dropout 0.1) at width, 2 width, 4 width, ... with 2x2
max-pooling between levels, a bottleneck of three convolutions at ``width * 2**depth``,
decoder levels of an up-convolution (a 3x3 transposed convolution of stride 2 followed by ReLU
and dropout, as in the paper's Fig. 1), skip concatenation and three convolutions, and a final
3x3 convolution to 2 channels without activation; no batch norm.
``width=64, depth=4`` is the published size (about 50 M parameters). Channel 0 is S0 (in
units of the normalised input), channel 1 is R2* in 1/s after multiplication by
``r2s_scale``, a fixed output scale that keeps the last layer's weights O(1).
The head's bias starts at S0 = 1, R2* = ``r2s_scale`` (typical normalised tissue values), so
that the self-supervised loss has useful gradients from the first step.
Inputs of any size are zero-padded to a multiple of ``2**depth`` and the output cropped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the U-Net; the defaults are the published network."""

    in_channels: int = 10
    width: int = 64
    depth: int = 4
    convs_per_level: int = 3
    dropout: float = 0.1
    r2s_scale: float = 20.0

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.width < 1 or self.depth < 1 or self.convs_per_level < 1:
            raise ValueError(f"U-Net sizes must be positive, got {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _up(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    """Up-convolution: 3x3 transposed convolution, stride 2 (exactly doubles H and W), ReLU, dropout."""
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(inplace=True),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _block(c_in: int, c_out: int, n: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class RoarUNet(nn.Module):
    """The 2D U-Net of RoAR; see the module docstring."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or UNetConfig()
        w, n, p = cfg.width, cfg.convs_per_level, cfg.dropout
        self.stem = nn.Conv2d(cfg.in_channels, w, 3, padding=1)
        self.down = nn.ModuleList(_block(w * 2 ** max(i - 1, 0), w * 2**i, n, p) for i in range(cfg.depth))
        self.bottom = _block(w * 2 ** (cfg.depth - 1), w * 2**cfg.depth, n, p)
        self.up = nn.ModuleList(_up(w * 2 ** (i + 1), w * 2**i, p) for i in reversed(range(cfg.depth)))
        self.dec = nn.ModuleList(_block(w * 2 ** (i + 1), w * 2**i, n, p) for i in reversed(range(cfg.depth)))
        self.head = nn.Conv2d(w, 2, 3, padding=1)
        with torch.no_grad():  # start at S0 = 1 (the normalised first echo) and R2* = r2s_scale
            self.head.bias.fill_(1.0)
        self.register_buffer(
            "out_scale", torch.tensor([1.0, cfg.r2s_scale]).reshape(1, 2, 1, 1), persistent=False
        )

    def forward(self, echoes: torch.Tensor) -> torch.Tensor:
        if echoes.ndim != 4 or echoes.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected [batch, {self.config.in_channels} echoes, H, W], got {tuple(echoes.shape)}"
            )
        h, w = echoes.shape[-2:]
        m = 2**self.config.depth
        x = F.pad(echoes, (0, -w % m, 0, -h % m))
        x = self.stem(x)
        skips = []
        for level in self.down:
            x = level(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return (self.head(x) * self.out_scale)[..., :h, :w]


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
