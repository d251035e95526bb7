"""Annotating frames with detected faces: boxes, scores, landmarks and identity labels.

Everything is drawn with OpenCV on BGR uint8 frames, the layout the decoders hand us, so
annotated frames can go straight to an encoder without a colour conversion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facefleet.core.schemas import FaceResult

Color = tuple[int, int, int]

KNOWN_COLOR: Color = (0, 200, 0)  # green
UNKNOWN_COLOR: Color = (0, 140, 255)  # orange
# Same order as FaceResult.landmarks: left eye, right eye, nose, left and right mouth corner.
# Kept clear of KNOWN_COLOR and UNKNOWN_COLOR so dots never blend into a box.
LANDMARK_COLORS: tuple[Color, Color, Color, Color, Color] = (
    (255, 0, 0),  # blue
    (0, 0, 255),  # red
    (0, 255, 255),  # yellow
    (255, 0, 255),  # magenta
    (255, 255, 0),  # cyan
)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SCORE_BACKGROUND: Color = (32, 32, 32)
# Style values are tuned for 720p; other sizes scale from there.
_REFERENCE_SIDE = 720.0


@dataclass(frozen=True)
class DrawStyle:
    """Pixel sizes for one frame size, so a 4K frame is as readable as a 360p one."""

    thickness: int
    font_scale: float
    dot_radius: int
    font_thickness: int
    padding: int


def style_for(frame_shape: Sequence[int]) -> DrawStyle:
    """Line, dot and text sizes for a frame of shape (H, W[, C])."""
    height, width = int(frame_shape[0]), int(frame_shape[1])
    # The short side, not the area, decides: a portrait phone video needs the same sizes as
    # its landscape twin.
    scale = max(min(height, width), 1) / _REFERENCE_SIDE
    # Linear rather than proportional: Hershey text below ~0.4 is unreadable, so small frames
    # get relatively larger text (0.45 at 360p) while 4K stays near 2 instead of 2.7.
    font_scale = max(0.4, 0.14 + 0.62 * scale)
    return DrawStyle(
        thickness=max(1, round(2 * scale)),
        font_scale=round(font_scale, 3),
        dot_radius=max(2, round(3 * scale)),
        font_thickness=max(1, round(1.6 * font_scale)),
        padding=max(1, round(3 * scale)),
    )


def face_label(face: FaceResult) -> str:
    """The identity tag text: "Name 0.71" for a known face, "unknown" otherwise."""
    if face.identity is None:
        # The nearest-candidate similarity tells a reviewer how close the miss was.
        return "unknown" if face.similarity is None else f"unknown ({face.similarity:.2f})"
    # Gallery folder names use underscores in place of spaces.
    name = face.identity.replace("_", " ").strip()
    # Hershey fonts only cover ASCII; make the substitution visible and predictable instead of
    # leaving it to OpenCV.
    name = name.encode("ascii", "replace").decode("ascii")
    return name if face.similarity is None else f"{name} {face.similarity:.2f}"


def _text_size(text: str, style: DrawStyle) -> tuple[int, int, int]:
    (w, h), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
    return w, h, baseline


def _is_drawable(face: FaceResult) -> bool:
    # FaceResult does not validate its numbers, and int(nan) would abort the whole frame.
    return len(face.box) == 4 and all(math.isfinite(v) for v in face.box)


@dataclass(frozen=True)
class _LabelLayout:
    rect: tuple[int, int, int, int]  # x0, y0, x1, y1 of the whole label row
    tag_text: str
    tag_right: int
    score_text: str
    score_left: int
    baseline_y: int


def _layout(face: FaceResult, frame_shape: Sequence[int], style: DrawStyle) -> _LabelLayout:
    height, width = int(frame_shape[0]), int(frame_shape[1])
    x0, y0, x1, _ = (round(v) for v in face.box)
    pad = style.padding

    tag_text = face_label(face)
    score_text = f"{face.score:.2f}"
    tag_w = _text_size(tag_text, style)[0]
    score_w = _text_size(score_text, style)[0]
    # Height from a fixed sample with an ascender and descenders: OpenCV sizes the actual text,
    # which would make "Guy" taller than "Ann" and the tags of one frame uneven.
    _, text_h, text_base = _text_size("Agjy", style)
    row_h = text_h + text_base + 2 * pad
    tag_box_w = tag_w + 2 * pad
    gap = 2 * pad

    # One row: the identity tag at the box's left edge, the score right-aligned to the box's
    # right edge, or pushed past it when the box is too narrow for both.
    row_w = max(x1 - x0, tag_box_w + gap + score_w + pad)
    left = x0
    # Keep the whole row in frame horizontally; if it is wider than the frame, the start of
    # the tag (the name) is the part worth keeping.
    left = min(left, width - row_w)
    left = max(left, 0)

    # Above the box when it fits, else just inside its top edge.
    top = y0 - row_h if y0 - row_h >= 0 else max(y0, 0)
    top = max(min(top, height - row_h), 0)

    return _LabelLayout(
        rect=(left, top, left + row_w, top + row_h),
        tag_text=tag_text,
        tag_right=left + tag_box_w,
        score_text=score_text,
        score_left=left + row_w - score_w - pad,
        baseline_y=top + pad + text_h,
    )


def label_box(face: FaceResult, frame_shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Where draw_faces puts this face's label row: x0, y0, x1, y1 in frame pixels."""
    return _layout(face, frame_shape, style_for(frame_shape)).rect


def _text_color_on(background: Color) -> Color:
    # Rec. 601 luma of a BGR colour; dark text on light tags, light text on dark ones.
    b, g, r = background
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 110 else (255, 255, 255)


def _draw_box_and_landmarks(frame: np.ndarray, face: FaceResult, style: DrawStyle) -> None:
    color = KNOWN_COLOR if face.identity is not None else UNKNOWN_COLOR
    x0, y0, x1, y1 = (round(v) for v in face.box)
    # LINE_8, not anti-aliased: box pixels stay exactly the box colour, a solid known/unknown cue.
    cv2.rectangle(frame, (x0, y0), (x1, y1), color, style.thickness, cv2.LINE_8)

    # A tiny face in a 4K frame would vanish under full-size dots.
    radius = max(1, min(style.dot_radius, round(max(x1 - x0, 1) / 12)))
    # zip: detectors that give fewer than five points still get the ones they have.
    for (px, py), dot_color in zip(face.landmarks, LANDMARK_COLORS, strict=False):
        if not (math.isfinite(px) and math.isfinite(py)):
            continue
        cv2.circle(frame, (round(px), round(py)), radius, dot_color, -1, cv2.LINE_AA)


def _draw_label(frame: np.ndarray, face: FaceResult, style: DrawStyle) -> None:
    color = KNOWN_COLOR if face.identity is not None else UNKNOWN_COLOR
    lay = _layout(face, frame.shape, style)
    left, top, _, bottom = lay.rect
    pad = style.padding

    cv2.rectangle(frame, (left, top), (lay.tag_right, bottom), color, -1, cv2.LINE_8)
    cv2.putText(
        frame,
        lay.tag_text,
        (left + pad, lay.baseline_y),
        _FONT,
        style.font_scale,
        _text_color_on(color),
        style.font_thickness,
        cv2.LINE_AA,
    )
    # The score sits on a dark chip rather than bare: an outline alone turns 360p digits
    # into blobs, and bare text disappears on bright skies and white shirts.
    cv2.rectangle(frame, (lay.score_left - pad, top), (lay.rect[2], bottom), _SCORE_BACKGROUND, -1)
    cv2.putText(
        frame,
        lay.score_text,
        (lay.score_left, lay.baseline_y),
        _FONT,
        style.font_scale,
        color,
        style.font_thickness,
        cv2.LINE_AA,
    )


def draw_faces(frame: np.ndarray, faces: Sequence[FaceResult], *, copy: bool = True) -> np.ndarray:
    """Draw boxes, detection scores, landmarks and identity labels on a BGR uint8 frame.

    Known faces are drawn in KNOWN_COLOR with "Name 0.71", unknown ones in UNKNOWN_COLOR with
    "unknown". Returns the annotated frame: a new array when copy is True, else `frame` itself.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"draw_faces needs an H x W x 3 uint8 BGR frame, got shape {frame.shape} "
            f"dtype {frame.dtype}"
        )
    if copy:
        out = frame.copy()
    else:
        # OpenCV refuses strided views with a cryptic overload error; say what is wrong.
        if not frame.flags.c_contiguous or not frame.flags.writeable:
            raise ValueError("copy=False needs a writeable C-contiguous frame")
        out = frame

    style = style_for(out.shape)
    drawable = [face for face in faces if _is_drawable(face)]
    # Labels last, so a neighbouring face's box never cuts through a name.
    for face in drawable:
        _draw_box_and_landmarks(out, face, style)
    for face in drawable:
        _draw_label(out, face, style)
    return out
