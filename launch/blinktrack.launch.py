"""Launch blinktrack_ros: blinktrack_node (the whole tracker in one process), or the three
nodes event_node, image_node and fusion_node (single_process:=false).

    ros2 launch blinktrack_ros blinktrack.launch.py events:=/dvs/events image:=/dvs/image_raw \
        use_sim_time:=true

The event message type is detected from the topic (event_msg_type:=auto); CameraInfo is
optional (without it the images are used as they come after a short wait, no undistortion).

Outputs: /blinktrack/tracks (TrackArray), /blinktrack/feature (VINS-Fusion PointCloud),
/blinktrack/debug_image, the modules' ObservationArrays, and /diagnostics.
Uses only documented launch / launch_ros API (checked by test/test_launch_static.py).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, SetParameter
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "events": ("/events", "event topic"),
    "image": ("/image_raw", "image topic (sensor_msgs/Image)"),
    "camera_info": ("/camera_info", "CameraInfo topic, optional (undistorted output, VINS "
                    "feature cloud)"),
    "event_msg_type": ("auto", "auto (the type the events topic is published with), "
                       "event_camera_msgs/EventPacket or dvs_msgs/EventArray"),
    "config": (PathJoinSubstitution([FindPackageShare("blinktrack_ros"), "config",
                                     "blinktrack.yaml"]), "parameters file"),
    "use_sim_time": ("false", "use /clock (bag replay with --clock)"),
    "single_process": ("true", "all three nodes in one process (lowest latency)"),
    "event_weights": ("", "event network checkpoint; empty = the shipped event_lite3.pt"),
    "image_weights": ("", "image network checkpoint; empty = the shipped lite weights"),
}


FUSION_WAIT_MS = 300.0  # split mode: an array waits at most this long for the other module


def generate_launch_description() -> LaunchDescription:
    """The launch description: arguments, use_sim_time, and the nodes of the chosen mode."""
    arg = LaunchConfiguration
    params = [arg("config"), {
        "node.event_msg_type": ParameterValue(arg("event_msg_type"), value_type=str),
        "node.event_weights": ParameterValue(arg("event_weights"), value_type=str),
        "node.image_weights": ParameterValue(arg("image_weights"), value_type=str),
    }]
    single = IfCondition(arg("single_process"))
    split = UnlessCondition(arg("single_process"))
    tracks = "/blinktrack/tracks"
    actions = [DeclareLaunchArgument(name, default_value=default, description=text)
               for name, (default, text) in ARGUMENTS.items()]
    actions.append(SetParameter(name="use_sim_time", value=arg("use_sim_time")))
    actions.append(Node(
        package="blinktrack_ros", executable="blinktrack_node", name="blinktrack",
        parameters=params, condition=single, output="screen",
        remappings=[("events", arg("events")), ("image", arg("image")),
                    ("camera_info", arg("camera_info"))]))
    actions.append(Node(
        package="blinktrack_ros", executable="event_node", name="blinktrack_event",
        parameters=params, condition=split, output="screen",
        remappings=[("events", arg("events")), ("image", arg("image")), ("tracks", tracks)]))
    actions.append(Node(
        package="blinktrack_ros", executable="image_node", name="blinktrack_image",
        parameters=params, condition=split, output="screen",
        remappings=[("image", arg("image")), ("camera_info", arg("camera_info")),
                    ("tracks", tracks)]))
    # the modules deliver with different delays: fuse in timestamp order (node.fusion_wait_ms)
    actions.append(Node(
        package="blinktrack_ros", executable="fusion_node", name="blinktrack",
        parameters=params + [{"node.fusion_wait_ms": FUSION_WAIT_MS}], condition=split,
        output="screen",
        remappings=[("event_observations", "/blinktrack_event/observations"),
                    ("image_observations", "/blinktrack_image/observations"),
                    ("image", arg("image")), ("camera_info", arg("camera_info"))]))
    return LaunchDescription(actions)
