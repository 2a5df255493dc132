"""Layers of the image network: a RAFT-style multi-scale encoder and the per-point MLP."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from blinktrack_ros.models.image_config import STRIDE, ImageNetConfig


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm (no affine) and a 1x1 projection when strided."""

    def __init__(self, in_dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        # The reference code projects the skip path only when the block is strided.
        needs_skip = stride != 1 or in_dim != out_dim
        self.skip = nn.Conv2d(in_dim, out_dim, 1, stride=stride) if needs_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H/stride, W/stride)."""
        y = F.relu(F.instance_norm(self.conv1(x)))
        y = F.relu(F.instance_norm(self.conv2(y)))
        if self.skip is not None:
            x = F.instance_norm(self.skip(x))
        return F.relu(x + y)


class Encoder(nn.Module):
    """Gray image (B, 1, H, W) -> feature map (B, C, H/8, W/8), H and W multiples of 8.

    A 7x7 stride-2 stem, four residual stages (1/2, 1/4, 1/8, 1/16), each stage resized to 1/8
    (bilinear, align_corners=True) and fused by a 3x3 then a 1x1 convolution.
    """

    def __init__(self, config: ImageNetConfig) -> None:
        super().__init__()
        self.input_norm = config.input_norm
        self.stem = nn.Conv2d(1, config.stem_dim, 7, stride=2, padding=3)
        stages = []
        in_dim = config.stem_dim
        for i, dim in enumerate(config.stage_dims):
            blocks = [ResidualBlock(in_dim, dim, 1 if i == 0 else 2)]
            blocks += [ResidualBlock(dim, dim, 1) for _ in range(config.blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            in_dim = dim
        self.stages = nn.ModuleList(stages)
        self.fuse = nn.Conv2d(sum(config.stage_dims), config.fuse_dim, 3, padding=1)
        self.head = nn.Conv2d(config.fuse_dim, config.feature_dim, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> (B, C, H/8, W/8)."""
        size = (image.shape[-2] // STRIDE, image.shape[-1] // STRIDE)
        if self.input_norm:  # per frame: independent of brightness and contrast
            std, mean = torch.std_mean(image, dim=(-2, -1), keepdim=True)
            image = (image - mean) / (std + 0.02)
        x = F.relu(F.instance_norm(self.stem(image)))
        scales = []
        for stage in self.stages:
            x = stage(x)
            scales.append(F.interpolate(x, size, mode="bilinear", align_corners=True)
                          if x.shape[-2:] != size else x)
        x = F.relu(F.instance_norm(self.fuse(torch.cat(scales, dim=1))))
        return self.head(x)  # B C H/8 W/8


class MixerBlock(nn.Module):
    """Pre-norm residual feed-forward block: x + fc2(gelu(fc1(layer_norm(x))))."""

    def __init__(self, dim: int, expansion: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * expansion)
        self.fc2 = nn.Linear(dim * expansion, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dim) -> (N, dim)."""
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class PointMLP(nn.Module):
    """Per-point MLP: (N, input_dim) -> (N, 4) [dx, dy in 1/8 px, logits occluded, visible]."""

    def __init__(self, config: ImageNetConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(config.mlp_input_dim, config.mlp_dim)
        self.blocks = nn.Sequential(*[MixerBlock(config.mlp_dim, config.mlp_expansion)
                                      for _ in range(config.mlp_depth)])
        self.norm = nn.LayerNorm(config.mlp_dim)
        self.out = nn.Linear(config.mlp_dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_dim) -> (N, 4)."""
        return self.out(self.norm(self.blocks(self.inp(x))))


def flow_embedding(flow: torch.Tensor, embed_dim: int) -> torch.Tensor:
    """Sin/cos embedding of flows (N, 2) in 1/8 px -> (N, 2 * embed_dim + 2).

    Per coordinate, frequencies f_k = 2k * 1000 / embed_dim (k = 0 .. embed_dim/2 - 1) give
    interleaved [sin(f_0 u), cos(f_0 u), sin(f_1 u), ...]; x block, y block, then raw (x, y).
    These frequencies are those of the reference code, so its weights apply unchanged.
    """
    freqs = torch.arange(0, embed_dim, 2, dtype=flow.dtype, device=flow.device)
    freqs = freqs * (1000.0 / embed_dim)  # embed_dim/2
    phase = flow[:, :, None] * freqs  # N 2 embed_dim/2
    pairs = torch.stack((torch.sin(phase), torch.cos(phase)), dim=-1)  # N 2 embed_dim/2 2
    return torch.cat((pairs.reshape(flow.shape[0], -1), flow), dim=1)  # N 2*embed_dim+2
