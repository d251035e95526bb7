"""analyze → merge → render → finalize on clips made from a real photograph."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefleet.core.extractors.b0 import B0Extractor
from facefleet.core.gallery import Gallery
from facefleet.core.pipeline import FacePipeline
from facefleet.core.schemas import VideoResult
from facefleet.core.video import probe
from facefleet.core.video_pipeline import analyze, merge, run_video
from tests.conftest import make_video


def sliding_head_clip(
    path: Path,
    astronaut_bgr: np.ndarray,
    frames: int,
    size: tuple[int, int],
    head: int,
    top: int,
    left: int,
    step: int,
) -> Path:
    """The astronaut's head, `head` px square, sliding right by `step` px a frame from
    (`left`, `top`) on a grey `size` canvas."""
    face = cv2.resize(astronaut_bgr[20:260, 120:360], (head, head))
    width, height = size

    def draw(k: int) -> np.ndarray:
        frame = np.full((height, width, 3), 60, np.uint8)
        x = left + step * k
        frame[top : top + head, x : x + head] = face
        return frame

    return make_video(path, frames=frames, size=size, fps=25, draw=draw)


@pytest.fixture(scope="module")
def moving_face_clip(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr) -> Path:
    """60 frames, 320×240: the astronaut's head sliding from left to right."""
    path = tmp_path_factory.mktemp("clips") / "moving.mp4"
    return sliding_head_clip(
        path, astronaut_bgr, frames=60, size=(320, 240), head=120, top=60, left=10, step=3
    )


@pytest.fixture(scope="module")
def pipeline(
    retinaface, extractor: B0Extractor, astronaut_bgr, tmp_path_factory: pytest.TempPathFactory
) -> FacePipeline:
    from facefleet.core.images import write_image

    photo = tmp_path_factory.mktemp("gallery") / "astronaut.png"
    write_image(photo, astronaut_bgr)
    gallery = Gallery.empty(extractor)
    gallery.add_person("Eileen_Collins", [photo], retinaface, extractor)
    return FacePipeline(detector=retinaface, extractor=extractor, gallery=gallery, threshold=0.9)


def test_tracks_stitched_across_ranges_and_output_complete(
    moving_face_clip: Path, pipeline: FacePipeline, tmp_path: Path
) -> None:
    out = tmp_path / "moving.mp4"
    result = run_video(moving_face_clip, pipeline, out, chunk_frames=25)  # 3 ranges
    assert result.frame_count == 60 and len(result.frames) == 60
    assert len(result.tracks) == 1, result.tracks
    track = result.tracks[0]
    assert (track.first_frame, track.last_frame, track.num_faces) == (0, 59, 60)
    assert track.identity == "Eileen_Collins"
    assert track.start_s == pytest.approx(0.0) and track.end_s == pytest.approx(60 / 25, 1e-3)
    for frame in result.frames:
        assert [f.track_id for f in frame.faces] == [0]
        assert frame.faces[0].identity == "Eileen_Collins"
        assert frame.faces[0].match is not None
    info = probe(out)
    assert (info.frame_count, info.codec, info.has_audio) == (60, "h264", True)
    VideoResult.model_validate_json(result.model_dump_json())


def test_one_range_and_three_ranges_agree(moving_face_clip: Path, pipeline: FacePipeline) -> None:
    from facefleet.core.video import probe as probe_video

    info = probe_video(moving_face_clip)
    whole = merge([analyze(moving_face_clip, 0, None, pipeline)], info, pipeline)
    parts = merge(
        [analyze(moving_face_clip, s, e, pipeline) for s, e in ((0, 20), (20, 40), (40, 60))],
        info,
        pipeline,
    )
    assert [t.model_dump() for t in whole.tracks] == [t.model_dump() for t in parts.tracks]


def test_every_k_interpolates_between_keyframes(
    moving_face_clip: Path, pipeline: FacePipeline, tmp_path: Path
) -> None:
    result = run_video(moving_face_clip, pipeline, tmp_path / "k.mp4", every=4)
    faces = [f for frame in result.frames for f in frame.faces]
    assert len(faces) == 60 and len(result.tracks) == 1
    assert sum(not f.interpolated for f in faces) == 15  # frames 0, 4, ..., 56
    # Interpolated boxes move with the face: x0 grows by ~3 px per frame.
    x0 = [frame.faces[0].box[0] for frame in result.frames[:8]]
    assert all(b > a for a, b in pairwise(x0))


def test_video_without_faces_is_a_valid_empty_result(
    pipeline: FacePipeline, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "grey.mp4", frames=12, size=(96, 64), audio=False)
    result = run_video(clip, pipeline, tmp_path / "out.mp4")
    assert result.frame_count == 12 and result.tracks == []
    assert all(frame.faces == [] for frame in result.frames)
    assert probe(tmp_path / "out.mp4").frame_count == 12


def test_4k_video_is_recognized_in_source_coordinates(
    astronaut_bgr, pipeline: FacePipeline, tmp_path: Path
) -> None:
    """A 3840×2160 clip: frames are downscaled for detection and the boxes mapped back, the
    annotated output keeps the source size."""
    clip = sliding_head_clip(
        tmp_path / "uhd.mp4",
        astronaut_bgr,
        frames=8,
        size=(3840, 2160),
        head=600,
        top=800,
        left=1000,
        step=40,
    )
    result = run_video(clip, pipeline, tmp_path / "out.mp4")
    assert len(result.tracks) == 1 and result.tracks[0].identity == "Eileen_Collins"
    for k, frame in enumerate(result.frames):
        (face,) = frame.faces
        x0, y0, x1, y1 = face.box
        # The head's face fills the middle of the pasted square, in 4K pixels.
        assert 1000 + 40 * k < x0 < x1 < 1600 + 40 * k and 800 < y0 < y1 < 1400
        assert x1 - x0 > 150
    info = probe(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frame_count, info.codec) == (3840, 2160, 8, "h264")
