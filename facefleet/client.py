"""The facefleet client SDK: submit image and video jobs, follow them, fetch results,
manage galleries, start training.

    from facefleet.client import Client

    client = Client()                                   # settings from FACEFLEET_* env
    client.gallery.enroll("Barack_Obama", ["obama1.jpg", "obama2.jpg"])
    job = client.submit_video("speech.mp4", gallery="default")
    status = job.wait(timeout=3600, progress_bar=True)
    job.download("results/")                            # speech.mp4 + speech.json
    client.search(person="Barack_Obama")                # every archived appearance
    client.people.list()                                # clusters of unknown faces

With FACEFLEET_BROKER_URL set, jobs go to Celery workers over Redis and files through S3
(FACEFLEET_S3_*). Without it the same tasks run in this process, on a local folder store.
Importing this module never imports torch.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from facefleet.archive.records import (
    ClusterReport,
    ClusterTrack,
    CorrectionReport,
    DeleteReport,
    ForgetReport,
    JobEntry,
    NameReport,
    PersonCluster,
    SearchReport,
)
from facefleet.core.errors import FacefleetError, GalleryError, InputError
from facefleet.core.media import check_video_container, is_image_path
from facefleet.core.names import check_store_name, is_person_name
from facefleet.core.settings import Settings, get_settings
from facefleet.inputs import display_path
from facefleet.jobs.galleries import gallery_pointer, list_galleries
from facefleet.jobs.job_store import JobStore
from facefleet.jobs.records import (
    EnrollReport,
    JobInput,
    JobKind,
    JobOptions,
    JobProgress,
    JobSpec,
    JobStatus,
    RemoveReport,
    check_job_id,
    new_job_id,
    training_prefix,
)
from facefleet.jobs.storage import ObjectStore, open_store
from facefleet.jobs.webhooks import (
    DELIVER_TASK,
    check_job_callback,
    delivery_task_id,
    needs_announcement,
)
from facefleet.tasks.app import FIRST_STEP, make_app
from facefleet.training.records import EvaluationRecord, TrainOptions, TrainProgress, TrainRequest

# The in-process mode runs the tasks here; that module needs the pipeline (the worker
# extra), so it is found by name when used, never imported by a client-only install.
IN_PROCESS = "facefleet.tasks.inprocess"

DEFAULT_GALLERY = "default"
log = logging.getLogger("facefleet.client")
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]+")


class JobFailed(FacefleetError):
    """The job ended failed or cancelled; the message says why."""


class JobTimeout(FacefleetError, TimeoutError):
    """`wait` ran out of time; the job itself goes on."""


def safe_name(path: Path) -> str:
    """An output stem from a user's file name: any character outside [A-Za-z0-9._-]
    (path separators, spaces, undecodable bytes) becomes `_`."""
    stem = _UNSAFE.sub("_", path.stem).strip("._") or "input"
    return stem[:80]


class Client:
    """Entry point of the SDK. `Client(settings)`; `Client()` reads FACEFLEET_* env."""

    def __init__(self, settings: Settings | None = None, store: ObjectStore | None = None) -> None:
        self.settings = settings or get_settings()
        self.store = store or open_store(self.settings)
        self._app: Any = None
        self.gallery = GalleryClient(self)
        self.people = PeopleClient(self)

    @property
    def distributed(self) -> bool:
        return self.settings.distributed

    # ---- sending tasks ------------------------------------------------------------------

    @property
    def celery_app(self) -> Any:
        """The Celery app jobs are sent through (the batch system's)."""
        return self._celery()

    def _celery(self) -> Any:
        if self._app is None:
            self._app = make_app(self.settings)
        return self._app

    def _run(self, name: str, args: list[Any], task_id: str | None = None) -> Any:
        """Send a task to the workers by name, or run it here and now in the in-process
        mode. Returns a Celery AsyncResult (remote) or EagerResult (local)."""
        if self.distributed:
            return self._celery().send_task(name, args=args, task_id=task_id)
        return self._here().run_task(self.settings, self.store, name, args, task_id)

    def _here(self) -> Any:
        """The in-process runner; a clear error when this install has no pipeline."""
        try:
            return importlib.import_module(IN_PROCESS)
        except ImportError as exc:
            raise FacefleetError(
                "without FACEFLEET_BROKER_URL jobs run in this process, which needs the "
                f"pipeline: pip install 'facefleet[worker]' ({exc.name} is not installed)"
            ) from None

    # ---- jobs ---------------------------------------------------------------------------

    def submit_video(
        self,
        path: str | Path,
        gallery: str | None = DEFAULT_GALLERY,
        options: JobOptions | None = None,
        callback_url: str | None = None,
        **fields: Any,
    ) -> Job:
        """Upload one video and start its job: returns at once (remote) or when it is
        done (in-process mode). `options` (or its fields as keywords: `every=3`,
        `chunk_frames=50`, `metric=...`, `threshold=...`) say how it runs. A file that is
        not a video container is refused before upload; the frame limit
        (FACEFLEET_MAX_JOB_FRAMES) is checked on the decoded count when the job is planned.
        `callback_url`: where the job's end is POSTed as a signed event (needs
        FACEFLEET_WEBHOOK_SECRET; see facefleet.jobs.webhooks)."""
        if gallery is not None:
            check_store_name(gallery, "gallery name")
        path = Path(path)
        self._check_file(path)
        check_video_container(path)
        return self._submit("video", [path], gallery, _options(options, fields), callback_url)

    def submit_images(
        self,
        paths: Iterable[str | Path],
        gallery: str | None = DEFAULT_GALLERY,
        options: JobOptions | None = None,
        callback_url: str | None = None,
        **fields: Any,
    ) -> Job:
        """Upload images and start one job for all of them (`callback_url`: as for
        submit_video)."""
        if gallery is not None:
            check_store_name(gallery, "gallery name")
        files = [Path(p) for p in paths]
        if not files:
            raise InputError("no images given")
        for path in files:
            self._check_file(path)
            if not is_image_path(path):
                raise InputError("not an image file name (.jpg, .png, ...)", subject=path)
        return self._submit("images", files, gallery, _options(options, fields), callback_url)

    def _check_file(self, path: Path) -> None:
        if not path.exists():
            raise InputError("no such file", subject=path)
        if not path.is_file():
            raise InputError("not a file", subject=path)
        self._check_size(path.stat().st_size, path)

    def _check_size(self, size: int, subject: str | Path) -> None:
        if size == 0:
            raise InputError("empty file", subject=subject)
        if size > self.settings.max_input_bytes:
            raise InputError(
                f"{size} bytes is more than this deployment accepts "
                f"(FACEFLEET_MAX_INPUT_BYTES={self.settings.max_input_bytes})",
                subject=subject,
            )

    def _submit(
        self,
        kind: JobKind,
        files: Sequence[Path],
        gallery: str | None,
        options: JobOptions,
        callback_url: str | None = None,
    ) -> Job:
        # Refused before anything is uploaded.
        if callback_url is not None:
            callback_url = check_job_callback(self.settings, callback_url)
        gallery = self._job_gallery(gallery)
        job_id = new_job_id()
        jobs = JobStore(self.store, job_id)
        inputs, used = [], set()
        for path in files:
            name = _unique(safe_name(path), used)
            key = jobs.keys.input(name + path.suffix.lower())
            self.store.put_file(key, path)
            inputs.append(
                JobInput(
                    key=key, name=name, source=display_path(path.name), size=path.stat().st_size
                )
            )
        return self._start(kind, job_id, inputs, gallery, options, callback_url)

    def submit_stored(
        self,
        kind: JobKind,
        uploads: Sequence[tuple[str, str]],
        gallery: str | None = DEFAULT_GALLERY,
        options: JobOptions | None = None,
        callback_url: str | None = None,
    ) -> Job:
        """Start a job on files already in the store: (key, the file's own name) pairs, e.g.
        what a client PUT to a presigned URL of the HTTP API. Each is moved under the job;
        the checks of submit_video/submit_images on the file name apply (`callback_url`
        too)."""
        if not uploads:
            raise InputError("no inputs given")
        if callback_url is not None:
            callback_url = check_job_callback(self.settings, callback_url)
        gallery = self._job_gallery(gallery)
        job_id = new_job_id()
        jobs = JobStore(self.store, job_id)
        inputs, used = [], set()
        for key, filename in uploads:
            path = Path(filename)
            if kind == "images" and not is_image_path(path):
                raise InputError("not an image file name (.jpg, .png, ...)", subject=filename)
            size = self.store.size(key)
            self._check_size(size, filename)
            name = _unique(safe_name(path), used)
            target = jobs.keys.input(name + path.suffix.lower())
            self.store.copy(key, target)
            self.store.delete(key)
            inputs.append(
                JobInput(key=target, name=name, source=display_path(path.name), size=size)
            )
        return self._start(kind, job_id, inputs, gallery, options or JobOptions(), callback_url)

    def _job_gallery(self, gallery: str | None) -> str | None:
        """The gallery a new job is named against (None: nobody enrolled yet); refuses an
        unknown one, and an in-process run that cannot run, before anything is uploaded."""
        if gallery is not None:
            check_store_name(gallery, "gallery name")
            if gallery_pointer(self.store, gallery) is None:
                if gallery != DEFAULT_GALLERY:
                    raise GalleryError(
                        f"no gallery named {gallery!r}; enroll people with "
                        f"`facefleet gallery enroll --gallery {gallery} NAME IMAGE...`"
                    )
                gallery = None  # nobody enrolled yet: faces are found, not named
        if not self.distributed:
            self._here()
        return gallery

    def _start(
        self,
        kind: JobKind,
        job_id: str,
        inputs: list[JobInput],
        gallery: str | None,
        options: JobOptions,
        callback_url: str | None = None,
    ) -> Job:
        jobs = JobStore(self.store, job_id)
        spec = JobSpec(
            job_id=job_id,
            kind=kind,
            inputs=inputs,
            gallery=gallery,
            options=options,
            callback_url=callback_url,
        )
        self.store.put_model(jobs.keys.spec, spec)
        self.store.put_model(jobs.keys.status, JobStatus(job_id=job_id, kind=kind, state="queued"))
        try:
            self._run(FIRST_STEP[kind], [job_id], task_id=f"plan-{job_id}")
        except Exception as exc:
            jobs.fail(f"could not queue the job: {type(exc).__name__}: {exc}")
            raise FacefleetError(f"could not queue the job ({exc})") from None
        return Job(self, job_id)

    def job(self, job_id: str) -> Job:
        job = Job(self, check_job_id(job_id))
        job.status()  # raises if there is no such job
        return job

    # ---- training -----------------------------------------------------------------------

    def train(
        self,
        options: TrainOptions | None = None,
        run: str | None = None,
        promote: bool = True,
        data: str | Path | None = None,
        data_only: bool = False,
        init_from: str | Path | None = None,
        **fields: Any,
    ) -> TrainingJob:
        """Start a training run on a worker (in-process mode: here, until it ends).
        `options` is the recipe (or give its fields as keywords: `epochs=10`, `lr=1e-3`);
        every field of `TrainOptions` travels with the run. `data` (a folder of
        <Person>/<image>) and `init_from` (a training state or extractor checkpoint) are
        uploaded under training/<run>/ for the worker."""
        if options is not None and fields:
            raise TypeError("pass either options or its fields, not both")
        run = run or "run-" + uuid.uuid4().hex[:8]
        prefix = training_prefix(run)  # validates the name
        if data_only and data is None:
            raise InputError("--data-only needs --data (a folder of <Person>/<image>)")
        faces = _face_tree(Path(data)) if data is not None else []
        if init_from is not None:
            self._check_file(Path(init_from))
        request = TrainRequest(
            run=run,
            options=options or TrainOptions(**fields),
            promote=promote,
            data_prefix=prefix + "data/" if faces else None,
            data_only=data_only,
            init_from_key=prefix + "init.pt" if init_from is not None else None,
        )
        for relative, path in faces:
            self.store.put_file(prefix + "data/" + relative, path)
        if init_from is not None:
            self.store.put_file(prefix + "init.pt", Path(init_from))
        result = self._run("facefleet.train", [request.model_dump()], task_id=f"train-{run}")
        return TrainingJob(self, run, result)

    # ---- the archive --------------------------------------------------------------------
    # Every finished video job's tracks are indexed (best faces, one embedding per track);
    # these ask the archive. The tasks run on the workers, or here in the in-process mode.

    def search(
        self,
        person: str | None = None,
        gallery: str = DEFAULT_GALLERY,
        photo: str | Path | None = None,
        timeout: float = 120,
    ) -> SearchReport:
        """Every archived appearance (a track of a processed video) of an enrolled
        `person` of `gallery`, or of the face in `photo` (its largest face): give exactly
        one of the two."""
        if (person is None) == (photo is None):
            raise InputError("search for either a person or a photo (exactly one of them)")
        if person is not None:
            check_store_name(gallery, "gallery name")
            _check_person(person)
            pointer = gallery_pointer(self.store, gallery)
            if pointer is None:
                raise GalleryError(f"no gallery named {gallery!r}")
            if person not in pointer.people:
                raise InputError(f"{person!r} is not enrolled in gallery {gallery!r}")
            result = self._run("facefleet.archive_search", [person, gallery, None, None])
            return SearchReport.model_validate(_result(result, timeout))
        assert photo is not None
        path = Path(photo)
        self._check_file(path)
        if not is_image_path(path):
            raise InputError("not an image file name (.jpg, .png, ...)", subject=path)
        if not self.distributed:
            self._here()  # refuse before anything is uploaded
        key = f"uploads/{uuid.uuid4().hex}/photo{path.suffix.lower()}"
        self.store.put_file(key, path)
        return self.search_stored(key, display_path(path.name), timeout)

    def search_stored(self, key: str, filename: str, timeout: float = 120) -> SearchReport:
        """`search(photo=...)` for a photo already in the store (deleted once read)."""
        if not is_image_path(Path(filename)):
            raise InputError("not an image file name (.jpg, .png, ...)", subject=filename)
        try:
            result = self._run("facefleet.archive_search", [None, None, key, filename])
            return SearchReport.model_validate(_result(result, timeout))
        finally:
            self.store.delete(key)  # the task deletes it once read; this is for a failed send

    def correct_track(
        self,
        job_id: str,
        track_id: int,
        is_name: str | None = None,
        not_name: str | None = None,
        gallery: str = DEFAULT_GALLERY,
        timeout: float = 600,
    ) -> CorrectionReport:
        """Correct the name of one track of a video job. `is_name`: the track is that
        person (its result JSON and index entry renamed, its best faces enrolled in
        `gallery` and kept as labelled faces); `not_name`: it is not (named unknown, unless
        it carried another name). Give exactly one of the two."""
        if (is_name is None) == (not_name is None):
            raise InputError("say who the track is or is not (exactly one of is/not)")
        check_job_id(job_id)
        _check_id(track_id, "track id")
        check_store_name(gallery, "gallery name")
        _check_person(is_name if is_name is not None else not_name)  # type: ignore[arg-type]
        result = self._run(
            "facefleet.track_correct", [job_id, track_id, is_name, not_name, gallery]
        )
        return CorrectionReport.model_validate(_result(result, timeout))

    def forget(
        self, person: str, gallery: str = DEFAULT_GALLERY, timeout: float = 600
    ) -> ForgetReport:
        """Forget `person`: their faces removed from `gallery` (when enrolled there), their
        name removed from every past result and from the archive, their labelled faces
        deleted."""
        check_store_name(gallery, "gallery name")
        _check_person(person)
        pointer = gallery_pointer(self.store, gallery)
        if pointer is not None and person in pointer.people:
            _result(self._run("facefleet.gallery_remove", [gallery, person]), timeout)
        result = self._run("facefleet.person_forget", [person])
        return ForgetReport.model_validate(_result(result, timeout))

    def jobs(self, timeout: float = 120) -> list[JobEntry]:
        """Every job in the store, with its number of archived tracks (None: not indexed)."""
        result = self._run("facefleet.jobs_list", [])
        return [JobEntry.model_validate(entry) for entry in _result(result, timeout)]

    def delete_job(self, job_id: str, timeout: float = 600) -> DeleteReport:
        """Delete a finished job: its objects (inputs, outputs, face regions) and its
        archived tracks. A running job is refused: cancel it first."""
        check_job_id(job_id)
        result = self._run("facefleet.job_delete", [job_id])
        return DeleteReport.model_validate(_result(result, timeout))

    def maintain_archive(self, timeout: float = 3600) -> dict[str, int]:
        """What beat runs: index jobs left unindexed, delete jobs past retention, re-embed
        tracks of an older extractor, re-cluster the unknown tracks. Returns the counts."""
        return dict(_result(self._run("facefleet.archive_maintenance", []), timeout))


class Job:
    """A submitted job. Its state lives in the object store, so any process can follow it."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id
        self._records = JobStore(client.store, job_id)

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> JobStatus:
        return self._records.status()

    def progress(self) -> JobProgress:
        return self._records.progress()

    def wait(
        self, timeout: float | None = None, progress_bar: bool = False, poll_s: float = 1.0
    ) -> JobStatus:
        """Block until the job ends; returns its final status (check `.state`). Raises
        JobTimeout after `timeout` seconds (the job keeps running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _ProgressBar(self.id) if progress_bar else None
        try:
            while True:
                status = self.status()
                if bar is not None:
                    bar.show(self.progress() if not status.finished else None, status)
                if status.finished:
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise JobTimeout(f"job {self.id} not finished after {timeout} s")
                time.sleep(poll_s)
        finally:
            if bar is not None:
                bar.close()

    def outputs(self) -> list[str]:
        status = self.status()
        if status.state != "done":
            raise JobFailed(
                f"job {self.id} is {status.state}"
                + (f": {status.message}" if status.message else "")
            )
        return status.outputs

    def download(self, folder: str | Path) -> list[Path]:
        """Copy the outputs of a done job into `folder`; returns the files."""
        folder = Path(folder)
        paths = []
        for key in self.outputs():
            paths.append(self.client.store.get_file(key, folder / key.rsplit("/", 1)[-1]))
        return paths

    def urls(self, expires_s: int | None = None) -> dict[str, str]:
        """Download links for the outputs (presigned and expiring with S3)."""
        expiry = expires_s or self.client.settings.presign_expiry_s
        return {
            key.rsplit("/", 1)[-1]: self.client.store.url(key, expiry) for key in self.outputs()
        }

    def cancel(self) -> JobStatus:
        """Stop the job: pending chunks do nothing, no output is written. A job with a
        callback URL has its end announced (job.cancelled) by the delivery task."""
        status = self._records.cancel()
        if needs_announcement(self.client.store, self.id):
            try:
                self.client._run(DELIVER_TASK, [self.id], task_id=delivery_task_id(self.id))
            except Exception as exc:  # the job is cancelled all the same
                log.warning("job %s: could not send its webhook: %s", self.id, exc)
        return status

    def resume(self) -> JobStatus:
        """Publish the job's first step again, for a job whose queued tasks were lost (a
        broker restarted without persistence). Every step skips what is already in the
        store, so the job continues where it was; a finished job is left as it is."""
        status = self.status()
        if status.finished:
            return status
        self.client._run(FIRST_STEP[status.kind], [self.id])
        return self.status()


class TrainingJob:
    """A training run; `progress()` has the epochs and every evaluation so far."""

    def __init__(self, client: Client, run: str, result: Any = None) -> None:
        self.client = client
        self.run = run
        self._result = result

    def progress(self) -> TrainProgress | None:
        return self.client.store.get_model_or_none(
            training_prefix(self.run) + "progress.json", TrainProgress
        )

    def wait(
        self,
        timeout: float | None = None,
        poll_s: float = 2.0,
        on_evaluation: Callable[[EvaluationRecord], None] | None = None,
    ) -> TrainProgress:
        """Block until the run ends; `on_evaluation` is called with each periodic
        evaluation once, as soon as it is reported."""
        deadline = None if timeout is None else time.monotonic() + timeout
        reported: set[int] = set()
        while True:
            progress = self.progress()
            if progress is not None and on_evaluation is not None:
                for record in progress.evaluations:
                    if record.epoch not in reported:
                        reported.add(record.epoch)
                        on_evaluation(record)
            if progress is not None and progress.state in ("done", "failed"):
                return progress
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeout(f"training run {self.run} not finished after {timeout} s")
            time.sleep(poll_s)


class GalleryClient:
    """`client.gallery`: enroll, list and remove people of a named gallery."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def enroll(
        self,
        person: str,
        images: Iterable[str | Path],
        gallery: str = DEFAULT_GALLERY,
        timeout: float = 600,
    ) -> EnrollReport:
        """Add `person` from photos (the largest face of each); waits for the worker."""
        check_store_name(gallery, "gallery name")
        _check_person(person)
        files = [Path(p) for p in images]
        if not files:
            raise InputError("no images given")
        for path in files:
            self.client._check_file(path)
            if not is_image_path(path):
                raise InputError("not an image file name (.jpg, .png, ...)", subject=path)
        upload = f"uploads/{uuid.uuid4().hex}"
        stored = []
        for i, path in enumerate(files):
            key = f"{upload}/{i:04d}{path.suffix.lower()}"
            self.client.store.put_file(key, path)
            stored.append((key, display_path(path.name)))
        return self.enroll_stored(person, stored, gallery, timeout)

    def enroll_stored(
        self,
        person: str,
        images: Sequence[tuple[str, str]],
        gallery: str = DEFAULT_GALLERY,
        timeout: float = 600,
    ) -> EnrollReport:
        """`enroll` from photos already in the store: (key, the file's own name) pairs,
        deleted once read (what the HTTP API's presigned uploads leave)."""
        check_store_name(gallery, "gallery name")
        _check_person(person)
        if not images:
            raise InputError("no images given")
        for _, name in images:
            if not is_image_path(Path(name)):
                raise InputError("not an image file name (.jpg, .png, ...)", subject=name)
        try:
            result = self.client._run(
                "facefleet.gallery_enroll",
                [gallery, person, [key for key, _ in images], [name for _, name in images]],
            )
            return EnrollReport.model_validate(_result(result, timeout))
        finally:
            for key, _ in images:
                self.client.store.delete(key)

    def remove(
        self, person: str, gallery: str = DEFAULT_GALLERY, timeout: float = 120
    ) -> RemoveReport:
        """Remove every crop and embedding of `person`; workers drop it on their next task."""
        check_store_name(gallery, "gallery name")
        _check_person(person)
        if gallery_pointer(self.client.store, gallery) is None:
            raise GalleryError(f"no gallery named {gallery!r}")
        result = self.client._run("facefleet.gallery_remove", [gallery, person])
        return RemoveReport.model_validate(_result(result, timeout))

    def list(self, gallery: str = DEFAULT_GALLERY) -> list[str]:
        pointer = gallery_pointer(self.client.store, check_store_name(gallery, "gallery name"))
        return list(pointer.people) if pointer else []

    def galleries(self) -> dict[str, int]:
        """Gallery name → number of enrolled faces."""
        return {name: p.faces for name, p in list_galleries(self.client.store).items()}


class PeopleClient:
    """`client.people`: the clusters of unknown faces in the archive (tracks that no
    enrolled person matched, grouped by who they look like), and naming them."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def list(self, timeout: float = 120) -> list[PersonCluster]:
        """The current clusters, the largest first."""
        result = self.client._run("facefleet.people_list", [])
        return [PersonCluster.model_validate(c) for c in _result(result, timeout)]

    def show(self, cluster_id: int, timeout: float = 120) -> list[ClusterTrack]:
        """The tracks of one cluster (job, track, times, thumbnail): what `split` takes."""
        _check_id(cluster_id, "cluster id")
        result = self.client._run("facefleet.people_show", [cluster_id])
        return [ClusterTrack.model_validate(t) for t in _result(result, timeout)]

    def cluster(self, full: bool = True, timeout: float = 3600) -> ClusterReport:
        """Cluster the unknown tracks now: afresh (`full`; split and merged clusters are
        kept), or only the tracks not in a cluster yet (what follows each indexed job)."""
        result = self.client._run("facefleet.people_cluster", [bool(full)])
        return ClusterReport.model_validate(_result(result, timeout))

    def name(
        self,
        cluster_id: int,
        name: str,
        gallery: str = DEFAULT_GALLERY,
        version: int | None = None,
        timeout: float = 600,
    ) -> NameReport:
        """Name a cluster: its best faces enrolled in `gallery`, its past tracks renamed
        in their results. With `version` (from `list`) it is refused if the cluster
        changed since."""
        _check_id(cluster_id, "cluster id")
        _check_person(name)
        check_store_name(gallery, "gallery name")
        if version is not None:
            _check_id(version, "cluster version")
        result = self.client._run("facefleet.people_name", [cluster_id, name, gallery, version])
        return NameReport.model_validate(_result(result, timeout))

    def split(
        self, cluster_id: int, tracks: Sequence[tuple[str, int]], timeout: float = 120
    ) -> int:
        """Move `tracks` ((job id, track id) pairs) out of a cluster into a new one;
        returns the new cluster's id. Both are pinned: re-clustering keeps them."""
        _check_id(cluster_id, "cluster id")
        pairs = [_check_track(track) for track in tracks]
        if not pairs:
            raise InputError("no tracks given to split off")
        result = self.client._run("facefleet.people_split", [cluster_id, pairs])
        return int(_result(result, timeout)["new_cluster_id"])

    def merge(self, into: int, others: Sequence[int], timeout: float = 120) -> int:
        """Move every track of `others` into cluster `into` (pinned); returns how many
        tracks moved."""
        _check_id(into, "cluster id")
        ids = [_check_id(other, "cluster id") for other in others]
        if not ids:
            raise InputError("no clusters given to merge")
        if into in ids:
            raise InputError(f"cannot merge cluster {into} into itself")
        result = self.client._run("facefleet.people_merge", [into, ids])
        return int(_result(result, timeout)["moved"])


def _face_tree(folder: Path) -> list[tuple[str, Path]]:
    """The images of a <Person>/<image> folder as (relative key, path), refused before any
    upload when it holds none or a person's name is not a plain name."""
    if not folder.is_dir():
        raise InputError("not a folder of <Person>/<image>", subject=folder)
    out = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(p for p in person.iterdir() if p.is_file() and is_image_path(p))
        if images and not is_person_name(person.name):
            raise InputError(f"invalid person name {person.name!r}", subject=person)
        out += [(f"{person.name}/{p.name}", p) for p in images]
    if not out:
        raise InputError("no <Person>/<image> files (jpg, png) in it", subject=folder)
    return out


def _unique(name: str, used: set[str]) -> str:
    """`name`, or name_<n> when an earlier input of the job took it."""
    while name in used:
        name = f"{name}_{len(used)}"
    used.add(name)
    return name


def _options(options: JobOptions | None, fields: dict[str, Any]) -> JobOptions:
    if options is not None and fields:
        raise TypeError("pass either options or its fields, not both")
    return options or JobOptions(**fields)


def _check_person(person: str) -> None:
    if not is_person_name(person):
        raise InputError(f"invalid person name {person!r} (no path separators)")


def _check_id(value: int, what: str) -> int:
    """Cluster, track and version ids: non-negative integers."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"invalid {what} {value!r} (expected a whole number >= 0)")
    return value


def _check_track(track: Sequence[Any]) -> list[Any]:
    """A (job id, track id) pair, checked, as the tasks take it (a JSON list)."""
    if isinstance(track, str) or len(track) != 2:
        raise InputError(f"invalid track {track!r} (expected a (job id, track id) pair)")
    job_id, track_id = track
    return [check_job_id(job_id), _check_id(track_id, "track id")]


# Refusals that are the user's to fix (a missing cluster, a cluster changed meanwhile):
# matched by class name, which is all that Celery keeps of a worker's exception whose
# module the client has not imported.
_INPUT_ERRORS = frozenset({"InputError", "ArchiveConflict"})


def _result(result: Any, timeout: float) -> Any:
    """The return value of a task, with its error as a FacefleetError (an InputError for
    a user's mistake)."""
    try:
        value = result.get(timeout=timeout, propagate=True)
    except InputError:
        raise
    except Exception as exc:
        message = str(exc) or type(exc).__name__
        if type(exc).__name__ in _INPUT_ERRORS:
            raise InputError(message) from None
        if isinstance(exc, FacefleetError):
            raise
        # Celery rebuilds remote exceptions by class name; keep their message only.
        raise FacefleetError(message) from None
    return value


class _ProgressBar:
    def __init__(self, job_id: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(f"job {job_id[:8]}", total=None)

    def show(self, progress: JobProgress | None, status: JobStatus) -> None:
        if progress is None:
            return
        self._progress.update(
            self._task,
            total=progress.total or None,
            completed=progress.done,
            description=f"{status.stage:>9}",
        )

    def close(self) -> None:
        self._progress.stop()
