"""Reading images of every common kind into BGR uint8, with clear errors for the rest."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefleet.core.errors import InputError
from facefleet.core.images import read_image, write_image


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent on the left half
    rgba[:, 15:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    assert tuple(img[5, 2]) == (255, 255, 255)
    assert tuple(img[5, 25]) == (0, 0, 255)  # BGR red


def test_grayscale_and_16_bit(tmp_path: Path) -> None:
    Image.fromarray(np.full((10, 12), 77, np.uint8), "L").save(tmp_path / "g.png")
    gray = read_image(tmp_path / "g.png")
    assert gray.shape == (10, 12, 3) and (gray == 77).all()
    deep = np.full((10, 12), 1000, np.uint16)
    deep[0, 0] = 4000
    Image.fromarray(deep).save(tmp_path / "d.png")
    img = read_image(tmp_path / "d.png")
    assert img.shape == (10, 12, 3) and img[0, 0, 0] == 255 and 0 < img[5, 5, 0] < 255


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((10, 20, 3), np.uint8)
    image = Image.fromarray(arr)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (20, 10, 3)


def test_non_utf8_file_name_round_trip(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.jpg")  # latin-1 bytes, invalid as UTF-8
    write_image(tmp_path / name, np.full((8, 8, 3), 200, np.uint8))
    assert read_image(tmp_path / name).shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"hello, I am text", "not an image"),
        (b"\x89PNG\r\n\x1a\n\0\0", "not an image|cannot decode"),
    ],
)
def test_bad_files_raise_input_error_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.png")
