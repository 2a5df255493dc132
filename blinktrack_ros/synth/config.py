"""Configuration of synthetic sequences (frozen dataclasses) and the named presets.

Ranges are (low, high) tuples; each sequence draws its own value uniformly from every range,
so a preset with low == high fixes that value. Speeds are given for a 240 px wide image and scale
with the width, so a preset describes the same apparent motion at every resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from blinktrack_ros.synth.esim import EsimConfig

Range = tuple[float, float]
REFERENCE_WIDTH = 240


@dataclass(frozen=True)
class MotionConfig:
    """Random similarity motion of one kind of layer (camera/background or object).

    Attributes:
        speed_px_s: translation speed range (px/s at 240 px width).
        rotation_deg_s: rotation speed range (deg/s, random sign).
        scale_rate: |d log(scale)/dt| range (1/s, random sign), bounced inside scale_limits.
        scale_limits: allowed scale factor range.
        keyframe_s: time between keyframes of the smooth (cubic spline) trajectory.
        jitter: relative random change of the velocity at each keyframe.
    """

    speed_px_s: Range = (20.0, 80.0)
    rotation_deg_s: Range = (0.0, 20.0)
    scale_rate: Range = (0.0, 0.2)
    scale_limits: Range = (0.8, 1.25)
    keyframe_s: float = 0.25
    jitter: float = 0.3


@dataclass(frozen=True)
class SequenceConfig:
    """Everything that defines a synthetic sequence except the seed.

    Attributes:
        width, height: image size in pixels.
        duration_s: sequence length.
        render_hz: internal render rate fed to the event simulator (>= 1 kHz recommended).
        frame_hz: output frame rate.
        gt_hz: ground-truth sampling rate (frame times are always added).
        n_objects: (low, high) inclusive number of foreground objects.
        object_size: object size as a fraction of min(width, height).
        smooth_outline_prob: probability of a smooth (vs sharp polygon) object outline.
        cross_prob: probability that an object heads for the image centre (more occlusions).
        camera, objects: motion ranges of the background and of the objects.
        n_queries: Shi-Tomasi query points on the first frame (at most).
        query_quality, query_min_distance: cv2.goodFeaturesToTrack parameters.
        requery_every_s: every this many seconds (on the frame nearest), top the visible
            points up to n_queries with new corners away from them; 0 = first frame only.
        frame_noise_std: range of additive Gaussian noise on output frames.
        exposure_s: range of exposure time (motion blur) of output frames; 0 = sharp.
        blur_samples: renders averaged per blurred frame.
        gain_log_amplitude: range of the amplitude of log exposure-gain changes of the frames.
        gain_hz: frequency of those gain changes.
        esim: event simulator parameters.
    """

    width: int = 240
    height: int = 180
    duration_s: float = 1.0
    render_hz: float = 1000.0
    frame_hz: float = 50.0
    gt_hz: float = 1000.0
    n_objects: tuple[int, int] = (3, 5)
    object_size: Range = (0.3, 0.5)
    smooth_outline_prob: float = 0.5
    cross_prob: float = 0.3
    camera: MotionConfig = field(default_factory=lambda: MotionConfig(
        speed_px_s=(10.0, 40.0), rotation_deg_s=(0.0, 8.0), scale_rate=(0.0, 0.1)))
    objects: MotionConfig = field(default_factory=MotionConfig)
    n_queries: int = 100
    query_quality: float = 0.01
    query_min_distance: float = 6.0
    requery_every_s: float = 0.0
    frame_noise_std: Range = (0.0, 0.0)
    exposure_s: Range = (0.0, 0.0)
    blur_samples: int = 8
    gain_log_amplitude: Range = (0.0, 0.0)
    gain_hz: float = 1.0
    esim: EsimConfig = field(default_factory=EsimConfig)

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        if self.width < 32 or self.height < 32:
            raise ValueError(f"size {self.width}x{self.height} too small (min 32x32)")
        if self.duration_s <= 0 or self.render_hz <= 0 or self.frame_hz <= 0 or self.gt_hz <= 0:
            raise ValueError("duration_s, render_hz, frame_hz and gt_hz must be positive")
        if self.frame_hz > self.render_hz:
            raise ValueError("frame_hz must not exceed render_hz")
        if not 0 <= self.n_objects[0] <= self.n_objects[1]:
            raise ValueError(f"bad n_objects range {self.n_objects}")
        for name in ("object_size", "frame_noise_std", "exposure_s", "gain_log_amplitude"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"bad {name} range {(lo, hi)}")


_NOISY_ESIM = EsimConfig(noise_rate_hz=0.1, hot_pixel_fraction=1e-4)

PRESETS: dict[str, SequenceConfig] = {
    # Varied: random blur, noise and exposure changes; sensor noise on.
    "train": SequenceConfig(
        n_objects=(2, 5), frame_noise_std=(0.0, 0.02), exposure_s=(0.0, 0.01),
        gain_log_amplitude=(0.0, 0.2), objects=MotionConfig(speed_px_s=(20.0, 200.0)),
        requery_every_s=0.25, esim=_NOISY_ESIM),
    # A fixed test split: fixed imaging conditions, moderate motion, no sensor noise.
    "benchmark": SequenceConfig(n_objects=(4, 4)),
    # Many large objects heading across the image centre.
    "occlusion": SequenceConfig(n_objects=(5, 7), object_size=(0.35, 0.55), cross_prob=0.8,
                                objects=MotionConfig(speed_px_s=(60.0, 150.0))),
    "slow": SequenceConfig(
        objects=MotionConfig(speed_px_s=(5.0, 25.0), rotation_deg_s=(0.0, 5.0)),
        camera=MotionConfig(speed_px_s=(2.0, 10.0), rotation_deg_s=(0.0, 2.0),
                            scale_rate=(0.0, 0.05))),
    "fast": SequenceConfig(
        objects=MotionConfig(speed_px_s=(200.0, 450.0), rotation_deg_s=(20.0, 90.0)),
        camera=MotionConfig(speed_px_s=(60.0, 150.0), rotation_deg_s=(0.0, 20.0)),
        exposure_s=(0.0, 0.005)),
    # Noise-free and exactly reproducible by tests: no blur, noise, gain or refractory period.
    "clean": SequenceConfig(esim=EsimConfig(refractory_ns=0, contrast_sigma=0.0)),
}


def preset(name: str, width: int | None = None, height: int | None = None,
           duration_s: float | None = None) -> SequenceConfig:
    """Return the named preset, optionally resized / shortened; KeyError lists the names."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    config = PRESETS[name]
    changes: dict[str, object] = {}
    if width is not None:
        changes["width"] = int(width)
    if height is not None:
        changes["height"] = int(height)
    if duration_s is not None:
        changes["duration_s"] = float(duration_s)
    return replace(config, **changes) if changes else config
