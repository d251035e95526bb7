"""Whole real videos with the default extractor: named tracks, unknowns, stitching, output."""

from __future__ import annotations

from pathlib import Path

import pytest

from facefleet.core.detectors import DetectorConfig, create_detector
from facefleet.core.extractors import create_extractor
from facefleet.core.gallery import Gallery
from facefleet.core.names import DEFAULT_EXTRACTOR
from facefleet.core.pipeline import FacePipeline
from facefleet.core.schemas import VideoResult
from facefleet.core.video import probe
from facefleet.core.video_pipeline import run_video

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def parts() -> tuple:
    return create_detector("retinaface", DetectorConfig()), create_extractor(DEFAULT_EXTRACTOR)


def pipeline_with(parts: tuple, folders: list[Path], skip: str = "") -> FacePipeline:
    detector, extractor = parts
    gallery = Gallery.empty(extractor)
    for folder in folders:
        part, _ = Gallery.enroll_folder(folder, detector, extractor)
        gallery.add_samples_from(part)
    if skip:  # e.g. a gallery photo that is also in LFW, which the model may have seen
        gallery.remove_samples(lambda s: skip in s.source)
    return FacePipeline(detector=detector, extractor=extractor, gallery=gallery)


@pytest.fixture(scope="module")
def hamilton(data_root: Path, parts: tuple, tmp_path_factory) -> tuple[VideoResult, Path]:
    case = data_root / "videos" / "hamilton_whitehouse"
    out = tmp_path_factory.mktemp("hamilton") / "out.mp4"
    # A range boundary at frame 160 falls in the middle of Miranda's shot.
    pipeline = pipeline_with(parts, [case / "gallery"])
    result = run_video(case / "short_hamilton_clip.mp4", pipeline, out, chunk_frames=160)
    return result, out


# Where CASE.md places each enrolled person (first, last frame): a name elsewhere is false.
HAMILTON_WHERE = {
    "Lin_Manuel_Miranda": ((0, 19), (76, 210)),  # the wide shot, then his own segment
    "Alex_Lacamoire": ((0, 81),),  # at the piano in the wide shot, then his close-ups
    "Barack_Obama": ((211, 274),),  # the audience shot
}

OBAMA_LIMIT = (
    "Obama's laughing three-quarter profile in the dim audience shot is beyond the models at "
    "hand: the default extractor (dlib's network) and the B0 both score his track below their "
    "thresholds"
)


def test_miranda_track_covers_his_frontal_segment(hamilton: tuple[VideoResult, Path]) -> None:
    result, _ = hamilton
    named = [t for t in result.tracks if t.identity == "Lin_Manuel_Miranda"]
    covered = {i for t in named for i in range(t.first_frame, t.last_frame + 1)}
    segment = set(range(112, 211))
    assert len(covered & segment) >= 0.8 * len(segment), [
        (t.track_id, t.identity, t.similarity, t.first_frame, t.last_frame) for t in result.tracks
    ]


def test_no_false_names_in_the_hamilton_clip(hamilton: tuple[VideoResult, Path]) -> None:
    result, _ = hamilton
    wrong = [
        (t.identity, t.first_frame, t.last_frame, t.similarity)
        for t in result.tracks
        if t.identity is not None
        and not any(a <= t.first_frame and t.last_frame <= b for a, b in HAMILTON_WHERE[t.identity])
    ]
    assert not wrong


@pytest.mark.xfail(strict=True, reason=OBAMA_LIMIT)
def test_obama_named_in_the_audience_shot(hamilton: tuple[VideoResult, Path]) -> None:
    result, _ = hamilton
    named = [t for t in result.tracks if t.identity == "Barack_Obama" and t.first_frame >= 211]
    assert named


def test_track_crossing_a_range_boundary_is_one_track(hamilton: tuple[VideoResult, Path]) -> None:
    result, _ = hamilton
    crossing = [t for t in result.tracks if t.first_frame < 160 <= t.last_frame]
    assert crossing, "no track spans the boundary at frame 160"
    assert any(t.first_frame <= 150 and t.last_frame >= 170 for t in crossing)


def test_output_has_every_frame_and_the_audio(
    hamilton: tuple[VideoResult, Path], data_root: Path
) -> None:
    result, out = hamilton
    source = probe(data_root / "videos" / "hamilton_whitehouse" / "short_hamilton_clip.mp4")
    info = probe(out)
    assert info.frame_count == source.frame_count == result.frame_count == 275
    assert info.codec == "h264" and info.has_audio


def test_trump_named_and_the_women_stay_unknown(data_root: Path, parts: tuple, tmp_path) -> None:
    case = data_root / "videos" / "trump_speech"
    pipeline = pipeline_with(parts, [case / "gallery"], skip="Donald_Trump_0001")
    result = run_video(case / "trump.mp4", pipeline, tmp_path / "out.mp4")
    trump = [t for t in result.tracks if t.identity == "Donald_Trump"]
    others = [t for t in result.tracks if t.identity not in (None, "Donald_Trump")]
    assert trump and not others
    named_frames = {
        f.index for f in result.frames if any(face.identity == "Donald_Trump" for face in f.faces)
    }
    assert len(named_frames) >= 0.9 * result.frame_count
    # Exactly one face per frame carries the name: the women behind him stay unknown.
    assert all(sum(face.identity == "Donald_Trump" for face in f.faces) <= 1 for f in result.frames)
    assert any(len(f.faces) >= 2 for f in result.frames)


def test_nobody_named_in_the_crowd(data_root: Path, parts: tuple, tmp_path: Path) -> None:
    videos = data_root / "videos"
    pipeline = pipeline_with(
        parts,
        [
            videos / c / "gallery"
            for c in ("hamilton_whitehouse", "obama_curry_whitehouse", "trump_speech")
        ],
        skip="Donald_Trump_0001",
    )
    result = run_video(
        videos / "crowd_no_known_identity" / "video.mp4", pipeline, tmp_path / "out.mp4"
    )
    assert len(result.tracks) >= 5
    assert [t.identity for t in result.tracks if t.identity] == []
