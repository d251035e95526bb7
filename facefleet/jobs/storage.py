"""The one adapter to object storage: any S3 endpoint through the `minio` SDK (MinIO in
compose, SeaweedFS in tests) or a local folder for the in-process mode, behind one interface.

Keys are plain `/`-separated paths; `JobKeys` and friends in facefleet.jobs.records build them.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from facefleet.core.errors import FacefleetError
from facefleet.core.settings import Settings

M = TypeVar("M", bound=BaseModel)
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/ +=@,()]*$")


class StorageError(FacefleetError):
    """Object storage refused or failed a request."""


class ObjectNotFound(StorageError):
    """The key does not exist."""


class StorageUnavailable(StorageError):
    """The store could not be reached; worth retrying later."""


def check_key(key: str) -> str:
    """Keys come partly from user input (file and gallery names): no traversal, no escapes."""
    parts = key.split("/")
    if (
        not _KEY.match(key)
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in key
        or len(key) > 900
    ):
        raise StorageError(f"invalid object key {key!r}")
    return key


GZIP_MAGIC = b"\x1f\x8b"


class ObjectStore(ABC):
    """Bytes, files and pydantic models under string keys."""

    location: str

    @abstractmethod
    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None: ...

    @abstractmethod
    def put_file(
        self, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def get_file(self, key: str, path: Path) -> Path: ...

    def local_path(self, key: str) -> Path | None:
        """Where `key` already lies on this machine's disk, if it does (a folder store)."""
        return None

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under `prefix` (recursive), sorted."""

    @abstractmethod
    def modified(self, prefix: str) -> dict[str, datetime]:
        """Every key under `prefix` (recursive) with when it was last written."""

    def newest(self, prefix: str) -> datetime | None:
        """When the most recently written object under `prefix` was written (None: none)."""
        return max(self.modified(prefix).values(), default=None)

    @abstractmethod
    def size(self, key: str) -> int:
        """Bytes of one object; ObjectNotFound when there is none."""
        raise NotImplementedError

    def upload_url(self, key: str, expires_s: int) -> str:
        """A URL a client PUTs one object to, without credentials (S3 presigned)."""
        raise StorageError(f"{self.location} hands out no upload URLs (S3 stores only)")

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one key; a missing key is not an error."""

    @abstractmethod
    def url(self, key: str, expires_s: int) -> str:
        """A URL to download `key` (presigned, expiring, for S3)."""

    def copy(self, source: str, target: str) -> None:
        self.put_bytes(target, self.get_bytes(source))

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def put_model(self, key: str, model: BaseModel, compress: bool = False) -> None:
        """`model` as JSON; `compress` for records only facefleet reads (chunk results):
        gzip of the compact form, a third of the readable one's size."""
        if compress:
            data = gzip.compress(model.model_dump_json().encode(), compresslevel=6)
            self.put_bytes(key, data, "application/gzip")
            return
        self.put_bytes(key, model.model_dump_json(indent=1).encode(), "application/json")

    def get_model(self, key: str, model: type[M]) -> M:
        data = self.get_bytes(key)
        if data[:2] == GZIP_MAGIC:  # JSON never starts with these bytes
            data = gzip.decompress(data)
        try:
            return model.model_validate(json.loads(data))
        except ValueError as exc:
            raise StorageError(f"{key}: not a valid {model.__name__} ({exc})") from None

    def get_model_or_none(self, key: str, model: type[M]) -> M | None:
        try:
            return self.get_model(key, model)
        except ObjectNotFound:
            return None


class LocalStore(ObjectStore):
    """A folder as an object store: the in-process mode, same keys as in S3."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.location}")
        return path

    def _write(self, key: str, write: bytes | Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Readers never see a half-written object: write aside, then rename.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as fh:
                if isinstance(write, Path):
                    with open(write, "rb") as src:
                        shutil.copyfileobj(src, fh)
                else:
                    fh.write(write)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self._write(key, data)

    def put_file(
        self, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> None:
        self._write(key, Path(path))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in {self.location}") from None

    def get_file(self, key: str, path: Path) -> Path:
        source = self._path(key)
        if not source.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.location}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix.rstrip("/") if prefix.strip("/") else self.root
        if prefix.strip("/"):
            check_key(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".part-")
        )

    def modified(self, prefix: str) -> dict[str, datetime]:
        return {
            key: datetime.fromtimestamp((self.root / key).stat().st_mtime, UTC)
            for key in self.list(prefix)
        }

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Empty folders left behind would make `list` slower and `ls` confusing.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def url(self, key: str, expires_s: int) -> str:
        return self._path(key).resolve().as_uri()

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.location}")
        return path.stat().st_size


class S3Store(ObjectStore):
    """One bucket of an S3 server, through the minio SDK."""

    def __init__(
        self,
        endpoint: str,
        access_key: str | None,
        secret_key: str | None,
        bucket: str,
        secure: bool = False,
        region: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
    ) -> None:
        import urllib3
        from minio import Minio

        # The SDK's default pool retries for minutes; tasks retry with their own backoff, so
        # a stopped server should surface quickly as StorageUnavailable.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
            maxsize=16,
        )
        self.client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        self.bucket = bucket
        self.location = f"s3://{bucket} at {endpoint}"

    def _call(self, what: str, key: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        import urllib3
        from minio.error import MinioException, S3Error

        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(f"no object {key!r} in {self.location}") from None
            if exc.code == "NoSuchBucket":
                raise StorageError(
                    f"bucket {self.bucket!r} does not exist at {self.location}"
                ) from None
            if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageError(
                    f"{self.location} refused {what} {key!r}: {exc.code} "
                    "(check FACEFLEET_S3_ACCESS_KEY / FACEFLEET_S3_SECRET_KEY)"
                ) from None
            raise StorageUnavailable(
                f"{what} {key!r} failed at {self.location}: {exc.code}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
            raise StorageUnavailable(
                f"{self.location} unreachable during {what} {key!r}: {type(exc).__name__}"
            ) from None

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self._call(
            "upload",
            key,
            self.client.put_object,
            self.bucket,
            check_key(key),
            io.BytesIO(data),
            len(data),
            content_type=content_type,
        )

    def put_file(
        self, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> None:
        self._call(
            "upload",
            key,
            self.client.fput_object,
            self.bucket,
            check_key(key),
            str(path),
            content_type=content_type,
        )

    def get_bytes(self, key: str) -> bytes:
        def read() -> bytes:
            response = self.client.get_object(self.bucket, check_key(key))
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._call("download", key, read)

    def get_file(self, key: str, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._call("download", key, self.client.fget_object, self.bucket, check_key(key), str(path))
        return path

    def exists(self, key: str) -> bool:
        try:
            self._call("stat", key, self.client.stat_object, self.bucket, check_key(key))
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        return sorted(self.modified(prefix))

    def modified(self, prefix: str) -> dict[str, datetime]:
        return self._call(
            "list",
            prefix,
            lambda: {
                o.object_name: o.last_modified or datetime.fromtimestamp(0, UTC)
                for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
                if o.object_name and not o.is_dir
            },
        )

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.remove_object, self.bucket, check_key(key))

    def copy(self, source: str, target: str) -> None:
        from minio.commonconfig import CopySource

        self._call(
            "copy",
            source,
            self.client.copy_object,
            self.bucket,
            check_key(target),
            CopySource(self.bucket, check_key(source)),
        )

    def size(self, key: str) -> int:
        stat = self._call("stat", key, self.client.stat_object, self.bucket, check_key(key))
        return int(stat.size or 0)

    def upload_url(self, key: str, expires_s: int) -> str:
        return self._call(
            "presign",
            key,
            self.client.presigned_put_object,
            self.bucket,
            check_key(key),
            expires=timedelta(seconds=expires_s),
        )

    def url(self, key: str, expires_s: int) -> str:
        return self._call(
            "presign",
            key,
            self.client.presigned_get_object,
            self.bucket,
            check_key(key),
            expires=timedelta(seconds=expires_s),
        )


def open_store(settings: Settings) -> ObjectStore:
    """S3 when an endpoint is configured, otherwise the local folder of the in-process mode."""
    if settings.s3_endpoint:
        return S3Store(
            settings.s3_endpoint,
            settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
            settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
            settings.s3_bucket,
            settings.s3_secure,
            settings.s3_region,
        )
    return LocalStore(settings.store_dir)


def open_public_store(settings: Settings) -> ObjectStore:
    """The store as API clients reach it: its presigned URLs name FACEFLEET_S3_PUBLIC_ENDPOINT.
    Presigning is computed here, no request is made; a region is set because the SDK
    would otherwise ask the (possibly unreachable from here) public endpoint for it."""
    if not settings.s3_endpoint:
        return open_store(settings)
    return S3Store(
        settings.s3_public_endpoint or settings.s3_endpoint,
        settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
        settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
        settings.s3_bucket,
        settings.s3_secure,
        settings.s3_region or "us-east-1",
    )
