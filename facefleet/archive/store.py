"""The archive's database: PostgreSQL + pgvector through psycopg. SQL lives here and only
here; `facefleet.archive.service` decides what to ask.

Schema migrations are the numbered files in `migrations/`, applied in order under an
advisory lock (two workers starting at once apply each file once) and recorded in
`schema_migrations`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import numpy as np

from facefleet.core.errors import FacefleetError, InputError

MIGRATION_LOCK = 0x66616365  # "face": one advisory lock id for schema changes


class ArchiveUnavailable(FacefleetError):
    """The archive's database cannot be reached (down, wrong URL, wrong password)."""


class ArchiveConflict(InputError):
    """A change refused because the data changed meanwhile (e.g. a cluster's version)."""


@dataclass
class TrackRow:
    """A track to record (embeddings as unit float32 vectors)."""

    track_id: int
    first_frame: int
    last_frame: int
    start_s: float
    end_s: float
    num_faces: int
    identity: str | None
    similarity: float | None
    embedding: np.ndarray
    thumbnail: str
    faces: list[tuple[int, float, list[float], str, np.ndarray]]  # frame, quality, lm, key, v


@dataclass
class StoredTrack:
    id: int
    job_id: str
    source: str
    track_id: int
    start_s: float
    end_s: float
    identity: str | None  # corrections applied
    original: str | None
    not_names: list[str]
    cluster_id: int | None
    thumbnail: str
    embedding: np.ndarray
    faces: np.ndarray  # (K, dim) best faces' embeddings
    qualities: np.ndarray  # (K,)
    finished: datetime


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration shipped, in order."""
    folder = resources.files("facefleet.archive") / "migrations"
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(out)


def _vector(value: Any) -> np.ndarray:
    """A vector column's value (pgvector's Vector for an undimensioned column) as float32."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, np.float32)


def _index_name(extractor: str) -> str:
    return "tracks_hnsw_" + hashlib.sha1(extractor.encode()).hexdigest()[:12]


_TRACK_COLUMNS = """t.id, t.job_id, t.source, t.track_id, t.start_s, t.end_s,
    coalesce(t.corrected, CASE WHEN t.is_corrected THEN NULL ELSE t.identity END),
    t.identity, t.not_names, t.cluster_id, t.thumbnail, t.embedding, j.finished"""


class ArchiveStore:
    """One archive database. Each call runs in its own short transaction, on a connection of
    its own or, once `open_pool` was called, on one borrowed from a pool (a long-lived
    process that asks often: the API checks a key on every request)."""

    def __init__(self, dsn: str, connect_timeout_s: float = 5.0, pool_size: int = 0) -> None:
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self.pool_size = pool_size
        self._pool: Any = None  # psycopg_pool.ConnectionPool, imported only where one opens
        self._indexed: set[str] = set()

    # ---- connections ----------------------------------------------------------------------

    def open_pool(self) -> None:
        """Open `pool_size` connections and keep them (0: none, a connection per call).
        ArchiveUnavailable when the database does not take them within the connect timeout."""
        if self.pool_size < 1 or self._pool is not None:
            return
        from psycopg_pool import ConnectionPool, PoolTimeout

        pool = ConnectionPool(
            self.dsn,
            min_size=self.pool_size,
            max_size=self.pool_size,
            open=False,
            kwargs={"connect_timeout": int(self.connect_timeout_s)},
            # A connection the server dropped meanwhile (a restart) is replaced when it is
            # borrowed, rather than failing the request that borrowed it.
            check=ConnectionPool.check_connection,
            name="facefleet-archive",
        )
        try:
            pool.open(wait=True, timeout=self.connect_timeout_s)
        except PoolTimeout:
            pool.close()
            raise ArchiveUnavailable(
                f"the archive database cannot be reached: {self.pool_size} pooled connections "
                f"not opened within {self.connect_timeout_s:g} s"
            ) from None
        self._pool = pool

    def close_pool(self) -> None:
        """Close the pool's connections; later calls open a connection each again."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection for one transaction: borrowed from the pool and given back, or new
        and closed after."""
        import psycopg

        pool = self._pool
        if pool is None:
            try:
                conn = psycopg.connect(self.dsn, connect_timeout=int(self.connect_timeout_s))
            except psycopg.OperationalError as exc:
                text = str(exc).strip()
                first = text.splitlines()[0] if text else type(exc).__name__
                raise ArchiveUnavailable(
                    f"the archive database cannot be reached: {first}"
                ) from None
            try:
                yield conn
            finally:
                conn.close()
            return
        from psycopg_pool import PoolTimeout

        try:
            conn = pool.getconn(timeout=self.connect_timeout_s)
        except PoolTimeout:
            # Either the database is down (the pool cannot replace what it lost) or every
            # connection stayed busy that long: both read as the database not answering.
            raise ArchiveUnavailable(
                f"the archive database cannot be reached: no connection of the pool of "
                f"{self.pool_size} within {self.connect_timeout_s:g} s"
            ) from None
        try:
            yield conn
        finally:
            pool.putconn(conn)  # a broken one is discarded and replaced by the pool

    @contextmanager
    def transaction(self, vectors: bool = True) -> Iterator[Any]:
        """A cursor in one transaction; `vectors=False` for queries that need no pgvector
        type (health checks, counts, keys), which then work before the schema is migrated
        and skip the type's lookup on a new connection."""
        import psycopg
        from pgvector.psycopg import register_vector

        with self._connection() as conn:
            try:
                with conn.transaction():
                    # Once per connection: a pooled one keeps its registered types.
                    if vectors and conn.adapters.types.get("vector") is None:
                        register_vector(conn)
                    with conn.cursor() as cur:
                        yield cur
            except psycopg.OperationalError as exc:
                raise ArchiveUnavailable(f"the archive database failed: {exc}") from None

    # ---- schema ---------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the migrations not applied yet; returns their file names."""
        import psycopg

        try:
            conn = psycopg.connect(self.dsn, connect_timeout=int(self.connect_timeout_s))
        except psycopg.OperationalError as exc:
            raise ArchiveUnavailable(f"the archive database cannot be reached: {exc}") from None
        applied: list[str] = []
        try:
            with conn:
                cur = conn.cursor()
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                    " name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())"
                )
                cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in cur.fetchall()}
                for version, name, sql in migrations():
                    if version in done:
                        continue
                    cur.execute(sql)
                    cur.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                    applied.append(name)
        finally:
            conn.close()
        return applied

    def ensure_vector_index(self, extractor: str, dim: int) -> None:
        """The partial HNSW index of one extractor's track embeddings (cosine)."""
        if extractor in self._indexed:
            return
        from psycopg import sql

        with self.transaction() as cur:
            cur.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON tracks USING hnsw "
                    "((embedding::vector({})) vector_cosine_ops) WITH (m = 32, "
                    "ef_construction = 128) WHERE extractor = {}"
                ).format(
                    sql.Identifier(_index_name(extractor)), sql.Literal(dim), sql.Literal(extractor)
                )
            )
        self._indexed.add(extractor)

    # ---- jobs and tracks ------------------------------------------------------------------

    def record_job(
        self,
        job_id: str,
        source: str,
        frame_count: int,
        fps: float,
        extractor: str,
        finished: datetime,
        tracks: Sequence[TrackRow],
    ) -> int:
        """Record a job's tracks, replacing what an earlier attempt recorded."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM jobs WHERE job_id = %s", (job_id,))
            cur.execute(
                "INSERT INTO jobs (job_id, source, frame_count, fps, extractor, finished) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (job_id, source, frame_count, fps, extractor, finished),
            )
            for t in tracks:
                cur.execute(
                    "INSERT INTO tracks (job_id, track_id, source, first_frame, last_frame, "
                    "start_s, end_s, num_faces, identity, similarity, extractor, embedding, "
                    "thumbnail) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                    (
                        job_id,
                        t.track_id,
                        source,
                        t.first_frame,
                        t.last_frame,
                        t.start_s,
                        t.end_s,
                        t.num_faces,
                        t.identity,
                        t.similarity,
                        extractor,
                        t.embedding.astype(np.float32),
                        t.thumbnail,
                    ),
                )
                row_id = cur.fetchone()[0]
                cur.executemany(
                    "INSERT INTO track_faces (track, k, frame, quality, landmarks, region, "
                    "embedding) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                    [
                        (row_id, k, frame, quality, landmarks, key, vec.astype(np.float32))
                        for k, (frame, quality, landmarks, key, vec) in enumerate(t.faces)
                    ],
                )
        return len(tracks)

    def indexed_jobs(self) -> dict[str, int]:
        """Job id -> number of indexed tracks."""
        with self.transaction() as cur:
            cur.execute(
                "SELECT j.job_id, count(t.id) FROM jobs j LEFT JOIN tracks t USING (job_id) "
                "GROUP BY j.job_id"
            )
            return {job: int(n) for job, n in cur.fetchall()}

    def delete_job(self, job_id: str) -> int:
        with self.transaction() as cur:
            cur.execute("SELECT count(*) FROM tracks WHERE job_id = %s", (job_id,))
            n = int(cur.fetchone()[0])
            cur.execute("DELETE FROM jobs WHERE job_id = %s", (job_id,))
            cur.execute(
                "DELETE FROM clusters c WHERE NOT EXISTS "
                "(SELECT 1 FROM tracks t WHERE t.cluster_id = c.cluster_id)"
            )
        return n

    def _tracks(self, cur: Any, where: str, params: Sequence[Any]) -> list[StoredTrack]:
        cur.execute(
            f"SELECT {_TRACK_COLUMNS} FROM tracks t JOIN jobs j USING (job_id) WHERE {where} "
            "ORDER BY t.job_id, t.track_id",
            params,
        )
        rows = cur.fetchall()
        faces: dict[int, list[tuple[np.ndarray, float]]] = {}
        if rows:
            cur.execute(
                "SELECT track, embedding, quality FROM track_faces WHERE track = ANY(%s) "
                "ORDER BY track, k",
                ([r[0] for r in rows],),
            )
            for track, vec, quality in cur.fetchall():
                faces.setdefault(track, []).append((_vector(vec), quality))
        out = []
        for r in rows:
            mine = faces.get(r[0]) or [(_vector(r[11]), 1.0)]
            out.append(
                StoredTrack(
                    id=r[0],
                    job_id=r[1],
                    source=r[2],
                    track_id=r[3],
                    start_s=r[4],
                    end_s=r[5],
                    identity=r[6],
                    original=r[7],
                    not_names=list(r[8]),
                    cluster_id=r[9],
                    thumbnail=r[10],
                    embedding=_vector(r[11]),
                    faces=np.stack([v for v, _ in mine]),
                    qualities=np.array([q for _, q in mine], np.float32),
                    finished=r[12],
                )
            )
        return out

    def track(self, job_id: str, track_id: int) -> StoredTrack | None:
        with self.transaction() as cur:
            found = self._tracks(cur, "t.job_id = %s AND t.track_id = %s", (job_id, track_id))
        return found[0] if found else None

    def tracks_of_job(self, job_id: str) -> list[StoredTrack]:
        with self.transaction() as cur:
            return self._tracks(cur, "t.job_id = %s", (job_id,))

    def nearest_tracks(
        self, extractor: str, queries: np.ndarray, max_distance: float, limit: int
    ) -> list[StoredTrack]:
        """Tracks of `extractor` whose mean embedding lies within `max_distance` (cosine)
        of any query, through the extractor's HNSW index (iterative scan, so a filter does
        not starve the result)."""
        dim = int(queries.shape[1])
        ids: set[int] = set()
        with self.transaction() as cur:
            cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            # m=32, ef_construction=128 and ef_search=400: recall@10 0.966 at p50 15 ms on
            # 1M tracks, 2 cores (bench/results/archive-scale.md; m=16 tops out at 0.90).
            cur.execute("SET LOCAL hnsw.ef_search = 400")
            for q in queries.astype(np.float32):
                cur.execute(
                    f"SELECT id FROM tracks WHERE extractor = %s AND "
                    f"(embedding::vector({dim}) <=> %s::vector({dim})) < %s "
                    f"ORDER BY embedding::vector({dim}) <=> %s::vector({dim}) LIMIT %s",
                    (extractor, q, max_distance, q, limit),
                )
                ids.update(r[0] for r in cur.fetchall())
            if not ids:
                return []
            return self._tracks(cur, "t.id = ANY(%s)", (sorted(ids),))

    def tracks_named(self, name: str) -> list[StoredTrack]:
        with self.transaction() as cur:
            return self._tracks(
                cur, "(t.corrected = %s OR (t.identity = %s AND NOT t.is_corrected))", (name, name)
            )

    def stale_tracks(self, extractor: str) -> list[tuple[int, list[tuple[int, str, list[float]]]]]:
        """Tracks embedded by another extractor: per track its faces (k, region, landmarks)."""
        with self.transaction() as cur:
            cur.execute(
                "SELECT f.track, f.k, f.region, f.landmarks FROM track_faces f JOIN tracks t "
                "ON t.id = f.track WHERE t.extractor <> %s ORDER BY f.track, f.k",
                (extractor,),
            )
            out: dict[int, list[tuple[int, str, list[float]]]] = {}
            for track, k, region, landmarks in cur.fetchall():
                out.setdefault(track, []).append((k, region, list(landmarks)))
        return list(out.items())

    def reembed_track(
        self, track: int, extractor: str, mean: np.ndarray, faces: dict[int, np.ndarray]
    ) -> None:
        with self.transaction() as cur:
            cur.execute(
                "UPDATE tracks SET extractor = %s, embedding = %s, cluster_id = NULL WHERE id = %s",
                (extractor, mean.astype(np.float32), track),
            )
            for k, vec in faces.items():
                cur.execute(
                    "UPDATE track_faces SET embedding = %s WHERE track = %s AND k = %s",
                    (vec.astype(np.float32), track, k),
                )

    # ---- names ----------------------------------------------------------------------------

    def correct(self, track: int, name: str | None, not_name: str | None = None) -> None:
        """Name a track (`name`; None: unknown), or add a name it is not."""
        with self.transaction() as cur:
            if not_name is not None:
                cur.execute(
                    "UPDATE tracks SET not_names = array_append(array_remove(not_names, %s), %s)"
                    " WHERE id = %s",
                    (not_name, not_name, track),
                )
            cur.execute(
                "UPDATE tracks SET corrected = %s, is_corrected = true, cluster_id = "
                "CASE WHEN %s::text IS NULL THEN cluster_id ELSE NULL END WHERE id = %s",
                (name, name, track),
            )

    def forget(self, name: str) -> tuple[list[str], int, list[str]]:
        """Remove `name` from every track (given or corrected) and the person's labelled
        faces; returns the jobs touched, the number of tracks and the labelled regions."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE tracks SET corrected = NULL, is_corrected = true, "
                "not_names = array_remove(not_names, %s) WHERE corrected = %s OR "
                "(identity = %s AND NOT is_corrected) RETURNING job_id",
                (name, name, name),
            )
            jobs = [r[0] for r in cur.fetchall()]
            cur.execute(
                "UPDATE tracks SET identity = NULL, similarity = NULL WHERE identity = %s",
                (name,),
            )
            cur.execute("DELETE FROM labelled_faces WHERE person = %s RETURNING region", (name,))
            regions = [r[0] for r in cur.fetchall()]
        return sorted(set(jobs)), len(jobs), regions

    def add_labelled(
        self,
        person: str,
        gallery: str,
        faces: Sequence[tuple[str, list[float]]],
        job_id: str | None,
        track_id: int | None,
    ) -> None:
        with self.transaction() as cur:
            cur.executemany(
                "INSERT INTO labelled_faces (person, gallery, region, landmarks, job_id, "
                "track_id) VALUES (%s,%s,%s,%s,%s,%s)",
                [(person, gallery, region, lm, job_id, track_id) for region, lm in faces],
            )

    def is_labelled(self, job_id: str, track_id: int, person: str) -> bool:
        """Whether a person already labelled this track as `person`."""
        with self.transaction() as cur:
            cur.execute(
                "SELECT 1 FROM labelled_faces WHERE job_id = %s AND track_id = %s "
                "AND person = %s LIMIT 1",
                (job_id, track_id, person),
            )
            return cur.fetchone() is not None

    def remove_labelled(self, job_id: str, track_id: int) -> int:
        with self.transaction() as cur:
            cur.execute(
                "DELETE FROM labelled_faces WHERE job_id = %s AND track_id = %s",
                (job_id, track_id),
            )
            return cur.rowcount

    def labelled(self) -> list[tuple[str, str, str, list[float]]]:
        """(person, gallery, region key, landmarks) of every labelled face."""
        with self.transaction() as cur:
            cur.execute("SELECT person, gallery, region, landmarks FROM labelled_faces ORDER BY id")
            return [(p, g, r, list(lm)) for p, g, r, lm in cur.fetchall()]

    def track_regions(self, track: int) -> list[tuple[str, list[float]]]:
        with self.transaction() as cur:
            cur.execute(
                "SELECT region, landmarks FROM track_faces WHERE track = %s ORDER BY k",
                (track,),
            )
            return [(r, list(lm)) for r, lm in cur.fetchall()]

    # ---- clusters -------------------------------------------------------------------------

    def unknown_tracks(self, extractor: str) -> list[StoredTrack]:
        """Tracks nobody is named in (neither at processing time nor by a correction)."""
        with self.transaction() as cur:
            return self._tracks(
                cur,
                "t.extractor = %s AND coalesce(t.corrected, CASE WHEN t.is_corrected "
                "THEN NULL ELSE t.identity END) IS NULL",
                (extractor,),
            )

    def clusters(self) -> list[tuple[int, int, bool]]:
        """(cluster id, version, pinned) of every cluster."""
        with self.transaction() as cur:
            cur.execute("SELECT cluster_id, version, pinned FROM clusters ORDER BY cluster_id")
            return [(int(c), int(v), bool(p)) for c, v, p in cur.fetchall()]

    def cluster_tracks(self, cluster_id: int) -> list[StoredTrack]:
        with self.transaction() as cur:
            return self._tracks(cur, "t.cluster_id = %s", (cluster_id,))

    def cluster_version(self, cluster_id: int) -> int | None:
        with self.transaction() as cur:
            cur.execute("SELECT version FROM clusters WHERE cluster_id = %s", (cluster_id,))
            row = cur.fetchone()
        return None if row is None else int(row[0])

    def assign(
        self,
        extractor: str,
        assignment: dict[int, int | None],
        new_groups: Sequence[Sequence[int]],
        pinned: bool = False,
    ) -> list[int]:
        """Move tracks (row ids) into existing clusters (or out of any: None) and create one
        cluster per group of `new_groups`; bumps the version of every cluster touched,
        removes emptied ones; returns the new clusters' ids."""
        created: list[int] = []
        with self.transaction() as cur:
            touched: set[int] = set()
            if assignment:
                cur.execute(
                    "SELECT DISTINCT cluster_id FROM tracks WHERE id = ANY(%s) "
                    "AND cluster_id IS NOT NULL",
                    (list(assignment),),
                )
                touched |= {r[0] for r in cur.fetchall()}
            for track, cluster in assignment.items():
                cur.execute("UPDATE tracks SET cluster_id = %s WHERE id = %s", (cluster, track))
                if cluster is not None:
                    touched.add(cluster)
            for group in new_groups:
                cur.execute(
                    "INSERT INTO clusters (extractor, pinned) VALUES (%s, %s) RETURNING cluster_id",
                    (extractor, pinned),
                )
                cluster = int(cur.fetchone()[0])
                created.append(cluster)
                cur.execute(
                    "UPDATE tracks SET cluster_id = %s WHERE id = ANY(%s)", (cluster, list(group))
                )
            if touched:
                cur.execute(
                    "UPDATE clusters SET version = version + 1 WHERE cluster_id = ANY(%s)",
                    (sorted(touched),),
                )
            cur.execute(
                "DELETE FROM clusters c WHERE NOT EXISTS "
                "(SELECT 1 FROM tracks t WHERE t.cluster_id = c.cluster_id)"
            )
        return created

    def set_pinned(self, cluster_ids: Sequence[int], pinned: bool = True) -> None:
        with self.transaction() as cur:
            cur.execute(
                "UPDATE clusters SET pinned = %s, version = version + 1 WHERE cluster_id = ANY(%s)",
                (pinned, list(cluster_ids)),
            )

    def name_cluster(self, cluster_id: int, expected_version: int | None, name: str) -> list[int]:
        """Name every track of a cluster (one transaction, the cluster locked) and remove
        the cluster; returns the track row ids. Refused when the cluster's version is not
        `expected_version` (it changed since it was listed)."""
        with self.transaction() as cur:
            cur.execute(
                "SELECT version FROM clusters WHERE cluster_id = %s FOR UPDATE", (cluster_id,)
            )
            row = cur.fetchone()
            if row is None:
                raise ArchiveConflict(f"there is no unknown-people cluster {cluster_id}")
            if expected_version is not None and int(row[0]) != expected_version:
                raise ArchiveConflict(
                    f"cluster {cluster_id} changed since it was listed (version {row[0]}, "
                    f"not {expected_version}): list the people again and check it"
                )
            cur.execute(
                "UPDATE tracks SET corrected = %s, is_corrected = true, cluster_id = NULL "
                "WHERE cluster_id = %s RETURNING id",
                (name, cluster_id),
            )
            ids = [r[0] for r in cur.fetchall()]
            cur.execute("DELETE FROM clusters WHERE cluster_id = %s", (cluster_id,))
        return ids

    # ---- counts ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.transaction() as cur:
            out = {}
            for table in ("jobs", "tracks", "track_faces", "clusters", "labelled_faces"):
                cur.execute(f"SELECT count(*) FROM {table}")
                out[table] = int(cur.fetchone()[0])
        return out

    def ping(self) -> None:
        """SELECT 1: the database answers (ArchiveUnavailable when it does not)."""
        with self.transaction(vectors=False) as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    def index_size(self) -> dict[str, int]:
        """`counts()` for `/metrics`: a table not created yet (no worker has migrated the
        schema of a new database) counts 0 instead of failing the scrape."""
        tables = ("jobs", "tracks", "track_faces", "clusters", "labelled_faces")
        with self.transaction(vectors=False) as cur:
            cur.execute(
                "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL",
                (list(tables),),
            )
            present = {row[0] for row in cur.fetchall()}
            out = dict.fromkeys(tables, 0)
            for table in tables:
                if table in present:
                    cur.execute(f"SELECT count(*) FROM {table}")
                    out[table] = int(cur.fetchone()[0])
        return out
