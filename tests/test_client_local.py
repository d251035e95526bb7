"""The SDK without servers: the same Celery tasks run in this process on a local store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefleet.client import Client
from facefleet.core.errors import GalleryError, InputError
from facefleet.core.settings import get_settings


@pytest.fixture()
def client(tmp_path: Path) -> Client:
    return Client(get_settings(store_dir=tmp_path / "store", chunk_frames=80))


def test_sdk_import_does_not_load_torch() -> None:
    code = (
        "import sys, facefleet.client, facefleet.cli; facefleet.cli.build_parser();"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_enroll_then_recognize_images(client: Client, tmp_path: Path, astronaut_bgr) -> None:
    enroll = tmp_path / "collins.png"
    cv2.imwrite(str(enroll), astronaut_bgr)
    report = client.gallery.enroll("Eileen_Collins", [enroll])
    assert report.added == 1 and report.people == ["Eileen_Collins"]
    assert client.gallery.list() == ["Eileen_Collins"]

    # A shifted, smaller copy (same person, other pixels) and a faceless image.
    shifted = cv2.resize(astronaut_bgr[20:, 30:], None, fx=0.8, fy=0.8)
    query, empty = tmp_path / "query.jpg", tmp_path / "wall.jpg"
    cv2.imwrite(str(query), shifted)
    cv2.imwrite(str(empty), np.full((200, 300, 3), 127, np.uint8))
    job = client.submit_images([query, empty])
    status = job.status()
    assert status.state == "done", status.message
    assert status.summary == {"query": ["Eileen_Collins"], "wall": []}
    files = sorted(p.name for p in job.download(tmp_path / "out"))
    assert files == ["query.jpg", "query.json", "wall.jpg", "wall.json"]
    result = json.loads((tmp_path / "out" / "query.json").read_text())
    assert result["faces"][0]["identity"] == "Eileen_Collins"
    # Intermediate objects are gone once the job is done.
    assert not client.store.list(f"jobs/{job.id}/chunks/")
    assert not client.store.list(f"jobs/{job.id}/parts/")

    removed = client.gallery.remove("Eileen_Collins")
    assert removed.removed == 1 and client.gallery.list() == []


def test_bad_inputs_are_refused_at_submit(client: Client, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match="empty file"):
        client.submit_video(empty)
    with pytest.raises(InputError, match="not a readable video"):
        client.submit_video(text)
    with pytest.raises(InputError, match="no such file"):
        client.submit_video(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="invalid gallery name"):
        client.submit_video(text, gallery="../../x")
    with pytest.raises(InputError, match="invalid person name"):
        client.gallery.enroll("../../x", [text])
    with pytest.raises(GalleryError, match="no gallery named 'nobody'"):
        client.gallery.remove("x", gallery="nobody")
    assert not client.store.list("jobs/")  # nothing was uploaded for refused inputs


def test_frame_limit_refused_when_planned(tmp_path: Path) -> None:
    """The limit applies to the decoded frame count (a container may claim any number):
    the plan step refuses the job before any chunk is analysed."""
    from tests.conftest import make_video

    video = make_video(tmp_path / "long.mp4", frames=30)
    client = Client(get_settings(store_dir=tmp_path / "store", max_job_frames=10))
    status = client.submit_video(video).status()
    assert status.state == "failed"
    assert "30 frames is more than this deployment accepts" in (status.message or "")
    assert not client.store.list(f"jobs/{status.job_id}/chunks/")


@pytest.mark.data
def test_video_job_in_process(client: Client, data_root: Path, tmp_path: Path) -> None:
    case = data_root / "videos" / "trump_speech"
    for person in sorted((case / "gallery").iterdir()):
        client.gallery.enroll(person.name, sorted(person.iterdir()), gallery="speech")
    job = client.submit_video(case / "trump.mp4", gallery="speech")
    status = job.status()
    assert status.state == "done", status.message
    assert status.summary == {"trump": ["Donald_Trump"]}
    assert job.progress().fraction == 1.0
    video, result = job.download(tmp_path / "out")
    data = json.loads(result.read_text())
    assert data["frame_count"] == 243 == len(data["frames"])
    named = [t for t in data["tracks"] if t["identity"] == "Donald_Trump"]
    assert sum(t["num_faces"] for t in named) >= 230
    from facefleet.core.video import probe

    assert probe(video).frame_count == 243


def test_odd_inputs_through_the_sdk(client: Client, tmp_path: Path, astronaut_bgr) -> None:
    """Gallery photos without a face or not images at all are reported, not fatal; gray,
    alpha and non-UTF-8-named images are processed; a faceless video finishes with no
    tracks."""
    import os

    from tests.conftest import make_video

    face = tmp_path / "face.png"
    cv2.imwrite(str(face), astronaut_bgr)
    wall = tmp_path / "wall.jpg"
    cv2.imwrite(str(wall), np.full((240, 320, 3), 90, np.uint8))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_text("not really a jpeg\n" * 20)
    report = client.gallery.enroll("Eileen_Collins", [face, wall, corrupt])
    assert report.added == 1
    assert any(i.startswith("wall.jpg: no face detected") for i in report.issues)
    assert any(i.startswith("corrupt.jpg:") for i in report.issues)
    nobody = client.gallery.enroll("Nobody", [wall])
    assert nobody.added == 0 and client.gallery.list() == ["Eileen_Collins"]

    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY))
    alpha = tmp_path / "alpha.png"
    cv2.imwrite(str(alpha), cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2BGRA))
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9 photo.png"))
    cv2.imencode(".png", astronaut_bgr)[1].tofile(os.fsencode(odd))
    job = client.submit_images([gray, alpha, odd, corrupt])
    status = job.status()
    assert status.state == "done"
    assert status.summary["alpha"] == ["Eileen_Collins"]
    assert status.summary["caf_photo"] == ["Eileen_Collins"]  # name made safe for keys
    assert status.summary["gray"] == ["Eileen_Collins"]
    assert len(status.errors) == 1 and status.errors[0].startswith("corrupt.jpg:")

    video = make_video(tmp_path / "blank.mp4", frames=20)
    blank = client.submit_video(video).status()
    assert blank.state == "done" and blank.summary == {"blank": []}
    assert blank.message == "20 frames, 0 tracks"
