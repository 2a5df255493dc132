"""The patch image network (`arch="patch"`): a learned coarse-to-fine patch tracker.

The pyramid image module (`image_net.ImageNet`, the paper's) encodes every frame whole at 1/8
resolution and refines each track from one feature vector sampled at its birth. On real frames
(EC, official protocol) that coarse reference loses tracks that KLT keeps: sub-pixel accuracy
and contrast invariance are what a 1/8 feature map is worst at. This network keeps the image
module's contract (`encode_frame` once per frame, `sample_reference` once per track, `track` /
`track_iterations` per frame: positions and visibility logits, the uncertainty) and the method's
structure (reference features at birth, the correlation the paper uses, a displacement and a
visibility head), but looks at the frame the way a pyramidal KLT does:

- `encode_frame` only builds an image pyramid (2x2 average pooling per level): its cost is
  independent of the network, so the cost per frame is per track (2 small patches per track);
- per iteration (level l of `config.patch_levels`, coarse to fine) an S x S patch is cropped
  (bilinear, exactly centred on the current estimate) from level l and standardised (zero mean,
  unit deviation: no dependence on the camera's brightness and contrast);
- a small encoder (5x5 stride-2 conv, 3x3 conv, 1x1 conv) gives correlation features
  and redirected features on an (S+1)/2 map;
- the correlation: a 3x3-cell reference template (from the birth frame, same level) slid over
  the target map (one batched product and 9 shifted sums for all tracks), as the mean cosine
  similarity of unit feature vectors; its softmax (learnt temperature) expectation
  (soft-argmax) is a coarse displacement;
- the head (two stride-2 convolutions and a 3-layer MLP on the correlation, its softmax and both
  redirected maps) refines it (a residual, initialised to zero) and gives the visibility
  logits [occluded, visible].

Shared weights across levels (the displacement is in level pixels and scaled by 2^l), so the
coarse level reaches 2^l times farther at the same cost: like KLT's pyramid.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from blinktrack_ros.models.image_config import ImageNetConfig
from blinktrack_ros.models.image_net import FrameFeatures, ImageNet

LEAK = 0.1
EPS_STD = 0.01  # standardisation floor (frames in [0, 1]): flat patches are not amplified
INIT_TEMPERATURE = 10.0


def level_coords(points_px: torch.Tensor, level: int) -> torch.Tensor:
    """Pixel xy at level 0 -> xy at `level` (pixel centres at integers on every level;
    2x2 average pooling puts level-1 cell u at level-0 x = 2u + 0.5)."""
    s = float(2**level)
    return (points_px + 0.5) / s - 0.5


def crop(image: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (N, 1, S, S) patches of image (1, h, w) whose centre pixel lies exactly at
    centres (N, 2) xy; outside the image the border is replicated."""
    n = centres.shape[0]
    h, w = image.shape[-2:]
    r = (size - 1) / 2.0
    d = torch.arange(size, dtype=centres.dtype, device=centres.device) - r
    gx = (centres[:, 0, None, None] + d[None, None, :]).expand(n, size, size)
    gy = (centres[:, 1, None, None] + d[None, :, None]).expand(n, size, size)
    grid = torch.stack((gx * (2.0 / max(w - 1, 1)) - 1.0, gy * (2.0 / max(h - 1, 1)) - 1.0), -1)
    out = F.grid_sample(image[None].to(grid.dtype), grid.reshape(1, n * size, size, 2),
                        mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(n, 1, size, size)


def unit_channels(x: torch.Tensor) -> torch.Tensor:
    """x (N, C, h, w) / its L2 norm over C per cell (= F.normalize(x, dim=1), eps 1e-12): the
    sum of squares runs 14x faster than linalg.vector_norm over dim 1 of an NCHW map on
    oneDNN CPUs (0.10 vs 1.45 ms at N = 64, 24 x 13 x 13, 2 threads)."""
    return x * torch.rsqrt(x.square().sum(1, keepdim=True).clamp_min(1e-24))


def template_correlation(feat: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Each track's 3x3 template slid over its own map, zero padded: (N, C, h, w) maps and
    (N, C, 3, 3) templates -> (N, 1, h, w) with out[n, y, x] = sum over c, i, j of
    feat[n, c, y + i - 1, x + j - 1] * template[n, c, i, j].

    The grouped convolution that states this (groups = N) is slow on oneDNN CPUs (2.15 ms at
    N = 64, 24 x 13 x 13, one thread); here the channel sums come first, as one batched
    product (N, 9, C) @ (N, C, h w), and the 9 products per cell are then added at their
    offsets (0.31 ms; a dense convolution with a one-hot kernel for that sum took 0.95 ms).
    """
    n, c, h, w = feat.shape
    per_offset = torch.bmm(template.reshape(n, c, 9).transpose(1, 2), feat.reshape(n, c, h * w))
    padded = F.pad(per_offset.reshape(n, 9, h, w), (1, 1, 1, 1))
    out = padded[:, 0, 0:h, 0:w].clone()
    for k in range(1, 9):
        i, j = divmod(k, 3)
        out += padded[:, k, i:i + h, j:j + w]
    return out[:, None]


def standardise(patches: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) -> zero mean, unit deviation per patch (deviation floored at EPS_STD)."""
    mean = patches.mean(dim=(2, 3), keepdim=True)
    std = patches.std(dim=(2, 3), keepdim=True)
    return (patches - mean) / (std + EPS_STD)


class PatchEncoder(nn.Module):
    """(N, 1, S, S) -> (N, F + R, (S+1)/2, (S+1)/2)."""

    def __init__(self, cfg: ImageNetConfig) -> None:
        super().__init__()
        c1, c2 = cfg.patch_channels
        # a 5x5 stride-2 stem: a one-channel 3x3 convolution at full patch resolution costs
        # 10x more on oneDNN (2.2 vs 0.2 ms at N = 64, 25 px patches, 2 threads)
        self.stem = nn.Conv2d(1, c1, 5, stride=2, padding=2)
        self.conv = nn.Conv2d(c1, c2, 3, padding=1)
        self.out = nn.Conv2d(c2, cfg.feature_dim + cfg.redir_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last activations (the weights are, see PatchImageNet): oneDNN runs the
        # 3x3 and 1x1 convolutions of these small maps 2-9x faster than in NCHW
        x = F.leaky_relu(self.stem(x), LEAK).contiguous(memory_format=torch.channels_last)
        x = F.leaky_relu(self.conv(x), LEAK)
        return self.out(x)


class PatchImageNet(ImageNet):
    """See the module docstring. Built by `ImageNet(config)` when config.arch == "patch"."""

    def __init__(self, config: ImageNetConfig) -> None:
        nn.Module.__init__(self)
        self.config = cfg = config
        m = self.map_side
        c2 = cfg.patch_channels[1]
        self.encoder = PatchEncoder(cfg)
        # correlation of unit feature vectors (cosine, mean over the 3x3 template cells) times a
        # learnt temperature: a peaked softmax from the start, so the soft-argmax has gradient
        self.log_temp = nn.Parameter(torch.tensor(math.log(INIT_TEMPERATURE)))
        self.head1 = nn.Conv2d(2 + 2 * cfg.redir_dim, c2, 3, stride=2, padding=1)
        self.head2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        side = ((m + 1) // 2 + 1) // 2
        self.fc1 = nn.Linear(c2 * side * side + 2, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.mlp_dim)
        self.regress = nn.Linear(cfg.mlp_dim, 2)
        nn.init.zeros_(self.regress.weight)  # start from the soft-argmax displacement
        nn.init.zeros_(self.regress.bias)
        self.visibility = nn.Linear(cfg.mlp_dim, 2)
        cells = torch.arange(m, dtype=torch.float32) * 2.0 - (cfg.patch_size - 1) / 2.0
        gy, gx = torch.meshgrid(cells, cells, indexing="ij")
        self.register_buffer("grid", torch.stack([gx.reshape(-1), gy.reshape(-1)], 1),
                             persistent=False)  # m*m 2, patch px from the centre
        self.to(memory_format=torch.channels_last)  # conv weights (checkpoints load into them)
        self._traced: dict[tuple, object] | None = None  # see use_traced_steps

    @property
    def map_side(self) -> int:
        return (self.config.patch_size + 1) // 2

    @property
    def reference_dim(self) -> int:
        """Width of one track's reference row: per level a 3x3 template and a redirected map."""
        cfg = self.config
        return len(self.levels) * (cfg.feature_dim * 9 + cfg.redir_dim * self.map_side ** 2)

    @property
    def levels(self) -> tuple[int, ...]:
        """The distinct pyramid levels the iterations use, in first-use order."""
        return tuple(dict.fromkeys(self.config.patch_levels))

    @property
    def reach_px(self) -> float:
        """How far (px, max norm) from the truth a search can start and still see it."""
        return ((self.config.patch_size - 1) / 2.0 - 2.0) * 2 ** max(self.config.patch_levels)

    def encode_frame(self, gray: torch.Tensor | np.ndarray) -> FrameFeatures:
        """A (H, W) float gray frame in [0, 1] -> its image pyramid (no network work)."""
        image = self._as_frame(gray)
        levels = [image[None]]  # 1 H W
        for _ in range(max(self.config.patch_levels)):
            prev = levels[-1]
            if min(prev.shape[-2:]) >= 2:
                prev = F.avg_pool2d(prev[None], 2, stride=2, ceil_mode=True)[0]
            levels.append(prev)
        size = (int(image.shape[0]), int(image.shape[1]))
        return FrameFeatures(tuple(levels), size, size)

    def _encode(self, frame: FrameFeatures, level: int, centres_px: torch.Tensor
                ) -> torch.Tensor:
        patches = crop(frame.pyramid[level], level_coords(centres_px, level),
                       self.config.patch_size)
        return self.encoder(standardise(patches))

    def sample_reference(self, frame: FrameFeatures, positions_px: torch.Tensor) -> torch.Tensor:
        """(N, reference_dim) rows: per level the 3x3 template and the redirected map."""
        positions = self._as_points(positions_px)
        if positions.shape[0] == 0:
            return positions.new_zeros((0, self.reference_dim))
        cfg, c = self.config, (self.map_side - 1) // 2
        rows = []
        for level in self.levels:
            f = self._encode(frame, level, positions)  # N F+R m m
            unit = unit_channels(f[:, :cfg.feature_dim, c - 1:c + 2, c - 1:c + 2])
            rows.append(unit.flatten(1))
            rows.append(f[:, cfg.feature_dim:].flatten(1))
        return torch.cat(rows, dim=1)

    def _split_reference(self, ref: torch.Tensor, level: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, m = self.config, self.map_side
        t, r = cfg.feature_dim * 9, cfg.redir_dim * m * m
        i = self.levels.index(level)
        block = ref[:, i * (t + r):(i + 1) * (t + r)]
        n = ref.shape[0]
        return (block[:, :t].reshape(n, cfg.feature_dim, 3, 3),
                block[:, t:].reshape(n, cfg.redir_dim, m, m))

    def step(self, frame: FrameFeatures, ref: torch.Tensor, positions: torch.Tensor, level: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One refinement at one level: displacement (N, 2) in level-0 px and logits (N, 2)."""
        cfg, m = self.config, self.map_side
        n = positions.shape[0]
        template, ref_redir = self._split_reference(ref, level)
        f = self._encode(frame, level, positions)
        feat, redir = unit_channels(f[:, :cfg.feature_dim]), f[:, cfg.feature_dim:]
        corr = template_correlation(feat, template) / 9.0  # mean cosine, in [-1, 1]
        prob = torch.softmax((corr * self.log_temp.exp()).reshape(n, m * m), dim=1)
        coarse = prob @ self.grid  # N 2, level px
        x = torch.cat([prob.reshape(n, 1, m, m) * (m * m) ** 0.5, corr, redir, ref_redir], 1)
        x = F.leaky_relu(self.head1(x), LEAK)
        x = F.leaky_relu(self.head2(x), LEAK).flatten(1)
        x = F.leaky_relu(self.fc1(torch.cat([x, coarse * (2.0 / cfg.patch_size)], 1)), LEAK)
        x = F.leaky_relu(self.fc2(x), LEAK)
        disp = (coarse + self.regress(x)) * float(2**level)
        return disp, self.visibility(x)

    def track_iterations(self, frame: FrameFeatures, ref_feats: torch.Tensor,
                         start_positions: torch.Tensor, ref_positions: torch.Tensor | None = None
                         ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(positions (N, 2) px, logits (N, 2)) after every level of `config.patch_levels`.

        ref_positions is accepted for the image module's contract and not used (the patch
        tracker sees appearance only, not the flow since birth).
        """
        pos = self._as_points(start_positions)
        if ref_feats.ndim != 2 or ref_feats.shape[0] != pos.shape[0] \
                or ref_feats.shape[1] != self.reference_dim:
            raise ValueError(f"need ref_feats (N, {self.reference_dim}) and positions (N, 2) "
                             f"with equal N, got {tuple(ref_feats.shape)}, {tuple(pos.shape)}")
        if pos.shape[0] == 0:
            return [(pos.new_zeros((0, 2)), pos.new_zeros((0, 2)))] * len(self.config.patch_levels)
        results = []
        for level in self.config.patch_levels:
            pos = pos.detach()  # no gradient through earlier iterations (as the pyramid net)
            disp, logits = self._run_step(frame, ref_feats, pos, level)
            pos = pos + disp
            results.append((pos, logits))
        return results

    def use_traced_steps(self, enabled: bool = True) -> None:
        """Run `step` as frozen TorchScript traces in inference (no gradient, eval mode, CPU,
        no autocast): one graph call per refinement instead of ~40 Python-level torch calls,
        which also holds the GIL once per step instead of once per op (in a node the executor
        thread competes for it). Traced lazily per (level, pyramid level shape, dtype) and
        checked against the eager step on 1, 5 and 12 tracks; a trace that fails or differs
        is not used (eager, with a warning). The traces freeze the current weights: call
        again after loading other weights."""
        self._traced = {} if enabled else None

    def _run_step(self, frame: FrameFeatures, ref: torch.Tensor, positions: torch.Tensor,
                  level: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = frame.pyramid[level]
        if (self._traced is None or self.training or torch.is_grad_enabled()
                or image.device.type != "cpu" or _cpu_autocast()):
            return self.step(frame, ref, positions, level)
        key = (level, tuple(image.shape), image.dtype, ref.dtype, positions.dtype)
        fn = self._traced.get(key)
        if fn is None:
            fn = self._traced[key] = _trace_step(self, image, ref, level) or False
        if fn is False:
            return self.step(frame, ref, positions, level)
        return fn(image, ref, positions)


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


class _StepAtLevel(nn.Module):
    """`PatchImageNet.step` at one level as a module of tensors only (for tracing)."""

    def __init__(self, net: PatchImageNet, level: int) -> None:
        super().__init__()
        self.net, self.level = net, level

    def forward(self, image: torch.Tensor, ref: torch.Tensor, positions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        pyramid = (image,) * (self.level + 1)  # only entry `level` is read
        return self.net.step(FrameFeatures(pyramid, (0, 0), (0, 0)), ref, positions, self.level)


def _trace_step(net: PatchImageNet, image: torch.Tensor, ref: torch.Tensor, level: int,
                check_rows: tuple[int, ...] = (1, 5, 12), rtol: float = 1e-4,
                atol: float = 1e-5):
    """A frozen trace of `net.step` at `level` for images shaped like `image` (the track count
    stays dynamic), or None when tracing fails or differs from the eager step."""
    import logging
    import warnings

    h, w = image.shape[-2:]
    scale = float(2**level)

    def example(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        pos = torch.rand(n, 2, generator=g, dtype=torch.float64)
        pos = (pos * torch.tensor([w * scale, h * scale], dtype=torch.float64))
        return (torch.randn(n, ref.shape[1], generator=g).to(ref.dtype),
                pos.to(ref.dtype))

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings: the image size becomes a constant
            module = _StepAtLevel(net, level).eval()
            fn = torch.jit.freeze(torch.jit.trace(module, (image, *example(3, 0)),
                                                  check_trace=False))
            for i, n in enumerate(check_rows):
                refs, pos = example(n, i + 1)
                want = module(image, refs, pos)
                for _ in range(2):  # the profiling executor optimises on the second call
                    got = fn(image, refs, pos)
                for a, b in zip(got, want):
                    if a.shape != b.shape or not torch.allclose(a, b, rtol=rtol, atol=atol):
                        raise ValueError(f"trace differs from eager at N = {n}")
        return fn
    except Exception as exc:  # noqa: BLE001 - any failure: eager is always correct
        logging.getLogger(__name__).warning("image network step not traced (%s): eager", exc)
        return None
