"""The embedding budget: which faces of a video are embedded, and that the names stay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefleet.core.embedding_budget import (
    BudgetConfig,
    CutDetector,
    EmbedDecision,
    EmbeddingBudget,
    face_quality,
    frontalness,
    overlap_links,
)
from facefleet.core.schemas import FaceDetection
from facefleet.core.tracking import FaceTracker

CONFIG = BudgetConfig(first_faces=3, heartbeat=10)


def face(x: float, y: float = 100.0, side: float = 60.0, score: float = 0.99) -> FaceDetection:
    """A frontal face: eyes, nose and mouth corners placed symmetrically in its box."""
    s = side
    marks = (
        (x + 0.3 * s, y + 0.4 * s),
        (x + 0.7 * s, y + 0.4 * s),
        (x + 0.5 * s, y + 0.6 * s),
        (x + 0.35 * s, y + 0.8 * s),
        (x + 0.65 * s, y + 0.8 * s),
    )
    return FaceDetection(box=(x, y, x + s, y + s), score=score, landmarks=marks)


class Run:
    """The two-phase loop of video_pipeline._track_budgeted over synthetic detections, with
    a fake extractor: `looks[i]` is the unit vector of detection i's person."""

    def __init__(self, config: BudgetConfig = CONFIG) -> None:
        self.tracker = FaceTracker(max_gap=15)
        self.budget = EmbeddingBudget(config=config)
        self.embedded = 0

    def frame(
        self, index: int, dets: list[FaceDetection], looks: list[np.ndarray], cut: bool = False
    ) -> tuple[list[int], list[EmbedDecision]]:
        boxes = np.array([d.box for d in dets]).reshape(-1, 4)
        pending = self.tracker.prepare(index, boxes)
        config = self.budget.config
        links = overlap_links(
            pending.ious, pending.track_ids, pending.gaps, self.budget.step, config, cut
        )
        qualities = [face_quality(d) for d in dets]
        decisions = self.budget.decide(links, qualities)
        vectors = [look if d.embed else None for d, look in zip(decisions, looks, strict=True)]
        self.embedded += sum(d.embed for d in decisions)
        fixed = {i: d.track for i, d in enumerate(decisions) if d.track is not None}
        gate = self.tracker.min_similarity - config.verify_slack
        ids = self.tracker.finish(pending, fixed, vectors, gate)
        self.budget.record(ids, decisions, qualities)
        return ids, decisions


A, B = np.eye(4)[0], np.eye(4)[1]


def test_a_new_track_embeds_its_first_faces_then_carries() -> None:
    run = Run()
    reasons = [run.frame(t, [face(100 + t)], [A])[1][0].reason for t in range(6)]
    assert reasons == ["new", "first", "first", "carry", "carry", "carry"]


def test_a_steady_face_is_not_embedded_every_frame_but_on_a_heartbeat() -> None:
    run = Run()
    decisions = [run.frame(t, [face(100 + t)], [A]) for t in range(40)]
    assert all(ids == [0] for ids, _ in decisions)
    beats = [t for t, (_, d) in enumerate(decisions) if d[0].reason == "heartbeat"]
    # 3 first faces (frames 0-2), then one every 10 analysed frames of the track.
    assert beats == [12, 22, 32]
    assert run.embedded == 3 + len(beats) < 40 / 3


def test_a_clearly_better_face_is_embedded() -> None:
    run = Run()
    for t in range(5):
        run.frame(t, [face(100, side=60, score=0.75)], [A])
    # A far more confident detection of the same face: embedded.
    assert run.frame(5, [face(100, side=60)], [A])[1][0].reason == "better"
    # Slightly larger: carried. Larger by a third (past `better_by`): embedded.
    assert run.frame(6, [face(100, side=62)], [A])[1][0].reason == "carry"
    assert run.frame(7, [face(100, side=80)], [A])[1][0].reason == "better"
    assert run.frame(8, [face(100, side=80, score=0.7)], [A])[1][0].reason == "carry"


def test_frontalness_from_the_landmarks() -> None:
    frontal = face(0)
    assert frontalness(frontal.landmarks) == pytest.approx(1.0)
    (lx, ly), (rx, ry), _, ml, mr = frontal.landmarks
    turned = ((lx, ly), (rx, ry), (rx - 2.0, 36.0), ml, mr)  # the nose by the right eye
    assert frontalness(turned) < 0.2
    profile = FaceDetection(box=frontal.box, score=0.99, landmarks=turned)
    assert face_quality(profile) < 0.5 * face_quality(frontal)


def test_a_crossing_is_embedded_and_resolved_by_appearance() -> None:
    run = Run()
    for t in range(5):  # two faces walk towards each other
        run.frame(t, [face(110 + 10 * t), face(230 - 10 * t)], [A, B])
    # Now they overlap heavily (and have swapped sides in the detections' order).
    ids, decisions = run.frame(5, [face(170), face(180)], [B, A])
    assert {d.reason for d in decisions} == {"crowded"}
    assert ids == [1, 0]  # appearance, not the closer box, decided


def test_a_detection_overlapping_two_tracks_and_a_weak_overlap_are_uncertain() -> None:
    ious = np.array([[0.8, 0.0, 0.0], [0.7, 0.0, 0.3], [0.0, 0.0, 0.0]])
    links = overlap_links(ious, [5, 6, 7], [1, 1, 1], 1, CONFIG)
    assert [link.uncertain for link in links] == ["crowded", "new", "weak"]
    # Neighbours that merely touch (0.38 beside 0.97) do not make a link ambiguous.
    touching = overlap_links(np.array([[0.97, 0.0], [0.38, 0.95]]), [5, 6], [1, 1], 1, CONFIG)
    assert [link.track for link in touching] == [5, 6]


def test_a_reappearance_after_a_gap_and_a_cut_are_uncertain() -> None:
    ious = np.array([[0.9]])
    assert overlap_links(ious, [3], [4], 1, CONFIG)[0].uncertain == "gap"
    assert overlap_links(ious, [3], [4], 5, CONFIG)[0].track == 3  # every=5: no gap
    assert overlap_links(ious, [3], [1], 1, CONFIG, cut=True)[0].uncertain == "cut"
    assert overlap_links(np.zeros((0, 2)), [], [], 1, CONFIG)[0].uncertain == "new"


def test_a_cut_to_another_person_in_place_starts_a_new_track() -> None:
    run = Run()
    for t in range(5):
        run.frame(t, [face(100)], [A])
    ids, decisions = run.frame(5, [face(100)], [B], cut=True)
    assert decisions[0].embed and ids == [1]


def test_a_heartbeat_notices_a_person_replaced_in_place_without_a_cut() -> None:
    run = Run()
    seen = [run.frame(t, [face(100)], [A])[0][0] for t in range(8)]
    seen += [run.frame(t, [face(100)], [B])[0][0] for t in range(8, 14)]
    assert seen[:8] == [0] * 8
    assert seen[-1] == 1  # the heartbeat at frame 12 embedded B and split the track


def test_the_cut_detector_fires_on_a_new_shot_not_on_motion() -> None:
    rng = np.random.default_rng(0)
    shot = np.zeros((360, 640, 3), np.uint8)
    shot[:, :320] = (200, 60, 30)
    shot[:, 320:] = (40, 180, 220)
    moved = np.roll(shot, 40, axis=1)
    other = rng.integers(0, 255, shot.shape, dtype=np.uint8)
    cuts = CutDetector()
    assert [cuts.is_cut(x) for x in (shot, moved, shot, other)] == [False, False, False, True]


def test_a_face_not_embedded_takes_its_tracks_carried_embedding() -> None:
    from facefleet.core.video_pipeline import ChunkFace, _carried_vectors, _encode

    def chunk_face(frame: int, vec: np.ndarray | None, interpolated: bool = False) -> ChunkFace:
        det = face(0)
        return ChunkFace(
            frame=frame,
            box=det.box,
            score=det.score,
            landmarks=list(det.landmarks),
            track=0,
            embedding=None if vec is None else _encode(vec),
            interpolated=interpolated,
        )

    faces = [chunk_face(0, A), chunk_face(1, None), chunk_face(2, None, True), chunk_face(3, B)]
    carried = _carried_vectors([*faces, chunk_face(4, None)])
    assert np.allclose(carried[1], A) and carried[2] is None
    assert np.allclose(carried[3], B) and np.allclose(carried[4], B)


def test_the_setting_and_the_job_option_turn_it_off() -> None:
    from facefleet.core.pipeline import assemble_pipeline
    from facefleet.core.settings import Settings
    from facefleet.jobs.records import JobOptions

    assert Settings().embedding_budget and JobOptions().embedding_budget is None
    on = Settings()
    off = Settings(embedding_budget=False)
    assert assemble_pipeline(on, None, None).embedding_budget  # type: ignore[arg-type]
    assert not assemble_pipeline(off, None, None).embedding_budget  # type: ignore[arg-type]
    assert not assemble_pipeline(on, None, None, embedding_budget=False).embedding_budget  # type: ignore[arg-type]
    assert assemble_pipeline(off, None, None, embedding_budget=True).embedding_budget  # type: ignore[arg-type]


def test_the_environment_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from facefleet.core.settings import get_settings

    monkeypatch.setenv("FACEFLEET_EMBEDDING_BUDGET", "false")
    assert get_settings().embedding_budget is False


@pytest.mark.data
def test_on_a_real_video_the_budget_cuts_calls_and_keeps_the_names(data_root: Path) -> None:
    """Hamilton, cut in two ranges at frame 160 (inside Miranda's shot, so stitching runs on
    carried faces): at least 3x fewer faces through the extractor, the same track names,
    no name where CASE.md puts nobody of that name."""
    from facefleet.core.detectors import DetectorConfig, create_detector
    from facefleet.core.extractors import create_extractor
    from facefleet.core.names import DEFAULT_EXTRACTOR
    from facefleet.core.video import probe
    from facefleet.core.video_pipeline import analyze, frame_ranges, merge
    from tests.test_video_cases import HAMILTON_WHERE, pipeline_with

    case = data_root / "videos" / "hamilton_whitehouse"
    video = case / "short_hamilton_clip.mp4"
    parts = create_detector("retinaface", DetectorConfig()), create_extractor(DEFAULT_EXTRACTOR)
    pipeline = pipeline_with(parts, [case / "gallery"])
    info = probe(video)
    calls, results = {}, {}
    for mode in (False, True):
        pipeline.embedding_budget = mode
        chunks = [analyze(video, s, e, pipeline) for s, e in frame_ranges(info.frame_count, 160)]
        calls[mode], results[mode] = sum(c.embedded for c in chunks), merge(chunks, info, pipeline)
    off, on = results[False], results[True]
    assert calls[False] == sum(len(f.faces) for f in off.frames)  # off: every face
    assert calls[True] * 3 <= calls[False], calls
    names = {m: sorted({t.identity for t in r.tracks if t.identity}) for m, r in results.items()}
    assert names[True] == names[False] == ["Lin_Manuel_Miranda"]
    wrong = [
        (t.identity, t.first_frame, t.last_frame)
        for t in on.tracks
        if t.identity is not None
        and not any(a <= t.first_frame and t.last_frame <= b for a, b in HAMILTON_WHERE[t.identity])
    ]
    assert not wrong
    # Every detected face still gets its own raw match from its track's carried embedding.
    detected = [f for fr in on.frames for f in fr.faces if not f.interpolated]
    assert all(f.match is not None for f in detected)
    # The track that crosses the range boundary is still one track.
    assert any(t.first_frame <= 150 and t.last_frame >= 170 for t in on.tracks)
