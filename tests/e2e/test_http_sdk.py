"""The SDK's HTTP transport (facefleet.http_client) against the real API process on the real
cluster: the same calls as the direct Client, the same answers; and the API's refusals
(keys, scopes, sizes, malformed requests, callback URLs) as a client sees them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from facefleet.client import Client
from facefleet.core.errors import FacefleetError, InputError
from facefleet.http_client import ApiAuthError, HttpClient, connect
from tests.cluster import Cluster
from tests.e2e.conftest import ApiServer

pytestmark = pytest.mark.data

GALLERY = "http-sdk"


@pytest.fixture(scope="module")
def photos(data_root: Path) -> dict[str, Path]:
    gallery = data_root / "videos" / "trump_speech" / "gallery" / "Donald_Trump"
    return {
        "enroll": sorted(gallery.iterdir())[:2],  # type: ignore[dict-item]
        "trump": data_root / "lfw" / "Donald_Trump" / "Donald_Trump_0001.jpg",
        "other": data_root / "lfw" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg",
    }


@pytest.fixture(scope="module")
def sdk(api: ApiServer, cluster: Cluster) -> Iterator[HttpClient]:
    with HttpClient(api.url, api.admin_key, settings=cluster.settings()) as client:
        yield client


@pytest.fixture(scope="module")
def raw(api: ApiServer) -> Iterator[httpx.Client]:
    """Requests as any HTTP client sends them: no SDK-side checks in the way."""
    with httpx.Client(base_url=api.url, timeout=60) as client:
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_http_sdk_gives_what_the_direct_sdk_gives(
    sdk: HttpClient, cluster: Cluster, photos: dict, tmp_path: Path
) -> None:
    report = sdk.gallery.enroll("Donald_Trump", photos["enroll"], gallery=GALLERY)
    assert report.added == 2 and report.people == ["Donald_Trump"]
    assert sdk.gallery.list(GALLERY) == ["Donald_Trump"]
    assert sdk.gallery.list("http-sdk-nobody") == []
    assert sdk.gallery.galleries()[GALLERY] == report.faces

    job = sdk.submit_images([photos["trump"], photos["other"]], gallery=GALLERY)
    status = job.wait(timeout=300, poll_s=0.3)
    assert status.state == "done", status.message
    assert sdk.job(job.id).status().summary == status.summary
    assert status.summary["Donald_Trump_0001"] == ["Donald_Trump"]
    assert job.progress().done == job.progress().total

    results = job.results()
    assert results["Donald_Trump_0001"]["faces"][0]["identity"] == "Donald_Trump"
    files = job.download(tmp_path / "out")
    assert sorted(p.name for p in files) == sorted(k.rsplit("/", 1)[-1] for k in job.outputs())
    downloaded = json.loads((tmp_path / "out" / "Donald_Trump_0001.json").read_text())
    assert downloaded == results["Donald_Trump_0001"]
    assert all("X-Amz-Signature=" in url for url in job.urls().values())
    assert job.id in [entry.job_id for entry in sdk.jobs()]

    # The same calls on the direct transport: the same answer.
    direct = Client(cluster.settings())
    assert direct.gallery.list(GALLERY) == sdk.gallery.list(GALLERY)
    direct_job = direct.submit_images([photos["trump"], photos["other"]], gallery=GALLERY)
    assert direct_job.wait(timeout=300, poll_s=0.3).summary == status.summary

    # A cancel of a finished job leaves it as it is; an admin key deletes it.
    assert job.cancel().state == "done"
    assert sdk.delete_job(job.id).job_id == job.id
    with pytest.raises(InputError, match="no job"):
        sdk.job(job.id)
    assert isinstance(connect(cluster.settings(api_url=sdk.url, api_key=sdk_key(sdk))), HttpClient)
    assert isinstance(connect(cluster.settings()), Client)


def sdk_key(sdk: HttpClient) -> str:
    return sdk._http.headers["Authorization"].removeprefix("Bearer ")


def test_client_side_checks_run_before_any_request(sdk: HttpClient, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError, match="no such file"):
        sdk.submit_images([tmp_path / "missing.jpg"])
    with pytest.raises(InputError, match="empty file"):
        sdk.submit_images([empty])
    with pytest.raises(InputError, match="not an image file name"):
        sdk.gallery.enroll("Someone", [text])
    with pytest.raises(InputError, match="not a readable video"):
        sdk.submit_video(fake)
    with pytest.raises(FacefleetError, match="cannot reach the facefleet API"):
        HttpClient("http://127.0.0.1:9", "ffk_x").jobs()


def test_keys_and_scopes(api: ApiServer, raw: httpx.Client, sdk: HttpClient) -> None:
    assert raw.get("/v1/jobs").status_code == 401
    assert raw.get("/v1/jobs", headers=_auth("ffk_000000000000_" + "a" * 43)).status_code == 401
    with pytest.raises(ApiAuthError, match="401"):
        HttpClient(api.url, None).jobs()

    reader = api.key("read", name="http-sdk-reader")
    assert raw.get("/v1/jobs", headers=_auth(reader)).status_code == 200
    body = {"kind": "images", "uploads": ["0" * 32]}
    refused = raw.post("/v1/jobs", json=body, headers=_auth(reader))
    assert refused.status_code == 403 and "submit" in refused.json()["detail"]
    with pytest.raises(ApiAuthError, match="403"):
        HttpClient(api.url, reader).delete_job("0" * 32)

    submitter = api.key("read", "submit", name="http-sdk-revoked")
    assert raw.get("/v1/galleries", headers=_auth(submitter)).status_code == 200
    api.keys.revoke(submitter.split("_")[1])
    after = raw.get("/v1/galleries", headers=_auth(submitter))
    assert after.status_code == 401 and "revoked" in after.json()["detail"]


def test_refusals(
    api: ApiServer, raw: httpx.Client, sdk: HttpClient, cluster: Cluster, photos: dict
) -> None:
    admin = _auth(api.admin_key)
    store = Client(cluster.settings()).store
    before = set(store.list("uploads/"))

    # An upload over the deployment's limit: refused before anything is stored.
    limit = cluster.settings().max_input_bytes
    big = raw.post("/v1/uploads", json={"filename": "big.mp4", "size": limit + 1}, headers=admin)
    assert big.status_code == 413 and str(limit) in big.json()["detail"]
    assert set(store.list("uploads/")) == before

    bad_json = raw.post(
        "/v1/jobs",
        content=b'{"kind": "images", "uploads": [',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert bad_json.status_code == 422 and bad_json.json()["detail"]
    wrong_field = raw.post("/v1/jobs", json={"kind": "images", "upload": []}, headers=admin)
    assert wrong_field.status_code == 422 and "upload" in wrong_field.json()["detail"]

    unknown = raw.get(f"/v1/jobs/{'0' * 32}", headers=admin)
    assert unknown.status_code == 404 and unknown.json()["detail"]
    with pytest.raises(InputError):
        sdk.job("0" * 32)
    assert raw.get("/v1/jobs/..%2Fgalleries", headers=admin).status_code in (400, 404)

    for gallery in ("..%2F..%2Fjobs", "%2E%2E", "a%2Fb"):  # ".." itself httpx normalizes away
        code = raw.get(f"/v1/galleries/{gallery}/people", headers=admin).status_code
        assert code in (400, 404), gallery
    upload = sdk.upload(photos["other"])
    job = {"kind": "images", "uploads": [upload]}
    path_gallery = raw.post("/v1/jobs", json={**job, "gallery": "../jobs"}, headers=admin)
    assert path_gallery.status_code in (400, 404), path_gallery.text

    long_name = raw.post(
        f"/v1/galleries/{GALLERY}/people",
        json={"person": "x" * 500, "uploads": [upload]},
        headers=admin,
    )
    assert long_name.status_code == 422 and "person" in long_name.json()["detail"]

    pytest.importorskip("facefleet.jobs.webhooks", reason="webhooks are not in this tree yet")
    for url, why in (("ftp://hooks.example.com/x", "http"), (api.url + "/v1/jobs", "itself")):
        refused = raw.post("/v1/jobs", json={**job, "callback_url": url}, headers=admin)
        assert refused.status_code == 400 and why in refused.json()["detail"], refused.text
    with pytest.raises(InputError, match="itself"):
        sdk.submit_images([photos["other"]], callback_url=api.url + "/")


def test_api_log_never_holds_a_key(api: ApiServer, cluster: Cluster) -> None:
    """Runs last: every key the tests above sent."""
    log = cluster.log("api")
    assert "/v1/jobs" in log  # the access log is there, and is what is checked
    assert api.admin_key.rsplit("_", 1)[1] not in log
    assert "ffk_" not in log and "Bearer" not in log
