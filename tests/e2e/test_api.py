"""The HTTP API as a real uvicorn process on the real cluster (Redis, SeaweedFS, PostgreSQL,
workers): keys and scopes, presigned uploads, a job from upload to results, bad input."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from facefleet.client import Client
from tests.cluster import Cluster
from tests.e2e.conftest import ApiServer


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _upload(api: ApiServer, key: str, path: Path) -> str:
    ticket = httpx.post(
        f"{api.url}/v1/uploads",
        json={"filename": path.name, "size": path.stat().st_size},
        headers=_auth(key),
    )
    assert ticket.status_code == 201, ticket.text
    put = httpx.put(ticket.json()["url"], content=path.read_bytes())
    assert put.status_code == 200, put.text
    return ticket.json()["upload_id"]


@pytest.mark.data
def test_an_image_job_from_upload_to_results(
    api: ApiServer, cluster: Cluster, data_root: Path
) -> None:
    key = api.key("submit", "read")
    photo = data_root / "images" / "knn_stills" / "test" / "alex_lacamoire1.jpg"
    upload = _upload(api, key, photo)
    job = httpx.post(
        f"{api.url}/v1/jobs", json={"kind": "images", "uploads": [upload]}, headers=_auth(key)
    )
    assert job.status_code == 202, job.text
    job_id = job.json()["status"]["job_id"]
    deadline = time.monotonic() + 120
    while True:
        view = httpx.get(f"{api.url}/v1/jobs/{job_id}", headers=_auth(key)).json()
        if view["status"]["state"] in ("done", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.5)
    assert view["status"]["state"] == "done", view
    results = httpx.get(f"{api.url}/v1/jobs/{job_id}/results", headers=_auth(key)).json()
    (result,) = results.values()
    assert result["source"] == photo.name and len(result["faces"]) == 1
    downloads = httpx.get(f"{api.url}/v1/jobs/{job_id}/downloads", headers=_auth(key)).json()
    image = httpx.get(downloads[f"{photo.stem}.jpg"])
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    # The upload was moved under the job: nothing is left under uploads/.
    assert Client(cluster.settings()).store.list(f"uploads/{upload}/") == []
    # The key's secret never reaches the API's log.
    assert key.rsplit("_", 1)[-1] not in cluster.log("api")


def test_keys_and_scopes(api: ApiServer) -> None:
    jobs = f"{api.url}/v1/jobs"
    assert httpx.get(jobs).status_code == 401
    assert httpx.get(jobs, headers={"Authorization": "Basic abc"}).status_code == 401
    assert httpx.get(jobs, headers=_auth("ffk_000000000000_" + "x" * 43)).status_code == 401
    reader = api.key("read")
    refused = httpx.post(
        jobs, json={"kind": "images", "uploads": ["0" * 32]}, headers=_auth(reader)
    )
    assert refused.status_code == 403 and "submit" in refused.json()["detail"]
    assert httpx.get(f"{api.url}/v1/galleries", headers=_auth(reader)).status_code == 200
    # A revoked key stops at once: the next request fails.
    key_id = reader.split("_")[1]
    api.keys.revoke(key_id)
    assert httpx.get(f"{api.url}/v1/galleries", headers=_auth(reader)).status_code == 401


def test_bad_input_is_refused_with_a_message(api: ApiServer, cluster: Cluster) -> None:
    key = api.key("submit", "read")
    store = Client(cluster.settings()).store
    before = store.list("uploads/")
    big = httpx.post(
        f"{api.url}/v1/uploads",
        json={"filename": "huge.mp4", "size": 10**13},
        headers=_auth(key),
    )
    assert big.status_code == 413 and "bytes" in big.json()["detail"]
    path_like = httpx.post(
        f"{api.url}/v1/uploads", json={"filename": "../x.jpg", "size": 10}, headers=_auth(key)
    )
    assert path_like.status_code == 400
    assert store.list("uploads/") == before  # nothing stored for either
    malformed = httpx.post(
        f"{api.url}/v1/jobs",
        content=b"{not json",
        headers={**_auth(key), "Content-Type": "application/json"},
    )
    assert malformed.status_code == 422 and malformed.json()["detail"]
    unknown = httpx.get(f"{api.url}/v1/jobs/{'0' * 32}", headers=_auth(key))
    assert unknown.status_code == 404 and "no job" in unknown.json()["detail"]
    assert httpx.get(f"{api.url}/v1/jobs/nope", headers=_auth(key)).status_code == 400
    long_name = httpx.post(
        f"{api.url}/v1/galleries/default/people",
        json={"person": "x" * 500, "uploads": ["0" * 32]},
        headers=_auth(key),
    )
    assert long_name.status_code == 422
    ticket = httpx.post(
        f"{api.url}/v1/uploads", json={"filename": "a.jpg", "size": 10}, headers=_auth(key)
    ).json()
    assert httpx.put(ticket["url"], content=b"0123456789").status_code == 200
    for callback in ("ftp://example.org/hook", api.url + "/v1/jobs"):
        refused = httpx.post(
            f"{api.url}/v1/jobs",
            json={"kind": "images", "uploads": [ticket["upload_id"]], "callback_url": callback},
            headers=_auth(key),
        )
        assert refused.status_code == 400, refused.text
    oversized = httpx.post(
        f"{api.url}/v1/jobs", content=b"x" * (2 * 1024 * 1024), headers=_auth(key)
    )
    assert oversized.status_code == 413


def test_probes_and_metrics(api: ApiServer) -> None:
    assert httpx.get(f"{api.url}/healthz").status_code == 200
    ready = httpx.get(f"{api.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"broker", "store", "database"}
    metrics = httpx.get(f"{api.url}/metrics").text
    assert "facefleet_queue_depth" in metrics and "facefleet_workers_alive" in metrics
    docs = httpx.get(f"{api.url}/openapi.json").json()
    assert "/v1/jobs" in docs["paths"] and "/v1/uploads" in docs["paths"]
