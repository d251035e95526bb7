"""Training as a long-lived task: runs training.Trainer, reports epochs and every
evaluation (best threshold and F1 per metric) through the Celery task state and to
`training/<run>/progress.json`, keeps its checkpoints in S3 and resumes from them when it
is redelivered or restarted, and promotes the extractor (`models/<id>/extractor.pt` plus
`models/latest.json`) only if it beats its parent head to head on the open-set
identification protocol of `facefleet eval`, with its lineage in `models/<id>/lineage.json`.

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
    ModelLineage,
    ModelPointer,
    lineage_key,
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
        data = _download_data(store, req.data_prefix, out / "data") if req.data_prefix else None
        init = None
        if req.init_from_key is not None and not resume:
            init = store.get_file(req.init_from_key, out / "init.pt")
        elif req.init_from_model is not None and not resume:
            init = _download_model(req.init_from_model, out / "init.pt")
        config = TrainConfig(
            **req.options.model_dump(),
            lfw=rt.settings.lfw_dir,
            out=out,
            device=rt.settings.device,
            cache_dir=rt.settings.cache_dir,
            data=data,
            data_only=req.data_only,
            init_from=init,
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
            _upload(store, prefix, out, sent)
            promoted, message = _promote(store, req, summary, config)
        except FacefleetError as exc:
            report(state="failed", message=str(exc))
            raise
        report(state="done", promoted=promoted, message=message, checkpoint=prefix + "latest.pt")
        return progress.model_dump(mode="json")
    finally:
        lock.release()


def _download_data(store: ObjectStore, prefix: str, folder: Path) -> Path:
    """A `<prefix><Person>/<image>` tree from the store, as a --data folder."""
    keys = [k for k in store.list(prefix) if not k.endswith("/")]
    if not keys:
        raise FacefleetError(f"no faces under {prefix} in the store (the --data upload)")
    for key in keys:
        relative = key[len(prefix) :]
        if relative.count("/") != 1:
            continue  # only <Person>/<image>
        store.get_file(key, folder / relative)
    return folder


def _download_model(model_id: str, path: Path) -> Path:
    """A stored (or this worker's shipped) extractor checkpoint to fine-tune from."""
    from facefleet.core.extractors.b0 import shipped_checkpoint

    rt = get_runtime()
    if model_id == rt.registry.default_model_id("facefleet-b0"):
        return shipped_checkpoint()
    key = model_key(model_id)
    if not rt.store.exists(key):
        raise FacefleetError(f"cannot fine-tune {model_id}: {key} is not in the store")
    return rt.store.get_file(key, path)


def _parent(config: TrainConfig) -> Any:
    """The extractor the child must beat: the one it was fine-tuned from, else the B0
    that workers would use now (the promoted one, or the shipped release)."""
    from facefleet.core.extractors.b0 import B0Extractor

    if config.init_from is not None:
        return B0Extractor.from_checkpoint(Path(config.init_from))
    registry = get_runtime().registry
    return registry.extractor(registry.current_model_id("facefleet-b0"))


def _promote(
    store: ObjectStore, req: TrainRequest, summary: Any, config: TrainConfig
) -> tuple[bool, str]:
    """Head to head on the identification protocol; the winner's lineage recorded."""
    from facefleet.core.extractors.b0 import B0Extractor, load_checkpoint, save_checkpoint
    from facefleet.training.promotion import head_to_head

    if not req.promote:
        return False, "promotion not asked for"
    if summary.extractor is None or summary.best is None:
        return False, "no extractor was exported"
    rt = get_runtime()
    child = B0Extractor.from_checkpoint(summary.extractor)
    parent = _parent(config)
    duel = head_to_head(
        child,
        parent,
        Path(config.lfw),
        rt.settings.cache_dir,
        quick=config.max_people is not None,
        device="cpu",
        log=log.info,
    )
    if not duel.child_wins:
        return False, f"not promoted: {duel.line()}"
    model, meta = load_checkpoint(summary.extractor)
    parent_id = parent.model_id if parent is not None else None
    meta.training.parent_model = parent_id
    meta = save_checkpoint(model, meta, summary.extractor, half=config.export_half)
    store.put_file(model_key(meta.model_id), summary.extractor)
    labelled = config.data is not None and req.data_prefix is not None
    store.put_model(
        lineage_key(meta.model_id),
        ModelLineage(
            model_id=meta.model_id,
            parent=parent_id,
            run=req.run,
            data=meta.training.data or "",
            labelled_faces=_count_files(config.data) if labelled else 0,
            recipe=req.options.model_dump(mode="json"),
            protocol=duel.protocol,
            figures={"child_dir": duel.child_dir, "parent_dir": duel.parent_dir},
        ),
    )
    store.put_model(
        MODEL_POINTER_KEY,
        ModelPointer(
            model_id=meta.model_id,
            key=model_key(meta.model_id),
            devtest_accuracy=float(summary.best.cosine.accuracy),
            # Workers name faces with it only if it also beats their default extractor here.
            identification_dir=meta.identification.at(0.01).dir if meta.identification else None,
            run=req.run,
            promoted=datetime.now(UTC),
        ),
    )
    return True, f"promoted {meta.model_id}: {duel.line()}"


def _count_files(folder: Path | None) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder else 0


def export_labelled_faces(store: ObjectStore, prefix: str) -> int:
    """The faces users labelled, as a `<Person>/<image>` tree under `prefix`: every
    gallery's samples (their stored face regions) and, with an archive, the faces of
    corrected tracks and named clusters. Returns how many."""
    from facefleet.archive.connect import open_archive
    from facefleet.archive.store import ArchiveUnavailable
    from facefleet.core.images import encode_jpeg
    from facefleet.jobs.galleries import list_galleries
    from facefleet.jobs.gallery_store import load_gallery

    rt = get_runtime()
    count = 0
    for name in list_galleries(store):
        gallery = load_gallery(store, name, None)
        if gallery is None:
            continue
        for i, (sample, region) in enumerate(zip(gallery.samples, gallery.regions, strict=True)):
            store.put_bytes(
                f"{prefix}{sample.person}/gallery-{name}-{i:05d}.jpg",
                encode_jpeg(region),
                "image/jpeg",
            )
            count += 1
    try:
        archive = open_archive(rt.settings)
        labelled = archive.labelled() if archive is not None else []
    except ArchiveUnavailable as exc:
        log.warning("retraining without the archive's labelled faces: %s", exc)
        labelled = []
    for i, (person, _, region, _) in enumerate(labelled):
        if store.exists(region):
            store.copy(region, f"{prefix}{person}/archive-{i:05d}.jpg")
            count += 1
    return count


@app.task(name="facefleet.scheduled_retrain")
def scheduled_retrain() -> str:
    """Fired by celery beat: fine-tunes the current B0 (promoted, else the release) with
    the teacher online, on LFW DevTrain plus the faces users labelled; promoted only if it
    beats its parent on the identification protocol."""
    rt = get_runtime()
    settings = rt.settings
    run = "scheduled-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    data_prefix = training_prefix(run) + "data/"
    labelled = export_labelled_faces(rt.store, data_prefix)
    request = TrainRequest(
        run=run,
        options=TrainOptions(
            epochs=settings.retrain_epochs,
            max_people=settings.retrain_max_people,
            distill="dlib-online",
            # Gentle: the parent was distilled already, and a strong pull to the teacher's
            # geometry first undoes what it knew (measured: see FACEFLEET_RETRAIN_LR).
            distill_weight=1.0,
            lr=settings.retrain_lr,
            warmup_epochs=0.0,
        ),
        data_prefix=data_prefix if labelled else None,
        init_from_model=rt.registry.current_model_id("facefleet-b0"),
    )
    train.apply_async(args=[request.model_dump()], task_id=f"train-{run}")
    return run
