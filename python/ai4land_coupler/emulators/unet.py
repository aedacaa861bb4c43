"""A compact U-Net: three 2× poolings (tiles must be multiples of 8), GroupNorm, leaky ReLU.

Every operation gives the same bits for any torch thread count (no transcendental elementwise
functions, whose vector and scalar code paths round differently at thread-chunk edges), so the
coupled output does not depend on how many ranks and threads run it.
"""
from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4), channels)


class DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), _norm(c_out), nn.LeakyReLU(0.1),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _norm(c_out), nn.LeakyReLU(0.1),
        )


class FixedOrderHead(nn.Conv2d):
    """1×1 convolution summed over input channels in a fixed order.

    The library 1×1 path changes its summation with the torch thread count, and so the bits; this
    keeps the output identical for any thread count (the weights are those of an ``nn.Conv2d``).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight[:, :, 0, 0]
        y = self.bias.view(1, -1, 1, 1) + w[:, 0].view(1, -1, 1, 1) * x[:, 0:1]
        for k in range(1, x.shape[1]):
            y = y + w[:, k].view(1, -1, 1, 1) * x[:, k:k + 1]
        return y


class UNet(nn.Module):
    """Encoder widths ``widths[0..3]``: full, 1/2, 1/4 resolution and a 1/8 bottleneck."""

    DOWNSAMPLING = 8

    def __init__(self, in_channels: int, out_channels: int, widths: tuple[int, ...] = (16, 32, 48, 64)):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"UNet needs 4 widths (3 levels + bottleneck), got {widths}")
        self.in_channels, self.out_channels, self.widths = in_channels, out_channels, tuple(widths)
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(DoubleConv(c, w))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.merge.append(DoubleConv(2 * w, w))
            c = w
        self.head = FixedOrderHead(c, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.DOWNSAMPLING or w % self.DOWNSAMPLING:
            raise ValueError(f"UNet input {h}x{w} is not a multiple of {self.DOWNSAMPLING}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)
