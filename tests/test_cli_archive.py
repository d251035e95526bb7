"""The archive's commands (`search`, `people`, `track`, `jobs`, `gallery remove --forget`)
and their SDK calls, without any server or database: argument parsing, the checks made
before anything is uploaded or sent, and how reports are printed. The archive flow end to
end is tests/test_archive*.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from facefleet.archive.records import (
    Appearance,
    ClusterReport,
    DeleteReport,
    ForgetReport,
    JobEntry,
    PersonCluster,
    SearchReport,
)
from facefleet.cli import main
from facefleet.client import Client, _result
from facefleet.cluster_cli import parse_track_ref
from facefleet.core.errors import FacefleetError, InputError
from facefleet.core.settings import get_settings
from facefleet.jobs.records import GalleryPointer, gallery_pointer_key

JOB = "0123456789abcdef0123456789abcdef"
OTHER_JOB = "fedcba9876543210fedcba9876543210"
WHEN = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The in-process mode on an empty folder store; no task may run (there is no
    database here): each of these cases must be refused before one is sent."""
    for name in ("FACEFLEET_BROKER_URL", "FACEFLEET_ARCHIVE_URL", "FACEFLEET_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    store = tmp_path / "store"
    monkeypatch.setenv("FACEFLEET_STORE_DIR", str(store))
    monkeypatch.setenv("FACEFLEET_ARCHIVE_DIR", str(tmp_path / "archive"))

    def no_task(self: Client, name: str, args: list[Any], task_id: str | None = None) -> Any:
        raise AssertionError(f"task {name} sent for input that should have been refused")

    monkeypatch.setattr(Client, "_run", no_task)
    return store


@pytest.fixture
def client(store_dir: Path) -> Client:
    return Client(get_settings(store_dir=store_dir))


def _enrolled(client: Client, *people: str, gallery: str = "default") -> None:
    """A gallery pointer naming `people` (the checks read only the pointer)."""
    pointer = GalleryPointer(version="v1", people=list(people), faces=len(people), model_id="m")
    client.store.put_model(gallery_pointer_key(gallery), pointer)


def _one_error(capsys: pytest.CaptureFixture, needle: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert needle in lines[0], err
    return lines[0]


# ---- --help -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["search"], ["--person", "--photo", "--gallery", "--json", "exit status"]),
        (["people"], ["list", "cluster", "name", "split", "merge", "FACEFLEET_ARCHIVE_URL"]),
        (["people", "list"], ["--json"]),
        (["people", "cluster"], ["--incremental", "--json"]),
        (["people", "name"], ["CLUSTER", "NAME", "--gallery", "--version", "--json"]),
        (["people", "split"], ["CLUSTER", "JOB:TRACK"]),
        (["people", "merge"], ["INTO", "OTHER"]),
        (["track"], ["JOB", "TRACK", "--is", "--not", "--gallery", "--json"]),
        (["jobs"], ["list", "delete"]),
        (["jobs", "list"], ["--json"]),
        (["jobs", "delete"], ["JOB"]),
        (["gallery", "remove"], ["--forget", "--gallery"]),
    ],
)
def test_help_of_each_command(
    argv: list[str], mentions: list[str], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for word in mentions:
        assert word in out, (argv, word)


def test_the_commands_are_listed_in_the_top_level_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("search", "people", "track", "jobs"):
        assert command in out


# ---- usage errors (argparse: exit 2) ------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["track", JOB, "3"], "one of the arguments --is --not is required"),
        (["track", JOB, "3", "--is", "A", "--not", "B"], "not allowed with argument"),
        (["search"], "one of the arguments --person --photo is required"),
        (["search", "--person", "A", "--photo", "a.jpg"], "not allowed with argument"),
        (["people"], "required"),
        (["people", "split", "3"], "JOB:TRACK"),
        (["people", "merge", "3"], "OTHER"),
        (["jobs", "delete"], "JOB"),
    ],
)
def test_usage_errors(
    argv: list[str], needle: str, store_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


# ---- user mistakes: one line, exit 1, nothing sent ----------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        # JOB:TRACK as typed
        (["people", "split", "3", "nocolon"], "expected JOB:TRACK"),
        (["people", "split", "3", f"{JOB}:"], "expected JOB:TRACK"),
        (["people", "split", "3", ":12"], "expected JOB:TRACK"),
        (["people", "split", "3", f"{JOB}:x"], "invalid track number 'x'"),
        (["people", "split", "3", f"{JOB}:-1"], "invalid track number '-1'"),
        (["people", "split", "3", "notajob:12"], "invalid job id 'notajob'"),
        (["people", "split", "3", f"{JOB}:1", "bad"], "expected JOB:TRACK"),
        # cluster ids
        (["people", "split", "x", f"{JOB}:1"], "invalid cluster id 'x'"),
        (["people", "name", "seven", "Jane_Doe"], "invalid cluster id 'seven'"),
        (["people", "name", "7", "Jane_Doe", "--version", "new"], "invalid cluster version"),
        (["people", "merge", "7", "7"], "cannot merge cluster 7 into itself"),
        (["people", "merge", "7", "8", "x"], "invalid cluster id 'x'"),
        # names
        (["people", "name", "7", "../x"], "invalid person name '../x'"),
        (["people", "name", "7", "Jane_Doe", "--gallery", "../g"], "invalid gallery name"),
        (["track", JOB, "3", "--is", "a/b"], "invalid person name 'a/b'"),
        (["track", JOB, "3", "--not", " padded"], "invalid person name ' padded'"),
        (["track", JOB, "3", "--is", "Jane_Doe", "--gallery", "a/b"], "invalid gallery name"),
        (["search", "--person", "../x"], "invalid person name '../x'"),
        (["search", "--person", "Jane_Doe", "--gallery", "../g"], "invalid gallery name"),
        (["gallery", "remove", "../x", "--forget"], "invalid person name '../x'"),
        # job and track ids
        (["track", "notajob", "3", "--is", "Jane_Doe"], "invalid job id 'notajob'"),
        (["track", JOB, "three", "--is", "Jane_Doe"], "invalid track number 'three'"),
        (["jobs", "delete", "notajob"], "invalid job id 'notajob'"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_1(
    argv: list[str], needle: str, store_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(argv) == 1
    _one_error(capsys, needle)


def test_search_photo_must_be_an_existing_image(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "folder.jpg").mkdir()
    cases = [
        ("missing.jpg", "missing.jpg: no such file"),
        ("empty.jpg", "empty.jpg: empty file"),
        ("notes.txt", "notes.txt: not an image file name"),
        ("folder.jpg", "folder.jpg: not a file"),
    ]
    for name, needle in cases:
        assert main(["search", "--photo", str(tmp_path / name)]) == 1, name
        _one_error(capsys, needle)
    assert not (store_dir / "uploads").exists()  # nothing was uploaded


def test_search_for_a_person_not_enrolled(client: Client, capsys: pytest.CaptureFixture) -> None:
    _enrolled(client, "Barack_Obama")
    assert main(["search", "--person", "Jane_Doe"]) == 1
    _one_error(capsys, "'Jane_Doe' is not enrolled in gallery 'default'")
    # A gallery that does not exist is a setup error, as for `gallery remove`.
    assert main(["search", "--person", "Barack_Obama", "--gallery", "other"]) == 2
    _one_error(capsys, "no gallery named 'other'")


def test_jobs_delete_reports_each_refused_job(
    store_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["jobs", "delete", "bad-1", "bad-2"]) == 1
    err = capsys.readouterr().err
    assert err.count("error: invalid job id") == 2 and "Traceback" not in err


# ---- the SDK's checks ---------------------------------------------------------------------


def test_sdk_refuses_before_sending(client: Client, tmp_path: Path) -> None:
    photo = tmp_path / "face.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 a jpeg, as far as the name goes")
    with pytest.raises(InputError, match="exactly one"):
        client.search()
    with pytest.raises(InputError, match="exactly one"):
        client.search(person="Jane_Doe", photo=photo)
    with pytest.raises(InputError, match="exactly one"):
        client.correct_track(JOB, 1)
    with pytest.raises(InputError, match="exactly one"):
        client.correct_track(JOB, 1, is_name="A", not_name="B")
    with pytest.raises(InputError, match="invalid track id"):
        client.correct_track(JOB, -1, is_name="A")
    with pytest.raises(InputError, match="invalid track id"):
        client.correct_track(JOB, True, is_name="A")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="invalid job id"):
        client.correct_track("x", 1, not_name="A")
    with pytest.raises(InputError, match="invalid cluster id"):
        client.people.name("7", "Jane_Doe")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="invalid cluster version"):
        client.people.name(7, "Jane_Doe", version=-2)
    with pytest.raises(InputError, match="no tracks"):
        client.people.split(7, [])
    with pytest.raises(InputError, match="invalid track"):
        client.people.split(7, [(JOB,)])  # type: ignore[list-item]
    with pytest.raises(InputError, match="invalid track"):
        client.people.split(7, [f"{JOB}:1"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="invalid job id"):
        client.people.split(7, [("x", 1)])
    with pytest.raises(InputError, match="no clusters"):
        client.people.merge(7, [])
    with pytest.raises(InputError, match="into itself"):
        client.people.merge(7, [8, 7])
    with pytest.raises(InputError, match="invalid person name"):
        client.forget("..")
    with pytest.raises(InputError, match="invalid job id"):
        client.delete_job("../../x")
    assert not client.store.list("")  # nothing was written


def test_track_refs_parse() -> None:
    assert parse_track_ref(f"{JOB}:12") == (JOB, 12)
    assert parse_track_ref(f"{JOB}:0") == (JOB, 0)
    with pytest.raises(InputError, match="expected JOB:TRACK"):
        parse_track_ref("12")


class _Failed:
    """A task result whose `get` raises `exc`, like a Celery AsyncResult of a failed task."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def get(self, timeout: float, propagate: bool) -> Any:
        raise self.exc


def test_worker_refusals_are_input_errors() -> None:
    """Celery rebuilds a worker's exception whose module the client never imported as a
    new class of the same name: an unknown cluster still reads as the user's mistake."""
    rebuilt = type("ArchiveConflict", (Exception,), {})
    with pytest.raises(InputError, match="there is no unknown-people cluster 9"):
        _result(_Failed(rebuilt("there is no unknown-people cluster 9")), 1)
    with pytest.raises(InputError, match="no indexed track"):
        _result(_Failed(InputError("job x has no indexed track 3")), 1)
    with pytest.raises(FacefleetError, match="cannot be reached") as caught:
        _result(_Failed(type("ArchiveUnavailable", (Exception,), {})("cannot be reached")), 1)
    assert not isinstance(caught.value, InputError)


# ---- what the commands print (SDK answers stubbed) ----------------------------------------


def _stub(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, value: Any) -> list:
    calls: list = []

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return value

    monkeypatch.setattr(owner, name, method)
    return calls


def test_search_prints_a_table_with_whole_urls(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    url = "https://s3.example.com/bucket/archive/" + JOB + "/3-0.jpg?X-Amz-Signature=" + "f" * 64
    report = SearchReport(
        query="Jane_Doe in gallery default",
        extractor="dlib-resnet-1234",
        threshold=0.91,
        appearances=[
            Appearance(
                job_id=JOB, source="talk [1].mp4", track_id=3, start_s=12.25, end_s=30.5,
                similarity=0.9634, identity=None, thumbnail="archive/x.jpg", thumbnail_url=url,
            )
        ],
        note="2 faces in the photo: the largest was used",
    )  # fmt: skip
    calls = _stub(monkeypatch, Client, "search", report)
    assert main(["search", "--person", "Jane_Doe", "--gallery", "g"]) == 0
    assert calls == [((), {"person": "Jane_Doe", "gallery": "g"})]
    captured = capsys.readouterr()
    assert url in captured.out  # never cut to the terminal's width
    row = next(line for line in captured.out.splitlines() if JOB in line)
    assert "talk [1].mp4" in row and "12.2-30.5" in row and "0.963" in row
    assert "unknown" in row
    assert "note: 2 faces in the photo" in captured.err and "0.910" in captured.err

    assert main(["search", "--person", "Jane_Doe", "--json"]) == 0
    assert SearchReport.model_validate_json(capsys.readouterr().out) == report

    empty = report.model_copy(update={"appearances": [], "note": None})
    _stub(monkeypatch, Client, "search", empty)
    assert main(["search", "--photo", "face.jpg"]) == 0
    captured = capsys.readouterr()
    assert "no appearance of Jane_Doe in gallery default" in captured.err
    assert not captured.out.strip()


def test_people_list_and_cluster(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    clusters = [
        PersonCluster(
            cluster_id=7, version=3, tracks=12, jobs=4, first_seen=WHEN, last_seen=WHEN,
            pinned=True, thumbnail="archive/a.jpg", thumbnail_url="file:///s/archive/a.jpg",
        )
    ]  # fmt: skip
    from facefleet.client import PeopleClient

    _stub(monkeypatch, PeopleClient, "list", clusters)
    assert main(["people", "list"]) == 0
    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if "file:///s/archive/a.jpg" in line)
    assert row.split()[:4] == ["7*", "3", "12", "4"]
    assert "pinned" in captured.err
    assert main(["people", "list", "--json"]) == 0
    assert [PersonCluster.model_validate(c) for c in json.loads(capsys.readouterr().out)] == (
        clusters
    )
    _stub(monkeypatch, PeopleClient, "list", [])
    assert main(["people", "list"]) == 0
    assert "no clusters" in capsys.readouterr().err

    calls = _stub(
        monkeypatch, PeopleClient, "cluster", ClusterReport(tracks=5, clustered=4, clusters=2)
    )
    assert main(["people", "cluster", "--incremental"]) == 0
    assert calls == [((), {"full": False})]
    assert "5 unknown track(s): 4 in 2 cluster(s)" in capsys.readouterr().err

    calls = _stub(monkeypatch, PeopleClient, "split", 8)
    assert main(["people", "split", "7", f"{JOB}:1", f"{OTHER_JOB}:22"]) == 0
    assert calls == [((7, [(JOB, 1), (OTHER_JOB, 22)]), {})]
    assert capsys.readouterr().out.strip() == "8"

    calls = _stub(monkeypatch, PeopleClient, "merge", 5)
    assert main(["people", "merge", "7", "8", "9"]) == 0
    assert calls == [((7, [8, 9]), {})]
    assert "5 track(s) moved into cluster 7" in capsys.readouterr().err


def test_track_correction_arguments(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from facefleet.archive.records import CorrectionReport

    report = CorrectionReport(job_id=JOB, track_id=3, before=None, after="Jane_Doe",
                              gallery="g", enrolled=5, results=1)  # fmt: skip
    calls = _stub(monkeypatch, Client, "correct_track", report)
    assert main(["track", JOB, "3", "--is", "Jane_Doe", "--gallery", "g"]) == 0
    assert calls == [((JOB, 3), {"is_name": "Jane_Doe", "not_name": None, "gallery": "g"})]
    assert "unknown -> Jane_Doe" in capsys.readouterr().err
    assert main(["track", JOB, "3", "--not", "Jane_Doe", "--json"]) == 0
    assert calls[-1] == ((JOB, 3), {"is_name": None, "not_name": "Jane_Doe", "gallery": "default"})
    assert CorrectionReport.model_validate_json(capsys.readouterr().out) == report


def test_jobs_list_and_delete(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    entries = [
        JobEntry(job_id=JOB, kind="video", state="done", created=WHEN, updated=WHEN,
                 sources=["talk.mp4"], tracks=17),
        JobEntry(job_id=OTHER_JOB, kind="images", state="failed", created=WHEN, updated=WHEN,
                 sources=["a.jpg", "b.jpg"]),
    ]  # fmt: skip
    _stub(monkeypatch, Client, "jobs", entries)
    assert main(["jobs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(JOB in line and "17" in line and "talk.mp4" in line for line in lines)
    assert any(OTHER_JOB in line and "a.jpg, b.jpg" in line for line in lines)
    assert main(["jobs", "list", "--json"]) == 0
    assert [JobEntry.model_validate(e) for e in json.loads(capsys.readouterr().out)] == entries

    def delete(self: Client, job_id: str) -> DeleteReport:
        if job_id == OTHER_JOB:
            raise InputError(f"job {job_id} is still running: cancel it first")
        return DeleteReport(job_id=job_id, objects=40, tracks=17)

    monkeypatch.setattr(Client, "delete_job", delete)
    assert main(["jobs", "delete", OTHER_JOB, JOB]) == 1  # the second is still deleted
    err = capsys.readouterr().err
    assert "still running" in err and f"job {JOB} deleted: 40 object(s)" in err


def test_gallery_remove_forget(
    client: Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from facefleet.client import GalleryClient
    from facefleet.jobs.records import RemoveReport

    _enrolled(client, "Jane_Doe")
    removed = _stub(
        monkeypatch,
        GalleryClient,
        "remove",
        RemoveReport(gallery="default", person="Jane_Doe", removed=3, people=[], faces=0),
    )
    forget = ForgetReport(person="Jane_Doe", tracks=4, labelled=10, results=2)
    forgotten = _stub(monkeypatch, Client, "forget", forget)
    assert main(["gallery", "remove", "Jane_Doe", "--forget"]) == 0
    assert len(removed) == 1 and len(forgotten) == 1
    err = capsys.readouterr().err
    assert "3 face(s) removed from default" in err
    assert "name removed from 4 track(s) and 2 result file(s); 10 labelled" in err

    # Not in the gallery: still forgotten elsewhere; found nowhere: a mistake.
    assert main(["gallery", "remove", "Someone_Else", "--forget"]) == 0
    assert len(removed) == 1 and "was not enrolled" in capsys.readouterr().err
    _stub(monkeypatch, Client, "forget", ForgetReport(person="X", tracks=0, labelled=0, results=0))
    assert main(["gallery", "remove", "Someone_Else", "--forget"]) == 1
    _one_error(capsys, "not in gallery default nor named in the archive")
