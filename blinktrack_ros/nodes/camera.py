"""CameraInfo, undistorted normalised coordinates, the VINS-Fusion feature cloud, debug images.

VINS-Fusion's feature input (`sensor_msgs/PointCloud`): one point per feature with normalised
undistorted coordinates (x/z, y/z, 1), and channels 0-5 = feature id, camera id, u, v (distorted
pixels), velocity x, velocity y (of the normalised coordinates, per second). With more than 5
channels it also reads channels 6-8 (ground-truth xyz in its own tools), so three zero channels
are appended. Undistortion ignores CameraInfo's rectification R and projection P: VINS wants the
camera's own normalised plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from blinktrack_ros.nodes.convert import MalformedMessageError, set_stamp
from blinktrack_ros.tracking.fusion_types import TrackSnapshot
from blinktrack_ros.tracking.tracks import TrackStatus

PLUMB_BOB = ("plumb_bob", "rational_polynomial")
EQUIDISTANT = ("equidistant", "fisheye")
FEATURE_CHANNELS = ("id", "camera_id", "u", "v", "velocity_x", "velocity_y",
                    "zero_6", "zero_7", "zero_8")
VELOCITY_STEP_S = 1e-3  # finite-difference step for the normalised velocity


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics from a CameraInfo.

    Attributes:
        K: (3, 3) float64 camera matrix.
        D: (K,) float64 distortion coefficients (OpenCV order).
        model: distortion model name (plumb_bob, rational_polynomial, equidistant).
        width, height: image size in pixels.
    """

    K: np.ndarray
    D: np.ndarray
    model: str
    width: int
    height: int


def camera_model_from_info(msg: Any) -> CameraModel:
    """sensor_msgs/CameraInfo -> CameraModel.

    Raises:
        MalformedMessageError: K with a zero focal length, or an unsupported distortion model.
    """
    K = np.asarray(msg.k, np.float64).reshape(3, 3)
    if K[0, 0] == 0 or K[1, 1] == 0 or not np.isfinite(K).all():
        raise MalformedMessageError("CameraInfo.k has no valid focal length (uncalibrated camera)")
    model = str(msg.distortion_model) or "plumb_bob"
    D = np.asarray(msg.d, np.float64).reshape(-1)
    if model not in PLUMB_BOB + EQUIDISTANT:
        raise MalformedMessageError(f"unsupported distortion model {model!r}")
    if model in EQUIDISTANT and D.shape[0] != 4:
        raise MalformedMessageError(f"equidistant model needs 4 coefficients, got {D.shape[0]}")
    return CameraModel(K, D, model, int(msg.width), int(msg.height))


def undistort_normalised(cam: CameraModel, positions_px: np.ndarray) -> np.ndarray:
    """(N, 2) distorted pixel xy -> (N, 2) undistorted normalised xy (x/z, y/z)."""
    pts = np.asarray(positions_px, np.float64).reshape(-1, 1, 2)
    if pts.shape[0] == 0:
        return np.zeros((0, 2))
    if cam.model in EQUIDISTANT:
        out = cv2.fisheye.undistortPoints(pts, cam.K, cam.D)
    else:
        out = cv2.undistortPoints(pts, cam.K, cam.D if cam.D.size else None)
    return out.reshape(-1, 2)


def normalised_velocity(cam: CameraModel, positions_px: np.ndarray,
                        velocities_px_s: np.ndarray) -> np.ndarray:
    """(N, 2) velocity of the normalised coordinates (1/s) from pixel position and velocity."""
    p0 = undistort_normalised(cam, positions_px)
    p1 = undistort_normalised(cam, np.asarray(positions_px) + VELOCITY_STEP_S * np.asarray(
        velocities_px_s))
    return (p1 - p0) / VELOCITY_STEP_S


def feature_cloud(snap: TrackSnapshot, cam: CameraModel, camera_id: int = 0,
                  frame_id: str = "") -> Any:
    """TRACKED tracks of a snapshot as a VINS-Fusion feature `sensor_msgs/PointCloud`."""
    from geometry_msgs.msg import Point32
    from sensor_msgs.msg import ChannelFloat32, PointCloud

    keep = snap.status == TrackStatus.TRACKED
    pos, vel = snap.positions_px[keep], snap.velocities_px_s[keep]
    xy = undistort_normalised(cam, pos)
    vxy = normalised_velocity(cam, pos, vel)
    n = xy.shape[0]
    msg = PointCloud()
    set_stamp(msg.header.stamp, snap.t_ns)
    msg.header.frame_id = frame_id
    msg.points = [Point32(x=float(x), y=float(y), z=1.0) for x, y in xy]
    columns = [snap.ids[keep].astype(np.float32), np.full(n, camera_id, np.float32),
               pos[:, 0], pos[:, 1], vxy[:, 0], vxy[:, 1]] + [np.zeros(n)] * 3
    msg.channels = [ChannelFloat32(name=name, values=np.asarray(col, np.float32).tolist())
                    for name, col in zip(FEATURE_CHANNELS, columns)]
    return msg


STATUS_COLOURS = {TrackStatus.TRACKED: (0, 255, 0), TrackStatus.OCCLUDED: (0, 200, 255),
                  TrackStatus.LOST: (0, 0, 255)}  # BGR


def draw_tracks(gray: np.ndarray, snap: TrackSnapshot) -> np.ndarray:
    """(H, W) gray in [0, 1] -> (H, W, 3) uint8 BGR with each track's circle, id and velocity."""
    img = cv2.cvtColor(np.clip(gray * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    for tid, (x, y), (vx, vy), st in zip(snap.ids, snap.positions_px, snap.velocities_px_s,
                                         snap.status):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        colour = STATUS_COLOURS.get(TrackStatus(int(st)), (255, 255, 255))
        centre = (int(round(x)), int(round(y)))
        cv2.circle(img, centre, 4, colour, 1, cv2.LINE_AA)
        tip = (int(round(x + 0.05 * vx)), int(round(y + 0.05 * vy)))  # 50 ms of motion
        cv2.line(img, centre, tip, colour, 1, cv2.LINE_AA)
        cv2.putText(img, str(int(tid)), (centre[0] + 5, centre[1] - 5),
                    cv2.FONT_HERSHEY_PLAIN, 0.8, colour, 1, cv2.LINE_AA)
    return img


def bgr_image_msg(img: np.ndarray, t_ns: int, frame_id: str = "") -> Any:
    """(H, W, 3) uint8 BGR -> sensor_msgs/Image (bgr8, step = 3 W)."""
    from sensor_msgs.msg import Image

    h, w = img.shape[:2]
    msg = Image(height=h, width=w, encoding="bgr8", is_bigendian=0, step=3 * w)
    set_stamp(msg.header.stamp, t_ns)
    msg.header.frame_id = frame_id
    msg.data = np.ascontiguousarray(img, np.uint8).tobytes()
    return msg
