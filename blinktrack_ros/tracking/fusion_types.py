"""Configuration, per-call results and snapshots of the fusion engine (re-exported by engine)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum

import numpy as np

from blinktrack_ros.tracking.observation import Source


class FusionMode(Enum):
    """How observations change the tracks (the paper's fusion ablations)."""

    KF = "kf"  # Kalman fusion weighted by each observation's covariance (default)
    NAIVE = "naive"  # an observation replaces the position (covariance := R, velocity kept)
    SINGLE_SOURCE = "single_source"  # Kalman fusion of `FusionConfig.source` only


@dataclass(frozen=True)
class FusionConfig:
    """Parameters of the fusion engine (YAML files under config/ only override these).

    Attributes:
        q: white-acceleration spectral density of the constant-velocity model, px^2/s^3.
        constant_q: add Q(1 s) per prediction whatever the elapsed time (reference code; ablation).
        mode: KF, NAIVE or SINGLE_SOURCE.
        source: the one source fused in SINGLE_SOURCE mode (others are counted and ignored).
        gate_threshold: squared Mahalanobis distance above which an observation is rejected and
            counted as a miss (e.g. kalman.chi2_threshold_2dof(0.999) = 13.8); None disables.
        reorder_window_ms: hold arrivals this long to apply them in timestamp order; 0 applies
            each array at once and drops (and counts) observations older than a track's state.
        occlusion_visibility: a track is OCCLUDED while its visibility EMA is below this.
        confident_visibility: an observation with visibility >= this is a confident one.
        visibility_ema_alpha: weight of the newest visibility in the EMA, in (0, 1].
        lost_after_s: a track is LOST after this long without a confident observation.
        out_of_image_margin_px: LOST when the predicted position leaves the image by more.
        image_size: (width, height) in pixels, or None to skip the out-of-image test.
        seed_position_std_px: 1-sigma position accuracy of a new track.
        seed_velocity_std_px_s: 1-sigma prior on a new track's velocity (it starts at 0).
        calibrated_noise: replace the networks' R by the mapping fitted on validation data,
            r = exp(log_r0 + slope * (1 - visibility)) px^2 per axis (event and image sources;
            KLT and seeds keep theirs); False keeps the paper's r = r_max * (1 - p_vis)^b.
        event_noise_log_r0: log r (px^2) of a surely visible event observation (the default
            belongs to weights/event_lite.pt; the default weights/event_lite3.pt and
            weights/event_lite2.pt carry their own, used while noise_from_weights is on:
            weights/README.md).
        event_noise_slope: growth of log r with 1 - visibility (event source).
        image_noise_log_r0: log r (px^2) of a surely visible image observation (the default
            belongs to weights/image_lite.pt; the default image weights, image_patch.pt, carry
            their own fit, used while noise_from_weights is on).
        image_noise_slope: growth of log r with 1 - visibility (image source).
        noise_from_weights: where a loaded weights file carries its own fitted noise
            (`python -m blinktrack_ros.train.calibrate ... --write`), use it for that source
            instead of event_noise_* / image_noise_* (calibrated_noise only; False: always
            these parameters).
    """

    q: float = 1.0e4
    constant_q: bool = False
    mode: FusionMode = FusionMode.KF
    source: Source = Source.EVENT
    gate_threshold: float | None = None
    reorder_window_ms: float = 0.0
    occlusion_visibility: float = 0.5
    confident_visibility: float = 0.5
    visibility_ema_alpha: float = 0.5
    lost_after_s: float = 0.5
    out_of_image_margin_px: float = 10.0
    image_size: tuple[int, int] | None = None
    seed_position_std_px: float = 1.0
    seed_velocity_std_px_s: float = 100.0
    calibrated_noise: bool = True
    event_noise_log_r0: float = field(default=-0.14, metadata={"range": (-20.0, 20.0)})
    event_noise_slope: float = field(default=9.09, metadata={"range": (0.0, 100.0)})
    image_noise_log_r0: float = field(default=3.13, metadata={"range": (-20.0, 20.0)})
    image_noise_slope: float = field(default=8.0, metadata={"range": (0.0, 100.0)})
    noise_from_weights: bool = True

    def __post_init__(self) -> None:
        """Reject values that would make the filter or the lifecycle meaningless."""
        checks = {
            "q": self.q >= 0, "reorder_window_ms": self.reorder_window_ms >= 0,
            "visibility_ema_alpha": 0 < self.visibility_ema_alpha <= 1,
            "lost_after_s": self.lost_after_s > 0,
            "out_of_image_margin_px": self.out_of_image_margin_px >= 0,
            "seed_position_std_px": self.seed_position_std_px > 0,
            "seed_velocity_std_px_s": self.seed_velocity_std_px_s > 0,
            "gate_threshold": self.gate_threshold is None or self.gate_threshold > 0,
            "image_size": self.image_size is None or (
                len(self.image_size) == 2 and min(self.image_size) > 0),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {f.name: getattr(self, f.name) for f in fields(self) if f.name in bad}
            raise ValueError(f"invalid FusionConfig values: {values}")
        if not isinstance(self.mode, FusionMode):
            raise ValueError(f"mode must be a FusionMode, got {self.mode!r}")


@dataclass(frozen=True)
class FusionResult:
    """What happened to the observations of one `apply` (or `flush`) call (counts of entries).

    Attributes:
        applied: observations fused into a track.
        unknown_ids: ids not in the table (never born, or already lost and removed).
        stale: older than the track's state (out of order): dropped.
        gated: rejected by the Mahalanobis gate (a miss for the track).
        invalid: non-finite, covariance not positive definite, visibility outside [0, 1], or a
            repeated id within one array.
        ignored_source: from a source that SINGLE_SOURCE mode does not fuse.
        arrays: observation arrays processed (0 while they wait in the reorder buffer).
    """

    applied: int = 0
    unknown_ids: int = 0
    stale: int = 0
    gated: int = 0
    invalid: int = 0
    ignored_source: int = 0
    arrays: int = 0

    def __add__(self, other: FusionResult) -> FusionResult:
        return FusionResult(*(getattr(self, f.name) + getattr(other, f.name)
                              for f in fields(self)))


@dataclass(frozen=True)
class TrackSnapshot:
    """The alive tracks (and the ones just lost, once) predicted to time t_ns.

    Attributes:
        t_ns: the time the positions refer to.
        ids: (N,) uint32.
        positions_px: (N, 2) pixel xy.
        velocities_px_s: (N, 2) px/s.
        covariances: (N, 2, 2) position covariance in px^2.
        status: (N,) uint8 TrackStatus.
        last_source: (N,) uint8 Source of the last fused observation.
        age_s: (N,) seconds since birth.
        state_covariances: (N, 4, 4) covariance of [x, y, vx, vy] (offline smoothing), or None.
    """

    t_ns: int
    ids: np.ndarray
    positions_px: np.ndarray
    velocities_px_s: np.ndarray
    covariances: np.ndarray
    status: np.ndarray
    last_source: np.ndarray
    age_s: np.ndarray
    state_covariances: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])
