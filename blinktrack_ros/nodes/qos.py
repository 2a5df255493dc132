"""QoS profiles: sensor-data inputs (reliability a parameter), reliable outputs."""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT,
               "reliable": ReliabilityPolicy.RELIABLE}


def input_qos(reliability: str = "best_effort", depth: int = 10) -> QoSProfile:
    """The sensor-data profile (keep last `depth`, volatile) with the given reliability.

    best_effort (the default, like rclpy's qos_profile_sensor_data) matches both best-effort
    and reliable publishers; reliable matches only reliable ones (e.g. `ros2 bag play` is
    reliable by default, so either works for bags).
    """
    if reliability not in RELIABILITY:
        raise ValueError(f"reliability {reliability!r} is not one of {', '.join(RELIABILITY)}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE)


def output_qos(depth: int = 10) -> QoSProfile:
    """Reliable, volatile, keep last `depth`: what SLAM front-ends and rosbag expect."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
