"""The session's cluster for the end-to-end tests (see tests/cluster.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from facefleet.api.keys import KeyStore, Scope
from facefleet.archive.connect import open_archive
from facefleet.localstack.ports import free_port
from tests.cluster import Cluster, http_status, running_cluster
from tests.data import shared_data_root


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {
        "FACEFLEET_LFW_DIR": str(shared_data_root() / "lfw"),  # for the training tasks
        "FACEFLEET_MODEL_CHECK_S": "0",  # see a promoted model at once
        # Scheduled retraining (fired by the beat test) kept short: 2 epochs on 40 people.
        "FACEFLEET_RETRAIN_EPOCHS": "2",
        "FACEFLEET_RETRAIN_MAX_PEOPLE": "40",
        # The dev videos render in parallel parts here, as long videos do (the fault suite
        # runs them with the default: one pass in the last step).
        "FACEFLEET_RENDER_PARTS_ABOVE_FRAMES": "100",
        # Webhooks (tests/e2e/test_webhooks_cluster.py): signed, retried within a second.
        "FACEFLEET_WEBHOOK_SECRET": "e2e-webhook-secret",
        "FACEFLEET_WEBHOOK_BACKOFF_S": "0.2",
        "FACEFLEET_WEBHOOK_TIMEOUT_S": "5",
    }
    with running_cluster(tmp_path_factory.mktemp("cluster"), env) as cluster:
        yield cluster


@dataclass
class ApiServer:
    """`facefleet api serve` on the session's cluster, and an admin key of it."""

    url: str
    admin_key: str
    keys: KeyStore

    def key(self, *scopes: Scope, name: str = "test") -> str:
        return self.keys.create(name, list(scopes)).token


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[ApiServer]:
    """The HTTP API as a real process (uvicorn) beside the cluster's workers."""
    archive = open_archive(cluster.settings())
    if archive is None:
        pytest.fail("the local stack gave the cluster no archive (FACEFLEET_ARCHIVE_URL)")
    keys = KeyStore(archive)
    port = free_port()
    cluster.start("api", "api", "serve", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while http_status(url + "/healthz") != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API did not answer: {cluster.log('api')[-2000:]}")
        time.sleep(0.3)
    try:
        yield ApiServer(url=url, admin_key=keys.create("tests-admin", ["admin"]).token, keys=keys)
    finally:
        cluster.stop("api")
