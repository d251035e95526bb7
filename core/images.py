"""Reading and writing still images, whatever their mode, path encoding or orientation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facefleet.core.errors import InputError, require_input_file


def read_image(path: Path) -> np.ndarray:
    """Load an image as a BGR uint8 array, honouring EXIF orientation.

    Alpha is composited onto white, grayscale and palette images become 3 channels.
    Every failure is an InputError with a message naming the file.
    """
    path = require_input_file(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grayscale: scale to 8 bits instead of clipping to white.
                arr = np.asarray(img, dtype=np.float64)
                peak = arr.max() or 1.0
                img = Image.fromarray((arr * (255.0 / peak)).astype(np.uint8))
            rgb = np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise InputError(f"image too large to decode safely ({exc})", subject=path) from None
    except UnidentifiedImageError:
        raise InputError("not an image file (or an unsupported format)", subject=path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot decode image ({exc})", subject=path) from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise InputError(f"image is too small ({rgb.shape[1]}x{rgb.shape[0]})", subject=path)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def encode_image(image: np.ndarray, suffix: str = ".jpg", quality: int = 92) -> bytes:
    """A BGR image as the bytes of an image file; the format follows `suffix`."""
    suffix = suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise InputError(f"cannot encode image as {suffix}")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """An encoded image (JPEG, PNG) as BGR uint8."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError("not a readable image")
    return image


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    return encode_image(image, ".jpg", quality)


def write_image(path: Path, image: np.ndarray, quality: int = 92) -> None:
    """Write a BGR image; the format follows the suffix. Works on non-UTF-8 paths."""
    path = Path(path)
    data = encode_image(image, path.suffix, quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
