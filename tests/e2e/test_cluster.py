"""The batch system end to end: real Redis, a real S3 server (SeaweedFS), real worker
processes. Nothing here is mocked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from facefleet.client import Client
from facefleet.core.names import METRICS
from facefleet.jobs.galleries import gallery_pointer
from facefleet.jobs.gallery_store import load_gallery
from facefleet.jobs.records import JobKeys, JobPlan
from facefleet.training.records import TrainProgress
from tests.cluster import Cluster, http_status

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def trump_case(data_root: Path) -> Path:
    return data_root / "videos" / "trump_speech"


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> Client:
    return Client(cluster.settings())


def test_video_job_matches_the_in_process_run(
    cluster: Cluster, client: Client, trump_case: Path, tmp_path: Path
) -> None:
    from facefleet.core.pipeline import build_pipeline
    from facefleet.core.settings import get_settings
    from facefleet.core.video import probe
    from facefleet.core.video_pipeline import run_video

    for person in sorted((trump_case / "gallery").iterdir()):
        report = client.gallery.enroll(person.name, sorted(person.iterdir()), gallery="speech")
        assert report.added > 0
    job = client.submit_video(trump_case / "trump.mp4", gallery="speech", chunk_frames=50)
    seen = []
    deadline = time.monotonic() + 600
    while not job.status().finished and time.monotonic() < deadline:
        progress = job.progress()
        seen.append((progress.done, progress.total))
        time.sleep(0.3)
    status = job.status()
    assert status.state == "done", status.message
    assert status.summary == {"trump": ["Donald_Trump"]}
    # Ranges end on keyframes when one is near (trump.mp4 has one at frame 160): 3 chunks.
    plan = client.store.get_model(JobKeys(job.id).plan, JobPlan)
    assert [(c.start, c.end) for c in plan.chunks] == [(0, 160), (160, 210), (210, 243)]
    # Progress was observed moving through the 3 analyse + 3 render steps.
    steps = [done for done, total in seen if total == 6]
    assert steps == sorted(steps) and len(set(steps)) >= 3, seen

    video, result_json = job.download(tmp_path / "out")
    cluster_result = json.loads(result_json.read_text())
    info = probe(video)
    assert info.frame_count == 243 and info.codec == "h264"
    assert info.has_audio == probe(trump_case / "trump.mp4").has_audio

    # The same video through the in-process driver, same chunking, same gallery photos.
    pipeline, _ = build_pipeline(get_settings(), trump_case / "gallery")
    local = run_video(trump_case / "trump.mp4", pipeline, tmp_path / "local.mp4", chunk_frames=50)
    local_result = json.loads(local.model_dump_json())
    assert cluster_result["tracks"] == local_result["tracks"]
    assert cluster_result["frames"] == local_result["frames"]
    # Workers read their ranges from the source: nothing was cut into chunk files.
    assert plan.reading == "source", plan.reading_reason
    assert "chunks, read from source" in cluster.log("w1") + cluster.log("w2")
    # Chunks and parts are deleted; the outputs stay.
    assert not client.store.list(f"jobs/{job.id}/chunks/")
    assert not client.store.list(f"jobs/{job.id}/parts/")
    assert sorted(client.store.list(f"jobs/{job.id}/output/")) == sorted(status.outputs)
    # S3 dates the job's last write (its status) as the status does: the stalled-job check.
    newest = client.store.newest(f"jobs/{job.id}/")
    assert newest is not None and abs((newest - status.updated).total_seconds()) < 5
    assert client.store.newest(f"jobs/{'0' * 32}/") is None
    # Both workers took chunks.
    assert "chunk" in cluster.log("w1") and "chunk" in cluster.log("w2")
    urls = job.urls(expires_s=60)
    assert "X-Amz-Expires=60" in urls["trump.mp4"]


def test_gallery_enroll_remove_round_trip(client: Client, trump_case: Path) -> None:
    photos = sorted((trump_case / "gallery" / "Donald_Trump").iterdir())
    client.gallery.enroll("Someone_Else", photos[:1], gallery="roundtrip")
    report = client.gallery.enroll("Donald_Trump", photos, gallery="roundtrip")
    assert sorted(report.people) == ["Donald_Trump", "Someone_Else"]
    assert sorted(client.gallery.list("roundtrip")) == ["Donald_Trump", "Someone_Else"]
    before = gallery_pointer(client.store, "roundtrip")

    removed = client.gallery.remove("Donald_Trump", gallery="roundtrip")
    assert removed.removed == len(photos)
    assert client.gallery.list("roundtrip") == ["Someone_Else"]
    after = gallery_pointer(client.store, "roundtrip")
    assert after is not None and before is not None and after.version != before.version
    # The old version (with Trump's crops and embeddings) is gone from S3.
    assert not client.store.list(f"galleries/roundtrip/v/{before.version}/")
    gallery = load_gallery(client.store, "roundtrip", None)
    assert gallery is not None and {s.person for s in gallery.samples} == {"Someone_Else"}
    assert len(gallery.regions) == len(gallery.embeddings) == 1


def test_bad_video_fails_the_job_cleanly(client: Client, tmp_path: Path) -> None:
    from tests.conftest import make_video

    # A valid header whose frames cannot be decoded: accepted at submit, refused at plan.
    video = make_video(tmp_path / "broken.mp4", frames=20)
    data = bytearray(video.read_bytes())
    box = data.find(b"mdat") - 4
    size = int.from_bytes(data[box : box + 4], "big")
    data[box + 8 : box + size] = bytes(size - 8)  # the frames go, the index stays
    video.write_bytes(bytes(data))
    job = client.submit_video(video, gallery=None)
    status = job.wait(timeout=120)
    assert status.state == "failed"
    assert "broken.mp4" in (status.message or "") and "frames" in (status.message or "")
    assert not client.store.list(f"jobs/{job.id}/chunks/")
    assert not client.store.list(f"jobs/{job.id}/output/")


def test_cancelled_job_leaves_no_output(client: Client, trump_case: Path) -> None:
    job = client.submit_video(trump_case / "trump.mp4", gallery=None, chunk_frames=40)
    job.cancel()
    status = job.wait(timeout=120)
    assert status.state == "cancelled"
    time.sleep(3)  # let any step that was running finish and clean after itself
    assert not client.store.list(f"jobs/{job.id}/output/")
    assert not client.store.list(f"jobs/{job.id}/parts/")
    assert job.status().state == "cancelled"


def test_flower_requires_credentials(cluster: Cluster) -> None:
    port = int(cluster.env["FACEFLEET_FLOWER_PORT"])
    cluster.start("flower", "flower", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    user, password = cluster.env["FACEFLEET_FLOWER_USER"], cluster.env["FACEFLEET_FLOWER_PASSWORD"]
    try:
        deadline = time.monotonic() + 60
        while http_status(base + "/", (user, password)) != 200:
            assert time.monotonic() < deadline, cluster.log("flower")[-2000:]
            time.sleep(0.5)
        assert http_status(base + "/api/workers", (user, password)) == 200
        assert http_status(base + "/api/workers") == 401
        assert http_status(base + "/api/workers", (user, "wrong")) == 401
    finally:
        cluster.stop("flower")


def test_beat_schedules_training_with_periodic_metrics(cluster: Cluster, client: Client) -> None:
    from celery.result import AsyncResult

    from facefleet.tasks.app import make_app

    cluster.start(
        "beat",
        "beat",
        "--schedule-file",
        str(cluster.workdir / "beat-schedule"),
        extra_env={"FACEFLEET_RETRAIN_INTERVAL_S": "3"},
    )
    # The run is started by the cpu-queue task that beat fires, with the workers' settings.
    try:
        deadline = time.monotonic() + 60
        while not client.store.list("training/"):
            assert time.monotonic() < deadline, cluster.log("beat")[-2000:]
            time.sleep(0.5)
    finally:
        cluster.stop("beat")
    run = sorted({k.split("/")[1] for k in client.store.list("training/")})[0]
    result = AsyncResult(f"train-{run}", app=make_app(cluster.settings()))
    states, evaluations = set(), 0
    deadline = time.monotonic() + 900
    while result.state != "SUCCESS":
        assert result.state != "FAILURE", result.result
        assert time.monotonic() < deadline, "training did not finish"
        states.add(result.state)
        if result.state == "PROGRESS":
            evaluations = max(evaluations, len(result.info.get("evaluations", [])))
        time.sleep(1)
    assert "PROGRESS" in states and evaluations >= 1
    final = TrainProgress.model_validate(result.result)
    assert final.state == "done" and final.epoch == final.epochs == 2
    assert [e.epoch for e in final.evaluations] == [1, 2]
    for record in final.evaluations:
        for metric in METRICS:
            assert 0.0 < record.metric(metric).f1 <= 1.0
    keys = client.store.list(f"training/{run}/")
    assert f"training/{run}/latest.pt" in keys and f"training/{run}/extractor.pt" in keys
    # It fine-tuned the release B0 (its parent) and was judged head to head on the first
    # DevTest people. Which way two epochs on 40 people go depends on the release (measured:
    # DIR 0.3667 against 0.3619, promoted, and kept in another run of the same code), so here
    # the decision is checked to be made, reported and followed by the model pointer;
    # tests/test_retraining.py pins each outcome with a parent chosen for it.
    from facefleet.jobs.records import MODEL_POINTER_KEY, ModelPointer

    assert "DevTest open-set identification, first 200 people" in (final.message or "")
    pointer = client.store.get_model_or_none(MODEL_POINTER_KEY, ModelPointer)
    try:
        if final.promoted:
            assert (final.message or "").startswith("promoted b0-"), final.message
            assert pointer is not None and pointer.run == run
        else:
            assert (final.message or "").startswith("not promoted: "), final.message
            assert pointer is None
    finally:
        client.store.delete(MODEL_POINTER_KEY)  # the later tests start from the release


def test_cli_against_the_cluster(cluster: Cluster, tmp_path: Path, astronaut_bgr) -> None:
    import os
    import subprocess
    import sys

    import cv2

    image = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(image), astronaut_bgr)
    env = {**os.environ, **cluster.env}
    cli = str(Path(sys.executable).with_name("facefleet"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=300)

    enrolled = run("gallery", "enroll", "Eileen_Collins", str(image), "--gallery", "cli")
    assert enrolled.returncode == 0, enrolled.stderr
    listed = run("gallery", "list", "--gallery", "cli")
    assert json.loads(listed.stdout) == {"cli": ["Eileen_Collins"]}
    submitted = run(
        "submit", str(image), "--gallery", "cli", "--wait", "--out", str(tmp_path / "o")
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "Eileen_Collins" in submitted.stderr
    job_id = submitted.stdout.split()[0]
    status = run("status", job_id, "--json")
    assert json.loads(status.stdout)["state"] == "done"
    result = json.loads((tmp_path / "o" / "astronaut.json").read_text())
    assert result["faces"][0]["identity"] == "Eileen_Collins"
    refused = run("submit", str(tmp_path / "missing.mp4"))
    assert refused.returncode == 1 and "no such file" in refused.stderr
    assert "Traceback" not in refused.stderr
    unknown = run("status", "0" * 32)
    assert unknown.returncode == 2 and "no job" in unknown.stderr


def test_promoted_model_is_picked_up(
    client: Client, tmp_path: Path, astronaut_bgr, random_checkpoint: Path
) -> None:
    """A B0 promoted to models/latest is used by the next job that names the B0, and by
    unnamed jobs only once it beats the default extractor on the identification protocol;
    the gallery is re-embedded from its stored face regions each time (runs last: it
    removes the pointer again)."""
    import cv2

    from facefleet.core.extractors.b0 import load_checkpoint
    from facefleet.jobs.records import MODEL_POINTER_KEY, ModelPointer, model_key

    _, meta = load_checkpoint(random_checkpoint)
    image = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(image), astronaut_bgr)
    client.gallery.enroll("Eileen_Collins", [image], gallery="promote")
    client.store.put_file(model_key(meta.model_id), random_checkpoint)

    def named_by(pointer: ModelPointer, **options: object) -> dict:
        client.store.put_model(MODEL_POINTER_KEY, pointer)
        job = client.submit_images([image], gallery="promote", **options)
        assert job.wait(timeout=300).state == "done"
        (json_key,) = [k for k in job.status().outputs if k.endswith(".json")]
        return json.loads(client.store.get_bytes(json_key))

    plain = ModelPointer(model_id=meta.model_id, key=model_key(meta.model_id))
    better = plain.model_copy(update={"identification_dir": 0.9999})
    try:
        b0 = named_by(plain, extractor="facefleet-b0")
        assert b0["model"]["extractor"] == meta.model_id
        # Same photo as enrolled: under the new model it still matches itself.
        assert b0["faces"][0]["identity"] == "Eileen_Collins"
        default = named_by(plain)
        assert default["model"]["extractor"].startswith("dlib-resnet-")
        assert default["faces"][0]["identity"] == "Eileen_Collins"
        promoted = named_by(better)
        assert promoted["model"]["extractor"] == meta.model_id
    finally:
        client.store.delete(MODEL_POINTER_KEY)
