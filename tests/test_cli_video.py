"""`facefleet process` on videos: mixed inputs, bad files, variable frame rate."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from facefleet.cli import main
from facefleet.core.images import write_image
from facefleet.core.schemas import ImageResult, VideoResult
from facefleet.core.video import probe
from tests.conftest import make_video


def vfr_video(path: Path, times_ms: list[int]) -> Path:
    """Frames shown at the given millisecond timestamps (variable frame rate)."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * k, np.uint8), "bgr24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_mixed_images_and_videos_and_bad_videos(
    tmp_path: Path, astronaut_bgr, capsys: pytest.CaptureFixture, monkeypatch
) -> None:

    monkeypatch.setenv("FACEFLEET_EXTRACTOR", "none")
    inputs = tmp_path / "in"
    write_image(inputs / "photo.jpg", astronaut_bgr)
    make_video(inputs / "clip.mp4", frames=10, size=(96, 64))
    (inputs / "empty.mp4").write_bytes(b"")
    (inputs / "text.mp4").write_text("this is not a video")
    full = make_video(tmp_path / "full.mp4", frames=30, audio=False).read_bytes()
    (inputs / "cut.mp4").write_bytes(full[: len(full) // 2])
    code = main(["process", str(inputs), "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert any("empty.mp4: empty file" in line for line in errors)
    assert any("text.mp4" in line and "not a readable video" in line for line in errors)
    ImageResult.model_validate_json((tmp_path / "out" / "photo.json").read_text())
    clip = VideoResult.model_validate_json((tmp_path / "out" / "clip.json").read_text())
    assert clip.frame_count == 10 and probe(tmp_path / "out" / "clip.mp4").frame_count == 10
    # The truncated file either yields what decodes or one clear error; never a hang.
    if (tmp_path / "out" / "cut.json").exists():
        assert 0 < json.loads((tmp_path / "out" / "cut.json").read_text())["frame_count"] <= 30
    else:
        assert any("cut.mp4" in line for line in errors)
    assert not list((tmp_path / "out").rglob("*.part*"))


def test_variable_frame_rate_times_come_from_timestamps(tmp_path: Path, monkeypatch) -> None:

    monkeypatch.setenv("FACEFLEET_EXTRACTOR", "none")
    times = [0, 40, 80, 200, 240, 500, 540, 580]
    clip = vfr_video(tmp_path / "vfr.mp4", times)
    assert main(["process", str(clip), "--out", str(tmp_path / "out"), "-q"]) == 0
    result = VideoResult.model_validate_json((tmp_path / "out" / "vfr.json").read_text())
    assert [f.time_s for f in result.frames] == pytest.approx([t / 1000 for t in times], abs=2e-3)
