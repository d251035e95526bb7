"""Reading a frame range by seeking through the frame index gives exactly the frames, frame
numbers and times of a decode from the start; sources where that cannot be trusted say so."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from facefleet.client import Client
from facefleet.core.frame_index import index_video
from facefleet.core.settings import get_settings
from facefleet.core.video import probe, probe_indexed, read_frames
from facefleet.jobs.records import JobKeys, JobPlan
from facefleet.jobs.source_cache import IN_USE_S, SourceCache
from facefleet.jobs.storage import LocalStore


def _encode(
    path: Path,
    codec: str = "libx264",
    container: str = "mp4",
    options: dict[str, str] | None = None,
    frames: int = 90,
    vfr: bool = False,
    rotation: int | None = None,
) -> Path:
    """Noise that moves: every frame differs, so a frame decoded from the wrong reference
    or numbered wrongly cannot pass for the right one."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 64, (120, 160, 3), dtype=np.uint8)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        stream.options = options or {}
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for k in range(frames):
            image = (np.roll(base, 3 * k, axis=1) + (2 * k) % 150).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            if vfr:
                frame.pts, frame.time_base = t, Fraction(1, 1000)
                t += int(rng.integers(15, 90))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


OPEN_GOP = {"x264-params": "open-gop=1:keyint=12:min-keyint=12:bframes=3:scenecut=0"}
SOURCES: dict[str, Callable[[Path], Path]] = {
    "open GOP, B-frames (mp4)": lambda d: _encode(d / "a.mp4", options=OPEN_GOP),
    "open GOP (matroska)": lambda d: _encode(d / "a.mkv", container="matroska", options=OPEN_GOP),
    "variable frame rate": lambda d: _encode(
        d / "a.mp4", vfr=True, options={"x264-params": "keyint=10:bframes=2"}
    ),
    "rotated 90°": lambda d: _encode(d / "a.mp4", rotation=90, options={"g": "15"}),
    "MPEG-4 part 2 in AVI with B-frames": lambda d: _encode(
        d / "a.avi", codec="mpeg4", container="avi", options={"g": "15", "bf": "2"}
    ),
    "VP8 with alt-ref frames (WebM)": lambda d: _encode(
        d / "a.webm",
        codec="libvpx",
        container="webm",
        options={"g": "15", "auto-alt-ref": "1", "lag-in-frames": "16"},
    ),
}


def _assert_ranges_match_a_full_decode(path: Path, size: int) -> None:
    info, index = probe_indexed(path)
    assert index.seekable, index.reason
    full = list(read_frames(path))
    assert info == probe(path) and info.frame_count == len(full) == index.frame_count
    for start in range(0, len(full), size):
        got = list(read_frames(path, start, start + size, index=index))
        want = full[start : start + size]
        assert [(f.index, f.time_s) for f in got] == [(f.index, f.time_s) for f in want]
        for mine, theirs in zip(got, want, strict=True):
            assert np.array_equal(mine.image, theirs.image), (start, mine.index)


@pytest.mark.parametrize("kind", SOURCES)
def test_seeking_gives_the_frames_of_a_full_decode(tmp_path: Path, kind: str) -> None:
    _assert_ranges_match_a_full_decode(SOURCES[kind](tmp_path), size=17)


def _cut_short(tmp_path: Path) -> Path:
    """An MP4 whose index (moov, first) lists frames whose data was cut off."""
    source = _encode(tmp_path / "a.mp4", options=OPEN_GOP, frames=40)
    faststart = tmp_path / "fast.mp4"
    with (
        av.open(str(source)) as src,
        av.open(str(faststart), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = faststart.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    return cut


def test_a_cut_short_source_is_not_seekable_and_says_why(tmp_path: Path) -> None:
    cut = _cut_short(tmp_path)
    info, index = probe_indexed(cut)
    assert not index.seekable
    assert "damaged or cut short" in (index.reason or "")
    # Counted by decoding, as without an index: fewer than the container lists.
    assert info == probe(cut) and info.frame_count < index.frame_count


@pytest.mark.data
def test_real_videos_are_seekable_and_read_exactly(data_root: Path) -> None:
    """Including the clips whose MP4 edit list hides their first frames (the container
    claims 230 frames, 91 decode) and a single-keyframe clip."""
    for video in sorted((data_root / "videos").glob("*/*.mp4")):
        _assert_ranges_match_a_full_decode(video, size=50)


def test_sdk_job_reads_the_source_or_says_why_it_cut_chunks(tmp_path: Path) -> None:
    from tests.conftest import make_video

    client = Client(get_settings(store_dir=tmp_path / "store", chunk_frames=8))
    clip = make_video(tmp_path / "good.mp4", frames=20)
    good = client.submit_video(clip).status()
    assert good.state == "done", good.message
    plan = client.store.get_model(JobKeys(good.job_id).plan, JobPlan)
    assert plan.reading == "source" and plan.reading_reason is None
    assert len(plan.chunks) == 3 and not plan.render_parts  # short: one render pass

    # Rendered in parts instead: the same frames in the output.
    parted = Client(client.settings.model_copy(update={"render_parts_above_frames": 0}))
    status = parted.submit_video(clip).status()
    assert status.state == "done", status.message
    assert parted.store.get_model(JobKeys(status.job_id).plan, JobPlan).render_parts
    outputs = []
    for job_id in (good.job_id, status.job_id):
        video = parted.store.get_file(JobKeys(job_id).output("good.mp4"), tmp_path / job_id)
        outputs.append([f.image for f in read_frames(video)])
    assert len(outputs[0]) == len(outputs[1]) == 20
    assert all(np.array_equal(a, b) for a, b in zip(*outputs, strict=True))

    truncated = _cut_short(tmp_path)
    status = client.submit_video(truncated).status()
    assert status.state == "done", status.message
    plan = client.store.get_model(JobKeys(status.job_id).plan, JobPlan)
    assert plan.reading == "lossless-chunks"
    assert "damaged or cut short" in (plan.reading_reason or "")
    assert plan.video is not None and plan.video.frame_count == probe(truncated).frame_count


class _RemoteStore(LocalStore):
    """A folder store that, like S3, has no file on this machine to hand out."""

    def local_path(self, key: str) -> Path | None:
        return None


def test_source_cache_downloads_once_and_evicts_the_least_recently_used(tmp_path: Path) -> None:
    store = _RemoteStore(tmp_path / "store")
    for name in ("a", "b", "c"):
        store.put_bytes(f"jobs/{name}/input/v.mp4", name.encode() * 1000)
    cache = SourceCache(store, tmp_path / "cache", max_bytes=2500)
    first = cache.path("jobs/a/input/v.mp4")
    assert first.read_bytes() == b"a" * 1000
    store.delete("jobs/a/input/v.mp4")
    assert cache.path("jobs/a/input/v.mp4") == first  # served from disk, not fetched again

    old = time.time() - 2 * IN_USE_S
    os.utime(first, (old, old))
    cache.path("jobs/b/input/v.mp4")
    assert first.exists()  # 2000 bytes: within the limit
    third = cache.path("jobs/c/input/v.mp4")
    assert not first.exists() and third.read_bytes() == b"c" * 1000
    assert not list((tmp_path / "cache").glob("*/.*.part"))

    local = LocalStore(tmp_path / "store")
    assert (
        SourceCache(local, tmp_path / "other", 1)
        .path("jobs/b/input/v.mp4")
        .is_relative_to(tmp_path / "store")
    )


def test_decoding_starts_one_keyframe_back_only_for_open_gops(tmp_path: Path) -> None:
    closed = index_video(_encode(tmp_path / "closed.mp4", options={"g": "10", "bf": "2"}))
    opened = index_video(_encode(tmp_path / "open.mkv", container="matroska", options=OPEN_GOP))
    assert not closed.open_gop and opened.open_gop
    # A range starting just after a keyframe decodes from that keyframe when GOPs are
    # closed, from the one before when frames after it may reference the previous GOP.
    for index in (closed, opened):
        key = index.keyframes[2]
        frame = index.pts.index(key) + 1
        expected = index.keyframes[1] if index.open_gop else key
        assert index.seek_target(frame) == expected


def test_ranges_end_on_keyframes_near_their_nominal_end() -> None:
    from facefleet.core.video_pipeline import frame_ranges

    hamilton = [0, 60, 120, 163, 211, 271]
    ends = [end for _, end in frame_ranges(275, 64, hamilton)]
    assert ends == [60, 120, 163, 211, 275]
    # A GOP of 250 frames and chunks of 64: whole GOPs, never a range starting mid-GOP.
    assert frame_ranges(1800, 64, range(0, 1800, 250))[:2] == [(0, 250), (250, 500)]
    # No keyframe within four chunks: the nominal split.
    assert frame_ranges(105, 30, [0]) == [(0, 30), (30, 60), (60, 90), (90, 105)]
    assert frame_ranges(40, None, hamilton) == [(0, 40)]


def test_keyframes_far_apart_are_cut_into_lossless_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeking would be exact, but every range would decode the whole GOP before it."""
    import facefleet.tasks.video
    from tests.conftest import make_video

    monkeypatch.setattr(facefleet.tasks.video, "LONG_GOP_FRAMES", 5)
    client = Client(get_settings(store_dir=tmp_path / "store", chunk_frames=2))
    status = client.submit_video(make_video(tmp_path / "one-gop.mp4", frames=20)).status()
    assert status.state == "done", status.message
    plan = client.store.get_model(JobKeys(status.job_id).plan, JobPlan)
    assert plan.reading == "lossless-chunks"
    assert plan.reading_reason == "keyframes up to 20 frames apart"
