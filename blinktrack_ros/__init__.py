"""blinktrack_ros: event + frame feature tracking with Kalman fusion (after BlinkTrack)."""

# The generated ROS 2 message package `blinktrack_ros.msg` may live in another site-packages
# directory than this source tree (pip/editable installs next to a cmake-built message prefix).
# extend_path adds every `blinktrack_ros/` directory on sys.path to this package's search path, so
# `import blinktrack_ros.msg` works in both layouts. In a colcon install both are one directory.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
