"""Configurations of the image module network: `paper` (the authors' size) and `lite` (CPU)."""

from __future__ import annotations

from dataclasses import dataclass

STRIDE = 8  # the feature map is at 1/8 of the (padded) image resolution
FRAME_PADDINGS = ("replicate", "none")


@dataclass(frozen=True)
class ImageNetConfig:
    """Sizes of the image network (frozen; stored in checkpoints).

    Attributes:
        stem_dim: channels of the 7x7 stride-2 stem convolution.
        stage_dims: channels of the four residual stages (strides 1, 2, 2, 2 after the stem,
            so the stages run at 1/2, 1/4, 1/8 and 1/16 of the input).
        blocks_per_stage: residual blocks per stage.
        fuse_dim: channels of the 3x3 convolution fusing the four stages at 1/8.
        feature_dim: channels C of the output feature map (1x1 convolution).
        corr_levels: levels of the correlation pyramid (2x average pooling between levels).
        corr_radius: window radius r: (2r+1)^2 correlation values per level.
        embed_dim: sin/cos embedding size per flow coordinate (half sines, half cosines).
        mlp_dim: width of the per-point MLP.
        mlp_depth: residual pre-norm blocks of the per-point MLP.
        mlp_expansion: hidden width factor inside each block.
        iterations: refinement iterations per frame.
        frame_padding: how `ImageNet.encode_frame` feeds a frame whose sides are not multiples
            of 8: "replicate" pads it at the right and bottom (replicating the last row/column)
            to a multiple of 8 and to at least `min_size_px`, as our lite weights were trained;
            "none" feeds it as given, as the authors' evaluation does (their encoder resizes its
            1/8 and 1/16 maps to H // 8 x W // 8), so their converted weights see the inputs they
            were trained on. Instance norm sees every row, so the two differ from the stem on.
            With "none" only frames smaller than `min_size_px` are padded (to that size).
            Part of the checkpoint: each checkpoint carries its own convention.
        input_norm: standardise each frame (zero mean, unit deviation) before the encoder, so
            the features do not depend on the renderer's or camera's brightness and contrast
            (False for checkpoints written before this field existed).
        arch: "pyramid" (the paper's image module above, `image_net.ImageNet`; every checkpoint
            written before this field existed) or "patch" (`image_patch.PatchImageNet`: a
            learned coarse-to-fine patch tracker, the fields below).
        patch_size: side (4k + 1) of the square patches the patch tracker crops, per level.
        patch_channels: (stem, encoder) channels of the patch encoder.
        patch_levels: pyramid level of each refinement iteration (level l: the frame
            downsampled 2^l times), coarse to fine, e.g. (1, 0).
        redir_dim: channels of the redirected (non-correlation) features the head sees.
    """

    stem_dim: int = 64
    stage_dims: tuple[int, ...] = (64, 96, 128, 128)
    blocks_per_stage: int = 2
    fuse_dim: int = 256
    feature_dim: int = 128
    corr_levels: int = 4
    corr_radius: int = 3
    embed_dim: int = 64
    mlp_dim: int = 512
    mlp_depth: int = 12
    mlp_expansion: int = 4
    iterations: int = 3
    frame_padding: str = "replicate"
    input_norm: bool = False
    arch: str = "pyramid"
    patch_size: int = 25
    patch_channels: tuple[int, ...] = (16, 32)
    patch_levels: tuple[int, ...] = (1, 0)
    redir_dim: int = 8

    def __post_init__(self) -> None:
        if self.arch not in ("pyramid", "patch"):
            raise ValueError(f"unknown image net arch {self.arch!r}: 'pyramid' or 'patch'")
        if self.arch == "patch":
            if self.patch_size < 9 or (self.patch_size - 1) % 4:
                raise ValueError(f"patch_size must be 4k + 1 >= 9 (a centre cell on the "
                                 f"stride-2 map), got {self.patch_size}")
            if self.iterations != len(self.patch_levels):
                raise ValueError(f"iterations ({self.iterations}) must equal "
                                 f"len(patch_levels) {self.patch_levels}")
            if len(self.patch_channels) != 2 or min(self.patch_channels) < 1:
                raise ValueError(f"patch_channels needs 2 positive entries: {self.patch_channels}")
            if not self.patch_levels or min(self.patch_levels) < 0 or self.redir_dim < 1:
                raise ValueError(f"patch_levels must be non-empty and >= 0: {self.patch_levels}")
        if len(self.stage_dims) != 4:
            raise ValueError(f"stage_dims needs 4 entries, got {self.stage_dims}")
        if self.embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got {self.embed_dim}")
        positive = (self.stem_dim, self.blocks_per_stage, self.fuse_dim, self.feature_dim,
                    self.corr_levels, self.mlp_dim, self.mlp_expansion, self.iterations,
                    *self.stage_dims)
        if self.frame_padding not in FRAME_PADDINGS:
            raise ValueError(f"frame_padding must be one of {FRAME_PADDINGS}, "
                             f"got {self.frame_padding!r}")
        if min(positive) < 1 or self.corr_radius < 0 or self.mlp_depth < 0:
            raise ValueError(f"sizes must be positive: {self}")

    @property
    def corr_dim(self) -> int:
        """Correlation values per point: levels * (2r+1)^2 (196 for the paper size)."""
        return self.corr_levels * (2 * self.corr_radius + 1) ** 2

    @property
    def mlp_input_dim(self) -> int:
        """Input width of the per-point MLP: [ref feat, target feat, corr, flow embedding]."""
        return 2 * self.feature_dim + self.corr_dim + 2 * self.embed_dim + 2

    @property
    def min_size_px(self) -> int:
        """Smallest padded image side: the coarsest pyramid level keeps at least 2 cells.

        (Bilinear sampling with align_corners=True is degenerate on a 1-cell map.)
        """
        return STRIDE * 2**self.corr_levels


PAPER = ImageNetConfig(frame_padding="none")
"""The authors' image module: about 28.1 M parameters, frames fed unpadded as they do."""

LITE = ImageNetConfig(stem_dim=16, stage_dims=(16, 24, 32, 48), blocks_per_stage=1,
                      fuse_dim=64, feature_dim=64, embed_dim=16, mlp_dim=128, mlp_depth=3,
                      mlp_expansion=2, iterations=3)
"""A CPU configuration of the same architecture (real time on two cores)."""

LITE2 = ImageNetConfig(stem_dim=16, stage_dims=(16, 24, 32, 48), blocks_per_stage=1,
                       fuse_dim=64, feature_dim=64, embed_dim=16, mlp_dim=256, mlp_depth=4,
                       mlp_expansion=2, iterations=3, input_norm=True)
"""The CPU configuration with a 4x wider per-point MLP (its cost is per track and nearly
free at 64 tracks: matrix products) and frame standardisation."""

BASE = ImageNetConfig(stem_dim=32, stage_dims=(32, 48, 64, 96), blocks_per_stage=1,
                      fuse_dim=128, feature_dim=96, embed_dim=32, mlp_dim=384, mlp_depth=6,
                      mlp_expansion=4, iterations=3, input_norm=True)
"""For GPU robots and Jetson-class boards (about 1/4 of the paper's encoder arithmetic)."""

PATCH = ImageNetConfig(arch="patch", feature_dim=24, mlp_dim=128, patch_size=25,
                       patch_channels=(24, 32), patch_levels=(1, 0), redir_dim=8,
                       input_norm=True, iterations=2)
"""The coarse-to-fine patch tracker for 2 CPU cores (`image_patch.PatchImageNet`): the cost is
per track (N x 2 small patches per frame), not per frame pixel."""

PATCH3 = ImageNetConfig(arch="patch", feature_dim=24, mlp_dim=128, patch_size=25,
                        patch_channels=(24, 32), patch_levels=(2, 1, 0), redir_dim=8,
                        input_norm=True, iterations=3)
"""`PATCH` with a third, coarser level first (the same weights fit both: the levels share
them): reaches 4x farther (40 px) for 1.5x the cost."""

CONFIGS = {"paper": PAPER, "lite": LITE, "lite2": LITE2, "base": BASE, "patch": PATCH,
           "patch3": PATCH3}


def config_by_name(name: str) -> ImageNetConfig:
    """Return the named configuration ('paper' or 'lite'); ValueError lists the choices."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown image net config '{name}', choose from {sorted(CONFIGS)}"
                         ) from None
