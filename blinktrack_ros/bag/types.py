"""Message types for bag reading and writing: ROS 2 Jazzy plus our messages and event messages.

The typestore holds every type of `Stores.ROS2_JAZZY`, our `blinktrack_ros/msg/*` (from the
package's `msg/*.msg`, found through `blinktrack_ros.resources`) and the event-camera messages in
`msgdefs/` (`event_camera_msgs/msg/EventPacket`, `event_array_msgs/msg/EventArray`,
`dvs_msgs/msg/Event`, `dvs_msgs/msg/EventArray`), which are not part of the Jazzy store.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from blinktrack_ros.resources import find_share_file

OWN_PACKAGE = "blinktrack_ros"
OWN_MESSAGES = ("ObservationArray", "TrackArray")
MSGDEFS_DIR = Path(__file__).resolve().parent / "msgdefs"

# Dependencies first: dvs_msgs/EventArray refers to dvs_msgs/Event.
EXTERNAL_MESSAGES = (
    "dvs_msgs/msg/Event",
    "dvs_msgs/msg/EventArray",
    "event_array_msgs/msg/EventArray",
    "event_camera_msgs/msg/EventPacket",
)

OBSERVATION_ARRAY = f"{OWN_PACKAGE}/msg/ObservationArray"
TRACK_ARRAY = f"{OWN_PACKAGE}/msg/TrackArray"
EVENT_PACKET = "event_camera_msgs/msg/EventPacket"
LEGACY_EVENT_ARRAY = "event_array_msgs/msg/EventArray"
DVS_EVENT_ARRAY = "dvs_msgs/msg/EventArray"
IMAGE = "sensor_msgs/msg/Image"


def _definition_file(msgtype: str) -> Path | None:
    """The .msg file that defines `msgtype` ("pkg/msg/Name"), or None for other types."""
    package, _, name = msgtype.split("/")
    if package == OWN_PACKAGE and name in OWN_MESSAGES:
        return find_share_file(f"msg/{name}.msg")
    if msgtype in EXTERNAL_MESSAGES:
        path = MSGDEFS_DIR / package / f"{name}.msg"
        if not path.is_file():
            raise FileNotFoundError(
                f"message definition {path} is missing: reinstall blinktrack_ros with its "
                "package data (bag/msgdefs/*/*.msg)")
        return path
    return None


def own_msgtypes() -> tuple[str, ...]:
    """Type names that `typestore()` adds to the ROS 2 Jazzy store."""
    return tuple(f"{OWN_PACKAGE}/msg/{name}" for name in OWN_MESSAGES) + EXTERNAL_MESSAGES


def msg_text(msgtype: str, full: bool = False) -> str:
    """The .msg definition text of `msgtype` ("pkg/msg/Name").

    Args:
        msgtype: a type of `typestore()`.
        full: the definition with all its dependencies, as stored in bags and mcap schemas
            (ros2msg: sections separated by a line of 80 '=' and "MSG: pkg/Name").
            Otherwise the type's own definition: our own and the event-camera messages from
            their .msg files (comments included), other types from rosbags.

    Raises:
        KeyError: the type is unknown.
    """
    if msgtype.count("/") != 2:
        raise KeyError(f"message type {msgtype!r} is not of the form 'package/msg/Name'")
    if full:
        if msgtype not in typestore().fielddefs:
            raise KeyError(f"unknown message type {msgtype!r}")
        return typestore().generate_msgdef(msgtype, ros_version=2)[0]
    path = _definition_file(msgtype)
    if path is not None:
        return path.read_text(encoding="utf-8")
    store = typestore()
    if msgtype not in store.fielddefs:
        raise KeyError(f"unknown message type {msgtype!r}")
    full, _ = store.generate_msgdef(msgtype, ros_version=2)
    return full.split("=" * 80 + "\n", 1)[0]


@lru_cache(maxsize=1)
def typestore():  # -> rosbags.typesys.store.Typestore (rosbags imported lazily)
    """The shared rosbags Typestore: ROS 2 Jazzy + our messages + event-camera messages.

    Cached: every caller gets the same object; do not register more types into it.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for msgtype in own_msgtypes():
        path = _definition_file(msgtype)
        assert path is not None
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), msgtype))
    store.register(types)
    return store
