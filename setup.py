"""pip install . (offline use, CI). colcon builds this package with CMakeLists.txt instead."""

from glob import glob

from setuptools import setup

# The shipped weights, launch and config files land where a colcon install puts them
# (<prefix>/share/blinktrack_ros/...), so one lookup (blinktrack_ros.resources) finds both.
setup(
    data_files=[
        ("share/blinktrack_ros/weights", glob("weights/*.pt") + glob("weights/*.onnx")
         + glob("weights/*.md")),
        ("share/blinktrack_ros/config", glob("config/*.yaml")),
        ("share/blinktrack_ros/launch", glob("launch/*.py")),
        ("share/blinktrack_ros/msg", glob("msg/*.msg")),
    ],
)
