"""Webhooks: a job (or an API key) may carry a callback URL; when the job ends (done, failed
or cancelled) one signed JSON event is POSTed there, retried with backoff until the
receiver answers 2xx, and each delivery attempt is recorded in `jobs/<id>/webhook.json`.

The records, the signature and the URL checks live here, free of Celery and httpx: the
client SDK (and a receiver written against it) imports this module. The delivery itself is
the Celery task `facefleet.webhook_deliver` (facefleet.tasks.webhooks). A job whose end
could not be announced (the broker was down as it ended) is announced again by beat's
`facefleet.announce_lost` (facefleet.tasks.watchdog), for a day after its end.

The signature, in the header `Facefleet-Signature`:

    t=<unix seconds>,v1=<hex HMAC-SHA256(secret, b"<t>." + body)>

over the exact bytes of the request body. A receiver checks it with `verify`, which also
refuses a timestamp outside the replay window (default 5 minutes either way). Every attempt
is signed afresh (a new `t`), the body and `Facefleet-Event-Id` stay the same: receivers
deduplicate on the event id (delivery is at least once).

    from facefleet.jobs.webhooks import SIGNATURE_HEADER, WebhookEvent, verify

    def handle(headers, body: bytes) -> int:
        if not verify(SECRET, headers.get(SIGNATURE_HEADER, ""), body):
            return 400
        event = WebhookEvent.model_validate_json(body)
        ...  # event.type: "job.done" | "job.failed" | "job.cancelled"
        return 200
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import socket
import time
import uuid
from datetime import datetime
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, Field

from facefleet.core.errors import InputError
from facefleet.core.settings import Settings
from facefleet.jobs.job_store import job_activity
from facefleet.jobs.records import JobKeys, JobKind, JobSpec, JobState, JobStatus
from facefleet.jobs.storage import ObjectNotFound, ObjectStore

EventType = Literal["job.done", "job.failed", "job.cancelled"]

SIGNATURE_HEADER = "Facefleet-Signature"
EVENT_ID_HEADER = "Facefleet-Event-Id"
ATTEMPT_HEADER = "Facefleet-Delivery-Attempt"
MAX_URL_LENGTH = 2000
MAX_BACKOFF_S = 600.0

_EVENT_TYPES: dict[str, EventType] = {
    "done": "job.done",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
}
# Event ids are derived from the job: copies of the delivery task that race before the
# log exists still send one id, which is what receivers deduplicate on.
_EVENT_NAMESPACE = uuid.UUID("6f1f0c3e-2b7a-4f51-9d0e-4f6a1c2b9e17")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_WILDCARDS = frozenset({"0.0.0.0", "::"})
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}")


class WebhookEvent(BaseModel):
    """What a receiver gets: the job's final status, in short."""

    id: str = Field(description="Event id, the same in every delivery attempt")
    type: EventType
    created: datetime = Field(description="When the job ended")
    job_id: str
    kind: JobKind
    state: JobState
    message: str | None = None
    outputs: list[str] = Field(default_factory=list, description="Output object keys")
    errors: list[str] = Field(default_factory=list, description="Inputs that failed (images)")
    summary: dict[str, list[str]] = Field(
        default_factory=dict, description="Per output name: the identities found"
    )


class WebhookDelivery(BaseModel):
    """One attempt to deliver the event."""

    attempt: int = Field(ge=1)
    at: datetime
    url: str
    status_code: int | None = Field(default=None, description="The receiver's answer, if any")
    error: str | None = Field(default=None, description="Why the attempt got no 2xx")
    ok: bool
    duration_ms: float


class WebhookLog(BaseModel):
    """`jobs/<id>/webhook.json`: the job's event and every attempt to deliver it."""

    event: WebhookEvent
    url: str
    deliveries: list[WebhookDelivery] = Field(default_factory=list)
    delivered: bool = False
    gave_up: bool = False
    next_attempt: datetime | None = Field(
        default=None, description="When the next attempt is due (a retry is scheduled)"
    )


# ---- signature --------------------------------------------------------------------------


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `Facefleet-Signature` header value for `body` sent at `timestamp` (unix s)."""
    return f"t={int(timestamp)},v1={_mac(secret, int(timestamp), body)}"


def verify(
    secret: bytes | str,
    header: str,
    body: bytes,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """True when `header` (the `Facefleet-Signature` value) signs `body` with `secret` and
    its timestamp lies within `tolerance_s` of `now` (default: this machine's clock).

    For receivers: pass the raw request body, before any JSON parsing. Several `v1=`
    entries are accepted (any one matching), so a secret can be rotated by signing with
    both; the comparison is constant-time. A false result means: answer 4xx, ignore it."""
    if isinstance(secret, str):
        secret = secret.encode()
    timestamp: int | None = None
    signatures: list[str] = []
    for item in (header or "").split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, timestamp, body)
    # Every candidate is compared (no early exit) so timing says nothing about which.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched


# ---- callback URLs ----------------------------------------------------------------------


def _refuse(url: str, reason: str) -> InputError:
    shown = url if len(url) <= 100 else url[:100] + "..."
    return InputError(f"callback URL {shown!r} refused: {reason}")


def _normal_host(host: str) -> str:
    """One spelling per address: 127.1, 0x7f.0.0.1 and 2130706433 are 127.0.0.1 to the
    resolver, ::ffff:127.0.0.1 is 127.0.0.1, so they are compared as such."""
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if _NUMERIC_HOST.fullmatch(host):
            try:
                return socket.inet_ntoa(socket.inet_aton(host))
            except OSError:
                return host
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _host_port(parts: SplitResult) -> tuple[str, int]:
    host = _normal_host(parts.hostname or "")
    port = parts.port  # ValueError for a port that is not a number in 0..65535
    return host, port if port is not None else _DEFAULT_PORTS.get(parts.scheme.lower(), 0)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_server(host: str, port: int, base_host: str, base_port: int) -> bool:
    if port != base_port:
        return False
    if host == base_host:
        return True
    # An API bound to every interface (0.0.0.0) or to loopback answers on any loopback
    # name: 127.0.0.1, localhost and ::1 are the API as much as the name it was given.
    return (base_host in _WILDCARDS or _is_loopback(base_host)) and (
        host in _WILDCARDS or _is_loopback(host)
    )


def check_callback_url(url: str, forbidden: list[str]) -> str:
    """`url`, stripped, when it can receive webhooks: http(s), a host, no user:password,
    no whitespace or control characters, at most 2000 characters, and not the API itself
    (the same host and port, default ports included, as any base URL in `forbidden`: an
    event posted to the API could act on it). Raises InputError saying why otherwise."""
    if not isinstance(url, str):
        raise InputError(f"callback URL must be a string, not {type(url).__name__}")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(url, f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise _refuse(url, "it contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        raise _refuse(url, "only http:// and https:// URLs receive webhooks")
    if "@" in parts.netloc:
        raise _refuse(url, "credentials in the URL are not accepted")
    try:
        host, port = _host_port(parts)
    except ValueError:
        raise _refuse(url, "invalid port") from None
    if not host:
        raise _refuse(url, "no host")
    for base in forbidden:
        base_parts = urlsplit(base if "://" in base else f"http://{base}")
        try:
            base_host, base_port = _host_port(base_parts)
        except ValueError:
            continue  # not a URL the API could be reached at
        if _same_server(host, port, base_host, base_port):
            raise _refuse(url, "it points at the facefleet API itself")
    return url


def api_base_urls(settings: Settings) -> list[str]:
    """Where the API can be reached: its public URL (when set) and where it listens."""
    host = settings.api_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    urls = [f"http://{host}:{settings.api_port}"]
    if settings.api_public_url:
        urls.insert(0, settings.api_public_url)
    return urls


def check_job_callback(settings: Settings, url: str) -> str:
    """A job's callback URL, checked (see check_callback_url); refused when this
    deployment has no signing secret (receivers could not tell real events from forged)."""
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise InputError(
            "callback URLs need a signing secret: set FACEFLEET_WEBHOOK_SECRET (the same "
            "value on the workers and wherever jobs are submitted)"
        )
    return check_callback_url(url, api_base_urls(settings))


# ---- the event and its log --------------------------------------------------------------


def event_for(status: JobStatus) -> WebhookEvent:
    """The event of a finished job's final status."""
    kind = _EVENT_TYPES.get(status.state)
    if kind is None:
        raise ValueError(f"job {status.job_id} is {status.state}: no event yet")
    return WebhookEvent(
        id="evt_" + uuid.uuid5(_EVENT_NAMESPACE, f"{status.job_id}:{kind}").hex,
        type=kind,
        created=status.updated,
        job_id=status.job_id,
        kind=status.kind,
        state=status.state,
        message=status.message,
        outputs=status.outputs,
        errors=status.errors,
        summary=status.summary,
    )


def backoff_s(settings: Settings, attempts_made: int) -> float:
    """The wait after the `attempts_made`-th failed attempt: backoff * 2**(n-1), capped."""
    exponent = min(max(attempts_made - 1, 0), 30)  # 2**30 s is past any cap already
    return min(settings.webhook_backoff_s * 2**exponent, MAX_BACKOFF_S)


def read_webhook_log(store: ObjectStore, job_id: str) -> WebhookLog | None:
    """The job's webhook log (`GET /v1/jobs/{id}/webhooks`), or None: no callback URL, or
    the job has not ended yet."""
    return store.get_model_or_none(JobKeys(job_id).webhook, WebhookLog)


def write_webhook_log(store: ObjectStore, job_id: str, log: WebhookLog) -> None:
    store.put_model(JobKeys(job_id).webhook, log)


def needs_announcement(store: ObjectStore, job_id: str) -> bool:
    """Should the delivery task be sent: the job has a callback URL, it has ended, and its
    event is neither delivered nor given up. Cheap: reads the status, then the spec."""
    keys = JobKeys(job_id)
    status = store.get_model_or_none(keys.status, JobStatus)
    if status is None or not status.finished:
        return False
    try:
        spec = store.get_model(keys.spec, JobSpec)
    except ObjectNotFound:
        return False
    if not spec.callback_url:
        return False
    log = read_webhook_log(store, job_id)
    return log is None or not (log.delivered or log.gave_up)


def unannounced_since(store: ObjectStore, since: datetime) -> list[str]:
    """Jobs that ended after `since` and still need their event announced (see
    needs_announcement): what a job's end leaves when its delivery task could not be sent
    (the broker was down). One listing of jobs/; statuses are read only of the jobs that
    wrote something since then."""
    due = []
    for job_id, last in sorted(job_activity(store).items()):
        if last < since:
            continue  # it wrote nothing since, so it cannot have ended since
        status = store.get_model_or_none(JobKeys(job_id).status, JobStatus)
        if status is None or not status.finished or status.updated < since:
            continue
        if needs_announcement(store, job_id):
            due.append(job_id)
    return due


def delivery_task_id(job_id: str) -> str:
    return f"webhook-{job_id}"


DELIVER_TASK = "facefleet.webhook_deliver"

__all__ = [
    "ATTEMPT_HEADER",
    "DELIVER_TASK",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookLog",
    "api_base_urls",
    "backoff_s",
    "check_callback_url",
    "check_job_callback",
    "delivery_task_id",
    "event_for",
    "needs_announcement",
    "read_webhook_log",
    "sign",
    "unannounced_since",
    "verify",
    "write_webhook_log",
]
