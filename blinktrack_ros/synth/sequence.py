"""Generate one synthetic sequence in memory: frames, events, exact ground truth, intrinsics."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.synth import esim
from blinktrack_ros.synth.config import SensorConfig, SequenceConfig
from blinktrack_ros.synth.groundtruth import GroundTruth, ground_truth
from blinktrack_ros.synth.scene import Scene, make_scene, render
from blinktrack_ros.synth.textures import load_textures


@dataclass(frozen=True)
class Imaging:
    """Frame imaging conditions drawn for one sequence from the config's ranges."""

    noise_std: float
    exposure_s: float
    gain_log_amplitude: float
    gain_phase: float


@dataclass(frozen=True)
class Sequence:
    """A synthetic sequence.

    Attributes:
        config, seed: what generated it (same config + seed + textures -> same arrays).
        frames: (T, H, W) float32 grey frames in [0, 1].
        frame_times_ns: (T,) int64 frame stamps (centre of the exposure).
        events: time-sorted simulated events in (0, duration].
        gt: ground-truth tracks at every 1/gt_hz and every frame time.
        K: (3, 3) pinhole intrinsics (no distortion; fx = fy = width, centre of the image).
        scene: the layers and motions (for checks and re-rendering).
        imaging: the drawn frame imaging conditions.
    """

    config: SequenceConfig
    seed: int
    frames: np.ndarray
    frame_times_ns: np.ndarray
    events: EventBatch
    gt: GroundTruth
    K: np.ndarray
    scene: Scene
    imaging: Imaging
    sensor: SensorDraw | None = None
    frame_exposure_s: np.ndarray | None = None
    dropped_events: int = 0


EXPOSURE_REF_S = 0.010  # exposure at which a frame shows the irradiance 1:1 (gain 1)


@dataclass(frozen=True)
class HdrRegion:
    """A soft-edged moving ellipse multiplying the radiance by `factor`."""

    centre: np.ndarray  # (2,) px at t = 0
    velocity: np.ndarray  # (2,) px/s
    radii: np.ndarray  # (2,) px at t = 0
    growth: float  # 1/s relative radius growth (tunnel exit)
    factor: float
    edge_px: float = 3.0


@dataclass(frozen=True)
class SensorDraw:
    """The sensor conditions drawn for one sequence from a SensorConfig."""

    frame_hz: float
    exposure0_s: float
    exposure_limits_s: tuple[float, float]
    illuminance: float
    read_noise: float
    shot_noise: float
    esim: esim.EsimConfig
    hdr: tuple[HdrRegion, ...] = field(default_factory=tuple)


def draw_sensor(sensor: SensorConfig, width: int, height: int, rng: np.random.Generator,
                log_floor: float | None = None) -> SensorDraw:
    """Draw one sequence's sensor conditions (every range once)."""
    from blinktrack_ros.synth.esim import EsimConfig

    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    frame_hz = u(sensor.frame_hz)
    lo, hi = sensor.exposure_s
    hi = min(hi, sensor.max_exposure_fraction / frame_hz)
    lo = min(lo, hi)
    c, ratio = u(sensor.contrast), u(sensor.contrast_ratio)
    cfg = EsimConfig(
        contrast_pos=c * np.sqrt(ratio), contrast_neg=c / np.sqrt(ratio),
        contrast_sigma=u(sensor.contrast_sigma), refractory_ns=int(u(sensor.refractory_us) * 1e3),
        log_floor=sensor.log_floor if log_floor is None else log_floor,
        noise_rate_hz=u(sensor.noise_rate_hz), hot_pixel_fraction=u(sensor.hot_pixel_fraction),
        hot_pixel_rate_hz=u(sensor.hot_pixel_rate_hz), cutoff_hz=u(sensor.cutoff_hz),
        max_rate_ev_s=u(sensor.bandwidth_mev_s) * 1e6 * (width * height) / (240 * 180))
    regions: list[HdrRegion] = []
    if rng.random() < sensor.hdr_prob:
        span = max(width, height)
        kinds = [u(sensor.hdr_bright) for _ in range(int(rng.integers(1, 3)))]
        kinds += [u(sensor.hdr_dark) for _ in range(int(rng.integers(0, 2)))]
        for factor in kinds:
            regions.append(HdrRegion(
                centre=rng.uniform([0.1 * width, 0.1 * height], [0.9 * width, 0.9 * height]),
                velocity=rng.normal(0, 0.1 * span, 2),
                radii=rng.uniform(0.15, 0.35, 2) * span, growth=float(rng.uniform(0, 0.5)),
                factor=factor))
    illum = float(np.exp(rng.uniform(*np.log(sensor.illuminance))))  # log-uniform
    return SensorDraw(frame_hz, float(rng.uniform(lo, hi)), (lo, hi), illum,
                      u(sensor.read_noise), u(sensor.shot_noise), cfg, tuple(regions))


HDR_STEP = 4  # the HDR factor is computed every 4 px and interpolated (its edges are soft)


def hdr_gain(regions: tuple[HdrRegion, ...], width: int, height: int,
             t_s: float) -> np.ndarray | None:
    """(H, W) radiance factor of the HDR regions at t_s (None when there are none)."""
    if not regions:
        return None
    w, h = -(-width // HDR_STEP) + 1, -(-height // HDR_STEP) + 1
    xs = np.arange(w, dtype=np.float32) * HDR_STEP
    ys = np.arange(h, dtype=np.float32)[:, None] * HDR_STEP
    log_gain = np.zeros((h, w), np.float32)
    for r in regions:
        c = r.centre + r.velocity * t_s
        rad = r.radii * (1 + r.growth * t_s)
        d = np.sqrt(((xs - c[0]) / rad[0]) ** 2 + ((ys - c[1]) / rad[1]) ** 2)
        inside = 0.5 * (1 + np.tanh((1 - d) * float(rad.min()) / r.edge_px))
        log_gain += inside * np.float32(np.log(r.factor))
    # Sample the coarse grid at every pixel (pixel x sits at coarse x / HDR_STEP).
    map_x = np.broadcast_to(np.arange(width, dtype=np.float32) / HDR_STEP, (height, width))
    map_y = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None] / HDR_STEP,
                            (height, width))
    return np.exp(cv2.remap(log_gain, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y),
                            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))


def grid_ns(duration_s: float, rate_hz: float) -> np.ndarray:
    """(n,) int64 times k / rate_hz in ns for k = 0 .. floor(duration * rate)."""
    n = int(np.floor(duration_s * rate_hz + 1e-9))
    return np.round(np.arange(n + 1) * (1e9 / rate_hz)).astype(np.int64)


def intrinsics(width: int, height: int) -> np.ndarray:
    """(3, 3) pinhole K with fx = fy = width (about 53 deg horizontal field of view)."""
    return np.array([[width, 0.0, (width - 1) / 2], [0.0, width, (height - 1) / 2],
                     [0.0, 0.0, 1.0]])


def _draw_imaging(config: SequenceConfig, rng: np.random.Generator) -> Imaging:
    return Imaging(float(rng.uniform(*config.frame_noise_std)),
                   float(rng.uniform(*config.exposure_s)),
                   float(rng.uniform(*config.gain_log_amplitude)),
                   float(rng.uniform(0, 2 * np.pi)))


def make_frame(scene: Scene, t_ns: int, config: SequenceConfig, imaging: Imaging,
               rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 output frame: exposure average (blur), gain change, noise, clipped."""
    t_s = t_ns * 1e-9
    if imaging.exposure_s > 0:
        offsets = np.linspace(-imaging.exposure_s / 2, imaging.exposure_s / 2,
                              config.blur_samples)
        image = np.mean([render(scene, t_s + o) for o in offsets], axis=0)
    else:
        image = render(scene, t_s)
    if imaging.gain_log_amplitude > 0:
        image = image * np.exp(imaging.gain_log_amplitude * np.sin(
            2 * np.pi * config.gain_hz * t_s + imaging.gain_phase))
    if imaging.noise_std > 0:
        image = image + rng.normal(0, imaging.noise_std, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def simulate_scene_events(scene: Scene, config: SequenceConfig, rng: np.random.Generator,
                          progress: bool = False) -> EventBatch:
    """Render at config.render_hz over the duration and simulate events between renders."""
    times = grid_ns(config.duration_s, config.render_hz)
    state = esim.init_state(render(scene, 0.0), int(times[0]), config.esim, rng)
    batches = []
    for t in tqdm(times[1:], desc="render+esim", unit="render", disable=not progress,
                  leave=False):
        state, batch = esim.step(state, render(scene, t * 1e-9), int(t), config.esim, rng)
        batches.append(batch)
    if not batches:
        return EventBatch.empty(config.width, config.height)
    return EventBatch.concatenate(batches)


def _sensor_frames_and_events(scene: Scene, config: SequenceConfig, draw: SensorDraw,
                              esim_rng: np.random.Generator, frame_rng: np.random.Generator,
                              progress: bool):
    """Render on the render_hz grid once; ESIM on (0, duration], frames by exposure averaging.

    Returns frames (T, H, W), their stamps (centre of the exposure), exposures (T,), events,
    dropped event count.
    """
    sensor = config.sensor
    W, H = config.width, config.height
    dt = int(round(1e9 / config.render_hz))
    dur = int(round(config.duration_s * 1e9))
    n_frames = int(np.floor(config.duration_s * draw.frame_hz + 1e-9)) + 1
    centres = np.round(np.arange(n_frames) * (1e9 / draw.frame_hz) / dt).astype(np.int64) * dt
    half_max = int(np.ceil(draw.exposure_limits_s[1] * 1e9 / dt / 2)) + 1
    ks = np.arange(-half_max, dur // dt + half_max + 1)
    # Start near the auto-exposure's choice for the first view, off by up to exposure0_s's
    # relative draw (mis-exposed starts), so the first frame is usable as a reference.
    meter = render(scene, 0.0).astype(np.float64) * draw.illuminance
    g0 = hdr_gain(draw.hdr, W, H, 0.0)
    meter_mean = float(np.mean(np.clip(meter * (1 if g0 is None else g0), 0, 1e3)))
    ideal = sensor.ae_target / max(meter_mean, 1e-6) * EXPOSURE_REF_S
    lo, hi = draw.exposure_limits_s
    rel = draw.exposure0_s / np.sqrt(lo * hi)  # the draw's place within the limits
    exposure = float(np.clip(ideal * rel ** 0.3, lo, hi))
    gain = float(np.clip(ideal * rel ** 0.3 / exposure, 1.0, sensor.analog_gain_max)) \
        if sensor.auto_exposure else 1.0
    frames, stamps, exposures = [], [], []
    state, batches = None, []
    k = 0  # next frame
    win = None  # (first, last) render times of the current exposure, n steps

    def plan(k, exposure):
        n = max(1, int(round(exposure * 1e9 / dt)))
        first = int(centres[k]) - (n // 2) * dt
        if frames or stamps:
            first = max(first, last_end + dt)
        return first, first + n * dt, n

    last_end = -10**18
    win = plan(0, exposure)
    acc = np.zeros((H, W), np.float64)
    for kk in tqdm(ks, desc="render+esim", unit="render", disable=not progress, leave=False):
        t = int(kk) * dt
        if t > dur and win is None:
            break
        img = render(scene, t * 1e-9).astype(np.float64) * draw.illuminance
        g = hdr_gain(draw.hdr, W, H, t * 1e-9)
        if g is not None:
            img *= g
        if 0 <= t <= dur:
            if state is None:
                state = esim.init_state(img, t, draw.esim, esim_rng)
            else:
                state, batch = esim.step(state, img, t, draw.esim, esim_rng)
                batches.append(batch)
        if win is not None and win[0] <= t <= win[1]:
            acc += img * (0.5 if t in (win[0], win[1]) else 1.0)
            if t == win[1]:
                first, last, n = win
                v = acc / n * (n * dt * 1e-9 / EXPOSURE_REF_S) * gain
                pre = v / gain
                std = gain * np.sqrt(draw.shot_noise ** 2 * np.maximum(pre, 0) +
                                     draw.read_noise ** 2)
                v = v + frame_rng.normal(0.0, 1.0, v.shape) * std
                frame = np.round(np.clip(v, 0.0, 1.0) * 255) / 255
                frames.append(frame.astype(np.float32))
                stamps.append((first + last) // 2)
                exposures.append(n * dt * 1e-9)
                last_end = last
                if sensor.auto_exposure:
                    exposure, gain = _auto_exposure(float(frame.mean()), exposure, gain,
                                                    draw, sensor)
                acc[:] = 0
                k += 1
                win = None
                if k < n_frames:
                    nxt = plan(k, exposure)
                    if nxt[1] <= (ks[-1]) * dt:
                        win = nxt
    events = EventBatch.concatenate(batches) if batches else EventBatch.empty(W, H)
    return (np.stack(frames), np.asarray(stamps, np.int64), np.asarray(exposures), events,
            0 if state is None else state.dropped)


def _auto_exposure(mean: float, exposure: float, gain: float, draw: SensorDraw,
                   sensor: SensorConfig) -> tuple[float, float]:
    """One auto-exposure step: exposure first, then analog gain, each factor <= ae_step."""
    ratio = sensor.ae_target / max(mean, 1e-3)
    if abs(np.log(ratio)) <= np.log(1.2):
        return exposure, gain
    f = float(np.clip(ratio, 1 / sensor.ae_step, sensor.ae_step))
    lo, hi = draw.exposure_limits_s
    if f > 1 and gain > 1.0:  # brighter wanted: gain first only if already raised
        new_gain = min(gain * f, sensor.analog_gain_max)
        return exposure, new_gain
    if f < 1 and gain > 1.0:
        return exposure, max(1.0, gain * f)
    new_exp = float(np.clip(exposure * f, lo, hi))
    rest = f * exposure / new_exp
    new_gain = float(np.clip(gain * rest, 1.0, sensor.analog_gain_max)) if f > 1 else gain
    return new_exp, new_gain


def generate_sequence(config: SequenceConfig, seed: int,
                      textures: tuple[np.ndarray, ...] | None = None,
                      progress: bool = False) -> Sequence:
    """Generate frames, events and exact ground truth for one sequence.

    Args:
        config: scene, motion, imaging and simulator parameters.
        seed: the sequence's seed (non-negative int).
        textures: grey texture images; None = scikit-image's bundled photographs.
        progress: show a tqdm bar over the render steps.
    """
    config.validate()
    scene_rng, esim_rng, frame_rng = (np.random.default_rng(s)
                                      for s in np.random.SeedSequence(seed).spawn(3))
    if textures is None:
        textures = load_textures()
    scene = make_scene(config, textures, scene_rng)
    if config.sensor is not None:
        draw = draw_sensor(config.sensor, config.width, config.height, frame_rng)
        frames, frame_times, exposures, events, dropped = _sensor_frames_and_events(
            scene, config, draw, esim_rng, frame_rng, progress)
        gt_times = np.union1d(grid_ns(config.duration_s, config.gt_hz), frame_times)
        gt = ground_truth(scene, frames, frame_times, config, gt_times)
        imaging = Imaging(draw.read_noise, float(np.mean(exposures)), 0.0, 0.0)
        return Sequence(config, int(seed), frames, frame_times, events, gt,
                        intrinsics(config.width, config.height), scene, imaging, draw,
                        exposures, int(dropped))
    imaging = _draw_imaging(config, frame_rng)
    frame_times = grid_ns(config.duration_s, config.frame_hz)
    frames = np.stack([make_frame(scene, int(t), config, imaging, frame_rng)
                       for t in frame_times])
    events = simulate_scene_events(scene, config, esim_rng, progress)
    gt_times = np.union1d(grid_ns(config.duration_s, config.gt_hz), frame_times)
    gt = ground_truth(scene, frames, frame_times, config, gt_times)
    return Sequence(config, int(seed), frames, frame_times, events, gt,
                    intrinsics(config.width, config.height), scene, imaging)
