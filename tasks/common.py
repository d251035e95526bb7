"""The base of every job task: transient storage errors are retried with backoff, any
other failure marks the job failed with a readable message, and a task that keeps killing
its worker (a poison input) fails its job instead of being redelivered forever."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from celery import Task, chord
from celery.exceptions import Ignore

from facefleet.core.errors import FacefleetError
from facefleet.jobs.job_store import JobStore
from facefleet.jobs.records import ChunkPlan, JobKeys, JobPlan, check_job_id
from facefleet.jobs.storage import ObjectNotFound, StorageUnavailable
from facefleet.tasks.runtime import get_runtime
from facefleet.tasks.webhooks import announce_end

log = logging.getLogger("facefleet.tasks")

TRANSIENT: tuple[type[BaseException], ...] = (StorageUnavailable, ConnectionError, TimeoutError)


def describe(exc: BaseException) -> str:
    if isinstance(exc, FacefleetError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


class JobTask(Task):
    """Tasks whose first argument is a job id."""

    abstract = True
    autoretry_for = TRANSIENT
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        return get_runtime().settings.task_max_retries

    def jobs(self, job_id: str) -> JobStore:
        return JobStore(get_runtime().store, check_job_id(job_id))

    def open_step(
        self, job_id: str, output: Callable[[JobKeys], str] | None = None
    ) -> JobStore | None:
        """The job, or None when this step has nothing to do: the job has ended (or was
        cancelled), or the step's `output` key exists from an earlier delivery."""
        job = self.jobs(job_id)
        if job.stopped() or (output is not None and job.store.exists(output(job.keys))):
            return None
        return job

    def plan_of(self, job: JobStore) -> JobPlan:
        """The job's plan; a step that arrives before it (a duplicate published early)
        waits for it instead of failing the job."""
        try:
            return job.plan()
        except ObjectNotFound:
            raise self.retry(countdown=5) from None

    def before_start(self, task_id: str, args: tuple, kwargs: dict) -> None:
        if self.request.is_eager or not args:
            return
        deliveries = _count_delivery(delivery_key(task_id, self.request.retries))
        limit = get_runtime().settings.max_deliveries
        if deliveries > limit:
            job = self.jobs(args[0])
            job.fail(
                f"{self.name} {list(args[1:])} was started {deliveries - 1} times and its "
                "worker died each time (a poison input?); the job is stopped"
            )
            announce_end(get_runtime().settings, job.store, job.job_id)
            log.error("job %s: %s delivered %d times, job failed", args[0], self.name, deliveries)
            raise Ignore()

    def after_return(
        self, status: str, retval: Any, task_id: str, args: tuple, kwargs: dict, einfo: Any
    ) -> None:
        # The task ended (it did not kill its worker): its delivery count is not needed.
        if not self.request.is_eager:
            _forget_deliveries(delivery_key(task_id, self.request.retries))

    def on_failure(
        self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any
    ) -> None:
        if not args:
            return
        try:
            job = self.jobs(args[0])
            job.fail(f"{self.name.removeprefix('facefleet.')}: {describe(exc)}")
            announce_end(get_runtime().settings, job.store, job.job_id)
        except Exception:  # the store may be the thing that is down
            log.exception("job %s: could not record the failure", args[0])


def delivery_key(task_id: str, attempt: int) -> str:
    """The Redis counter of one attempt's starts. A retry keeps the task id: each attempt
    counts its own deliveries, so retries after an outage are not mistaken for a task that
    kills its worker."""
    return f"facefleet:deliveries:{task_id}:{attempt}"


def fan_out(job_id: str, step: Task, chunks: Sequence[ChunkPlan], then: Task) -> None:
    """`step` for every chunk in parallel, then `then` once all of them are done."""
    chord([step.si(job_id, c.index) for c in chunks], then.si(job_id)).apply_async()


def _forget_deliveries(key: str) -> None:
    import redis

    if not get_runtime().settings.broker_url:
        return
    with contextlib.suppress(redis.RedisError):  # it expires by itself
        get_runtime().redis().delete(key)


def _count_delivery(key: str) -> int:
    """How many times this attempt of a task has started, counted in Redis across workers."""
    import redis

    settings = get_runtime().settings
    if not settings.broker_url:
        return 1
    try:
        client = get_runtime().redis()
        count = int(client.incr(key))
        client.expire(key, 3 * settings.visibility_timeout_s + 60)
        return count
    except redis.RedisError:
        return 1  # counting is a safeguard; never fail a task because of it
