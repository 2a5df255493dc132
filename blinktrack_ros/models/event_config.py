"""Configuration of the event module network (one architecture, several sizes)."""

from __future__ import annotations

from dataclasses import dataclass, replace


def _valid_size(size: int, kernel: int, n_convs: int, pad: int = 0, stride: int = 1) -> int:
    for _ in range(n_convs):
        size = (size + 2 * pad - kernel) // stride + 1
    return size


@dataclass(frozen=True)
class EventNetConfig:
    """Widths, kernels and input size of the event network.

    The structure is fixed (see `event_net.EventNet`); the fields only size it.

    Attributes:
        patch_size: S, side of the square SBT-Max and reference input patches in pixels.
        in_channels: SBT-Max channels (2 polarities x bins).
        enc_channels: output widths of the first five encoder stages (the sixth is feature_dim).
        enc_kernels: kernel sizes of the six encoder stages. Stage 1 is stride 2, "same"
            padded; the others are unpadded; stage 4 ends with a 2x2 stride-2 downsampling conv.
        enc_convs: number of conv+BN+LeakyReLU layers per encoder stage.
        feature_dim: F, width of the FPN output (and of the top stage).
        fpn_kernel: kernel of the top-down smoothing and output convs ("same" padded).
        redir_dim: R, width of the redirected features fed to the joint input.
        motion_channels: widths of the three downsampling blocks of the motion head; the
            ConvLSTM runs after the second one with motion_channels[1] hidden channels.
        motion_final_kernel: kernel of the last (unpadded) motion conv; it must bring the
            map to 1x1.
        lstm_kernel: ConvLSTM kernel.
        embed_dim: width of the gated recurrent displacement state.
        out_dim: width of the layer before the (dx, dy) regressor.
        vis_channels: widths of the five blocks of the visibility (uncertainty) head.
        vis_kernels: kernels of those blocks (unpadded; block 3 ends with a 2x2 downsampling
            conv); the last block must bring the map to 1x1.
        head_convs: conv+BN+LeakyReLU layers per block of the motion and visibility heads.
        arch: "fpn" (the paper's structure, `event_net.EventNet`; checkpoints written before
            this field existed are "fpn") or "compact" (`event_compact.CompactEventNet`: the
            same method in few wide ops; it reads patch_size, in_channels, enc_channels[:2],
            enc_kernels[0] (stem), feature_dim, redir_dim, motion_channels, lstm_kernel,
            embed_dim and out_dim).
    """

    patch_size: int = 62
    in_channels: int = 10
    enc_channels: tuple[int, ...] = (32, 64, 96, 128, 256)
    enc_kernels: tuple[int, ...] = (1, 7, 5, 5, 3, 3)
    enc_convs: tuple[int, ...] = (2, 1, 2, 2, 2, 2)
    feature_dim: int = 384
    fpn_kernel: int = 3
    redir_dim: int = 128
    motion_channels: tuple[int, ...] = (64, 128, 256)
    motion_final_kernel: int = 3
    lstm_kernel: int = 3
    embed_dim: int = 256
    out_dim: int = 512
    vis_channels: tuple[int, ...] = (128, 64, 64, 64, 128)
    vis_kernels: tuple[int, ...] = (1, 5, 5, 3, 3)
    head_convs: int = 2
    arch: str = "fpn"

    def __post_init__(self) -> None:
        """Check that every stage has a positive size and the heads end at 1x1."""
        if self.arch == "compact":
            if self.patch_size % 8 or self.patch_size < 16:
                raise ValueError(f"compact event net: patch_size must be a multiple of 8 and "
                                 f">= 16, got {self.patch_size}")
            if self.motion_channels[0] != self.motion_channels[1]:
                raise ValueError("compact event net: motion_channels[0] must equal [1]")
            return
        if self.arch != "fpn":
            raise ValueError(f"unknown event net arch {self.arch!r}: 'fpn' or 'compact'")
        if len(self.enc_channels) != 5 or len(self.enc_kernels) != 6 or len(self.enc_convs) != 6:
            raise ValueError("enc_channels needs 5 widths, enc_kernels and enc_convs 6 entries")
        if len(self.motion_channels) != 3 or len(self.vis_channels) != 5 or len(
                self.vis_kernels) != 5:
            raise ValueError("motion_channels needs 3 widths, vis_channels/vis_kernels 5")
        sizes = self.encoder_sizes()
        if min(sizes) < 1:
            raise ValueError(f"patch_size {self.patch_size} too small for the encoder: {sizes}")
        if self.motion_sizes()[-1] != 1:
            raise ValueError(f"motion head does not end at 1x1: {self.motion_sizes()}")
        if self.vis_sizes()[-1] != 1:
            raise ValueError(f"visibility head does not end at 1x1: {self.vis_sizes()}")

    @property
    def corr_size(self) -> int:
        """C = S // 2: side of the centre crop and of the 2x-pooled view (31 for S = 62)."""
        return self.patch_size // 2

    @property
    def joint_channels(self) -> int:
        """Channels of the joint input: two correlation maps and four redirected maps."""
        return 2 * (1 + 2 * self.redir_dim)

    def encoder_sizes(self) -> list[int]:
        """Spatial side after each of the six encoder stages."""
        k, n = self.enc_kernels, self.enc_convs
        sizes = [_valid_size(self.patch_size, k[0], n[0], pad=k[0] // 2)]
        sizes.append(_valid_size(sizes[-1], k[1], n[1], pad=k[1] // 2, stride=2))
        sizes.append(_valid_size(sizes[-1], k[2], n[2]))
        sizes.append(_valid_size(sizes[-1], k[3], n[3]))
        sizes.append(_valid_size(sizes[-1], k[4], n[4]) // 2)
        sizes.append(_valid_size(sizes[-1], k[5], n[5]))
        return sizes

    def motion_sizes(self) -> list[int]:
        """Spatial side after the motion head's blocks (ConvLSTM runs at entry 1)."""
        s1 = self.corr_size // 2
        s2 = s1 // 2
        s3 = s2 // 2
        return [s1, s2, s3, _valid_size(s3, self.motion_final_kernel, 1)]

    def vis_sizes(self) -> list[int]:
        """Spatial side after each visibility-head block."""
        size, out = self.corr_size, []
        for i, k in enumerate(self.vis_kernels):
            size = _valid_size(size, k, self.head_convs)
            if i == 3:
                size //= 2
            out.append(size)
        return out

    @staticmethod
    def paper() -> EventNetConfig:
        """The published event module (about 34 M parameters, 62x62 input)."""
        return EventNetConfig()

    @staticmethod
    def lite() -> EventNetConfig:
        """Same structure, narrow, one conv per head block, on 20x20 patches.

        Designed for 64 tracks at 200 Hz on 2 CPU cores (see `blinktrack bench event-net`):
        about 2.1 MFLOP per track and step (paper: 41.9 GFLOP). The correlation views are
        10x10 (centre crop: +-5 px; pooled view: +-10 px around the fused position), enough at
        5-10 ms windows because the patch follows the Kalman prediction. Channel counts stay
        multiples of 8 (oneDNN is very slow on some smaller ones).
        """
        return EventNetConfig(
            patch_size=20, enc_channels=(8, 8, 8, 16, 16), enc_kernels=(1, 3, 3, 3, 3, 1),
            enc_convs=(1, 1, 1, 1, 1, 1), feature_dim=8, fpn_kernel=1, redir_dim=8,
            motion_channels=(8, 16, 16), motion_final_kernel=1, embed_dim=32, out_dim=32,
            vis_channels=(8, 8, 8, 8, 8), vis_kernels=(1, 3, 3, 3, 2), head_convs=1)


    @staticmethod
    def lite2() -> EventNetConfig:
        """The compact architecture sized for 2 CPU cores: 24x24 patches, 12x12 features.

        6.6 MFLOP per track and step (3.2x `lite`), 0.20 M parameters (4x) in 49 compute
        calls (`lite`: 104), at or below `lite`'s time at 64 tracks; see docs/networks_cost.md
        for the measured cost model it was designed to.
        """
        return EventNetConfig(
            arch="compact", patch_size=24, enc_channels=(16, 32, 0, 0, 0),
            enc_kernels=(5, 0, 0, 0, 0, 0), enc_convs=(1, 0, 0, 0, 0, 0), feature_dim=24,
            redir_dim=12, motion_channels=(24, 24, 48), lstm_kernel=3, embed_dim=128,
            out_dim=64, head_convs=1)

    @staticmethod
    def lite3() -> EventNetConfig:
        """`lite2` made 2-3x cheaper for real time on 2 CPU cores: 16x16 patches (8x8
        features; the patch follows the Kalman prediction, so +-8 px per window is enough at
        5-10 ms windows) and a 1x1 ConvLSTM gate convolution (in lite2 the 3x3 one was 45 % of
        the FLOPs). Warm-started from lite2 (`--init-partial`: same encoders and heads, the
        LSTM from the 3x3 kernel's centre tap)."""
        return replace(EventNetConfig.lite2(), patch_size=16, lstm_kernel=1)

    @staticmethod
    def base() -> EventNetConfig:
        """The compact architecture for GPU robots and Jetson-class boards: 48x48 patches,
        4x wider (about 0.2 GFLOP per track and step)."""
        return EventNetConfig(
            arch="compact", patch_size=48, enc_channels=(64, 128, 0, 0, 0),
            enc_kernels=(5, 0, 0, 0, 0, 0), enc_convs=(1, 0, 0, 0, 0, 0), feature_dim=96,
            redir_dim=48, motion_channels=(96, 96, 128), lstm_kernel=3, embed_dim=256,
            out_dim=128, head_convs=1)


CONFIGS = {"paper": EventNetConfig.paper, "lite": EventNetConfig.lite,
           "lite2": EventNetConfig.lite2, "lite3": EventNetConfig.lite3,
           "base": EventNetConfig.base}
