"""A test sequence from real high-frame-rate video: real frames, real motion, real blur.

Input: a folder of grey (or colour) frames and their timestamps, either `timestamps.txt` (one
time in seconds per line, matching the sorted image files of `images/` or of the folder) or
`images.txt` (rows `t path`).

Output (`video_sequence`): a `Sequence` that `bagout.write_sequence_bag` writes like a synthetic
one:
- events: the ESIM simulator on the video frames (optionally time-upsampled by optical-flow
  interpolation; between renders ESIM interpolates the log intensity linearly), with a DAVIS
  sensor drawn from `config.DAVIS` (threshold mismatch, noise, refractory period, ...);
- frames: DAVIS-like APS frames at 20-25 Hz, each the average of the video frames within its
  exposure (true motion blur of the real motion), plus shot/read noise, 8-bit quantised;
  stamps at the exposure centres;
- reference tracks: pyramidal Lucas-Kanade (sub-pixel, 21x21 windows) from video frame to video
  frame over the full rate, each step checked forward-backward; a track ends when its summed
  forward-backward error passes `max_fb_px` or it leaves the image. The reference's own error
  is reported: per-step forward-backward residuals (half the round trip estimates one
  direction's error) accumulated along each track.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.synth import esim
from blinktrack_ros.synth.config import DAVIS, SensorConfig
from blinktrack_ros.synth.groundtruth import OUTSIDE, VISIBLE, GroundTruth
from blinktrack_ros.synth.textures import IMAGE_SUFFIXES

LK_PARAMS = dict(winSize=(21, 21), maxLevel=2,
                 criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 0.001))


@dataclass(frozen=True)
class VideoOptions:
    """How a video becomes a sequence.

    Attributes:
        frame_hz: APS frame rate; exposure_s: APS exposure (capped at 0.8 / frame_hz).
        upsample: video frames per input frame interval fed to ESIM (1 = the frames as they
            are; k > 1 adds k - 1 flow-interpolated frames between consecutive ones).
        n_tracks: at most this many reference tracks (Shi-Tomasi on the first APS frame's
            exposure-centre video frame); min_distance_px between them.
        max_fb_px: a track ends when its accumulated forward-backward error passes this.
        border_px: a track ends within this distance of the image border.
        sensor: event and noise ranges (one draw per seed).
    """

    frame_hz: float = 22.0
    exposure_s: float = 0.015
    upsample: int = 1
    n_tracks: int = 100
    min_distance_px: float = 7.0
    max_fb_px: float = 0.5
    border_px: float = 6.0
    sensor: SensorConfig = DAVIS


def read_video_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) float32 grey frames in [0, 1] and (T,) float64 times in seconds.

    Raises:
        FileNotFoundError / ValueError: no frames, no timestamps, counts that disagree, or
            times that do not increase.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist")
    if (folder / "images.txt").is_file():
        rows = [line.split() for line in (folder / "images.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
        times = np.array([float(r[0]) for r in rows])
        paths = [folder / r[1] for r in rows]
    else:
        stamp_file = folder / "timestamps.txt"
        if not stamp_file.is_file():
            raise FileNotFoundError(f"{folder}: need timestamps.txt (one time in s per frame) "
                                    "or images.txt (rows `t path`)")
        times = np.loadtxt(stamp_file, ndmin=2)[:, -1].astype(np.float64)
        image_dir = folder / "images" if (folder / "images").is_dir() else folder
        paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(paths) != times.size:
            raise ValueError(f"{folder}: {len(paths)} images but {times.size} timestamps")
    if len(paths) < 3:
        raise ValueError(f"{folder}: need at least 3 frames")
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"{folder}: timestamps must increase")
    frames = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"cannot read image {p}")
        frames.append(img.astype(np.float32) / 255.0)
    if len({f.shape for f in frames}) != 1:
        raise ValueError(f"{folder}: frames differ in size")
    return np.stack(frames), times - times[0]


def _interpolate(a: np.ndarray, b: np.ndarray, k: int) -> list[np.ndarray]:
    """k - 1 frames between a and b: both warped along the DIS optical flow, blended."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    a8, b8 = (np.clip(a * 255, 0, 255).astype(np.uint8) for a in (a, b))
    f_ab = dis.calc(a8, b8, None)
    f_ba = dis.calc(b8, a8, None)
    H, W = a.shape
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    out = []
    for j in range(1, k):
        s = j / k
        # pixel x of the intermediate frame came from about x - s f_ab in a, x - (1-s) f_ba in b
        wa = cv2.remap(a, gx + s * f_ba[..., 0], gy + s * f_ba[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        wb = cv2.remap(b, gx + (1 - s) * f_ab[..., 0], gy + (1 - s) * f_ab[..., 1],
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out.append((1 - s) * wa + s * wb)
    return out


def reference_tracks(frames: np.ndarray, start: int, n_tracks: int, min_distance_px: float,
                     max_fb_px: float, border_px: float,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward-backward-checked sub-pixel LK tracks from frame `start` over all later frames.

    Returns:
        xy (T, N, 2) (NaN before start and after a track ends), alive (T, N) bool,
        fb (T, N) accumulated forward-backward error per track (px, one direction: half the
        round trip per step, summed).
    """
    T, H, W = frames.shape
    u8 = [np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8) for f in frames]
    pts = cv2.goodFeaturesToTrack(u8[start], n_tracks, 0.01, min_distance_px, blockSize=7)
    if pts is None:
        raise ValueError("no trackable corners in the first frame")
    pts = pts.reshape(-1, 1, 2).astype(np.float32)
    pts = cv2.cornerSubPix(u8[start], pts, (5, 5), (-1, -1),
                           (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 0.001))
    N = pts.shape[0]
    xy = np.full((T, N, 2), np.nan)
    alive = np.zeros((T, N), bool)
    fb = np.zeros((T, N))
    xy[start], alive[start] = pts[:, 0], True
    cur, ok, acc = pts, np.ones(N, bool), np.zeros(N)
    for k in tqdm(range(start, T - 1), desc="reference KLT", unit="frame", disable=not progress,
                  leave=False):
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(u8[k], u8[k + 1], cur, None, **LK_PARAMS)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(u8[k + 1], u8[k], nxt, None, **LK_PARAMS)
        err = np.linalg.norm((back - cur)[:, 0], axis=1) / 2
        acc = acc + np.where(np.isfinite(err), err, np.inf)
        p = nxt[:, 0]
        inside = ((p[:, 0] >= border_px) & (p[:, 0] <= W - 1 - border_px)
                  & (p[:, 1] >= border_px) & (p[:, 1] <= H - 1 - border_px))
        ok = ok & (st[:, 0] == 1) & (st2[:, 0] == 1) & (acc <= max_fb_px) & inside
        xy[k + 1, ok] = p[ok]
        alive[k + 1] = ok
        fb[k + 1] = np.where(ok, acc, np.nan)
        cur = nxt
    return xy, alive, fb


def video_sequence(folder: str | Path, seed: int = 0, options: VideoOptions = VideoOptions(),
                   progress: bool = False):
    """Build the Sequence (see the module docstring) and a dict of reference-error figures."""
    from blinktrack_ros.synth.config import SequenceConfig
    from blinktrack_ros.synth.sequence import Imaging, Sequence, draw_sensor, intrinsics

    frames, times = read_video_folder(folder)
    T, H, W = frames.shape
    rng_sensor, rng_esim, rng_noise = (np.random.default_rng(s) for s in
                                       np.random.SeedSequence(seed).spawn(3))
    draw = draw_sensor(options.sensor, W, H, rng_sensor)
    # Events from the (upsampled) video: renders in linear intensity, ESIM in between.
    renders, render_t = [], []
    for k in range(T):
        renders.append(frames[k])
        render_t.append(times[k])
        if options.upsample > 1 and k < T - 1:
            for j, img in enumerate(_interpolate(frames[k], frames[k + 1], options.upsample), 1):
                renders.append(img)
                render_t.append(times[k] + j / options.upsample * (times[k + 1] - times[k]))
    render_ns = np.round(np.asarray(render_t) * 1e9).astype(np.int64)
    state, batches = None, []
    for img, t in zip(tqdm(renders, desc="esim", disable=not progress, leave=False), render_ns):
        img = np.maximum(img.astype(np.float64), 1.0 / 255) * 0.5  # 8-bit floor, mid-grey 0.25
        if state is None:
            state = esim.init_state(img, int(t), draw.esim, rng_esim)
        else:
            state, batch = esim.step(state, img, int(t), draw.esim, rng_esim)
            batches.append(batch)
    events = EventBatch.concatenate(batches) if batches else EventBatch.empty(W, H)
    # APS frames: average of the video frames within each exposure (true blur).
    exposure = min(options.exposure_s, 0.8 / options.frame_hz)
    starts = np.arange(0.0, times[-1] - exposure + 1e-9, 1.0 / options.frame_hz)
    aps, stamps = [], []
    for s in starts:
        sel = (times >= s - 1e-9) & (times <= s + exposure + 1e-9)
        if sel.sum() < 1:
            continue
        v = frames[sel].mean(0).astype(np.float64)
        std = np.sqrt(draw.shot_noise ** 2 * v + draw.read_noise ** 2)
        v = v + rng_noise.normal(size=v.shape) * std
        aps.append((np.round(np.clip(v, 0, 1) * 255) / 255).astype(np.float32))
        stamps.append(int(round((times[sel][0] + times[sel][-1]) / 2 * 1e9)))
    if len(aps) < 2:
        raise ValueError(f"{folder}: {times[-1]:.3f} s is too short for 2 frames at "
                         f"{options.frame_hz} Hz")
    stamps = np.asarray(stamps, np.int64)
    # Reference tracks on the full-rate video, from the video frame at the first APS stamp.
    t_ns = np.round(times * 1e9).astype(np.int64)
    start = int(np.argmin(np.abs(t_ns - stamps[0])))
    xy, alive, fb = reference_tracks(frames, start, options.n_tracks, options.min_distance_px,
                                     options.max_fb_px, options.border_px, progress)
    gt_times = np.union1d(t_ns[start:], stamps[stamps >= t_ns[start]])
    gxy = np.stack([np.stack([np.interp(gt_times, t_ns[alive[:, n]], xy[alive[:, n], n, d],
                                        left=np.nan, right=np.nan) for d in (0, 1)], -1)
                    for n in range(xy.shape[1])], 1)
    vis = np.where(np.isfinite(gxy[..., 0]), VISIBLE, OUTSIDE).astype(np.int8)
    gxy = np.nan_to_num(gxy, nan=-1.0)
    N = gxy.shape[1]
    last = np.array([np.flatnonzero(alive[:, n]).max() for n in range(N)])
    # a reference track ends where its check fails: no GT rows after that (unknown, not
    # occluded)
    gt = GroundTruth(np.arange(N, dtype=np.int64), gt_times, gxy, vis, np.zeros(N, np.int64),
                     np.zeros((N, 2)), np.full(N, t_ns[start], np.int64), t_ns[last])
    end_fb = fb[last, np.arange(N)]
    stats = {
        "video_frames": T, "video_hz": float((T - 1) / times[-1]), "aps_frames": len(aps),
        "aps_hz": options.frame_hz, "exposure_s": exposure, "events": len(events),
        "tracks": N, "track_length_s_median": float(np.median((t_ns[last] - t_ns[start]) * 1e-9)),
        "tracks_full_length": int(np.sum(last == T - 1)),
        "reference_fb_error_px_median": float(np.nanmedian(end_fb)),
        "reference_fb_error_px_p90": float(np.nanpercentile(end_fb, 90)),
    }
    config = SequenceConfig(width=W, height=H, duration_s=float(times[-1]), sensor=options.sensor)
    seq = Sequence(config, int(seed), np.stack(aps), stamps, events, gt, intrinsics(W, H), None,
                   Imaging(draw.read_noise, exposure, 0.0, 0.0), draw,
                   np.full(len(aps), exposure), int(state.dropped))
    return seq, stats
