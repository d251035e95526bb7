"""The API checks keys on the connections of its pool (FACEFLEET_API_DB_POOL_SIZE), opened
at startup and closed at shutdown: requests open no connection of their own, a revoked key
still fails on its next request, a stopped database answers 503 in one line and a restarted
one is used again. Against a PostgreSQL of the test's own (it is stopped and started again
on the same port), the app served in-process with its lifespan (fastapi's TestClient)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from facefleet.api.app import create_app
from facefleet.api.keys import KeyStore
from facefleet.archive.embedded_server import (
    PostgresServer,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from facefleet.archive.store import ArchiveStore
from facefleet.core.settings import Settings, get_settings
from tests.postgres import require_embedded_postgres

POOL = 2
# Nothing listens there: routes that reach the broker or the store are not used here.
NOWHERE = "127.0.0.1:9"


@pytest.fixture()
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    require_embedded_postgres()
    server = start_embedded_postgres(tmp_path / "pg", log_file=tmp_path / "postgres.log")
    try:
        yield server
    finally:
        stop_embedded_postgres(server)


def _settings(dsn: str) -> Settings:
    return get_settings(
        broker_url=f"redis://{NOWHERE}/0",
        s3_endpoint=NOWHERE,
        s3_access_key="unused",
        s3_secret_key="unused",
        archive_url=dsn,
        api_db_pool_size=POOL,
    )


def _backends(dsn: str) -> set[tuple[int, str]]:
    """(pid, start) of every client connection but the asking one."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, backend_start::text FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return {(pid, start) for pid, start in rows}


def _checked(http: TestClient, token: str) -> int:
    """The status of a request that passes the key check and then stops at a 400 (a file
    name that is not a photo or video), so nothing but the database is reached."""
    response = http.post(
        "/v1/uploads",
        json={"filename": "notes.txt", "size": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status_code


def test_key_checks_borrow_pooled_connections(own_postgres: PostgresServer) -> None:
    dsn = own_postgres.dsn
    app = create_app(_settings(dsn))
    keys = KeyStore(ArchiveStore(dsn))
    token = keys.create("pool-test", ["submit"]).token
    with TestClient(app) as http:
        assert _checked(http, token) == 400
        opened = _backends(dsn)
        assert len(opened) == POOL
        for _ in range(30):
            assert _checked(http, token) == 400
        # The same connections served every request: none was opened or closed.
        assert _backends(dsn) == opened
        # Nothing about keys is cached: revoked, the key fails on its very next request.
        keys.revoke(token.split("_")[1])
        assert _checked(http, token) == 401
    # Shutdown closes the pool.
    assert _backends(dsn) == set()


def test_database_down_is_503_and_back_is_used_again(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    dsn = own_postgres.dsn
    app = create_app(_settings(dsn))  # migrates the schema
    token = KeyStore(ArchiveStore(dsn)).create("pool-test", ["submit"]).token
    with TestClient(app) as http:
        assert _checked(http, token) == 400
        stop_embedded_postgres(own_postgres)
        down = http.post(
            "/v1/uploads",
            json={"filename": "notes.txt", "size": 1},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert down.status_code == 503
        detail = down.json()["detail"]
        assert detail.startswith("the archive database cannot be reached") and "\n" not in detail
        again = start_embedded_postgres(
            tmp_path / "pg", port=own_postgres.port, log_file=tmp_path / "postgres.log"
        )
        try:
            # The pool dropped the dead connections and opens new ones on demand.
            assert _checked(http, token) == 400
        finally:
            stop_embedded_postgres(again)
