"""The Celery app: Redis broker and result backend, json only, two queues.

Importing this module costs no torch: the SDK imports it to send tasks by name. The task
modules are listed in `include` and imported by Celery when a worker (or the in-process
mode, `tasks.inprocess`) starts, never by this module.
"""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab, schedule
from kombu import Queue

from facefleet.core.errors import FacefleetError
from facefleet.core.settings import Settings, get_settings

TASK_MODULES = (
    "facefleet.tasks.video",
    "facefleet.tasks.images",
    "facefleet.tasks.gallery",
    "facefleet.tasks.training",
    "facefleet.tasks.watchdog",
    "facefleet.tasks.archive",
    "facefleet.tasks.webhooks",
)

# The task that starts (or, published again, resumes) a job of each kind.
FIRST_STEP = {"video": "facefleet.plan_video", "images": "facefleet.plan_images"}

# Where each task runs: models on `gpu` workers, probing, cutting and joining on `cpu`.
ROUTES = {
    "facefleet.plan_video": "cpu",
    "facefleet.analyze_chunk": "gpu",
    "facefleet.merge_video": "cpu",
    "facefleet.render_chunk": "gpu",
    "facefleet.finalize_video": "cpu",
    "facefleet.plan_images": "cpu",
    "facefleet.recognize_images": "gpu",
    "facefleet.finalize_images": "cpu",
    "facefleet.gallery_enroll": "gpu",
    "facefleet.gallery_remove": "cpu",
    "facefleet.train": "gpu",
    "facefleet.scheduled_retrain": "cpu",
    "facefleet.resume_stalled": "cpu",
    "facefleet.announce_lost": "cpu",
    "facefleet.expire_uploads": "cpu",
    # The archive: what embeds or enrolls runs where the extractor is loaded.
    "facefleet.archive_search": "gpu",
    "facefleet.people_cluster": "gpu",
    "facefleet.people_name": "gpu",
    "facefleet.track_correct": "gpu",
    "facefleet.archive_maintenance": "gpu",
    "facefleet.people_list": "cpu",
    "facefleet.people_show": "cpu",
    "facefleet.people_split": "cpu",
    "facefleet.people_merge": "cpu",
    "facefleet.person_forget": "cpu",
    "facefleet.jobs_list": "cpu",
    "facefleet.job_delete": "cpu",
    # Posting a job's end to its callback URL: network waits, no model.
    "facefleet.webhook_deliver": "cpu",
}


def parse_cron(line: str) -> crontab:
    fields = line.split()
    if len(fields) != 5:
        raise FacefleetError(
            f"FACEFLEET_RETRAIN_CRON={line!r}: expected 5 fields (minute hour day month weekday)"
        )
    minute, hour, day, month, weekday = fields
    return crontab(
        minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday
    )


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("facefleet", include=list(TASK_MODULES))
    broker = settings.broker_url or "memory://"
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    app.conf.update(
        broker_url=broker,
        result_backend=settings.backend_url or "cache+memory://",
        # json only: a pickle message from the network would be code execution.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_queues=(Queue("gpu"), Queue("cpu")),
        task_default_queue="cpu",
        task_routes={name: {"queue": queue} for name, queue in ROUTES.items()},
        # A chunk is acknowledged only when done; a worker that dies gives it back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A replacement pool process (after a crash, or `--max-tasks-per-child`) loads its
        # models before it reports for work; Celery's 4 s would kill it while it loads.
        worker_proc_alive_timeout=settings.worker_start_timeout_s,
        # Unacknowledged tasks are redelivered after this; it must exceed the longest task
        # (training holds a lock and resumes from its checkpoint if it is redelivered).
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=settings.result_expires_s,
        result_extended=True,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_time_limit=settings.task_time_limit_s,
        task_annotations={"facefleet.train": {"time_limit": settings.train_time_limit_s}},
        broker_connection_retry_on_startup=True,
        # A redelivered task that already succeeded is acknowledged without running again.
        worker_deduplicate_successful_tasks=True,
        timezone="UTC",
        task_always_eager=not settings.distributed,
        task_eager_propagates=False,
        beat_schedule=_beat_schedule(settings),
    )
    return app


def _beat_schedule(settings: Settings) -> dict:
    entries: dict[str, dict] = {}
    if settings.resume_stalled_after_s:
        entries["facefleet-resume-stalled"] = {
            "task": "facefleet.resume_stalled",
            "schedule": schedule(settings.stall_check_s),
        }
    # Not tied to resume_stalled_after_s: a lost announcement or an unused upload needs no
    # stalled job to be found.
    entries["facefleet-announce-lost"] = {
        "task": "facefleet.announce_lost",
        "schedule": schedule(settings.stall_check_s),
    }
    entries["facefleet-expire-uploads"] = {
        "task": "facefleet.expire_uploads",
        "schedule": schedule(settings.stall_check_s),
    }
    when: crontab | schedule | None = None
    if settings.retrain_cron:
        when = parse_cron(settings.retrain_cron)
    elif settings.retrain_interval_s:
        when = schedule(settings.retrain_interval_s)
    if when is not None:
        entries["facefleet-retrain"] = {"task": "facefleet.scheduled_retrain", "schedule": when}
    if settings.archive_url:
        entries["facefleet-archive"] = {
            "task": "facefleet.archive_maintenance",
            "schedule": schedule(settings.retention_check_s),
        }
    return entries


app = make_app()
