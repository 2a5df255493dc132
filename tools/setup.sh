#!/usr/bin/env bash
# Create (or update) the project's venv and install blinktrack_ros into it.
#   bash tools/setup.sh                 core package + numba (compiled evt3 decoder), venv .venv
#   bash tools/setup.sh --test          + test tools (pytest, ruff, filterpy, evt3, onnxruntime)
#   bash tools/setup.sh --ros           + pip ROS 2 Jazzy wheels, messages built with cmake
#   bash tools/setup.sh --numpy1 --venv .venv-np126   numpy 1.26 + OpenCV 4.10 (the distros' numpy 1.x)
#   bash tools/setup.sh --textures      + Debian wallpaper packages (training/test photographs for
#                                       synthetic data; optional: without them the synthesizer
#                                       uses scikit-image's photographs + procedural textures)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
ROS=0
TEST=0
NUMPY1=0
TEXTURES=0
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift ;;
    --ros) ROS=1 ;;
    --test) TEST=1 ;;
    --numpy1) NUMPY1=1 ;;
    --textures) TEXTURES=1 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 needed"'
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
CONSTRAINTS=(-c tools/constraints.txt)
if [ "$NUMPY1" = 1 ]; then
  # Humble/Jazzy ship numpy 1.x; OpenCV 4.12 wheels need numpy 2, 4.10 admits 1.x.
  sed -e 's/^opencv-python-headless==.*/opencv-python-headless==4.10.0.84/' tools/constraints.txt \
    > "$VENV/constraints.txt"
  echo "numpy==1.26.4" >> "$VENV/constraints.txt"
  CONSTRAINTS=(-c "$VENV/constraints.txt")
fi
# torch first and pinned: the CPU wheel on disk, never a CUDA build from the index.
"${PIP[@]}" "${CONSTRAINTS[@]}" torch==2.13.0
EXTRAS="[fast]"  # numba: the compiled evt3 decoder
[ "$TEST" = 1 ] && EXTRAS="[fast,test]"
"${PIP[@]}" "${CONSTRAINTS[@]}" -e ".${EXTRAS}"
if [ "$ROS" = 1 ]; then
  bash tools/build_msgs.sh "$VENV"
fi
if [ "$TEXTURES" = 1 ]; then
  # Photographs under /usr/share/backgrounds (never opencv-doc: reserved for evaluation).
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    mate-backgrounds ukui-wallpapers lomiri-wallpapers-20.04
fi
echo "setup.sh: ready: $VENV (ros=$ROS test=$TEST numpy1=$NUMPY1)"
