"""Image conversion: against OpenCV's cvtColor and known pixel values."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from blinktrack_ros.bag.types import IMAGE, typestore
from blinktrack_ros.images import (
    ImageDecodeError,
    gray_to_mono8,
    image_msg_to_gray,
    image_to_gray,
)

H, W = 7, 5


def _padded(pixels: np.ndarray, pad: int) -> tuple[int, bytes]:
    """Row-major bytes of (H, W[, C]) pixels with `pad` junk bytes after each row."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    return rows.shape[1] + pad, np.hstack([rows, junk]).tobytes()


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding,code,channels", [
    ("bgr8", cv2.COLOR_BGR2GRAY, 3), ("rgb8", cv2.COLOR_RGB2GRAY, 3),
    ("bgra8", cv2.COLOR_BGRA2GRAY, 4), ("rgba8", cv2.COLOR_RGBA2GRAY, 4)])
def test_colour_matches_opencv(rng, encoding, code, channels, pad):
    pixels = rng.integers(0, 256, (H, W, channels), dtype=np.uint8)
    step, data = _padded(pixels, pad)
    gray = image_to_gray(encoding, H, W, step, False, data)
    assert gray.shape == (H, W) and gray.dtype == np.float32
    # OpenCV in float: the same BT.601 weights, no rounding.
    ref_float = cv2.cvtColor(pixels.astype(np.float32) / 255.0, code)
    np.testing.assert_allclose(gray, ref_float, atol=1e-6)
    # OpenCV in uint8 rounds its fixed-point result: within half a grey level.
    ref_u8 = cv2.cvtColor(pixels, code).astype(np.float32)
    assert np.abs(gray * 255.0 - ref_u8).max() <= 0.5 + 1e-3


def test_known_colour_pixels():
    # Pure red, green, blue, white, black in rgb8: luma weights 0.299, 0.587, 0.114.
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]],
                  np.uint8)
    gray = image_to_gray("rgb8", 1, 5, 15, False, px.tobytes())
    np.testing.assert_allclose(gray[0], [0.299, 0.587, 0.114, 1.0, 0.0], atol=1e-6)
    gray_bgr = image_to_gray("bgr8", 1, 5, 15, False, px.tobytes())
    np.testing.assert_allclose(gray_bgr[0], [0.114, 0.587, 0.299, 1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("pad", [0, 2])
def test_mono8_exact(rng, pad):
    pixels = rng.integers(0, 256, (H, W), dtype=np.uint8)
    step, data = _padded(pixels, pad)
    gray = image_to_gray("mono8", H, W, step, False, data)
    np.testing.assert_array_equal(gray, pixels.astype(np.float32) / np.float32(255))
    assert gray_to_mono8(gray) == pixels.tobytes()  # exact round trip


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 4])
def test_mono16_byte_order(rng, bigendian, pad):
    values = rng.integers(0, 65536, (H, W)).astype(np.uint16)
    stored = values.astype(">u2" if bigendian else "<u2")
    step, data = _padded(stored, pad)
    gray = image_to_gray("mono16", H, W, step, bigendian, data)
    np.testing.assert_allclose(gray, values / 65535.0, atol=1e-7)
    # Known value: 0x0100 = 256; read with the wrong byte order it would be 1.
    one = np.array([[256]], ">u2" if bigendian else "<u2").tobytes()
    assert image_to_gray("mono16", 1, 1, 2, bigendian, one)[0, 0] == np.float32(256 / 65535)


def test_last_row_without_padding_is_accepted(rng):
    pixels = rng.integers(0, 256, (H, W), dtype=np.uint8)
    step, data = _padded(pixels, 3)
    gray = image_to_gray("mono8", H, W, step, False, data[:-3])
    np.testing.assert_array_equal(gray, pixels / np.float32(255))


def test_truncated_data_names_sizes():
    with pytest.raises(ImageDecodeError, match=r"expected 105 bytes, got 100"):
        image_to_gray("bgr8", H, W, W * 3, False, bytes(100))


def test_step_too_small():
    with pytest.raises(ImageDecodeError, match="step 4 is less than"):
        image_to_gray("mono8", H, W, 4, False, bytes(100))


@pytest.mark.parametrize("encoding", ["yuv422", "bayer_rggb8", "32FC1", "mono12"])
def test_unsupported_encoding_is_named(encoding):
    with pytest.raises(ImageDecodeError, match=encoding):
        image_to_gray(encoding, H, W, W, False, bytes(H * W * 4))


def test_rosbags_image_message(rng):
    pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    store = typestore()
    Image, Header, Time = (store.types[t] for t in
                           (IMAGE, "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    msg = Image(Header(Time(1, 2), "cam"), H, W, "bgr8", 0, W * 3, pixels.reshape(-1))
    # Through CDR, as a bag or a raw subscription delivers it.
    back = store.deserialize_cdr(store.serialize_cdr(msg, IMAGE), IMAGE)
    ref = cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_BGR2GRAY)
    np.testing.assert_allclose(image_msg_to_gray(back), ref, atol=1e-6)


def test_list_data_as_rclpy_gives_it(rng):
    # rclpy's Image.data is an array.array('B'); a plain list behaves the same.
    import array
    pixels = rng.integers(0, 256, (H, W), dtype=np.uint8)
    for data in (array.array("B", pixels.tobytes()), list(pixels.reshape(-1))):
        gray = image_to_gray("mono8", H, W, W, False, data)
        np.testing.assert_array_equal(gray, pixels / np.float32(255))


def test_gray_to_mono8_rounds_and_clips():
    img = np.array([[-0.5, 0.0, 0.5 / 255, 1.49 / 255, 1.0, 2.0]], np.float32)
    assert list(gray_to_mono8(img)) == [0, 0, 0, 1, 255, 255]
    with pytest.raises(ValueError, match="NaN"):
        gray_to_mono8(np.array([[np.nan]]))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        gray_to_mono8(np.zeros((2, 2, 3)))
