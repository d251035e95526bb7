"""facefleet against the straightforward per-frame loop, on the same models, in one run.

    .venv/bin/python bench/speed.py [--video PATH --gallery DIR] [--images DIR]
                                    [--repeat 3] [--chunk-frames 64] [--no-stack]

Modes, each in a fresh process so peak memory is its own:
  baseline      the seed's loop: cv2.VideoCapture reads a frame, the detector runs on that
                frame, each face is aligned, embedded and matched on its own, the frame is
                drawn and written with cv2.VideoWriter (mp4v). Same detector, landmark
                refinement, extractor, gallery and threshold as facefleet.
  in-process    `run_video`, as `facefleet process` runs it: threaded decode, batched
                detection and embedding, tracking, H.264 output with audio.
  in-process, every face   the same with the embedding budget off
                (FACEFLEET_EMBEDDING_BUDGET=false): every detected face embedded.
  stack 1 / 2   the same job submitted to the local stack (real Redis, SeaweedFS, worker
                processes), warm workers, wall time from submit to done. Sampled during
                each job: the bytes the job wrote to the object store (every key under
                jobs/<id>/ at its largest, intermediates included), when analysis began
                (the status reaching stage "analyze"), and the RSS of each worker pool
                process, idle before the job and at its largest while working.
and for image batches: the same loop over image files (cv2.imread, one detector call and
one extractor call per face) against `FacePipeline.process_images`.

Wall times exclude model loading (reported separately as load_s). Every mode runs
`--repeat` times; the table gives the median. Results: bench/results/speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from facefleet.core.settings import get_settings  # noqa: E402
from facefleet.jobs.records import JobStatus  # noqa: E402
from tests.data import shared_data_root  # noqa: E402

if TYPE_CHECKING:
    from facefleet.client import Client
    from facefleet.core.pipeline import FacePipeline

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
EVERY_FACE = {"FACEFLEET_EMBEDDING_BUDGET": "false"}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pipeline(gallery: Path) -> tuple[FacePipeline, float]:
    from facefleet.core.pipeline import build_pipeline

    started = time.perf_counter()
    pipeline, _ = build_pipeline(get_settings(), gallery)
    return pipeline, time.perf_counter() - started


# ---- the modes, each run inside its own process --------------------------------------------


def baseline_video(video: Path, gallery: Path, out: Path) -> dict:
    import cv2

    from facefleet.core.alignment import align_face
    from facefleet.core.drawing import draw_faces
    from facefleet.core.schemas import FaceResult

    pipeline, load_s = _pipeline(gallery)
    assert pipeline.extractor is not None
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    frames = faces = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if writer is None:
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            writer = cv2.VideoWriter(str(out / "baseline.mp4"), fourcc, fps, (width, height))
        results = []
        for det in pipeline.detect([frame])[0]:
            crop = align_face(frame, det, pipeline.extractor.geometry)
            vector = pipeline.extractor.embed(crop[None])
            (match,) = pipeline.match(vector)
            results.append(FaceResult.from_detection(det, match))
        writer.write(draw_faces(frame, results))
        frames += 1
        faces += len(results)
    capture.release()
    if writer is not None:
        writer.release()
    return {
        "wall_s": time.perf_counter() - started,
        "frames": frames,
        "faces": faces,
        "load_s": load_s,
    }


def inprocess_video(video: Path, gallery: Path, out: Path) -> dict:
    from facefleet.core.video_pipeline import run_video

    pipeline, load_s = _pipeline(gallery)
    started = time.perf_counter()
    result = run_video(video, pipeline, out / "facefleet.mp4")
    wall = time.perf_counter() - started
    faces = sum(1 for f in result.frames for face in f.faces if not face.interpolated)
    return {"wall_s": wall, "frames": result.frame_count, "faces": faces, "load_s": load_s}


IMAGE_ROUNDS = 4  # the photos of the folder, this many times over: enough work to time


def _images(folder: Path) -> list[Path]:
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return found * IMAGE_ROUNDS


def baseline_images(images: Path, gallery: Path, out: Path) -> dict:
    import cv2

    from facefleet.core.alignment import align_face
    from facefleet.core.drawing import draw_faces
    from facefleet.core.schemas import FaceResult

    pipeline, load_s = _pipeline(gallery)
    assert pipeline.extractor is not None
    paths = _images(images)
    started = time.perf_counter()
    faces = 0
    for i, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        results = []
        for det in pipeline.detect([image])[0]:
            vector = pipeline.extractor.embed(
                align_face(image, det, pipeline.extractor.geometry)[None]
            )
            (match,) = pipeline.match(vector)
            results.append(FaceResult.from_detection(det, match))
        cv2.imwrite(str(out / f"{i:05d}.jpg"), draw_faces(image, results))
        faces += len(results)
    return {
        "wall_s": time.perf_counter() - started,
        "images": len(paths),
        "faces": faces,
        "load_s": load_s,
    }


def inprocess_images(images: Path, gallery: Path, out: Path) -> dict:
    from facefleet.core.drawing import draw_faces
    from facefleet.core.images import write_image

    pipeline, load_s = _pipeline(gallery)
    paths = _images(images)
    started = time.perf_counter()
    faces = 0
    for i, item in enumerate(pipeline.process_images(paths)):
        assert item.result is not None and item.image is not None, item.error
        write_image(out / f"{i:05d}.jpg", draw_faces(item.image, item.result.faces))
        faces += len(item.result.faces)
    return {
        "wall_s": time.perf_counter() - started,
        "images": len(paths),
        "faces": faces,
        "load_s": load_s,
    }


MODES = {
    "baseline-video": baseline_video,
    "inprocess-video": inprocess_video,
    "baseline-images": baseline_images,
    "inprocess-images": inprocess_images,
}


def run_mode(mode: str, source: Path, gallery: Path, env: dict[str, str] | None = None) -> dict:
    """One repetition of a mode in a fresh interpreter; returns its measurements."""
    with tempfile.TemporaryDirectory(prefix="facefleet-bench-") as tmp:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", mode, str(source), str(gallery), tmp],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the local stack ----------------------------------------------------------------------


def through_stack(video: Path, gallery: Path, chunk: int, workers: int, repeat: int) -> list[dict]:
    from facefleet import localstack
    from facefleet.client import Client
    from facefleet.core.settings import Settings

    with tempfile.TemporaryDirectory(prefix="facefleet-bench-") as tmp:
        workdir = Path(tmp)
        localstack.up(workdir, services_only=True)
        env = localstack.stack_env(workdir)
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        started: list[localstack.Service] = []
        try:
            for i in range(workers):
                started.append(
                    localstack.start_facefleet(
                        workdir,
                        f"bench{i}",
                        ["worker", "--queues", "gpu,cpu", "--hostname", f"bench{i}@%h"],
                        env={"FACEFLEET_THREADS": threads},
                    )
                )
            client = Client(
                Settings(**{k.removeprefix("FACEFLEET_").lower(): v for k, v in env.items()})
            )
            for person in sorted(gallery.iterdir()):
                client.gallery.enroll(person.name, sorted(person.iterdir()))  # waits: warm
            runs = []
            for _ in range(repeat):
                idle = _pool_rss_mb([s.pid for s in started])
                submitted = datetime.now(UTC)
                started_at = time.perf_counter()
                job = client.submit_video(video, chunk_frames=chunk)
                sampler = JobSampler(client, job.id, [s.pid for s in started], submitted)
                sampler.start()
                status = job.wait(timeout=3600, poll_s=0.1)  # timing, not load
                wall = time.perf_counter() - started_at
                sampler.stop()
                if status.state != "done":
                    raise SystemExit(f"stack job {status.state}: {status.message}")
                peak = _tree_peak_rss_mb([s.pid for s in started])
                runs.append(
                    {
                        "wall_s": wall,
                        "peak_rss_mb": peak,
                        "pool_idle_rss_mb": max(idle, default=0.0),
                        **sampler.summary(job.id),
                    }
                )
            return runs
        finally:
            for service in started:
                localstack.stop_service(service, 30)
            localstack.down(workdir)


class JobSampler(threading.Thread):
    """Polls one job while it runs, twice a second (more often, the polling itself took a
    fifth of the two cores): the size of every object under jobs/<id>/ (kept at its
    largest: intermediates live until the job ends, seconds after they are written), when
    the status reached stage "analyze" (its own timestamp), and the pool processes' RSS."""

    def __init__(self, client: Client, job_id: str, pids: list[int], t0: datetime) -> None:
        super().__init__(daemon=True)
        self.client, self.prefix, self.pids, self.t0 = client, f"jobs/{job_id}/", pids, t0
        self.sizes: dict[str, int] = {}
        self.analysis_at: float | None = None
        self.pool_rss = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        store = self.client.store
        while not self._done.is_set():
            self._sample(store)
            self._done.wait(0.5)
        self._sample(store)

    def _sample(self, store: Any) -> None:
        for obj in store.client.list_objects(store.bucket, prefix=self.prefix, recursive=True):
            if obj.object_name and obj.size is not None:
                self.sizes[obj.object_name] = max(obj.size, self.sizes.get(obj.object_name, 0))
        if self.analysis_at is None:
            status = store.get_model(self.prefix + "status.json", JobStatus)
            if status.stage == "analyze":
                self.analysis_at = (status.updated - self.t0).total_seconds()
        self.pool_rss = max([self.pool_rss, *_pool_rss_mb(self.pids)])

    def stop(self) -> None:
        self._done.set()
        self.join()

    def summary(self, job_id: str) -> dict:
        source = sum(v for k, v in self.sizes.items() if k.startswith(self.prefix + "input/"))
        outputs = sum(v for k, v in self.sizes.items() if k.startswith(self.prefix + "output/"))
        return {
            "written_bytes": sum(self.sizes.values()),
            "source_bytes": source,
            "output_bytes": outputs,
            "analysis_start_s": self.analysis_at,
            "pool_working_rss_mb": self.pool_rss,
        }


def _worker_processes(pids: list[int], with_roots: bool) -> list[Any]:
    """The pool processes (children) of the worker processes `pids`, and the workers
    themselves when `with_roots`; processes that are gone are left out."""
    import psutil

    procs = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root] if with_roots else []
            procs += root.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
    return procs


def _pool_rss_mb(pids: list[int]) -> list[float]:
    """Current RSS of each pool process (the children of the worker processes `pids`)."""
    import psutil

    out = []
    for proc in _worker_processes(pids, with_roots=False):
        try:
            out.append(proc.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            continue
    return out


def _tree_peak_rss_mb(pids: list[int]) -> float:
    """The largest peak RSS among the worker processes `pids` and their pool children. The
    peak (VmHWM) is read from /proc, as psutil has no field for it."""
    peak = 0.0
    for proc in _worker_processes(pids, with_roots=True):
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) / 1024)
    return peak


# ---- report -------------------------------------------------------------------------------


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _table(runs_by_name: dict[str, list[dict]], unit: str, count: int, faces: int) -> list[str]:
    """Median wall time, rate, faces/s, peak RSS and the ratio to the baseline per run."""
    base = _median(runs_by_name["baseline"], "wall_s")
    lines = [
        f"| run | wall s | {unit}/s | faces/s | peak RSS MB | vs baseline |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in runs_by_name.items():
        wall = _median(runs, "wall_s")
        rss = max(r["peak_rss_mb"] for r in runs)
        lines.append(
            f"| {name} | {wall:.2f} | {count / wall:.1f} | {faces / wall:.1f} | {rss:.0f} "
            f"| {base / wall:.2f}× |"
        )
    return lines


def _stack_table(video_runs: dict[str, list[dict]]) -> list[str]:
    """Per stack run: object-store bytes against the source plus the outputs, when analysis
    began, wall time against in-process, and the pool processes' memory."""
    inprocess = _median(video_runs["in-process"], "wall_s")
    lines = [
        "| run | written MB | source + outputs MB | ratio | analysis starts s "
        "| vs in-process | pool RSS idle MB | pool RSS working MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in video_runs.items():
        if not name.startswith("stack"):
            continue
        written = _median(runs, "written_bytes") / 1e6
        delivered = _median([{"v": r["source_bytes"] + r["output_bytes"]} for r in runs], "v")
        lines.append(
            f"| {name} | {written:.2f} | {delivered / 1e6:.2f} | {written * 1e6 / delivered:.2f}× "
            f"| {_median(runs, 'analysis_start_s'):.2f} "
            f"| {inprocess / _median(runs, 'wall_s'):.2f}× "
            f"| {max(r['pool_idle_rss_mb'] for r in runs):.0f} "
            f"| {max(r['pool_working_rss_mb'] for r in runs):.0f} |"
        )
    return lines


def report(video_runs: dict[str, list[dict]], image_runs: dict[str, list[dict]], meta: dict) -> str:
    frames, faces = meta["frames"], meta["faces"]
    lines = [
        f"Video: {meta['video']} ({meta['width']}×{meta['height']}, {frames} frames, "
        f"{faces} faces detected); extractor {meta['extractor']}; {meta['cpu']}, "
        f"{meta['cores']} cores, {meta['memory_gb']:.0f} GB; median of {meta['repeat']} runs; "
        f"stack chunks of {meta['chunk_frames']} frames.",
        "",
        *_table(video_runs, "frames", frames, faces),
    ]
    if any(name.startswith("stack") for name in video_runs):
        lines += ["", *_stack_table(video_runs)]
    if image_runs:
        first = next(iter(image_runs.values()))[0]
        lines += [
            "",
            f"Images: {meta['images_dir']} ({first['images']} files, {first['faces']} faces).",
            "",
            *_table(image_runs, "images", first["images"], first["faces"]),
        ]
    return "\n".join(lines)


def make_minute_clip(videos: Path, out: Path, seconds: float = 60.0) -> tuple[Path, Path]:
    """Every clip of the data set scaled to 640×360 and played in turn until `seconds` of
    30 fps video are made; with one gallery holding the people of every case."""
    from clips import write_looped

    clip = write_looped(
        sorted(videos.glob("*/*.mp4")), out / "minute.mp4", int(seconds * 30), (640, 360), 30.0
    )
    gallery = out / "gallery"
    for person in sorted(videos.glob("*/gallery/*")):
        target = gallery / person.name
        target.mkdir(parents=True, exist_ok=True)
        for image in person.iterdir():
            link = target / f"{person.parent.parent.name}-{image.name}"
            if not link.exists():
                link.symlink_to(image.resolve())
    return clip, gallery


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        mode, source, gallery, out = sys.argv[2:6]
        result = MODES[mode](Path(source), Path(gallery), Path(out))
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return 0

    data = shared_data_root()
    case = data / "videos" / "hamilton_whitehouse"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=case / "short_hamilton_clip.mp4")
    parser.add_argument("--gallery", type=Path, default=case / "gallery")
    parser.add_argument(
        "--images",
        type=Path,
        default=data / "images",
        help="folder of photos for the image-batch runs (searched recursively)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-frames", type=int, default=64)
    parser.add_argument(
        "--one-minute",
        action="store_true",
        help="instead of --video: every data-set clip at 640×360 in turn, 60 s (the "
        "batch system's overhead on a longer job)",
    )
    parser.add_argument("--no-stack", action="store_true", help="skip the local-stack runs")
    parser.add_argument("--no-images", action="store_true", help="skip the image-batch runs")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "speed")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="facefleet-speed-"))
    if args.one_minute:
        if not (data / "videos").is_dir():
            parser.error(f"{data / 'videos'} does not exist (set FACEFLEET_TEST_DATA)")
        print("making the one-minute clip", file=sys.stderr)
        args.video, args.gallery = make_minute_clip(data / "videos", workdir)
    for path in (args.video, args.gallery):
        if not path.exists():
            parser.error(f"{path} does not exist (set FACEFLEET_TEST_DATA or pass it)")

    from facefleet.core.video import probe

    info = probe(args.video)
    video_runs: dict[str, list[dict]] = {
        "baseline": [],
        "in-process": [],
        "in-process, every face": [],
    }
    image_runs: dict[str, list[dict]] = {}
    if not args.no_images and args.images.is_dir():
        image_runs = {"baseline": [], "in-process": []}
    for i in range(args.repeat):
        # Interleaved, so a slow spell of a noisy machine hits every mode alike.
        print(f"round {i + 1}/{args.repeat}", file=sys.stderr)
        video_runs["baseline"].append(run_mode("baseline-video", args.video, args.gallery))
        video_runs["in-process"].append(run_mode("inprocess-video", args.video, args.gallery))
        video_runs["in-process, every face"].append(
            run_mode("inprocess-video", args.video, args.gallery, EVERY_FACE)
        )
        if image_runs:
            image_runs["baseline"].append(run_mode("baseline-images", args.images, args.gallery))
            image_runs["in-process"].append(run_mode("inprocess-images", args.images, args.gallery))
    if not args.no_stack:
        for workers in (1, 2):
            name = f"stack, {workers} worker{'s' if workers > 1 else ''}"
            video_runs[name] = through_stack(
                args.video, args.gallery, args.chunk_frames, workers, args.repeat
            )
    meta = {
        "video": args.video.name,
        "width": info.width,
        "height": info.height,
        "frames": info.frame_count,
        "faces": video_runs["in-process"][0]["faces"],
        "images_dir": str(args.images),
        "repeat": args.repeat,
        "chunk_frames": args.chunk_frames,
        "cores": os.cpu_count(),
        "cpu": _cpu_name(),
        "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3,
        "extractor": get_settings().extractor,
    }
    table = report(video_runs, image_runs, meta)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "video": video_runs, "images": image_runs}, indent=2)
    )
    args.out.with_suffix(".md").write_text(table + "\n")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
