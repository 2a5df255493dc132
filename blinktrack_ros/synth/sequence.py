"""Generate one synthetic sequence in memory: frames, events, exact ground truth, intrinsics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.synth import esim
from blinktrack_ros.synth.config import SequenceConfig
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
    imaging = _draw_imaging(config, frame_rng)
    frame_times = grid_ns(config.duration_s, config.frame_hz)
    frames = np.stack([make_frame(scene, int(t), config, imaging, frame_rng)
                       for t in frame_times])
    events = simulate_scene_events(scene, config, esim_rng, progress)
    gt_times = np.union1d(grid_ns(config.duration_s, config.gt_hz), frame_times)
    gt = ground_truth(scene, frames, frame_times, config, gt_times)
    return Sequence(config, int(seed), frames, frame_times, events, gt,
                    intrinsics(config.width, config.height), scene, imaging)
