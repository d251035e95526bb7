"""The local-folder object store (the in-process mode) and key validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from facefleet.core.errors import InputError
from facefleet.jobs.records import JobStatus, check_job_id, check_store_name, now
from facefleet.jobs.storage import LocalStore, ObjectNotFound, StorageError, check_key


def test_round_trip_list_delete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("jobs/a/input/x.bin", b"abc")
    src = tmp_path / "file.txt"
    src.write_text("hello")
    store.put_file("jobs/a/output/y.txt", src)
    store.put_model("jobs/a/status.json", JobStatus(job_id="a" * 32, kind="video", state="queued"))
    assert store.get_bytes("jobs/a/input/x.bin") == b"abc"
    assert store.get_file("jobs/a/output/y.txt", tmp_path / "back.txt").read_text() == "hello"
    assert store.get_model("jobs/a/status.json", JobStatus).state == "queued"
    assert store.list("jobs/a/") == [
        "jobs/a/input/x.bin",
        "jobs/a/output/y.txt",
        "jobs/a/status.json",
    ]
    newest = store.newest("jobs/a/")
    assert newest is not None and abs((now() - newest).total_seconds()) < 5
    assert store.newest("jobs/b/") is None
    store.copy("jobs/a/input/x.bin", "jobs/a/output/x.bin")
    assert store.get_bytes("jobs/a/output/x.bin") == b"abc"
    assert store.delete_prefix("jobs/a/output/") == 2
    assert not store.exists("jobs/a/output/y.txt")
    assert not (tmp_path / "store" / "jobs" / "a" / "output").exists()  # no empty folders left
    store.delete("jobs/a/output/none")  # a missing key is not an error
    with pytest.raises(ObjectNotFound):
        store.get_bytes("jobs/a/output/y.txt")
    assert store.get_model_or_none("jobs/a/none.json", JobStatus) is None


@pytest.mark.parametrize(
    "key", ["../x", "jobs/../../etc/passwd", "/abs", "a//b", "a/./b", "a\\b", "", "jobs/\x00"]
)
def test_traversal_and_odd_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError):
        check_key(key)
    with pytest.raises(StorageError):
        LocalStore(tmp_path).put_bytes(key, b"x")


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "", "x" * 101, "na me", "é"])
def test_store_names_are_validated(name: str) -> None:
    with pytest.raises(InputError, match="invalid"):
        check_store_name(name, "gallery name")


def test_job_ids_are_validated() -> None:
    assert check_job_id("0123456789abcdef0123456789abcdef")
    for bad in ("../../jobs", "0123", "Z" * 32):
        with pytest.raises(InputError):
            check_job_id(bad)


def test_progress_never_runs_backwards_while_the_last_step_cleans_up(tmp_path: Path) -> None:
    """The last step removes the chunks and parts progress is counted from before the status
    says done: once it has started, progress shows every step done, not zero."""
    from facefleet.jobs.job_store import JobStore
    from facefleet.jobs.records import new_job_id

    store = LocalStore(tmp_path)
    job = JobStore(store, new_job_id())
    store.put_model(job.keys.status, JobStatus(job_id=job.job_id, kind="video", state="running"))
    job.set_status("running", stage="render", chunks=2)
    for k in range(2):
        store.put_bytes(job.keys.chunk_result(k), b"{}")
        store.put_bytes(job.keys.part(k), b"mp4")
    assert (job.progress().done, job.progress().total) == (4, 4)
    job.finishing()
    job.cleanup()  # what finalize does before it marks the job done
    assert (job.progress().done, job.progress().total) == (4, 4)
