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
class CameraShakeConfig:
    """Camera rotation (pan, tilt, roll) seen as homographies K R(t) K^-1 (perspective).

    Attributes:
        angular_speed_deg_s: range of the peak angular speed of the rotation components
            (1 rad/s moves the image centre by fx = width px/s).
        profiles: motion profiles drawn from (`motion.CAMERA_PROFILES`: handheld tremor,
            vehicle turns + vibration, drone banking + rotor vibration).
        roll_ratio: roll speed as a fraction of the pan/tilt speed.
        max_angle_deg: cap of the summed rotation amplitude per axis.
    """

    angular_speed_deg_s: Range = (0.0, 0.0)
    profiles: tuple[str, ...] = ("handheld", "vehicle", "drone")
    roll_ratio: float = 0.3
    max_angle_deg: float = 12.0


@dataclass(frozen=True)
class SensorConfig:
    """A DAVIS-like sensor: APS frames and DVS events from the same 1 kHz renders.

    Every range is drawn once per sequence. Figures (DAVIS240C datasheet and the event-camera
    literature): APS 15-25 Hz global shutter, 55 dB; DVS 120 dB, contrast threshold about
    0.15-0.3 (log), per-pixel mismatch sigma 0.03-0.1, background activity 0.1-1 Hz/pixel,
    a few hot pixels, refractory period 10 us - 1 ms, read-out about 12 Mev/s.

    Frames: the renders (linear irradiance) within each exposure are averaged (true motion
    blur, trapezoid rule on the render grid, so the blur is speed x exposure), scaled by
    illuminance x exposure / 10 ms x analog gain, plus shot and read noise, clipped to [0, 1]
    and quantised to 8 bits. Auto exposure: after every frame whose mean is off the target by
    more than 20 % the exposure (then the analog gain) steps by at most `ae_step`, within
    `exposure_s`; the first exposure is drawn within `exposure_s` (mis-exposed starts).

    Events: ESIM on illuminance x render, with the drawn thresholds, mismatch, refractory
    period, noise, hot pixels, photoreceptor cut-off and bandwidth cap (`esim.EsimConfig`).

    HDR: with probability hdr_prob the radiance gets 1-2 soft-edged moving regions of factor
    hdr_bright (sun, tunnel exit: clipped white in frames) and 0-1 of factor hdr_dark
    (shadow: black in frames); events still fire in both (log contrast is kept).

    Attributes:
        frame_hz: APS frame rate range.
        exposure_s: auto-exposure limits (min, max); also where the first exposure is drawn.
        max_exposure_fraction: exposure is capped at this fraction of the frame period.
        auto_exposure: step the exposure after every frame (else keep the first one).
        ae_target: target mean frame value; ae_step: largest factor of one AE step.
        analog_gain_max: AE raises the gain up to this after the exposure hits its maximum.
        illuminance: scene irradiance scale (texture grey x this = irradiance; log-uniform).
        read_noise, shot_noise: frame noise std sqrt(shot^2 x v + read^2) x gain (v before gain).
        contrast: mean threshold range; contrast_ratio: C+/C- range.
        contrast_sigma, refractory_us, noise_rate_hz, hot_pixel_fraction, hot_pixel_rate_hz,
        bandwidth_mev_s, cutoff_hz: event simulator ranges (`esim.EsimConfig`).
        hdr_prob, hdr_bright, hdr_dark: high-dynamic-range regions (see above).
        log_floor: irradiance floor of the event simulator's log.
    """

    frame_hz: Range = (15.0, 25.0)
    exposure_s: Range = (0.005, 0.030)
    max_exposure_fraction: float = 0.8
    auto_exposure: bool = True
    ae_target: float = 0.4
    ae_step: float = 1.6
    analog_gain_max: float = 4.0
    illuminance: Range = (0.25, 1.5)
    read_noise: Range = (0.002, 0.008)
    shot_noise: Range = (0.005, 0.02)
    contrast: Range = (0.15, 0.3)
    contrast_ratio: Range = (0.85, 1.15)
    contrast_sigma: Range = (0.03, 0.1)
    refractory_us: Range = (20.0, 500.0)
    noise_rate_hz: Range = (0.1, 1.0)
    hot_pixel_fraction: Range = (5e-5, 3e-4)
    hot_pixel_rate_hz: Range = (50.0, 500.0)
    bandwidth_mev_s: Range = (3.0, 12.0)
    cutoff_hz: Range = (2000.0, 6000.0)
    hdr_prob: float = 0.0
    hdr_bright: Range = (100.0, 200.0)
    hdr_dark: Range = (1e-4, 3e-4)
    log_floor: float = 1e-6


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
        camera_shake: camera rotation with perspective (None: the world plane is the image).
        sensor: a DAVIS-like sensor model (None: the simple model above). When set, its
            frame rate, exposure, noise and event parameters replace frame_hz, exposure_s,
            frame_noise_std, gain_* and esim.
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
    camera_shake: CameraShakeConfig | None = None
    sensor: SensorConfig | None = None

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
        if self.sensor is not None:
            sensor = self.sensor
            for name in ("frame_hz", "exposure_s", "illuminance", "contrast", "contrast_ratio"):
                lo, hi = getattr(sensor, name)
                if not 0 < lo <= hi:
                    raise ValueError(f"bad sensor.{name} range {(lo, hi)}")
            if sensor.frame_hz[1] > self.render_hz:
                raise ValueError("sensor.frame_hz must not exceed render_hz")


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

# DAVIS240C-like camera and motion. Feature speeds: camera rotation (fx = 240 px: 1 rad/s
# = 240 px/s), background translation and object motion add up to about 50-800 px/s.
DAVIS = SensorConfig()
DAVIS_SHAKE = CameraShakeConfig(angular_speed_deg_s=(20.0, 200.0))
PRESETS["davis"] = SequenceConfig(
    n_objects=(2, 5), requery_every_s=0.25, sensor=DAVIS, camera_shake=DAVIS_SHAKE,
    camera=MotionConfig(speed_px_s=(20.0, 450.0), rotation_deg_s=(0.0, 40.0),
                        scale_rate=(0.0, 0.3), keyframe_s=0.15, jitter=0.5),
    objects=MotionConfig(speed_px_s=(50.0, 700.0), rotation_deg_s=(0.0, 90.0),
                         keyframe_s=0.15, jitter=0.5))
# Sun / tunnel exit: bright regions clip to white and shadows to black in the frames.
PRESETS["hdr"] = replace(PRESETS["davis"], sensor=replace(DAVIS, hdr_prob=1.0, cutoff_hz=(0, 0)))
# Dusk / indoor at night: little light, long exposure and high gain (noisy frames), slow
# photoreceptors (later, fewer events) and more background activity.
PRESETS["lowlight"] = replace(PRESETS["davis"], sensor=replace(
    DAVIS, frame_hz=(10.0, 15.0), exposure_s=(0.02, 0.08), illuminance=(0.02, 0.06),
    analog_gain_max=8.0, read_noise=(0.006, 0.012), shot_noise=(0.02, 0.04),
    noise_rate_hz=(1.0, 4.0), cutoff_hz=(1500.0, 3000.0)))
# The older presets with the same sensor realism switched on.
PRESETS["occlusion"] = replace(PRESETS["occlusion"], sensor=DAVIS)
PRESETS["fast"] = replace(PRESETS["fast"], sensor=DAVIS, camera_shake=DAVIS_SHAKE)
# Training: every range wider than the test presets' (one draw per sequence), HDR sometimes.
PRESETS["random"] = SequenceConfig(
    n_objects=(0, 6), object_size=(0.2, 0.55), cross_prob=0.5, requery_every_s=0.2,
    camera_shake=CameraShakeConfig(angular_speed_deg_s=(0.0, 180.0), max_angle_deg=15.0),
    camera=MotionConfig(speed_px_s=(0.0, 350.0), rotation_deg_s=(0.0, 45.0),
                        scale_rate=(0.0, 0.4), keyframe_s=0.15, jitter=0.6),
    objects=MotionConfig(speed_px_s=(0.0, 700.0), rotation_deg_s=(0.0, 120.0),
                         keyframe_s=0.15, jitter=0.6),
    sensor=SensorConfig(
        frame_hz=(10.0, 50.0), exposure_s=(0.001, 0.08), illuminance=(0.015, 3.0),
        analog_gain_max=8.0, read_noise=(0.0, 0.015), shot_noise=(0.0, 0.05),
        contrast=(0.1, 0.5), contrast_ratio=(0.7, 1.3), contrast_sigma=(0.0, 0.15),
        refractory_us=(0.0, 1000.0), noise_rate_hz=(0.0, 5.0), hot_pixel_fraction=(0.0, 1e-3),
        hot_pixel_rate_hz=(10.0, 1000.0), bandwidth_mev_s=(1.0, 20.0), cutoff_hz=(0.0, 8000.0),
        hdr_prob=0.3, hdr_bright=(30.0, 300.0), hdr_dark=(3e-5, 1e-3)))
# The fixed test set of `blinktrack synth --suite challenge` (test seeds, held-out textures).
SUITES: dict[str, tuple[str, ...]] = {"challenge": ("davis", "hdr", "lowlight", "occlusion",
                                                    "fast")}


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
