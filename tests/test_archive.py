"""The archive in-process (an embedded PostgreSQL started on demand beside the local store):
two dev videos processed with an empty gallery, then a person enrolled afterwards is found
in both at the right times without reprocessing; unknowns are clustered and one named; a
track corrected; a person forgotten is nowhere; a job deleted leaves nothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facefleet.client import Client
from facefleet.core.errors import InputError
from facefleet.core.settings import get_settings
from tests.archive_flow import OBAMA_CURRY, archive_flow


@pytest.mark.data
def test_archive_in_process(tmp_path: Path, data_root: Path) -> None:
    archive_flow(
        Client(get_settings(store_dir=tmp_path / "store", chunk_frames=100)), tmp_path, data_root
    )


@pytest.mark.data
def test_job_finishes_unindexed_when_the_database_is_down_and_is_indexed_later(
    tmp_path: Path, data_root: Path, postgres_server
) -> None:
    down = get_settings(
        store_dir=tmp_path / "store",
        archive_url="postgresql://facefleet:x@127.0.0.1:9/facefleet",
        chunk_frames=100,
    )
    job = Client(down).submit_video(data_root / OBAMA_CURRY)
    status = job.status()
    assert status.state == "done" and status.indexed is False
    assert job.outputs()  # the results did not wait for the database

    up = Client(get_settings(store_dir=tmp_path / "store", archive_url=postgres_server.dsn))
    report = up.maintain_archive()
    assert report["indexed"] == 1
    assert up.job(job.id).status().indexed is True
    assert {j.job_id: j.tracks for j in up.jobs()}[job.id]

    # A photo with several faces says which one it used; one with none is refused.
    several = up.search(photo=data_root / "images/misc/two_people.jpg")
    assert "2 faces in the photo" in (several.note or "")
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 127, np.uint8))
    with pytest.raises(InputError, match="no face"):
        up.search(photo=blank)

    # Retention: a job finished longer ago than FACEFLEET_RETENTION_DAYS goes, whole.
    short = Client(
        get_settings(
            store_dir=tmp_path / "store", archive_url=postgres_server.dsn, retention_days=1e-6
        )
    )
    assert short.maintain_archive()["deleted"] == 1
    assert not short.store.list(f"jobs/{job.id}/") and not short.store.list(f"archive/{job.id}/")
    assert job.id not in {j.job_id for j in short.jobs()}
