"""ESIM-style event simulation from rendered intensity images (vectorised numpy).

Model (Rebecq et al., ESIM, CoRL 2018): each pixel keeps a reference log intensity `ref`. The
log intensity L = log(max(I, log_floor)) is interpolated linearly in time between two renders;
every time it crosses `ref + C+` (or `ref - C-`) the pixel emits an ON (OFF) event at the
interpolated crossing time and `ref` moves by one threshold. C+ and C- are per-pixel thresholds
drawn once from N(C, sigma) (clipped at `contrast_min`). A crossing less than `refractory_ns`
after the pixel's last emitted event is not emitted, but `ref` still moves (as in ESIM), so the
signed event sum never drifts from the intensity by more than the suppressed events.
Background-activity noise and hot pixels add events that do not touch `ref`.

Only the loop over render steps is in Python; all per-pixel work is array code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from blinktrack_ros.events.batch import EventBatch


@dataclass(frozen=True)
class EsimConfig:
    """Parameters of the event simulator.

    Attributes:
        contrast_pos, contrast_neg: mean ON / OFF thresholds in log intensity.
        contrast_sigma: per-pixel standard deviation of the thresholds (0 = uniform).
        contrast_min: lower clip of the per-pixel thresholds.
        refractory_ns: minimum time between two emitted events of one pixel.
        log_floor: intensities below this are clipped before the log (images are in [0, 1]).
        noise_rate_hz: background-activity events per pixel per second (random polarity).
        hot_pixel_fraction: fraction of pixels that fire constantly with a fixed polarity.
        hot_pixel_rate_hz: firing rate of a hot pixel.
        cutoff_hz: photoreceptor bandwidth: the log intensity a pixel sees is low-pass filtered
            (first order) with cutoff cutoff_hz * I (proportional to the photocurrent, I in
            render units); dark pixels respond later and miss fast changes. 0 = no filter.
        max_rate_ev_s: read-out bandwidth cap (events/s over the sensor); events of a render
            step beyond the cap are dropped at random and counted in EsimState.dropped.
            0 = no cap.
    """

    contrast_pos: float = 0.2
    contrast_neg: float = 0.2
    contrast_sigma: float = 0.03
    contrast_min: float = 0.01
    refractory_ns: int = 100_000
    log_floor: float = 1e-3
    noise_rate_hz: float = 0.0
    hot_pixel_fraction: float = 0.0
    hot_pixel_rate_hz: float = 500.0
    cutoff_hz: float = 0.0
    max_rate_ev_s: float = 0.0


@dataclass(frozen=True)
class EsimState:
    """Per-pixel simulator state between two render steps (all arrays (H, W)).

    Attributes:
        ref_log: reference log intensity of each pixel.
        last_log: log intensity of the last render.
        last_event_ns: time of each pixel's last emitted event (float ns, -inf = none).
        c_pos, c_neg: per-pixel ON / OFF thresholds.
        hot_index: (K,) flat indices of hot pixels; hot_polarity: (K,) uint8 their polarity.
        t_ns: time of the last render.
    """

    ref_log: np.ndarray
    last_log: np.ndarray
    last_event_ns: np.ndarray
    c_pos: np.ndarray
    c_neg: np.ndarray
    hot_index: np.ndarray
    hot_polarity: np.ndarray
    t_ns: int
    dropped: int = 0


def log_intensity(image: np.ndarray, log_floor: float) -> np.ndarray:
    """Return log(max(image, log_floor)) as float64; image (H, W) in [0, 1]."""
    return np.log(np.maximum(np.asarray(image, np.float64), log_floor))


def init_state(image: np.ndarray, t_ns: int, config: EsimConfig,
               rng: np.random.Generator) -> EsimState:
    """Start the simulator on the first render (H, W) in [0, 1] at time t_ns; draws thresholds."""
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) grayscale image, got shape {image.shape}")
    shape = image.shape
    L = log_intensity(image, config.log_floor)
    c_pos = np.full(shape, config.contrast_pos)
    c_neg = np.full(shape, config.contrast_neg)
    if config.contrast_sigma > 0:
        c_pos = c_pos + rng.normal(0.0, config.contrast_sigma, shape)
        c_neg = c_neg + rng.normal(0.0, config.contrast_sigma, shape)
    c_pos = np.maximum(c_pos, config.contrast_min)
    c_neg = np.maximum(c_neg, config.contrast_min)
    n_hot = int(round(config.hot_pixel_fraction * L.size))
    hot_index = np.sort(rng.choice(L.size, size=n_hot, replace=False)).astype(np.int64)
    hot_polarity = rng.integers(0, 2, n_hot).astype(np.uint8)
    return EsimState(L.copy(), L, np.full(shape, -np.inf), c_pos, c_neg, hot_index,
                     hot_polarity, int(t_ns))


def _crossings(state: EsimState, L1: np.ndarray, t1_ns: int, refractory_ns: int):
    """Crossing events of one step: (flat pixel index, float time ns, polarity), new state."""
    L0, ref = state.last_log, state.ref_log
    d = (L1 - ref).ravel()
    # Cheap full-image pass (most pixels do not fire), exact per-pixel work on candidates.
    cand = np.flatnonzero((d >= state.c_pos.ravel()) | (d <= -state.c_neg.ravel()))
    up_c = d[cand] > 0
    C_c = np.where(up_c, state.c_pos.flat[cand], state.c_neg.flat[cand])
    n_c = np.floor(np.abs(d[cand]) / C_c).astype(np.int64)  # levels crossed, ref -> L1
    keep = n_c > 0
    idx, n_i, up_i, C_i = cand[keep], n_c[keep], up_c[keep], C_c[keep]
    new_ref = ref.copy()
    if idx.size == 0:
        return (idx, np.zeros(0), np.zeros(0, np.uint8)), new_ref, state.last_event_ns
    sign = np.where(up_i, 1.0, -1.0)
    dt = float(t1_ns - state.t_ns)
    dL = L1.flat[idx] - L0.flat[idx]
    # Rounding can leave |L0 - ref| a hair above C: then L barely moves; spread those evenly.
    degenerate = sign * dL <= 1e-12
    slope = np.where(degenerate, 1.0, dL) / dt  # log units per ns
    # Crossing i (1..n) at level ref + sign*i*C: time a + i*s, equally spaced in time.
    a = np.where(degenerate, state.t_ns, state.t_ns + (ref.flat[idx] - L0.flat[idx]) / slope)
    s = np.where(degenerate, dt / n_i, sign * C_i / slope)
    last = state.last_event_ns.flat[idx]
    if refractory_ns > 0:
        wait = np.where(np.isfinite(last), np.ceil((last + refractory_ns - a) / s), 1.0)
        first = np.maximum(1.0, wait).astype(np.int64)
        step = np.maximum(1, np.ceil(refractory_ns / s)).astype(np.int64)
    else:
        first = np.ones_like(n_i)
        step = np.ones_like(n_i)
    count = np.where(first > n_i, 0, (n_i - first) // step + 1)
    new_ref.flat[idx] = ref.flat[idx] + sign * n_i * C_i
    new_last = state.last_event_ns.copy()
    fired = count > 0
    new_last.flat[idx[fired]] = a[fired] + (first[fired] + (count[fired] - 1) * step[fired]) * s[
        fired]
    # Expand to one row per emitted event: rank r -> crossing first + r*step.
    owner = np.repeat(np.arange(idx.size), count)
    starts = np.cumsum(count) - count
    rank = np.arange(owner.size) - starts[owner]
    k = first[owner] + rank * step[owner]
    t = np.clip(a[owner] + k * s[owner], state.t_ns, t1_ns)
    return (idx[owner], t, up_i[owner].astype(np.uint8)), new_ref, new_last


def _noise(state: EsimState, t1_ns: int, config: EsimConfig, rng: np.random.Generator,
           n_pixels: int):
    """Background-activity and hot-pixel events in (t0, t1]: (flat index, time ns, polarity)."""
    dt_s = (t1_ns - state.t_ns) * 1e-9
    parts_i, parts_p = [], []
    if config.noise_rate_hz > 0:
        m = rng.poisson(config.noise_rate_hz * n_pixels * dt_s)
        parts_i.append(rng.integers(0, n_pixels, m))
        parts_p.append(rng.integers(0, 2, m).astype(np.uint8))
    if state.hot_index.size and config.hot_pixel_rate_hz > 0:
        per = rng.poisson(config.hot_pixel_rate_hz * dt_s, state.hot_index.size)
        parts_i.append(np.repeat(state.hot_index, per))
        parts_p.append(np.repeat(state.hot_polarity, per))
    if not parts_i:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8)
    index = np.concatenate(parts_i)
    t = state.t_ns + (1.0 - rng.random(index.size)) * (t1_ns - state.t_ns)
    return index, t, np.concatenate(parts_p)


def step(state: EsimState, image: np.ndarray, t_ns: int, config: EsimConfig,
         rng: np.random.Generator) -> tuple[EsimState, EventBatch]:
    """Advance to the next render (H, W) at t_ns > state.t_ns; return new state and its events.

    The events lie in (state.t_ns, t_ns] and are sorted by time (ties: row-major pixel order).
    """
    if t_ns <= state.t_ns:
        raise ValueError(f"render times must increase: {t_ns} <= {state.t_ns}")
    if image.shape != state.ref_log.shape:
        raise ValueError(f"image shape {image.shape} != sensor shape {state.ref_log.shape}")
    L1 = log_intensity(image, config.log_floor)
    if config.cutoff_hz > 0:
        fc = config.cutoff_hz * np.maximum(np.asarray(image, np.float64), config.log_floor)
        gain = -np.expm1(-2 * np.pi * fc * ((t_ns - state.t_ns) * 1e-9))
        L1 = state.last_log + gain * (L1 - state.last_log)
    (idx, t, p), new_ref, new_last = _crossings(state, L1, int(t_ns), config.refractory_ns)
    n_idx, n_t, n_p = _noise(state, int(t_ns), config, rng, L1.size)
    if n_idx.size:
        idx, t, p = np.concatenate([idx, n_idx]), np.concatenate([t, n_t]), np.concatenate(
            [p, n_p])
    dropped = state.dropped
    if config.max_rate_ev_s > 0:
        cap = int(config.max_rate_ev_s * (t_ns - state.t_ns) * 1e-9)
        if idx.size > cap:
            keep = np.sort(rng.choice(idx.size, size=cap, replace=False))
            dropped += idx.size - cap
            idx, t, p = idx[keep], t[keep], p[keep]
    t_int = np.clip(np.ceil(t).astype(np.int64), state.t_ns + 1, int(t_ns))
    order = np.lexsort((idx, t_int))
    H, W = L1.shape
    idx, t_int, p = idx[order], t_int[order], p[order]
    batch = EventBatch((idx % W).astype(np.uint16), (idx // W).astype(np.uint16), t_int, p, W, H)
    new_state = EsimState(new_ref, L1, new_last, state.c_pos, state.c_neg, state.hot_index,
                          state.hot_polarity, int(t_ns), dropped)
    return new_state, batch


def simulate(images: Iterable[np.ndarray], times_ns: Iterable[int], config: EsimConfig,
             seed: int = 0) -> EventBatch:
    """Simulate events for a whole image sequence.

    Args:
        images: renders (H, W) float in [0, 1] (any iterable; a (T, H, W) array works).
        times_ns: (T,) increasing render times in ns.
        config: simulator parameters.
        seed: seeds thresholds and noise.

    Returns:
        The time-sorted events in (times_ns[0], times_ns[-1]].
    """
    rng = np.random.default_rng(seed)
    state, batches = None, []
    for image, t in zip(images, times_ns):
        if state is None:
            state = init_state(np.asarray(image), int(t), config, rng)
            width, height = image.shape[1], image.shape[0]
            continue
        state, batch = step(state, np.asarray(image), int(t), config, rng)
        batches.append(batch)
    if state is None:
        raise ValueError("simulate needs at least one image")
    return EventBatch.concatenate(batches) if batches else EventBatch.empty(width, height)
