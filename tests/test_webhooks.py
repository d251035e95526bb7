"""Webhooks without servers: the signature, the callback URL checks, and delivery (the
Celery task run eagerly, as the in-process mode runs it) to a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facefleet.client import Client
from facefleet.core.errors import InputError
from facefleet.core.settings import Settings, get_settings
from facefleet.jobs.records import JobInput, JobKeys, JobSpec, JobStatus, new_job_id
from facefleet.jobs.storage import ObjectStore, open_store
from facefleet.jobs.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookEvent,
    backoff_s,
    check_callback_url,
    check_job_callback,
    needs_announcement,
    read_webhook_log,
    sign,
    verify,
)

SECRET = b"test-webhook-secret"


# ---- a receiver ---------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST; `answer(path, n)` gives the
    status code of the n-th request (from 1) to a path."""

    answer: Callable[[str, int], int] = lambda path, n: 200
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def wait(self, path: str, count: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.to(path)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.to(path)


@contextmanager
def serve_receiver() -> Iterator[Receiver]:
    """A Receiver listening on 127.0.0.1 (a free port) in a thread while the block runs."""
    receiver = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                receiver.requests.append(Received(self.path, dict(self.headers), body))
                n = len(receiver.to(self.path))
            code = receiver.answer(self.path, n)
            self.send_response(code)
            if 300 <= code < 400:
                self.send_header("Location", receiver.url + "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as server:
        yield server


def check_signed(request: Received, secret: bytes = SECRET) -> WebhookEvent:
    """The event of a request, after checking its signature and headers."""
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("facefleet-webhooks/")
    assert verify(secret, request.headers[SIGNATURE_HEADER], request.body)
    event = WebhookEvent.model_validate_json(request.body)
    assert request.headers[EVENT_ID_HEADER] == event.id
    return event


# ---- signature ----------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    body = b'{"type":"job.done"}'
    ts = int(time.time())
    header = sign(SECRET, ts, body)
    assert header.startswith(f"t={ts},v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, body)
    assert verify(SECRET.decode(), header, body)  # a str secret works the same
    # Tampered body, wrong secret, malformed headers.
    assert not verify(SECRET, header, body + b" ")
    assert not verify(b"another-secret", header, body)
    assert not verify(SECRET, "", body)
    assert not verify(SECRET, f"t={ts}", body)
    assert not verify(SECRET, header.split(",")[1], body)
    assert not verify(SECRET, f"t=soon,{header.split(',')[1]}", body)
    # A rotated secret: either of two v1 entries may match.
    rotated = f"{header},v1={sign(b'old', ts, body).split('v1=')[1]}"
    assert verify(SECRET, rotated, body) and verify(b"old", rotated, body)


def test_verify_refuses_outside_the_replay_window() -> None:
    body = b"{}"
    old = int(time.time()) - 301
    assert not verify(SECRET, sign(SECRET, old, body), body)
    assert verify(SECRET, sign(SECRET, old, body), body, tolerance_s=600)
    assert not verify(SECRET, sign(SECRET, int(time.time()) + 301, body), body)  # future
    assert verify(SECRET, sign(SECRET, 1000, body), body, now=1100)
    assert not verify(SECRET, sign(SECRET, 1000, body), body, tolerance_s=50, now=1100)
    # The timestamp is signed: moving it into the window breaks the signature.
    moved = sign(SECRET, old, body).replace(f"t={old}", f"t={int(time.time())}")
    assert not verify(SECRET, moved, body)


# ---- callback URLs ------------------------------------------------------------------------

API = ["https://faces.example.org", "http://127.0.0.1:8000"]


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/facefleet",
        "http://receiver.internal:9000/hook?job=1",
        "https://faces.example.org:8443/hook",  # the API's host, another port
        "http://127.0.0.1:9999/hook",  # loopback, another port
        "http://[2001:db8::1]:8080/x",
    ],
)
def test_fine_callback_urls(url: str) -> None:
    assert check_callback_url(f"  {url} ", API) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://files.example.com/x", "http"),
        ("javascript:alert(1)", "http"),
        ("file:///etc/passwd", "http"),
        ("hooks.example.com/x", "http"),
        ("http:///path-only", "no host"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https://user@hooks.example.com/", "credentials"),
        ("https://hooks.example.com/" + "a" * 2000, "2000"),
        ("https://hooks.example.com/a b", "whitespace"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "whitespace"),
        ("http://hooks.example.com:99999/", "port"),
        # The API itself: same host and port, default ports and case notwithstanding.
        ("https://faces.example.org/v1/jobs", "API itself"),
        ("https://FACES.Example.ORG:443/v1/jobs", "API itself"),
        ("https://faces.example.org./x", "API itself"),
        ("http://127.0.0.1:8000/v1/jobs", "API itself"),
        ("http://localhost:8000/v1/jobs", "API itself"),
        ("http://[::1]:8000/", "API itself"),
        ("http://127.1:8000/", "API itself"),
        ("http://2130706433:8000/", "API itself"),
        ("http://0x7f.0.0.1:8000/", "API itself"),
        ("http://[::ffff:127.0.0.1]:8000/", "API itself"),
        ("http://0.0.0.0:8000/", "API itself"),
    ],
)
def test_refused_callback_urls(url: str, why: str) -> None:
    with pytest.raises(InputError, match=why):
        check_callback_url(url, API)


def test_api_bound_to_every_interface_is_refused_on_loopback() -> None:
    settings = Settings(api_host="0.0.0.0", api_port=8000, webhook_secret="s")
    with pytest.raises(InputError, match="API itself"):
        check_job_callback(settings, "http://127.0.0.1:8000/hook")
    assert check_job_callback(settings, "http://127.0.0.1:8001/hook")


def test_callback_urls_need_a_secret() -> None:
    with pytest.raises(InputError, match="FACEFLEET_WEBHOOK_SECRET"):
        check_job_callback(Settings(webhook_secret=None), "https://hooks.example.com/")
    public = Settings(webhook_secret="s", api_public_url="https://faces.example.org")
    with pytest.raises(InputError, match="API itself"):
        check_job_callback(public, "https://faces.example.org/hook")
    with pytest.raises(InputError, match="API itself"):  # where it listens, too
        check_job_callback(public, "http://127.0.0.1:8000/hook")


def test_client_refuses_a_bad_callback_before_upload(tmp_path: Path) -> None:
    image = tmp_path / "x.jpg"
    image.write_bytes(b"not looked at")
    client = Client(get_settings(store_dir=tmp_path / "store", webhook_secret=None))
    with pytest.raises(InputError, match="FACEFLEET_WEBHOOK_SECRET"):
        client.submit_images([image], gallery=None, callback_url="https://hooks.example.com/")
    client = Client(get_settings(store_dir=tmp_path / "store", webhook_secret="s"))
    with pytest.raises(InputError, match="http"):
        client.submit_images([image], gallery=None, callback_url="ftp://hooks.example.com/")
    with pytest.raises(InputError, match="API itself"):
        client.submit_images([image], gallery=None, callback_url="http://localhost:8000/x")
    assert not client.store.list("jobs/")  # nothing was uploaded


def test_backoff_doubles_up_to_ten_minutes() -> None:
    settings = Settings(webhook_backoff_s=2.0)
    assert [backoff_s(settings, n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_s(settings, 12) == 600.0 and backoff_s(settings, 1000) == 600.0


# ---- delivery, in-process -----------------------------------------------------------------


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "store_dir": tmp_path / "store",
        "webhook_secret": SECRET.decode(),
        "webhook_timeout_s": 5.0,
        **overrides,
    }
    return get_settings(**values)


def _ended_job(store: ObjectStore, callback_url: str | None, state: str = "done") -> str:
    """A job's records as its last step leaves them."""
    job_id = new_job_id()
    keys = JobKeys(job_id)
    spec = JobSpec(
        job_id=job_id,
        kind="images",
        inputs=[JobInput(key=keys.input("a.jpg"), name="a", source="a.jpg", size=1)],
        callback_url=callback_url,
    )
    store.put_model(keys.spec, spec)
    status = JobStatus(
        job_id=job_id,
        kind="images",
        state=state,  # type: ignore[arg-type]
        stage=state,
        message="1 image(s) processed",
        outputs=[keys.output("a.jpg"), keys.output("a.json")],
        summary={"a": ["Eileen_Collins"]},
    )
    store.put_model(keys.status, status)
    return job_id


def _deliver(settings: Settings, store: ObjectStore, job_id: str) -> None:
    """What a job's last step does in the in-process mode: announce its end (the task runs
    eagerly, here and now)."""
    from facefleet.tasks import runtime
    from facefleet.tasks.webhooks import announce_end

    runtime.configure(settings, store)
    announce_end(settings, store, job_id)


def test_in_process_delivery_retries_at_once(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, webhook_backoff_s=60.0)  # would be a minute between
    store = open_store(settings)
    receiver.answer = lambda path, n: 500 if n == 1 else 204
    job_id = _ended_job(store, receiver.url + "/hook")
    assert needs_announcement(store, job_id)
    started = time.monotonic()
    _deliver(settings, store, job_id)
    assert time.monotonic() - started < 10  # no backoff waits in-process
    first, second = receiver.to("/hook")
    event = check_signed(second)
    assert first.body == second.body  # one event, signed again each attempt
    assert event.type == "job.done" and event.job_id == job_id and event.state == "done"
    assert event.summary == {"a": ["Eileen_Collins"]}
    assert second.headers["Facefleet-Delivery-Attempt"] == "2"
    log = read_webhook_log(store, job_id)
    assert log is not None and log.delivered and not log.gave_up
    assert [d.status_code for d in log.deliveries] == [500, 204]
    assert [d.ok for d in log.deliveries] == [False, True]
    assert log.deliveries[0].error == "HTTP 500" and log.event == event
    assert not needs_announcement(store, job_id)
    # Idempotent: announced again, nothing is sent.
    _deliver(settings, store, job_id)
    assert len(receiver.to("/hook")) == 2


def test_in_process_delivery_gives_up(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, webhook_backoff_s=60.0, webhook_max_attempts=8)
    store = open_store(settings)
    receiver.answer = lambda path, n: 302  # a redirect is not followed
    job_id = _ended_job(store, receiver.url + "/moved", state="failed")
    _deliver(settings, store, job_id)
    assert not receiver.to("/elsewhere")
    sent = receiver.to("/moved")
    assert len(sent) == 3  # IN_PROCESS_ATTEMPTS, not webhook_max_attempts
    assert check_signed(sent[0]).type == "job.failed"
    log = read_webhook_log(store, job_id)
    assert log is not None and log.gave_up and not log.delivered
    assert [d.status_code for d in log.deliveries] == [302, 302, 302]
    assert "redirects are not followed" in (log.deliveries[0].error or "")
    assert not needs_announcement(store, job_id)


def test_unreachable_receiver_and_fewer_attempts(tmp_path: Path) -> None:
    settings = _settings(tmp_path, webhook_max_attempts=2, webhook_timeout_s=2.0)
    store = open_store(settings)
    with serve_receiver() as gone:
        url = gone.url + "/hook"
    job_id = _ended_job(store, url, state="cancelled")  # the port is closed now
    _deliver(settings, store, job_id)
    log = read_webhook_log(store, job_id)
    assert log is not None and log.gave_up and len(log.deliveries) == 2
    assert all(d.status_code is None and d.error for d in log.deliveries)
    assert log.event.type == "job.cancelled"


def test_nothing_is_sent_without_a_callback_or_before_the_end(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path)
    store = open_store(settings)
    plain = _ended_job(store, None)
    running = _ended_job(store, receiver.url + "/hook", state="running")
    for job_id in (plain, running):
        assert not needs_announcement(store, job_id)
        _deliver(settings, store, job_id)
        assert read_webhook_log(store, job_id) is None
    assert not receiver.requests


def test_a_worker_without_the_secret_records_why(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path, webhook_secret=None, webhook_max_attempts=1)
    store = open_store(settings)
    job_id = _ended_job(store, receiver.url + "/hook")
    _deliver(settings, store, job_id)
    log = read_webhook_log(store, job_id)
    assert log is not None and log.gave_up
    assert "FACEFLEET_WEBHOOK_SECRET" in (log.deliveries[0].error or "")
    assert not receiver.requests  # never sent unsigned


def test_in_process_image_job_posts_its_end(
    tmp_path: Path, receiver: Receiver, astronaut_bgr
) -> None:
    """The real in-process mode: an image job with a callback URL, run here, announces
    job.done from its last step before submit_images returns."""
    import cv2

    image = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(image), astronaut_bgr)
    client = Client(_settings(tmp_path))
    job = client.submit_images([image], gallery=None, callback_url=receiver.url + "/end")
    assert job.status().state == "done"
    assert client.store.get_model(JobKeys(job.id).spec, JobSpec).callback_url == (
        receiver.url + "/end"
    )
    (request,) = receiver.to("/end")
    event = check_signed(request)
    assert event.type == "job.done" and event.job_id == job.id
    assert event.outputs == job.status().outputs
    log = read_webhook_log(client.store, job.id)
    assert log is not None and log.delivered and len(log.deliveries) == 1
    assert json.loads(request.body)["summary"] == {"astronaut": []}
