"""How much the batch system costs and gains: one real video in-process, then through the
local stack (real Redis, SeaweedFS, worker processes) with 1 and 2 workers, in one run.

    .venv/bin/python bench/cluster.py [--video PATH] [--chunk-frames N] [--repeat R]

Prints a Markdown table and writes bench/results/cluster.json. Per-task overhead is the
extra wall time of the 1-worker stack over the in-process run, divided by its tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "deploy"))

import stack  # noqa: E402

from core.settings import Settings, get_settings  # noqa: E402


def in_process(video: Path, gallery: Path, chunk: int, out: Path) -> float:
    from core.pipeline import build_pipeline
    from core.video_pipeline import run_video

    pipeline, _ = build_pipeline(get_settings(), gallery)
    started = time.perf_counter()
    run_video(video, pipeline, out / "local.mp4", chunk_frames=chunk)
    return time.perf_counter() - started


def through_stack(video: Path, gallery: Path, chunk: int, workers: int, repeat: int) -> list[float]:
    from facefleet.client import Client

    with tempfile.TemporaryDirectory(prefix="facefleet-bench-") as tmp:
        workdir = Path(tmp)
        stack.up(workdir, services_only=True)
        env = stack.stack_env(workdir)
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        procs = []
        try:
            for i in range(workers):
                log = open(workdir / f"w{i}.log", "wb")  # noqa: SIM115
                procs.append(
                    subprocess.Popen(
                        [
                            str(Path(sys.executable).with_name("facefleet")),
                            "worker",
                            "--queues",
                            "gpu,cpu",
                            "--hostname",
                            f"bench{i}@%h",
                        ],
                        env={**os.environ, **env, "FACEFLEET_WORKER_THREADS": threads},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            client = Client(
                Settings(**{k.removeprefix("FACEFLEET_").lower(): v for k, v in env.items()})
            )
            for person in sorted(gallery.iterdir()):
                client.gallery.enroll(person.name, sorted(person.iterdir()))  # waits: warm
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                job = client.submit_video(video, chunk_frames=chunk)
                status = job.wait(timeout=1800)
                times.append(time.perf_counter() - started)
                assert status.state == "done", status.message
            return times
        finally:
            for proc in procs:
                stack.stop_pid(proc.pid, 30)
            stack.down(workdir)


def main() -> int:
    data = get_settings().test_data / "videos" / "trump_speech"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=data / "trump.mp4")
    parser.add_argument("--gallery", type=Path, default=data / "gallery")
    parser.add_argument("--chunk-frames", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from core.video import probe

    frames = probe(args.video).frame_count
    chunks = -(-frames // args.chunk_frames)
    tasks = 2 * chunks + 3  # plan, analyze×k, merge, render×k, finalize
    with tempfile.TemporaryDirectory() as tmp:
        local = [
            in_process(args.video, args.gallery, args.chunk_frames, Path(tmp))
            for _ in range(args.repeat)
        ]
    one = through_stack(args.video, args.gallery, args.chunk_frames, 1, args.repeat)
    two = through_stack(args.video, args.gallery, args.chunk_frames, 2, args.repeat)
    med = {
        name: statistics.median(v)
        for name, v in (("in-process", local), ("stack, 1 worker", one), ("stack, 2 workers", two))
    }
    base = med["in-process"]
    rows = ["| run | wall s (median) | frames/s | vs in-process |", "|---|---|---|---|"]
    for name, seconds in med.items():
        rows.append(f"| {name} | {seconds:.1f} | {frames / seconds:.1f} | {base / seconds:.2f}× |")
    overhead = (med["stack, 1 worker"] - base) / tasks
    rows.append("")
    rows.append(
        f"{frames} frames, {chunks} chunks, {tasks} tasks; per-task overhead "
        f"(1-worker stack − in-process) / tasks = {overhead:.2f} s; "
        f"2 workers vs 1: {med['stack, 1 worker'] / med['stack, 2 workers']:.2f}×"
    )
    print("\n".join(rows))
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster.json").write_text(
        json.dumps(
            {
                "video": str(args.video.name),
                "frames": frames,
                "chunks": chunks,
                "tasks": tasks,
                "cores": os.cpu_count(),
                "runs": {"in_process": local, "stack_1": one, "stack_2": two},
                "median_s": med,
                "per_task_overhead_s": overhead,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
