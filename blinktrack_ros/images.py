"""`sensor_msgs/Image` fields to float32 grayscale in [0, 1], and back to mono8 bytes.

The core's own conversion (the image node may use cv_bridge where installed). Colour images are
reduced with the ITU-R BT.601 luma weights OpenCV uses: Y = 0.299 R + 0.587 G + 0.114 B.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# encoding -> (channels, bytes per channel, channel index of R, G, B or None for mono)
ENCODINGS: dict[str, tuple[int, int, tuple[int, int, int] | None]] = {
    "mono8": (1, 1, None),
    "8uc1": (1, 1, None),
    "mono16": (1, 2, None),
    "16uc1": (1, 2, None),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgb8": (3, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
}
LUMA_RGB = (0.299, 0.587, 0.114)


class ImageDecodeError(ValueError):
    """Image fields that do not describe a decodable image (size mismatch, bad step, encoding)."""


def _buffer(data: Any) -> np.ndarray:
    """The message's data field as a flat uint8 array (bytes, array.array, list, ndarray)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.frombuffer(data.tobytes(), np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)  # array.array('B') or list of ints


def _rows(buf: np.ndarray, height: int, width: int, step: int, pixel_bytes: int,
          encoding: str) -> np.ndarray:
    """(H, W * pixel_bytes) uint8 view of the rows, row padding (step) removed."""
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ImageDecodeError(f"{encoding} image: step {step} is less than width {width} x "
                               f"{pixel_bytes} bytes = {row_bytes}")
    # The last row may omit its padding; anything shorter is truncated.
    needed = step * (height - 1) + row_bytes if height else 0
    if buf.size < needed:
        raise ImageDecodeError(f"{encoding} image {width}x{height}, step {step}: expected "
                               f"{step * height} bytes, got {buf.size} (truncated)")
    if height == 0 or width == 0:
        return np.zeros((height, row_bytes), np.uint8)
    padded = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes),
                                             strides=(step, 1), writeable=False)
    return padded


def image_to_gray(encoding: str, height: int, width: int, step: int, is_bigendian: bool | int,
                  data: Any) -> np.ndarray:
    """Decode `sensor_msgs/Image` fields to a gray image.

    Args:
        encoding: mono8, mono16, bgr8, rgb8, bgra8 or rgba8 (8UC1 and 16UC1 are taken as mono).
        height: image rows.
        width: image columns.
        step: bytes per row, padding included.
        is_bigendian: byte order of mono16 samples.
        data: the pixel bytes (bytes, memoryview, uint8 array, array.array or list).

    Returns:
        (H, W) float32 in [0, 1]: mono8 / 255, mono16 / 65535, colour as BT.601 luma / 255.

    Raises:
        ImageDecodeError: unsupported encoding (named), step too small, or data truncated.
    """
    key = encoding.lower()
    if key not in ENCODINGS:
        raise ImageDecodeError(f"unsupported image encoding {encoding!r}; supported: mono8, "
                               "mono16, bgr8, rgb8, bgra8, rgba8")
    channels, depth, rgb = ENCODINGS[key]
    height, width, step = int(height), int(width), int(step)
    if height < 0 or width < 0:
        raise ImageDecodeError(f"{encoding} image: negative size {width}x{height}")
    rows = _rows(_buffer(data), height, width, step, channels * depth, encoding)
    if depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
        return (pixels.astype(np.float32) / np.float32(65535.0)).astype(np.float32)
    if rgb is None:
        return rows.astype(np.float32) / np.float32(255.0)
    weights = np.zeros(channels, np.float32)  # alpha gets weight 0
    weights[list(rgb)] = np.asarray(LUMA_RGB, np.float32) / np.float32(255.0)
    gray = rows.reshape(height, width, channels).astype(np.float32) @ weights  # H W
    return np.clip(gray, 0.0, 1.0, out=gray)


def image_msg_to_gray(msg: Any) -> np.ndarray:
    """`image_to_gray` of an rclpy or rosbags `sensor_msgs/Image` message: (H, W) float32."""
    return image_to_gray(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian,
                         msg.data)


def gray_to_mono8(img: np.ndarray) -> bytes:
    """(H, W) gray in [0, 1] (float) or uint8 to mono8 bytes (step = W), rounded and clipped.

    Raises:
        ValueError: not a 2-D image, or float values that are NaN.
    """
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(f"gray_to_mono8 expects an (H, W) image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img).tobytes()
    if np.isnan(img).any():
        raise ValueError("gray_to_mono8: image contains NaN")
    return np.clip(np.rint(img.astype(np.float32) * 255.0), 0, 255).astype(np.uint8).tobytes()
