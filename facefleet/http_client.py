"""The SDK's HTTP transport: the calls of `facefleet.client.Client`, through the HTTP API
(`facefleet api serve`) instead of the broker and the store.

    from facefleet.http_client import HttpClient, connect

    client = HttpClient("https://faces.example.org", key="ffk_...")
    client.gallery.enroll("Barack_Obama", ["obama1.jpg", "obama2.jpg"])
    job = client.submit_video("speech.mp4")
    job.wait(timeout=3600, progress_bar=True)
    job.download("results/")                # through the presigned /downloads URLs

    client = connect()   # HttpClient when FACEFLEET_API_URL is set, else the direct Client

Files never pass through the API: each is announced (POST /v1/uploads), then PUT straight to
the object store at the presigned URL the API returns. The checks the direct Client does
before an upload (missing, empty, not an image name, not a video container) run here first,
with the same functions. API refusals are InputError (the API's own message), a missing,
revoked or under-scoped key is ApiAuthError. Needs only the client install (httpx, no
torch, numpy or OpenCV)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from facefleet.archive.records import (
    ClusterTrack,
    CorrectionReport,
    DeleteReport,
    ForgetReport,
    JobEntry,
    NameReport,
    PersonCluster,
    SearchReport,
)
from facefleet.client import (
    DEFAULT_GALLERY,
    Client,
    JobFailed,
    JobTimeout,
    TrainingJob,
    _check_id,
    _check_person,
    _options,
    _ProgressBar,
)
from facefleet.core.errors import FacefleetError, InputError
from facefleet.core.media import check_video_container, is_image_path
from facefleet.core.names import check_store_name
from facefleet.core.settings import Settings, get_settings
from facefleet.jobs.records import (
    EnrollReport,
    JobKind,
    JobOptions,
    JobProgress,
    JobStatus,
    RemoveReport,
    check_job_id,
    training_prefix,
)
from facefleet.training.records import TrainOptions, TrainProgress

__all__ = ["ApiAuthError", "HttpClient", "HttpJob", "HttpTrainingJob", "connect"]

# Statuses that mean the request itself is wrong: the user's to fix, as with the direct SDK.
_INPUT_STATUSES = frozenset({400, 404, 409, 413, 422})
_CHUNK_BYTES = 1024 * 1024


class ApiAuthError(FacefleetError):
    """The API refused the key: missing, unknown, revoked (401) or lacking a scope (403)."""


def _detail(response: httpx.Response) -> str:
    """The API's one-line message ({"detail": ...}), or the start of whatever came back."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else str(detail)
    text = response.text.strip().splitlines()
    return text[0][:200] if text else response.reason_phrase or "no message"


def _raise_for(response: httpx.Response, what: str) -> None:
    code = response.status_code
    if code < 400:
        return
    detail = _detail(response)
    if code in (401, 403):
        raise ApiAuthError(f"{what}: {detail} (HTTP {code})")
    if code in _INPUT_STATUSES:
        raise InputError(detail)
    raise FacefleetError(f"{what}: HTTP {code}: {detail}")


def _segment(value: str) -> str:
    """One path segment of a URL: a name with `/` or `..` stays one segment, which the API
    then refuses as a name (never a different route)."""
    return quote(value, safe="")


class HttpClient:
    """The SDK over HTTP: `HttpClient(url, key)`. `settings` (default: FACEFLEET_* env) only
    serve the checks made before an upload (FACEFLEET_MAX_INPUT_BYTES); the API applies its
    own deployment's limits again."""

    # The direct Client's own file checks (missing, not a file, empty, over the size limit):
    # they read only `self.settings`, which this class has too.
    _check_file = Client._check_file
    _check_size = Client._check_size

    def __init__(
        self,
        url: str,
        key: str | None,
        timeout: float = 60.0,
        settings: Settings | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.settings = settings or get_settings()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        # The presigned URLs carry their own signature: the API key must never go there.
        self._files = httpx.Client(timeout=httpx.Timeout(timeout, read=None, write=None))
        self.gallery = HttpGalleryClient(self)
        self.people = HttpPeopleClient(self)

    def __repr__(self) -> str:
        return f"HttpClient({self.url!r})"

    def close(self) -> None:
        self._http.close()
        self._files.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests -----------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call: its JSON, or the error it maps to (see the module's docstring)."""
        what = f"{method} {path.split('?', 1)[0]}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise FacefleetError(
                f"cannot reach the facefleet API at {self.url} ({type(exc).__name__}: {exc})"
            ) from None
        _raise_for(response, what)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise FacefleetError(f"{what}: the API answered something that is not JSON") from None

    def upload(self, path: Path) -> str:
        """Put one (checked) file in the store through a presigned URL; its upload id."""
        size = path.stat().st_size
        ticket = self.request("POST", "/v1/uploads", json={"filename": path.name, "size": size})
        try:
            with path.open("rb") as f:
                response = self._files.request(
                    ticket.get("method", "PUT"),
                    ticket["url"],
                    content=_chunks(f),
                    headers={"Content-Length": str(size)},
                )
        except httpx.HTTPError as exc:
            raise FacefleetError(
                f"{path.name}: cannot upload to the object store ({type(exc).__name__}: {exc})"
            ) from None
        except OSError as exc:
            raise InputError(f"cannot read ({exc.strerror})", subject=path) from None
        if response.status_code >= 300:
            raise FacefleetError(
                f"{path.name}: the object store refused the upload "
                f"(HTTP {response.status_code}: {response.text.strip()[:200]})"
            )
        return str(ticket["upload_id"])

    def _images(self, paths: Iterable[str | Path]) -> list[Path]:
        files = [Path(p) for p in paths]
        if not files:
            raise InputError("no images given")
        for path in files:
            self._check_file(path)
            if not is_image_path(path):
                raise InputError("not an image file name (.jpg, .png, ...)", subject=path)
        return files

    # ---- jobs ---------------------------------------------------------------------------

    def submit_video(
        self,
        path: str | Path,
        gallery: str | None = DEFAULT_GALLERY,
        options: JobOptions | None = None,
        callback_url: str | None = None,
        **fields: Any,
    ) -> HttpJob:
        """Upload one video and start its job (see Client.submit_video)."""
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
    ) -> HttpJob:
        """Upload images and start one job for all of them."""
        if gallery is not None:
            check_store_name(gallery, "gallery name")
        files = self._images(paths)
        return self._submit("images", files, gallery, _options(options, fields), callback_url)

    def _submit(
        self,
        kind: JobKind,
        files: list[Path],
        gallery: str | None,
        options: JobOptions,
        callback_url: str | None,
    ) -> HttpJob:
        uploads = [self.upload(path) for path in files]
        body: dict[str, Any] = {
            "kind": kind,
            "uploads": uploads,
            "gallery": gallery,
            # Only what the caller set: unset fields take the deployment's settings there.
            "options": options.model_dump(mode="json", exclude_unset=True),
        }
        if callback_url is not None:
            body["callback_url"] = callback_url
        view = self.request("POST", "/v1/jobs", json=body)
        status = JobStatus.model_validate(view["status"])
        return HttpJob(self, status.job_id)

    def job(self, job_id: str) -> HttpJob:
        job = HttpJob(self, check_job_id(job_id))
        job.status()  # raises if there is no such job
        return job

    def jobs(self) -> list[JobEntry]:
        """Every job, newest first."""
        return [JobEntry.model_validate(e) for e in self.request("GET", "/v1/jobs")]

    def delete_job(self, job_id: str) -> DeleteReport:
        check_job_id(job_id)
        return DeleteReport.model_validate(self.request("DELETE", f"/v1/jobs/{job_id}"))

    # ---- training -----------------------------------------------------------------------

    def train(
        self,
        options: TrainOptions | None = None,
        run: str | None = None,
        promote: bool = True,
        **fields: Any,
    ) -> HttpTrainingJob:
        """Start a training run on a worker (admin keys). Local data and checkpoints are the
        direct Client's (`data=`, `init_from=`): the API trains on the workers' data."""
        if options is not None and fields:
            raise TypeError("pass either options or its fields, not both")
        if run is not None:
            training_prefix(run)  # validates the name before the request
        body: dict[str, Any] = {
            "options": (options or TrainOptions(**fields)).model_dump(mode="json"),
            "promote": promote,
        }
        if run is not None:
            body["run"] = run
        answer = self.request("POST", "/v1/training", json=body)
        return HttpTrainingJob(self, str(answer["run"]))

    # ---- the archive --------------------------------------------------------------------

    def search(
        self,
        person: str | None = None,
        gallery: str = DEFAULT_GALLERY,
        photo: str | Path | None = None,
    ) -> SearchReport:
        """Every archived appearance of an enrolled `person` of `gallery`, or of the face in
        `photo`: exactly one of the two."""
        if (person is None) == (photo is None):
            raise InputError("search for either a person or a photo (exactly one of them)")
        if person is not None:
            check_store_name(gallery, "gallery name")
            _check_person(person)
            body: dict[str, Any] = {"person": person, "gallery": gallery}
        else:
            (path,) = self._images([photo])  # type: ignore[list-item]
            body = {"upload": self.upload(path)}
        return SearchReport.model_validate(self.request("POST", "/v1/search", json=body))

    def correct_track(
        self,
        job_id: str,
        track_id: int,
        is_name: str | None = None,
        not_name: str | None = None,
        gallery: str = DEFAULT_GALLERY,
    ) -> CorrectionReport:
        """Say who one track of a video job is (`is_name`) or is not (`not_name`)."""
        if (is_name is None) == (not_name is None):
            raise InputError("say who the track is or is not (exactly one of is/not)")
        check_job_id(job_id)
        _check_id(track_id, "track id")
        check_store_name(gallery, "gallery name")
        _check_person(is_name if is_name is not None else not_name)  # type: ignore[arg-type]
        body: dict[str, Any] = {"gallery": gallery}
        body["is" if is_name is not None else "not"] = is_name or not_name
        answer = self.request("POST", f"/v1/jobs/{job_id}/tracks/{track_id}/correction", json=body)
        return CorrectionReport.model_validate(answer)

    def forget(self, person: str, gallery: str = DEFAULT_GALLERY) -> ForgetReport:
        """Forget `person` everywhere (admin keys): see Client.forget."""
        check_store_name(gallery, "gallery name")
        _check_person(person)
        answer = self.request(
            "DELETE",
            f"/v1/galleries/{_segment(gallery)}/people/{_segment(person)}",
            params={"forget": "true"},
        )
        return ForgetReport.model_validate(answer)


class HttpJob:
    """A job seen through the API; the same calls as `facefleet.client.Job`."""

    def __init__(self, client: HttpClient, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"HttpJob({self.id!r})"

    def _view(self) -> tuple[JobStatus, JobProgress]:
        view = self.client.request("GET", f"/v1/jobs/{self.id}")
        status = JobStatus.model_validate(view["status"])
        progress = view.get("progress")
        return status, (
            JobProgress.model_validate(progress)
            if progress is not None
            else JobProgress(stage=status.stage, done=0, total=0)
        )

    def status(self) -> JobStatus:
        return self._view()[0]

    def progress(self) -> JobProgress:
        return self._view()[1]

    def wait(
        self, timeout: float | None = None, progress_bar: bool = False, poll_s: float = 1.0
    ) -> JobStatus:
        """Block until the job ends; returns its final status. Raises JobTimeout after
        `timeout` seconds (the job keeps running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _ProgressBar(self.id) if progress_bar else None
        try:
            while True:
                status, progress = self._view()  # one request a poll
                if bar is not None:
                    bar.show(progress if not status.finished else None, status)
                if status.finished:
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise JobTimeout(f"job {self.id} not finished after {timeout} s")
                time.sleep(poll_s)
        finally:
            if bar is not None:
                bar.close()

    def outputs(self) -> list[str]:
        """The store keys of a done job's outputs (JobFailed for any other state)."""
        status = self.status()
        if status.state != "done":
            raise JobFailed(
                f"job {self.id} is {status.state}"
                + (f": {status.message}" if status.message else "")
            )
        return status.outputs

    def urls(self) -> dict[str, str]:
        """Presigned download URLs of the outputs, by file name."""
        self.outputs()  # JobFailed, as the direct Job, for a job that is not done
        return dict(self.client.request("GET", f"/v1/jobs/{self.id}/downloads"))

    def download(self, folder: str | Path) -> list[Path]:
        """Fetch the outputs of a done job into `folder` (straight from the store, through
        its presigned URLs); returns the files, in the order of `outputs()`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, url in self.urls().items():
            target = folder / Path(name).name  # a name, never a path, whatever the server says
            try:
                with self.client._files.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise FacefleetError(
                            f"{name}: the object store refused the download "
                            f"(HTTP {response.status_code})"
                        )
                    with target.open("wb") as f:
                        for chunk in response.iter_bytes(_CHUNK_BYTES):
                            f.write(chunk)
            except httpx.HTTPError as exc:
                raise FacefleetError(
                    f"{name}: cannot download from the object store ({type(exc).__name__})"
                ) from None
            paths.append(target)
        return paths

    def results(self) -> dict[str, Any]:
        """The result JSON of each input (VideoResult or ImageResult fields), by name."""
        return dict(self.client.request("GET", f"/v1/jobs/{self.id}/results"))

    def cancel(self) -> JobStatus:
        """Stop the job: pending chunks do nothing, no output is written."""
        return JobStatus.model_validate(self.client.request("POST", f"/v1/jobs/{self.id}/cancel"))


class HttpTrainingJob(TrainingJob):
    """A training run seen through the API; `progress()` has its epochs and evaluations,
    `wait()` is the direct TrainingJob's, polling that."""

    def __init__(self, client: HttpClient, run: str) -> None:
        self.client = client  # type: ignore[assignment]
        self.run = run
        self._result = None

    def progress(self) -> TrainProgress | None:
        """None until the worker reports the run's first progress."""
        try:
            answer = self.client.request("GET", f"/v1/training/{_segment(self.run)}")  # type: ignore[attr-defined]
        except InputError:
            return None  # 404: not started yet (the API refused a bad name before)
        return TrainProgress.model_validate(answer)


class HttpGalleryClient:
    """`client.gallery` over HTTP: enroll, list and remove people of a named gallery."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    def enroll(
        self, person: str, images: Iterable[str | Path], gallery: str = DEFAULT_GALLERY
    ) -> EnrollReport:
        """Add `person` from photos (the largest face of each); waits for the worker."""
        check_store_name(gallery, "gallery name")
        _check_person(person)
        files = self.client._images(images)
        uploads = [self.client.upload(path) for path in files]
        answer = self.client.request(
            "POST",
            f"/v1/galleries/{_segment(gallery)}/people",
            json={"person": person, "uploads": uploads},
        )
        return EnrollReport.model_validate(answer)

    def list(self, gallery: str = DEFAULT_GALLERY) -> list[str]:
        """The people of `gallery` ([] for a gallery nobody was enrolled in, as direct)."""
        check_store_name(gallery, "gallery name")
        try:
            return list(self.client.request("GET", f"/v1/galleries/{_segment(gallery)}/people"))
        except InputError:
            return []  # the only refusal of a valid name: no such gallery

    def remove(self, person: str, gallery: str = DEFAULT_GALLERY) -> RemoveReport:
        """Remove every crop and embedding of `person` (admin keys)."""
        check_store_name(gallery, "gallery name")
        _check_person(person)
        answer = self.client.request(
            "DELETE", f"/v1/galleries/{_segment(gallery)}/people/{_segment(person)}"
        )
        return RemoveReport.model_validate(answer)

    def galleries(self) -> dict[str, int]:
        """Gallery name → number of enrolled faces."""
        return {str(k): int(v) for k, v in self.client.request("GET", "/v1/galleries").items()}


class HttpPeopleClient:
    """`client.people` over HTTP: the clusters of unknown faces, and naming them."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    def list(self) -> list[PersonCluster]:
        return [PersonCluster.model_validate(c) for c in self.client.request("GET", "/v1/people")]

    def show(self, cluster_id: int) -> list[ClusterTrack]:
        _check_id(cluster_id, "cluster id")
        answer = self.client.request("GET", f"/v1/people/{cluster_id}")
        return [ClusterTrack.model_validate(t) for t in answer]

    def name(
        self,
        cluster_id: int,
        name: str,
        gallery: str = DEFAULT_GALLERY,
        version: int | None = None,
    ) -> NameReport:
        """Name a cluster (refused when `version` is given and the cluster changed since)."""
        _check_id(cluster_id, "cluster id")
        _check_person(name)
        check_store_name(gallery, "gallery name")
        if version is not None:
            _check_id(version, "cluster version")
        answer = self.client.request(
            "POST",
            f"/v1/people/{cluster_id}/name",
            json={"name": name, "gallery": gallery, "version": version},
        )
        return NameReport.model_validate(answer)


def _chunks(f: Any) -> Iterator[bytes]:
    """A file as 1 MiB pieces: uploads are streamed, never read whole into memory."""
    while chunk := f.read(_CHUNK_BYTES):
        yield chunk


def connect(settings: Settings | None = None) -> HttpClient | Client:
    """The SDK for these settings (default: FACEFLEET_* env): over HTTP when
    FACEFLEET_API_URL is set (with FACEFLEET_API_KEY), else the direct Client."""
    settings = settings or get_settings()
    if not settings.api_url:
        return Client(settings)
    if settings.api_key is None or not settings.api_key.get_secret_value():
        raise FacefleetError(
            "FACEFLEET_API_URL is set: set FACEFLEET_API_KEY too (facefleet api keys create)"
        )
    return HttpClient(settings.api_url, settings.api_key.get_secret_value(), settings=settings)
