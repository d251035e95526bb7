"""Training as a long-lived task: runs training.Trainer, reports epochs and every
evaluation (best threshold and F1 per metric) through the Celery task state and to
`training/<run>/progress.json`, keeps its checkpoints in S3 and resumes from them when it
is redelivered or restarted, and promotes the extractor (`models/<id>/extractor.pt` plus
`models/latest.json`) only if it beats the current one on DevTest.

A Redis lock with a heartbeat keeps two copies of one run from facefleet.training at once: a
redelivered copy that finds the lock alive stops; one that finds it expired (the first
worker died) takes over from the last checkpoint.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Task

from facefleet.core.errors import FacefleetError
from facefleet.core.names import METRICS
from facefleet.core.schemas import CVResult
from facefleet.jobs.records import (
    MODEL_POINTER_KEY,
    ModelPointer,
    model_key,
    training_prefix,
)
from facefleet.jobs.storage import ObjectStore, StorageUnavailable
from facefleet.tasks.app import app
from facefleet.tasks.runtime import get_runtime
from facefleet.training.records import (
    EvaluationRecord,
    MetricBest,
    TrainConfig,
    TrainOptions,
    TrainProgress,
    TrainRequest,
)

log = logging.getLogger("facefleet.tasks.training")
# What a run keeps in S3 to resume anywhere: full state, best state, exported extractor.
SYNCED = ("latest.pt", "best.pt", "extractor.pt", "metrics.jsonl")


class RunLock:
    """Redis lock `facefleet:lock:train:<run>` kept alive by a heartbeat thread."""

    def __init__(self, run: str, ttl_s: float) -> None:
        self.name = f"facefleet:lock:train:{run}"
        self.ttl_s = ttl_s
        self._stop = threading.Event()
        self._lock: Any = None

    def acquire(self) -> bool:
        settings = get_runtime().settings
        if not settings.broker_url:
            return True
        client = get_runtime().redis()
        # thread_local=False: the heartbeat thread extends a lock this thread acquired.
        self._lock = client.lock(self.name, timeout=self.ttl_s, blocking=False, thread_local=False)
        if not self._lock.acquire():
            return False
        threading.Thread(target=self._beat, daemon=True, name="facefleet-train-lock").start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._lock.reacquire()
            except Exception:
                log.exception("could not extend %s", self.name)

    def release(self) -> None:
        self._stop.set()
        if self._lock is not None:
            # Expired: nothing to release.
            with suppress(Exception):
                self._lock.release()


def _best(result: CVResult) -> MetricBest:
    return MetricBest(
        threshold=round(result.best_threshold, 4),
        f1=round(result.best_f1, 4),
        accuracy=round(result.accuracy, 4),
    )


def _evaluation_record(report: Any) -> EvaluationRecord:
    best = {metric: _best(getattr(report.devtest, metric)) for metric in METRICS}
    return EvaluationRecord(epoch=report.epoch, is_best=report.is_best, **best)


def _upload(store: ObjectStore, prefix: str, out: Path, sent: dict[str, float]) -> None:
    for name in SYNCED:
        path = out / name
        if path.is_file() and sent.get(name) != path.stat().st_mtime:
            store.put_file(prefix + name, path)
            sent[name] = path.stat().st_mtime


def _current_accuracy(store: ObjectStore) -> tuple[str | None, float | None]:
    pointer = store.get_model_or_none(MODEL_POINTER_KEY, ModelPointer)
    if pointer is not None:
        return pointer.model_id, pointer.devtest_accuracy
    registry = get_runtime().registry
    b0 = registry.extractor(registry.default_model_id("facefleet-b0"))
    if b0 is None or b0.card.training is None or b0.card.training.devtest is None:
        return None, None
    return b0.model_id, b0.card.training.devtest.cosine.accuracy


@app.task(bind=True, name="facefleet.train", autoretry_for=(StorageUnavailable,), max_retries=5)
def train(self: Task, request: dict) -> dict:
    from facefleet.training.trainer import Trainer

    rt = get_runtime()
    req = TrainRequest.model_validate(request)
    prefix = training_prefix(req.run)
    if rt.settings.lfw_dir is None:
        raise FacefleetError(
            "remote training needs LFW on the worker: set FACEFLEET_LFW_DIR to its folder"
        )
    store = rt.store
    progress = store.get_model_or_none(prefix + "progress.json", TrainProgress)
    if progress is not None and progress.state == "done":
        return progress.model_dump(mode="json")  # finished before a redelivery
    progress = (progress or TrainProgress(run=req.run, state="waiting")).model_copy(
        update={"epochs": req.options.epochs, "message": None}
    )

    def report(**update: Any) -> None:
        for field, value in update.items():
            setattr(progress, field, value)
        meta = progress.model_dump(mode="json")
        if not self.request.is_eager:
            self.update_state(state="PROGRESS", meta=meta)
        store.put_model(prefix + "progress.json", progress)

    lock = RunLock(req.run, rt.settings.train_lock_ttl_s)
    if not lock.acquire():
        # Another copy holds the run (a redelivery while it is alive). Check back later
        # rather than stop: if that copy dies, its lock expires and this one takes over.
        log.warning("training run %s is running elsewhere; checking again later", req.run)
        raise self.retry(countdown=rt.settings.train_lock_ttl_s, max_retries=None)
    try:
        out = Path(tempfile.mkdtemp(prefix=f"facefleet-train-{req.run}-"))
        resume = False
        for name in SYNCED:
            if store.exists(prefix + name):
                store.get_file(prefix + name, out / name)
                resume = resume or name == "latest.pt"
        sent = {name: (out / name).stat().st_mtime for name in SYNCED if (out / name).is_file()}
        report(state="preparing", message="resuming from S3" if resume else None)
        config = TrainConfig(
            **req.options.model_dump(),
            lfw=rt.settings.lfw_dir,
            out=out,
            device=rt.settings.device,
            cache_dir=rt.settings.cache_dir,
        )

        def on_epoch(epoch_report: Any) -> None:
            report(
                state="training",
                epoch=epoch_report.epoch,
                loss=round(epoch_report.loss, 4),
                images_per_s=round(epoch_report.images_per_s, 1),
            )

        def on_eval(eval_report: Any) -> None:
            kept = [e for e in progress.evaluations if e.epoch < eval_report.epoch]
            report(evaluations=[*kept, _evaluation_record(eval_report)])

        def on_checkpoint(epoch: int) -> None:
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                _upload(store, prefix, out, sent)
                report(checkpoint=prefix + "latest.pt")

        trainer = Trainer(
            config,
            log=log.info,
            on_epoch=on_epoch,
            on_eval=on_eval,
            on_checkpoint=on_checkpoint,
            progress=False,
        )
        try:
            summary = trainer.run(resume=resume)
        except FacefleetError as exc:
            report(state="failed", message=str(exc))
            raise
        _upload(store, prefix, out, sent)
        promoted, message = _promote(store, req, summary, prefix)
        report(state="done", promoted=promoted, message=message, checkpoint=prefix + "latest.pt")
        return progress.model_dump(mode="json")
    finally:
        lock.release()


def _promote(store: ObjectStore, req: TrainRequest, summary: Any, prefix: str) -> tuple[bool, str]:
    if not req.promote:
        return False, "promotion not asked for"
    if summary.extractor is None or summary.best is None:
        return False, "no extractor was exported"
    if req.options.max_people is not None:
        # A subset run evaluates on a slice of DevTest: not comparable with a release model.
        return False, "not promoted: trained and evaluated on a subset (max_people)"
    accuracy = float(summary.best.cosine.accuracy)
    current_id, current = _current_accuracy(store)
    if current is not None and accuracy <= current:
        return (
            False,
            f"not promoted: DevTest {accuracy:.4f} does not beat {current_id} ({current:.4f})",
        )
    from facefleet.core.extractors.b0 import load_checkpoint

    _, meta = load_checkpoint(summary.extractor)
    store.put_file(model_key(meta.model_id), summary.extractor)
    store.put_model(
        MODEL_POINTER_KEY,
        ModelPointer(
            model_id=meta.model_id,
            key=model_key(meta.model_id),
            devtest_accuracy=accuracy,
            # Workers name faces with it only if it also beats their default extractor here.
            identification_dir=meta.identification.at(0.01).dir if meta.identification else None,
            run=req.run,
            promoted=datetime.now(UTC),
        ),
    )
    return True, f"promoted {meta.model_id}: DevTest {accuracy:.4f} (was {current})"


@app.task(name="facefleet.scheduled_retrain")
def scheduled_retrain() -> str:
    """Fired by celery beat: starts a retraining run named after the time."""
    settings = get_runtime().settings
    run = "scheduled-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    request = TrainRequest(
        run=run,
        options=TrainOptions(
            epochs=settings.retrain_epochs, max_people=settings.retrain_max_people
        ),
    )
    train.apply_async(args=[request.model_dump()], task_id=f"train-{run}")
    return run
