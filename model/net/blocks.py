"""Small building blocks of the low-resolution layer: conv blocks, gated conv, local attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvAct(nn.Module):
    """3x3 convolution followed by LeakyReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return F.leaky_relu(self.conv(x), 0.2)


class GatedConv(nn.Module):
    """Gated convolution: features times a learned soft gate, so the retouching branch can
    ignore the corrupted pixels inside a blemish and draw on the clean context around it."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the gated block."""
        feat, gate = self.conv(x).chunk(2, dim=1)
        return F.leaky_relu(feat, 0.2) * torch.sigmoid(gate)


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-channel mean over the valid pixels only, so padding never changes the statistic."""
    total = (x * valid).sum(dim=(2, 3), keepdim=True)
    count = valid.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    return total / count


class LocalAttention(nn.Module):
    """LAM: channel attention (squeeze-excite over valid pixels) and spatial attention
    (a 7x7 conv over per-pixel channel mean and max), applied together."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.channel = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.LeakyReLU(0.2), nn.Conv2d(hidden, channels, 1)
        )
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Reweight x by channel and by position; `valid` marks real (unpadded) pixels."""
        channel_gate = torch.sigmoid(self.channel(masked_mean(x, valid)))
        stats = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        spatial_gate = torch.sigmoid(self.spatial(stats))
        return x * channel_gate * spatial_gate * valid
