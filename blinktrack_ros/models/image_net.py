"""The image module network: encode a frame once, then refine many track positions against it.

Usage (build once, query many)::

    net = ImageNet(LITE).eval()
    birth = net.encode_frame(gray0)                      # once per frame
    ref_feats = net.sample_reference(birth, seeds_px)    # once per track, at its birth
    frame = net.encode_frame(gray1)
    positions_px, logits = net.track(frame, ref_feats, predicted_px, ref_positions=seeds_px)

Pixel-centre convention (used everywhere in this module, applied in `sample_map`): the centre of
image pixel (row i, column j) is at (x, y) = (j, i); cell (u, v) of a map at scale 1/s lies at
image coordinate (s*u, s*v). Frames are padded at the right and bottom only, so coordinates in the
padded frame equal coordinates in the original frame (unpadding is the identity).
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from blinktrack_ros.models.checkpoint import (
    CheckpointError,
    fusion_noise_of,
    load_checkpoint,
    save_checkpoint,
)
from blinktrack_ros.models.image_config import PAPER, STRIDE, ImageNetConfig
from blinktrack_ros.models.image_layers import Encoder, PointMLP, flow_embedding

KIND = "image_net"
REACH_PX_PYRAMID = 24.0  # training: searches starting farther from the truth are masked


@dataclass(frozen=True)
class FrameFeatures:
    """One encoded frame: the source of every per-track look-up on it.

    Attributes:
        pyramid: level l is a (C, h_l, w_l) feature map at 1/(8 * 2^l) of the padded frame;
            level 0 is the encoder output, level l+1 is a 2x2 average pooling of level l.
        image_size: (H, W) of the frame as given.
        padded_size: (H, W) after padding at the right and bottom.
    """

    pyramid: tuple[torch.Tensor, ...]
    image_size: tuple[int, int]
    padded_size: tuple[int, int]

    @property
    def feature_map(self) -> torch.Tensor:
        """(C, H/8, W/8) features of the padded frame."""
        return self.pyramid[0]


def sample_map(fmap: torch.Tensor, points: torch.Tensor, padding: str) -> torch.Tensor:
    """Bilinear samples of fmap (C, h, w) at points (N, K, 2) xy in cells -> (N, K, C).

    grid_sample with align_corners=True puts -1 and +1 on the centres of the first and last cells,
    so a point at integer (u, v) returns fmap[:, v, u] exactly. padding is 'zeros' or 'border'.
    """
    fmap = fmap.to(points.dtype)  # under autocast: sample bf16/fp16 maps in the grid's dtype
    out = F.grid_sample(fmap[None], cell_grid(points, *fmap.shape[-2:])[None], mode="bilinear",
                        padding_mode=padding, align_corners=True)  # 1 C N K
    return out[0].permute(1, 2, 0)  # N K C


def cell_grid(points: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Points (..., 2) xy in cells of an (h, w) map -> grid_sample coordinates (align_corners):
    -1 and +1 at the centres of the first and last cells."""
    return points * points.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)]) - 1.0


def window_offsets(radius: int) -> torch.Tensor:
    """(K, 2) xy offsets of a (2r+1)^2 window, x-major: index a*(2r+1)+b is (d_a, d_b).

    The x-major order is the reference code's (its weights depend on it).
    """
    d = torch.arange(-radius, radius + 1, dtype=torch.float32)
    ox, oy = torch.meshgrid(d, d, indexing="ij")
    return torch.stack((ox.reshape(-1), oy.reshape(-1)), dim=-1)  # K 2


def correlation(pyramid: tuple[torch.Tensor, ...], ref_feats: torch.Tensor, coords: torch.Tensor,
                radius: int) -> torch.Tensor:
    """Windowed correlation of reference features with every pyramid level.

    Args:
        pyramid: levels (C, h_l, w_l).
        ref_feats: (N, C) reference features.
        coords: (N, 2) xy in level-0 cells.
        radius: window radius r.

    Returns:
        (N, levels * (2r+1)^2): <ref, bilinear sample of level l at coords/2^l + offset> / sqrt(C),
        zero outside the map. Equal to sampling the full correlation volume (sampling is linear),
        at a cost independent of the image size.
    """
    offsets = window_offsets(radius).to(coords)  # K 2
    norm = 1.0 / math.sqrt(ref_feats.shape[1])
    out = []
    for level, fmap in enumerate(pyramid):
        points = coords[:, None, :] / 2**level + offsets  # N K 2
        samples = sample_map(fmap, points, "zeros")  # N K C
        out.append(torch.bmm(samples, ref_feats[:, :, None])[:, :, 0] * norm)  # N K
    return torch.cat(out, dim=1)  # N L*K


def correlation_volumes(pyramid: tuple[torch.Tensor, ...], ref_feats: torch.Tensor
                        ) -> tuple[torch.Tensor, ...]:
    """Full correlation volumes: level l is (N, 1, h_l, w_l) = <ref_n, fmap_l[:, v, u]> / sqrt(C).

    One matrix product per level; `sample_volumes` then gives what `correlation` gives (bilinear
    sampling is linear, and zero padding of the features is zero padding of the volume).
    """
    n, c = ref_feats.shape
    norm = 1.0 / math.sqrt(c)
    return tuple((ref_feats @ fmap.reshape(c, -1) * norm).reshape(n, 1, *fmap.shape[-2:])
                 for fmap in pyramid)


def sample_volumes(volumes: tuple[torch.Tensor, ...], coords: torch.Tensor, radius: int
                   ) -> torch.Tensor:
    """`correlation(pyramid, ref_feats, coords, radius)` from `correlation_volumes`: (N, L*K)."""
    offsets = window_offsets(radius).to(coords)  # K 2
    out = []
    for level, vol in enumerate(volumes):
        grid = cell_grid(coords[:, None, :] / 2**level + offsets, *vol.shape[-2:])  # N K 2
        out.append(F.grid_sample(vol.to(grid.dtype), grid[:, :, None], mode="bilinear",
                                 padding_mode="zeros",
                                 align_corners=True)[:, 0, :, 0])  # N K
    return torch.cat(out, dim=1)  # N L*K


def volumes_are_cheaper(pyramid: tuple[torch.Tensor, ...], radius: int, iterations: int) -> bool:
    """Whether full volumes (N * C * cells once per frame) cost less than windowed look-ups
    (N * C * 4 taps * K per level and iteration). The windowed gather runs far slower per
    multiply-add than the matrix product on CPU (lite, 64 tracks, 3 iterations, one thread:
    10.1 ms windowed vs 1.5 ms volumes at 240x180, 16.4 vs 6.0 ms at 1280x720), hence the
    factor 16."""
    cells = sum(int(f.shape[-1]) * int(f.shape[-2]) for f in pyramid)
    return cells <= 16 * 4 * (2 * radius + 1) ** 2 * len(pyramid) * iterations


class ImageNet(nn.Module):
    """Encoder + correlation pyramid + per-point MLP, iterated `config.iterations` times."""

    def __new__(cls, config: ImageNetConfig = PAPER):
        if cls is ImageNet and config is not None and config.arch == "patch":
            from blinktrack_ros.models.image_patch import PatchImageNet

            return super().__new__(PatchImageNet)
        return super().__new__(cls)

    def __init__(self, config: ImageNetConfig = PAPER) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.mlp = PointMLP(config)

    @property
    def reference_dim(self) -> int:
        """Width of one track's reference row (`sample_reference`)."""
        return self.config.feature_dim

    @property
    def reach_px(self) -> float:
        """How far (px, max norm) from the truth a search can start and still see it."""
        return REACH_PX_PYRAMID

    def encode_frame(self, gray: torch.Tensor | np.ndarray) -> FrameFeatures:
        """Encode a (H, W) float gray frame in [0, 1] once: feature map and pyramid.

        With `config.frame_padding` "replicate" the frame is padded (replicating the last
        row/column) at the right and bottom to a multiple of 8 and to at least
        `config.min_size_px` per side; with "none" (the authors' convention, converted official
        weights) it is encoded as given, padded only where a side is below `min_size_px`.
        """
        image = self._as_frame(gray)
        H, W = image.shape
        min_size = self.config.min_size_px
        if self.config.frame_padding == "none":
            Hp, Wp = max(H, min_size), max(W, min_size)
        else:
            Hp = max(-(-H // STRIDE) * STRIDE, min_size)
            Wp = max(-(-W // STRIDE) * STRIDE, min_size)
        x = image[None, None]  # 1 1 H W
        if (Hp, Wp) != (H, W):
            x = F.pad(x, (0, Wp - W, 0, Hp - H), mode="replicate")  # 1 1 Hp Wp
        levels = [self.encoder(x)[0]]  # C Hp/8 Wp/8
        for _ in range(self.config.corr_levels - 1):
            levels.append(F.avg_pool2d(levels[-1][None], 2, stride=2)[0])
        return FrameFeatures(tuple(levels), (int(H), int(W)), (int(Hp), int(Wp)))

    def sample_reference(self, frame: FrameFeatures, positions_px: torch.Tensor) -> torch.Tensor:
        """Reference features (N, C) at positions (N, 2) pixel xy, sampled once at birth.

        Outside the frame the nearest border feature is used (as in the reference code).
        """
        positions = self._as_points(positions_px)
        if positions.shape[0] == 0:
            return positions.new_zeros((0, self.config.feature_dim))
        return sample_map(frame.feature_map, positions[:, None] / STRIDE, "border")[:, 0]

    def track(self, frame: FrameFeatures, ref_feats: torch.Tensor,
              start_positions: torch.Tensor, ref_positions: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine track positions on one frame; the result of the final iteration.

        Args:
            frame: the encoded frame.
            ref_feats: (N, C) reference features from `sample_reference`.
            start_positions: (N, 2) pixel xy where the search starts (e.g. the fused prediction).
            ref_positions: (N, 2) pixel xy of each track at birth; the network sees the flow
                from there. None uses start_positions (zero initial flow).

        Returns:
            positions (N, 2) pixel xy and logits (N, 2) [occluded, visible].
        """
        return self.track_iterations(frame, ref_feats, start_positions, ref_positions)[-1]

    def track_iterations(self, frame: FrameFeatures, ref_feats: torch.Tensor,
                         start_positions: torch.Tensor, ref_positions: torch.Tensor | None = None
                         ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Like `track`, but (positions (N, 2) px, logits (N, 2)) after every iteration."""
        start = self._as_points(start_positions)
        ref = start if ref_positions is None else self._as_points(ref_positions)
        if ref_feats.ndim != 2 or not (ref_feats.shape[0] == start.shape[0] == ref.shape[0]):
            raise ValueError(f"need ref_feats (N, C) and positions (N, 2) with equal N, got "
                             f"{tuple(ref_feats.shape)}, {tuple(start.shape)}, {tuple(ref.shape)}")
        n = start.shape[0]
        if n == 0:
            return [(start.new_zeros((0, 2)), start.new_zeros((0, 2)))] * self.config.iterations
        coords = start / STRIDE  # N 2 in level-0 cells
        ref_coords = ref / STRIDE  # N 2
        radius = self.config.corr_radius
        # the reference features do not change between iterations: on small frames the full
        # correlation volumes, computed once, are cheaper than windowed look-ups per iteration
        volumes = correlation_volumes(frame.pyramid, ref_feats) if volumes_are_cheaper(
            frame.pyramid, radius, self.config.iterations) else None
        results = []
        for _ in range(self.config.iterations):
            coords = coords.detach()  # as in the reference: no gradient through earlier steps
            corr = correlation(frame.pyramid, ref_feats, coords, radius) if volumes is None \
                else sample_volumes(volumes, coords, radius)
            target = sample_map(frame.feature_map, coords[:, None], "border")[:, 0]  # N C
            embed = flow_embedding(coords - ref_coords, self.config.embed_dim)
            out = self.mlp(torch.cat((ref_feats, target, corr, embed), dim=1))  # N 4
            coords = coords + out[:, :2]
            results.append((coords * STRIDE, out[:, 2:]))
        return results

    def _as_frame(self, gray: torch.Tensor | np.ndarray) -> torch.Tensor:
        """A (H, W) gray frame on the network's device and dtype; ValueError otherwise."""
        image = torch.as_tensor(np.asarray(gray) if not torch.is_tensor(gray) else gray)
        if image.ndim != 2 or min(image.shape) < 1:
            raise ValueError(f"expected a (H, W) gray frame, got shape {tuple(image.shape)}")
        param = next(self.parameters())
        return image.to(device=param.device, dtype=param.dtype)

    def _as_points(self, positions: torch.Tensor | np.ndarray) -> torch.Tensor:
        param = next(self.parameters())
        points = torch.as_tensor(positions, dtype=param.dtype, device=param.device)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"expected positions (N, 2) pixel xy, got {tuple(points.shape)}")
        return points


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def save_image_net(path: str | Path, net: ImageNet, extra: dict[str, Any] | None = None) -> None:
    """Write the network as a checkpoint of kind 'image_net' with its config."""
    save_checkpoint(path, KIND, net.config, net.state_dict(), extra)


def _legacy_fields(extra: dict) -> dict:
    """Config values of checkpoints written before a field existed.

    frame_padding: every checkpoint before it was trained with padded frames, except those
    converted from the authors' weights (marked "converted_from"), which expect frames unpadded.
    """
    return {"frame_padding": "none" if extra.get("converted_from") else "replicate"}


def load_image_net(path: str | Path, device: str | torch.device = "cpu",
                   expected_config: ImageNetConfig | None = None) -> ImageNet:
    """Load an image network in eval mode; CheckpointError on kind/config/weight mismatch."""
    config, state_dict, extra = load_checkpoint(path, KIND, ImageNetConfig, expected_config,
                                                legacy_fields=_legacy_fields)
    net = ImageNet(config)
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {config}: {exc}") from exc
    # the measurement noise fitted for these weights, if any (FusionConfig.noise_from_weights)
    net.fusion_noise = fusion_noise_of(extra, path)
    return net.to(device).eval()
