"""Tests for core.drawing: colours, layout, scaling and copy semantics of draw_faces."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from facefleet.core.drawing import (
    KNOWN_COLOR,
    LANDMARK_COLORS,
    UNKNOWN_COLOR,
    DrawStyle,
    draw_faces,
    face_label,
    label_box,
    style_for,
)
from facefleet.core.schemas import FaceResult

SHAPE_360 = (360, 640, 3)
SHAPE_4K = (2160, 3840, 3)
# A grey no drawing colour uses, so "changed" always means "drawn on".
BACKGROUND = 90


def blank(shape: tuple[int, int, int] = SHAPE_360) -> np.ndarray:
    return np.full(shape, BACKGROUND, dtype=np.uint8)


def make_face(
    box: tuple[float, float, float, float] = (100.0, 120.0, 220.0, 260.0),
    *,
    identity: str | None = "Alice",
    similarity: float | None = 0.71,
    score: float = 0.98,
) -> FaceResult:
    """A face with landmarks placed like a frontal face, well inside the box."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    rel = [(0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.33, 0.78), (0.67, 0.78)]
    landmarks = [(x0 + rx * w, y0 + ry * h) for rx, ry in rel]
    return FaceResult(
        box=box, score=score, landmarks=landmarks, identity=identity, similarity=similarity
    )


def pixel(img: np.ndarray, x: float, y: float) -> tuple[int, int, int]:
    b, g, r = img[round(y), round(x)]
    return int(b), int(g), int(r)


def has_color(region: np.ndarray, color: tuple[int, int, int]) -> bool:
    return bool(np.all(region == np.array(color, dtype=np.uint8), axis=-1).any())


def in_frame(rect: tuple[int, int, int, int], shape: tuple[int, int, int]) -> bool:
    x0, y0, x1, y1 = rect
    return x0 >= 0 and y0 >= 0 and x1 <= shape[1] and y1 <= shape[0]


def changed(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.any(a != b, axis=-1).sum())


# --- copy semantics and input checks -------------------------------------------------------


def test_copy_true_leaves_input_untouched() -> None:
    frame = blank()
    before = frame.copy()
    out = draw_faces(frame, [make_face(), make_face((300, 100, 400, 220), identity=None)])
    assert out is not frame
    np.testing.assert_array_equal(frame, before)
    assert changed(out, before) > 0


def test_copy_false_draws_in_place() -> None:
    frame = blank()
    out = draw_faces(frame, [make_face()], copy=False)
    assert out is frame
    assert changed(frame, blank()) > 0


def test_copy_false_rejects_strided_view() -> None:
    view = blank((360, 1280, 3))[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        draw_faces(view, [make_face()], copy=False)


@pytest.mark.parametrize(
    "frame",
    [np.zeros((360, 640), np.uint8), np.zeros((360, 640, 3), np.float32)],
    ids=["grayscale", "float"],
)
def test_rejects_non_bgr_uint8(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        draw_faces(frame, [make_face()])


def test_no_faces_returns_identical_copy() -> None:
    frame = blank()
    out = draw_faces(frame, [])
    assert out is not frame
    np.testing.assert_array_equal(out, frame)


def test_non_finite_box_is_skipped() -> None:
    bad = FaceResult(
        box=(float("nan"), 10.0, 50.0, 60.0),
        score=0.9,
        landmarks=[(20.0, 30.0)] * 5,
    )
    out = draw_faces(blank(), [bad])
    np.testing.assert_array_equal(out, blank())


# --- colours --------------------------------------------------------------------------------


def test_constants_are_distinct_bgr_colors() -> None:
    colors = [KNOWN_COLOR, UNKNOWN_COLOR, *LANDMARK_COLORS]
    assert len(LANDMARK_COLORS) == 5
    assert len(set(colors)) == len(colors)
    for color in colors:
        assert len(color) == 3
        assert all(isinstance(c, int) and 0 <= c <= 255 for c in color)


@pytest.mark.parametrize(
    ("identity", "expected"),
    [("Alice", KNOWN_COLOR), (None, UNKNOWN_COLOR)],
    ids=["known", "unknown"],
)
def test_box_edges_have_face_color(identity: str | None, expected: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = 100, 120, 220, 260
    out = draw_faces(blank(), [make_face((x0, y0, x1, y1), identity=identity)])
    mid_x, mid_y = (x0 + x1) / 2, (y0 + y1) / 2
    # Left, right and bottom edges: the top edge may sit under the label.
    assert pixel(out, x0, mid_y) == expected
    assert pixel(out, x1, mid_y) == expected
    assert pixel(out, mid_x, y1) == expected
    # The inside of the box is not filled.
    assert pixel(out, x0 + 10, mid_y) == (BACKGROUND,) * 3


def test_known_and_unknown_in_one_frame_keep_their_colors() -> None:
    known = make_face((60, 100, 180, 240), identity="Alice")
    unknown = make_face((380, 100, 500, 240), identity=None, similarity=0.2)
    out = draw_faces(blank(), [known, unknown])
    assert pixel(out, 60, 170) == KNOWN_COLOR
    assert pixel(out, 380, 170) == UNKNOWN_COLOR


@pytest.mark.parametrize("shape", [SHAPE_360, SHAPE_4K], ids=["360p", "4k"])
def test_landmark_dots_have_their_colors(shape: tuple[int, int, int]) -> None:
    k = shape[0] / 360
    face = make_face((100 * k, 120 * k, 220 * k, 260 * k))
    out = draw_faces(blank(shape), [face])
    for (x, y), color in zip(face.landmarks, LANDMARK_COLORS, strict=True):
        assert pixel(out, x, y) == color


def test_fewer_landmarks_still_draw() -> None:
    face = make_face().model_copy(update={"landmarks": [(130.0, 170.0), (190.0, 170.0)]})
    out = draw_faces(blank(), [face])
    assert pixel(out, 130, 170) == LANDMARK_COLORS[0]
    assert pixel(out, 190, 170) == LANDMARK_COLORS[1]


# --- labels ---------------------------------------------------------------------------------


def test_face_label_text() -> None:
    assert face_label(make_face(identity="John_Smith", similarity=0.7149)) == "John Smith 0.71"
    assert face_label(make_face(identity="Alice", similarity=None)) == "Alice"
    assert face_label(make_face(identity=None, similarity=None)) == "unknown"
    assert face_label(make_face(identity=None, similarity=0.312)) == "unknown (0.31)"
    # Hershey fonts are ASCII-only; the substitute is explicit rather than OpenCV's choice.
    assert face_label(make_face(identity="José", similarity=0.5)) == "Jos? 0.50"


def test_named_face_label_is_drawn_above_box() -> None:
    face = make_face((100, 120, 220, 260))
    out = draw_faces(blank(), [face])
    lx0, ly0, lx1, ly1 = label_box(face, SHAPE_360)
    assert ly1 <= 120 and ly0 >= 0
    region = out[ly0:ly1, lx0:lx1]
    assert changed(region, blank()[ly0:ly1, lx0:lx1]) > region.shape[0] * region.shape[1] // 4
    # A tag in the face's colour with dark text on it.
    assert has_color(region, KNOWN_COLOR)
    assert has_color(region, (0, 0, 0))
    # Nothing is drawn well above the label row.
    np.testing.assert_array_equal(out[: ly0 - 2], blank()[: ly0 - 2])


def test_label_text_depends_on_name_and_score() -> None:
    box = (100, 120, 220, 260)
    region = label_box(make_face(box, identity="Alice"), SHAPE_360)
    lx0, ly0, lx1, ly1 = region

    def label_pixels(face: FaceResult) -> np.ndarray:
        return draw_faces(blank(), [face])[ly0:ly1, lx0:lx1]

    alice = label_pixels(make_face(box, identity="Alice"))
    bruno = label_pixels(make_face(box, identity="Bruno"))
    alice_low_score = label_pixels(make_face(box, identity="Alice", score=0.51))
    assert changed(alice, bruno) > 0
    assert changed(alice, alice_low_score) > 0


def test_unknown_face_gets_unknown_tag() -> None:
    face = make_face(identity=None, similarity=None)
    out = draw_faces(blank(), [face])
    lx0, ly0, lx1, ly1 = label_box(face, SHAPE_360)
    assert has_color(out[ly0:ly1, lx0:lx1], UNKNOWN_COLOR)
    assert not has_color(out, KNOWN_COLOR)


@pytest.mark.parametrize("top", [0, 8], ids=["at-edge", "too-close-for-label"])
def test_face_at_top_edge_puts_label_inside_box(top: int) -> None:
    face = make_face((200, top, 320, top + 140))
    out = draw_faces(blank(), [face])
    lx0, ly0, lx1, ly1 = label_box(face, SHAPE_360)
    # Hangs from the box's top edge rather than being squashed against the frame's.
    assert (lx0, ly0) == (200, top)
    assert ly1 < top + 140
    assert has_color(out[ly0:ly1, lx0:lx1], KNOWN_COLOR)


@pytest.mark.parametrize("shape", [SHAPE_360, SHAPE_4K], ids=["360p", "4k"])
def test_face_at_right_edge_keeps_label_in_frame(shape: tuple[int, int, int]) -> None:
    h, w = shape[:2]
    k = h / 360
    face = make_face(
        (w - 40 * k, 150 * k, w - 1, 210 * k), identity="Maximilian_Fitzgerald", similarity=0.93
    )
    out = draw_faces(blank(shape), [face])
    lx0, ly0, lx1, ly1 = label_box(face, shape)
    assert in_frame((lx0, ly0, lx1, ly1), shape)
    # The label is wider than the box, so it was shifted left to fit.
    assert lx0 < face.box[0]
    assert has_color(out[ly0:ly1, lx0:lx1], KNOWN_COLOR)


@pytest.mark.parametrize(
    "box",
    [(600, 0, 640, 40), (0, 330, 30, 360), (-20, -20, 60, 60), (580, 320, 700, 420)],
    ids=["top-right", "bottom-left", "past-top-left", "past-bottom-right"],
)
def test_corner_and_partly_outside_faces(box: tuple[float, float, float, float]) -> None:
    face = make_face(box)
    out = draw_faces(blank(), [face])
    assert in_frame(label_box(face, SHAPE_360), SHAPE_360)
    assert has_color(out, KNOWN_COLOR)


# --- scaling --------------------------------------------------------------------------------


def test_style_is_frozen() -> None:
    style = style_for(SHAPE_360)
    assert isinstance(style, DrawStyle)
    with pytest.raises(AttributeError):
        style.thickness = 5  # type: ignore[misc]


def test_style_scales_with_frame_size() -> None:
    small, big = style_for(SHAPE_360), style_for(SHAPE_4K)
    assert small.thickness >= 1 and small.font_thickness >= 1 and small.dot_radius >= 1
    assert small.font_scale == pytest.approx(0.45, abs=0.05)
    assert big.font_scale == pytest.approx(2.0, abs=0.25)
    assert big.thickness > small.thickness
    assert big.font_scale > small.font_scale
    assert big.font_thickness > small.font_thickness
    assert big.dot_radius > small.dot_radius


def test_style_is_monotonic_and_orientation_free() -> None:
    sides = [120, 240, 360, 480, 720, 1080, 1440, 2160, 4320]
    styles = [style_for((s, s * 16 // 9)) for s in sides]
    for a, b in itertools.pairwise(styles):
        assert b.thickness >= a.thickness
        assert b.font_scale >= a.font_scale
        assert b.dot_radius >= a.dot_radius
        assert b.font_thickness >= a.font_thickness
    assert style_for((1080, 1920, 3)) == style_for((1920, 1080, 3))
    # Tiny frames keep readable minimums rather than scaling to nothing.
    tiny = style_for((60, 80))
    assert tiny.thickness >= 1 and tiny.font_scale >= 0.4


def test_4k_lines_are_thicker_than_360p() -> None:
    def box_edge_width(shape: tuple[int, int, int]) -> int:
        k = shape[0] / 360
        out = draw_faces(blank(shape), [make_face((100 * k, 120 * k, 220 * k, 260 * k))])
        row = out[round(190 * k)]
        return int(np.all(row == np.array(KNOWN_COLOR, np.uint8), axis=-1).sum())

    assert box_edge_width(SHAPE_4K) > box_edge_width(SHAPE_360) >= 2


def test_4k_frame_draws_quickly() -> None:
    frame = blank(SHAPE_4K)
    faces = [
        make_face((x, 600, x + 300, 1000), identity=None if i % 2 else f"Person_{i}")
        for i, x in enumerate(range(100, 3600, 350))
    ]
    draw_faces(frame, faces)  # warm-up: first call pays for OpenCV's lazy init
    start = time.perf_counter()
    out = draw_faces(frame, faces)
    elapsed = time.perf_counter() - start
    assert out.shape == SHAPE_4K
    assert elapsed < 0.5, f"drawing 10 faces on 4K took {elapsed:.3f}s"
