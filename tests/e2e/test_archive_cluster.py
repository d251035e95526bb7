"""The archive on the real stack: Redis, SeaweedFS, the embedded PostgreSQL of the local
stack and two workers; the same flow as the in-process test."""

from __future__ import annotations

from pathlib import Path

import pytest

from facefleet.client import Client
from tests.archive_flow import archive_flow
from tests.cluster import Cluster


@pytest.mark.data
def test_archive_on_the_cluster(cluster: Cluster, tmp_path: Path, data_root: Path) -> None:
    if "FACEFLEET_ARCHIVE_URL" not in cluster.env:
        pytest.fail("the local stack gave the workers no archive (FACEFLEET_ARCHIVE_URL)")
    archive_flow(Client(cluster.settings()), tmp_path, data_root)
