"""Video I/O on files made by the tests, and true frame counts of the real clips."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from facefleet.core.errors import InputError
from facefleet.core.video import H264Writer, cut_lossless, mux, probe, read_frames
from tests.conftest import make_video


def test_probe_and_read_with_times(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "c.mp4", frames=30, fps=25)
    info = probe(clip)
    assert (info.width, info.height, info.frame_count, info.has_audio) == (160, 120, 30, True)
    assert info.fps == pytest.approx(25.0)
    frames = list(read_frames(clip, 10, 20))
    assert [f.index for f in frames] == list(range(10, 20))
    assert frames[0].time_s == pytest.approx(10 / 25, abs=1e-3)
    assert abs(int(frames[0].image.mean()) - 80) <= 3  # the frame encoded as index 10


def test_odd_size_is_padded_to_even_and_parts_join_with_audio(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "odd.mp4", frames=20, size=(160, 120))
    parts = []
    for k, (start, end) in enumerate([(0, 7), (7, 20)]):
        part = tmp_path / f"part{k}.mp4"
        with H264Writer(part, 101, 75, 25) as writer:
            for frame in read_frames(clip, start, end):
                writer.write(frame.image[:75, :101])
        parts.append(part)
    out = tmp_path / "out.mp4"
    mux(parts, out, audio_from=clip)
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (102, 76, 20)
    assert info.codec == "h264" and info.has_audio
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while loading
    assert not list(tmp_path.glob("*.part*"))


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "r.mp4", frames=3, size=(160, 120), audio=False, rotation=90)
    info = probe(clip)
    assert (info.width, info.height) == (120, 160)
    assert next(read_frames(clip)).image.shape == (160, 120, 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"just some text, renamed to .mp4", "not a readable video|no video stream"),
    ],
)
def test_non_videos_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        probe(path)


def test_truncated_video_decodes_what_it_can(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "full.mp4", frames=40, audio=False)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    try:
        count = probe(cut).frame_count
    except InputError as exc:  # the index (moov) may be lost with the tail: a clear error
        assert "cut.mp4" in str(exc)
    else:
        assert 0 < count <= 40


@pytest.mark.data
def test_real_clips_are_counted_by_decoding(data_root: Path) -> None:
    videos = data_root / "videos"
    assert probe(videos / "hamilton_whitehouse" / "short_hamilton_clip.mp4").frame_count == 275
    # The container claims 230 frames; 91 decode.
    assert probe(videos / "obama_curry_whitehouse" / "obama_curry.mp4").frame_count == 91


@pytest.mark.parametrize(
    ("pix_fmt", "rotation", "stored_as"),
    [("yuv420p", None, "yuv420p"), ("yuv444p", None, "yuv444p"), ("yuv420p", 90, "gbrp")],
)
def test_lossless_chunks_decode_to_the_sources_exact_frames(
    tmp_path: Path, pix_fmt: str, rotation: int | None, stored_as: str
) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (12, 120, 160, 3), dtype=np.uint8)  # worst case for a codec
    source = make_video(
        tmp_path / "in.mp4", frames=12, pix_fmt=pix_fmt, rotation=rotation, draw=noise.__getitem__
    )
    frames = list(read_frames(source))
    out = tmp_path / "chunks"
    out.mkdir()
    chunks = list(cut_lossless(source, [(0, 5), (5, 10), (10, 20)], out, wanted=lambda k: k != 1))

    assert [(c.start, c.end, c.path is not None) for c in chunks] == [
        (0, 5, True),
        (5, 10, False),
        (10, 12, True),  # the last range ends where decoding ends
    ]
    for chunk in (chunks[0], chunks[2]):
        assert chunk.path is not None
        with av.open(str(chunk.path)) as container:
            assert container.streams.video[0].codec_context.pix_fmt == stored_as
        decoded = list(read_frames(chunk.path, chunk.start, chunk.end, offset=chunk.start))
        assert [f.index for f in decoded] == list(range(chunk.start, chunk.end))
        assert chunk.times == [f.time_s for f in frames[chunk.start : chunk.end]]
        for mine, theirs in zip(decoded, frames[chunk.start : chunk.end], strict=True):
            assert np.array_equal(mine.image, theirs.image)
