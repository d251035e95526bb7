"""Load on the HTTP API: many concurrent status reads and submissions at once.

    .venv/bin/python bench/api_load.py [--status 200] [--submit 20] [--results bench/results]

Starts a whole local stack (facefleet.localstack `up`: Redis, SeaweedFS, PostgreSQL, a gpu and
a cpu worker, beat, Flower and the API, with its admin key in DIR/api-key), submits one job to
read, then fires at the same moment `--status` concurrent GET /v1/jobs/{id} and `--submit`
concurrent submissions (POST /v1/uploads, PUT of a small LFW photo to the presigned URL, POST
/v1/jobs), each on its own connection (httpx.AsyncClient). Reports errors (anything but the
expected status) and p50/p95/p99 latency of each kind, then waits for the submitted jobs.
Results: RESULTS/api-load.json and api-load.md. The stack is stopped and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facefleet import localstack  # noqa: E402
from facefleet.http_client import HttpClient  # noqa: E402
from tests.data import shared_data_root  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(latencies: list[float], errors: list[str], count: int) -> dict[str, Any]:
    ms = [s * 1000 for s in latencies]
    return {
        "requests": count,
        "errors": len(errors),
        "error_samples": errors[:5],
        "p50_ms": round(percentile(ms, 50), 1) if ms else None,
        "p95_ms": round(percentile(ms, 95), 1) if ms else None,
        "p99_ms": round(percentile(ms, 99), 1) if ms else None,
        "max_ms": round(max(ms), 1) if ms else None,
    }


async def status_once(
    client: httpx.AsyncClient, job_id: str, start: asyncio.Event
) -> tuple[float, str | None]:
    await start.wait()
    began = time.perf_counter()
    try:
        response = await client.get(f"/v1/jobs/{job_id}")
    except httpx.HTTPError as exc:
        return time.perf_counter() - began, f"{type(exc).__name__}: {exc}"
    took = time.perf_counter() - began
    if response.status_code != 200:
        return took, f"HTTP {response.status_code}: {response.text[:200]}"
    return took, None


async def submit_once(
    client: httpx.AsyncClient, files: httpx.AsyncClient, photo: bytes, start: asyncio.Event
) -> tuple[float, float, str | None, str | None]:
    """(whole submission s, POST /v1/jobs alone s, error, job id)."""
    await start.wait()
    began = time.perf_counter()
    post_s = 0.0
    try:
        ticket = await client.post("/v1/uploads", json={"filename": "face.jpg", "size": len(photo)})
        if ticket.status_code != 201:
            return 0.0, 0.0, f"upload ticket HTTP {ticket.status_code}: {ticket.text[:200]}", None
        body = ticket.json()
        put = await files.put(body["url"], content=photo)
        if put.status_code >= 300:
            return 0.0, 0.0, f"PUT HTTP {put.status_code}: {put.text[:200]}", None
        posted = time.perf_counter()
        job = await client.post("/v1/jobs", json={"kind": "images", "uploads": [body["upload_id"]]})
        post_s = time.perf_counter() - posted
    except httpx.HTTPError as exc:
        return time.perf_counter() - began, post_s, f"{type(exc).__name__}: {exc}", None
    took = time.perf_counter() - began
    if job.status_code != 202:
        return took, post_s, f"POST /v1/jobs HTTP {job.status_code}: {job.text[:200]}", None
    return took, post_s, None, job.json()["status"]["job_id"]


async def load(url: str, key: str, job_id: str, photo: bytes, n_status: int, n_submit: int) -> dict:
    limits = httpx.Limits(max_connections=n_status + n_submit + 10, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {key}"}
    timeout = httpx.Timeout(120.0)
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as api,
        httpx.AsyncClient(limits=limits, timeout=timeout) as files,
    ):
        start = asyncio.Event()
        reads = [asyncio.create_task(status_once(api, job_id, start)) for _ in range(n_status)]
        writes = [
            asyncio.create_task(submit_once(api, files, photo, start)) for _ in range(n_submit)
        ]
        await asyncio.sleep(0.2)  # every task is waiting on the event: they start together
        began = time.perf_counter()
        start.set()
        read_results = await asyncio.gather(*reads)
        write_results = await asyncio.gather(*writes)
        wall = time.perf_counter() - began
    read_errors = [e for _, e in read_results if e]
    write_errors = [e for _, _, e, _ in write_results if e]
    return {
        "wall_s": round(wall, 3),
        "status": summary([t for t, e in read_results if not e], read_errors, n_status),
        "submit": summary([t for t, _, e, _ in write_results if not e], write_errors, n_submit),
        "submit_post_jobs": summary(
            [p for _, p, e, _ in write_results if not e], write_errors, n_submit
        ),
        "job_ids": [j for _, _, _, j in write_results if j],
    }


def markdown(report: dict[str, Any]) -> str:
    rows = [
        ("GET /v1/jobs/{id}", report["status"]),
        ("submission (ticket + PUT + POST /v1/jobs)", report["submit"]),
        ("POST /v1/jobs alone (within the submission)", report["submit_post_jobs"]),
    ]
    lines = [
        "# HTTP API under load",
        "",
        f"{report['date']} on {report['machine']}: {report['n_status']} concurrent status "
        f"reads and {report['n_submit']} concurrent image submissions started at the same "
        f"moment against one `facefleet api serve` (uvicorn, one process) on a local stack "
        f"(`python bench/api_load.py`). Wall time of the burst: {report['wall_s']} s.",
        "",
        "| requests | n | errors | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['requests']} | {s['errors']} | {s['p50_ms']} | {s['p95_ms']} | "
            f"{s['p99_ms']} | {s['max_ms']} |"
        )
    jobs = report["jobs"]
    lines += [
        "",
        f"The {report['n_submit']} submitted jobs afterwards: {jobs['states']} "
        f"(all finished {jobs['finished_s']} s after the burst).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--status", type=int, default=200, help="concurrent status reads")
    parser.add_argument("--submit", type=int, default=20, help="concurrent submissions")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    photo_path = shared_data_root() / "lfw" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"
    if not photo_path.is_file():
        raise SystemExit(f"no test photo at {photo_path} (set FACEFLEET_TEST_DATA)")
    photo = photo_path.read_bytes()

    with tempfile.TemporaryDirectory(prefix="facefleet-api-load-") as tmp:
        workdir = Path(tmp) / "stack"
        record = localstack.up(workdir)
        try:
            url = record["api"]
            key = Path(record["api_key_file"]).read_text().strip()
            sdk = HttpClient(url, key)
            deadline = time.monotonic() + 60
            while True:  # the API answers once uvicorn is up
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API at {url} did not answer")
                time.sleep(0.3)
            first = sdk.submit_images([photo_path], gallery=None)
            first.wait(timeout=300, poll_s=0.3)  # warm: the workers have their models
            report = asyncio.run(load(url, key, first.id, photo, args.status, args.submit))
            burst_end = time.monotonic()
            states: dict[str, int] = {}
            for job_id in report.pop("job_ids"):
                state = sdk.job(job_id).wait(timeout=600, poll_s=0.5).state
                states[state] = states.get(state, 0) + 1
            report["jobs"] = {
                "states": states,
                "finished_s": round(time.monotonic() - burst_end, 1),
            }
            sdk.close()
        finally:
            localstack.down(workdir)
    report |= {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "n_status": args.status,
        "n_submit": args.submit,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "api-load.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "api-load.md").write_text(markdown(report))
    print(markdown(report))
    failed = report["status"]["errors"] + report["submit"]["errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
