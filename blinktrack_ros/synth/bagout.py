"""Write a synthetic Sequence as a ROS 2 bag (mcap) plus its `<seq>.gt.txt`.

Stamps: sequence time 0 is written as SYNTH_EPOCH_NS (2026-01-01T00:00:00Z), a fixed constant so
that the output is reproducible and `ros2 bag play`, rosbag tools and SLAM see realistic
absolute times. The `<seq>.gt.txt` keeps t relative (seconds since that epoch, exact in float64)
and records the epoch in a `# time origin N ns` header line; `blinktrack track`, `eval`,
`benchmark` and `load_bag_sequence` use it to work in the same relative time.

Topics (log time = the message's data time, so a replay sees them in sensor order):

- `/dvs/events` dvs_msgs/EventArray (default) or `/event_camera/events`
  event_camera_msgs/EventPacket (evt3 or mono): events cut into packets of `packet_ns` (1 ms);
  empty packets are not written. header.stamp = first event's time; log time = last event's.
- `/camera/image_raw` sensor_msgs/Image mono8 and `/camera/camera_info` sensor_msgs/CameraInfo
  (plumb_bob, zero distortion) at every frame stamp.
- `/ground_truth/tracks` blinktrack_ros/TrackArray at every ground-truth time (1 kHz + frames):
  every point from its query time on; status TRACKED = visible, OCCLUDED = occluded, LOST = outside
  the image; velocities by central differences of the exact positions; covariances 0;
  last_source SOURCE_SEED; age = time since its query time; undistorted = K^-1 positions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.synth.groundtruth import OCCLUDED, OUTSIDE, write_gt_txt
from blinktrack_ros.synth.sequence import Sequence

EVENT_MSGS = ("dvs", "evt3", "mono")
DVS_TOPIC, PACKET_TOPIC = "/dvs/events", "/event_camera/events"
IMAGE_TOPIC, INFO_TOPIC, GT_TOPIC = "/camera/image_raw", "/camera/camera_info", \
    "/ground_truth/tracks"
FRAME_ID = "camera"
PACKET_NS = 1_000_000
SYNTH_EPOCH_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z: sequence time 0
TRACKED, STATUS_OCCLUDED, LOST, SOURCE_SEED = 0, 1, 2, 3  # TrackArray / ObservationArray consts


def _header(store: Any, t_ns: int) -> Any:
    sec, nsec = divmod(int(t_ns), 1_000_000_000)
    Time = store.types["builtin_interfaces/msg/Time"]
    return store.types["std_msgs/msg/Header"](stamp=Time(sec=sec, nanosec=nsec), frame_id=FRAME_ID)


def _dvs_messages(events: EventBatch, packet_ns: int) -> Iterator[tuple[int, str, str, bytes]]:
    from blinktrack_ros.events.dvs import serialize_dvs_event_array

    if len(events) == 0:
        return
    window = (events.t - 1) // packet_ns  # window k holds (k*packet, (k+1)*packet]
    cuts = np.flatnonzero(np.diff(window)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(events)]):
        part = EventBatch(events.x[lo:hi], events.y[lo:hi], events.t[lo:hi], events.p[lo:hi],
                          events.width, events.height)
        yield (int(part.t[-1]), DVS_TOPIC, "dvs_msgs/msg/EventArray",
               serialize_dvs_event_array(part, int(part.t[0]), FRAME_ID))


def _packet_messages(store: Any, events: EventBatch, encoding: str,
                     packet_ns: int) -> Iterator[tuple[int, str, str, Any]]:
    from blinktrack_ros.events.decode import decode_packet
    from blinktrack_ros.events.encode import make_event_packets

    Packet = store.types["event_camera_msgs/msg/EventPacket"]
    state = None
    for f in make_event_packets(events, encoding, packet_ns, FRAME_ID):
        batch, state = decode_packet(f, state)  # its last event time is the log time
        stamp = f.header.stamp.sec * 1_000_000_000 + f.header.stamp.nanosec
        msg = Packet(header=_header(store, stamp), height=f.height, width=f.width, seq=f.seq,
                     time_base=f.time_base, encoding=f.encoding, is_bigendian=f.is_bigendian,
                     events=np.frombuffer(f.events, np.uint8))
        yield int(batch.t[-1]), PACKET_TOPIC, "event_camera_msgs/msg/EventPacket", msg


def _camera_messages(store: Any, seq: Sequence,
                     origin_ns: int) -> Iterator[tuple[int, str, str, Any]]:
    from blinktrack_ros.images import gray_to_mono8

    H, W = seq.frames.shape[1:]
    K = seq.K
    P = np.hstack([K, np.zeros((3, 1))])
    Image, Info = store.types["sensor_msgs/msg/Image"], store.types["sensor_msgs/msg/CameraInfo"]
    roi = store.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    for frame, t_rel in zip(seq.frames, seq.frame_times_ns):
        t = int(t_rel) + origin_ns
        data = np.frombuffer(gray_to_mono8(frame), np.uint8)
        yield int(t), IMAGE_TOPIC, "sensor_msgs/msg/Image", Image(
            header=_header(store, t), height=H, width=W, encoding="mono8", is_bigendian=0,
            step=W, data=data)
        yield int(t), INFO_TOPIC, "sensor_msgs/msg/CameraInfo", Info(
            header=_header(store, t), height=H, width=W, distortion_model="plumb_bob",
            d=np.zeros(5), k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1),
            binning_x=0, binning_y=0, roi=roi)


def _gt_messages(store: Any, seq: Sequence, origin_ns: int) -> Iterator[tuple[int, str, str, Any]]:
    gt, K = seq.gt, seq.K
    Tracks = store.types["blinktrack_ros/msg/TrackArray"]
    t_s = gt.times_ns * 1e-9
    vel = np.gradient(gt.xy, t_s, axis=0) if t_s.size > 1 else np.zeros_like(gt.xy)
    status = np.where(gt.vis == OUTSIDE, LOST, np.where(gt.vis == OCCLUDED, STATUS_OCCLUDED,
                                                        TRACKED)).astype(np.uint8)
    undist = (gt.xy - K[:2, 2]) / np.diag(K)[:2]
    alive = gt.alive()
    for s, t in enumerate(gt.times_ns):
        a = alive[s]
        n = int(a.sum())
        yield int(t) + origin_ns, GT_TOPIC, "blinktrack_ros/msg/TrackArray", Tracks(
            header=_header(store, int(t) + origin_ns), ids=gt.ids[a].astype(np.uint32),
            positions=gt.xy[s, a].astype(np.float32).reshape(-1),
            velocities=vel[s, a].astype(np.float32).reshape(-1),
            covariances=np.zeros(3 * n, np.float32), status=status[s, a],
            last_source=np.full(n, SOURCE_SEED, np.uint8),
            age=((t - gt.query_t_ns[a]) * 1e-9).astype(np.float32),
            undistorted=undist[s, a].astype(np.float32).reshape(-1))


def write_sequence_bag(seq: Sequence, bag_dir: Path, event_msg: str = "dvs",
                       packet_ns: int = PACKET_NS, progress: bool = False,
                       time_origin_ns: int = SYNTH_EPOCH_NS) -> dict[str, int]:
    """Write seq as the mcap bag directory bag_dir and `<bag_dir>.gt.txt` beside it.

    Every stamp and log time is time_origin_ns + the sequence time (ns); the ground truth keeps
    the sequence time and records time_origin_ns in its header.

    Returns:
        Messages written per topic.

    Raises:
        ValueError: unknown event_msg; FileExistsError: bag_dir exists.
    """
    from blinktrack_ros.bag.types import typestore
    from blinktrack_ros.bag.writer import BagWriter

    if event_msg not in EVENT_MSGS:
        raise ValueError(f"unknown event message {event_msg!r}; choose from {EVENT_MSGS}")
    store = typestore()
    ev = seq.events
    ev = EventBatch(ev.x, ev.y, ev.t + np.int64(time_origin_ns), ev.p, ev.width, ev.height)
    events = (_dvs_messages(ev, packet_ns) if event_msg == "dvs"
              else _packet_messages(store, ev, event_msg, packet_ns))
    streams = [list(events), list(_camera_messages(store, seq, time_origin_ns)),
               list(_gt_messages(store, seq, time_origin_ns))]
    # Stable merge by log time; at equal times events first, then camera, then ground truth.
    rows = sorted(((m[0], i, j) for i, stream in enumerate(streams) for j, m in
                   enumerate(stream)))
    bag_dir = Path(bag_dir)
    with BagWriter(bag_dir) as bag:
        for t, i, j in tqdm(rows, desc=bag_dir.name, unit="msg", disable=not progress,
                            leave=False):
            _, topic, msgtype, msg = streams[i][j]
            bag.write(topic, msgtype, t, msg)
        counts = dict(bag.counts)
    h, w = seq.frames.shape[1:3]
    write_gt_txt(seq.gt, bag_dir.parent / f"{bag_dir.name}.gt.txt", size=(w, h),
                 time_origin_ns=time_origin_ns)
    return counts
