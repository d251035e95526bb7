"""The session's cluster for the end-to-end tests (see tests/cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import Cluster, running_cluster
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
    }
    with running_cluster(tmp_path_factory.mktemp("cluster"), env) as cluster:
        yield cluster
