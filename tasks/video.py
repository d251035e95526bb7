"""A video job as a Celery canvas over core.video_pipeline:

plan_video → group(analyze_chunk) → merge_video → group(render_chunk) → finalize_video

Chunks are stored as separate objects: each range of frames re-encoded losslessly with
its frame numbers and times beside it (`core.video.cut_lossless`: the decoded YUV planes
at qp 0, or the BGR pixels for rotated or unusual sources). Decoding a chunk gives exactly
the pixels an in-process run decodes, so cluster and in-process results agree; and a
worker never depends on the source's keyframe layout, a container that lies about its
frame count, or rotation metadata. The price is size (about 15× a typical H.264 source at
360p); chunks are deleted when the job ends.

Every task writes deterministic keys and returns early when its output exists or the job
has ended, so a redelivered or duplicated task is harmless.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from facefleet.core.errors import InputError
from facefleet.jobs.records import ChunkMeta, ChunkPlan, JobPlan
from facefleet.jobs.storage import ObjectNotFound
from facefleet.tasks.app import app
from facefleet.tasks.common import JobTask, fan_out
from facefleet.tasks.runtime import get_runtime

log = logging.getLogger("facefleet.tasks.video")


@app.task(base=JobTask, bind=True, name="facefleet.plan_video")
def plan_video(self: JobTask, job_id: str) -> None:
    """Probe the input, cut it into lossless chunks, then start the analysis chord."""
    from facefleet.core.video import cut_lossless, probe
    from facefleet.core.video_pipeline import frame_ranges

    rt = get_runtime()
    job = self.open_step(job_id)
    if job is None:
        return
    spec = job.spec()
    (source,) = spec.inputs
    keys = job.keys
    with tempfile.TemporaryDirectory(prefix="facefleet-plan-") as tmp:
        local = Path(tmp) / ("input" + Path(source.key).suffix)
        rt.store.get_file(source.key, local)
        try:
            info = probe(local)
        except InputError as exc:
            job.fail(str(exc.about(source.source)))
            return
        if info.frame_count > rt.settings.max_job_frames:
            job.fail(
                f"{source.source}: {info.frame_count} frames is more than this deployment "
                f"accepts (FACEFLEET_MAX_JOB_FRAMES={rt.settings.max_job_frames})"
            )
            return
        ranges = frame_ranges(
            info.frame_count, spec.options.chunk_frames or rt.settings.chunk_frames
        )
        chunks = []
        cuts = cut_lossless(
            local,
            ranges,
            Path(tmp),
            # Cut before a redelivery: identical content, already stored.
            wanted=lambda k: not rt.store.exists(keys.chunk_meta(k)),
        )
        for cut in cuts:
            chunks.append(ChunkPlan(index=cut.index, start=cut.start, end=cut.end))
            if cut.path is None:
                continue
            rt.store.put_file(keys.chunk_video(cut.index), cut.path, "video/x-matroska")
            meta = ChunkMeta(start=cut.start, end=cut.end, times=cut.times)
            rt.store.put_model(keys.chunk_meta(cut.index), meta)
            cut.path.unlink()
    video = info.model_copy(update={"source": source.source, "frame_count": chunks[-1].end})
    plan = JobPlan(
        job_id=job_id,
        model_id=rt.registry.current_model_id(spec.options.extractor),
        chunks=chunks,
        video=video,
    )
    rt.store.put_model(keys.plan, plan)
    job.set_status("running", stage="analyze", chunks=len(chunks))
    log.info("job %s: %d frames in %d chunks", job_id, video.frame_count, len(chunks))
    if job.stopped():
        return
    fan_out(job_id, analyze_chunk, chunks, merge_video)


@app.task(base=JobTask, bind=True, name="facefleet.analyze_chunk")
def analyze_chunk(self: JobTask, job_id: str, k: int) -> None:
    """Detect, align, embed and track one chunk; writes chunks/<k>/result.json."""
    from facefleet.core.video_pipeline import analyze

    rt = get_runtime()
    job = self.open_step(job_id, lambda keys: keys.chunk_result(k))
    if job is None:
        return
    keys = job.keys
    plan, spec = self.plan_of(job), job.spec()
    chunk = plan.chunks[k]
    meta = rt.store.get_model(keys.chunk_meta(k), ChunkMeta)
    pipeline = rt.registry.pipeline(plan.model_id, None, spec.options)
    with tempfile.TemporaryDirectory(prefix="facefleet-chunk-") as tmp:
        local = rt.store.get_file(keys.chunk_video(k), Path(tmp) / "frames.mkv")
        started = time.perf_counter()
        result = analyze(
            local, chunk.start, chunk.end, pipeline, every=spec.options.every, offset=chunk.start
        )
    seconds = time.perf_counter() - started
    result = result.model_copy(update={"times": meta.times})
    rt.store.put_model(keys.chunk_result(k), result)
    job.keep_if_running(keys.chunk_result(k))
    log.info(
        "job %s chunk %d: %d frames, %d faces, %.1f frames/s",
        job_id,
        k,
        chunk.end - chunk.start,
        len(result.faces),
        (chunk.end - chunk.start) / max(seconds, 1e-6),
    )


@app.task(base=JobTask, bind=True, name="facefleet.merge_video")
def merge_video(self: JobTask, job_id: str) -> None:
    """Stitch the chunks' tracks, name each track, then start the render chord."""
    from facefleet.core.video_pipeline import ChunkResult, merge

    rt = get_runtime()
    job = self.open_step(job_id)
    if job is None:
        return
    keys = job.keys
    plan, spec = self.plan_of(job), job.spec()
    if not rt.store.exists(keys.result):
        try:
            chunks = [
                rt.store.get_model(keys.chunk_result(c.index), ChunkResult) for c in plan.chunks
            ]
        except ObjectNotFound as exc:
            raise InputError(f"a chunk result is missing ({exc})") from None
        pipeline = rt.registry.pipeline(plan.model_id, spec.gallery, spec.options)
        result = merge(chunks, plan.video, pipeline)
        rt.store.put_model(keys.result, result)
    job.set_status("running", stage="render")
    fan_out(job_id, render_chunk, plan.chunks, finalize_video)


@app.task(base=JobTask, bind=True, name="facefleet.render_chunk")
def render_chunk(self: JobTask, job_id: str, k: int) -> None:
    """Draw the final names on one chunk and encode it as an H.264 part."""
    from facefleet.core.schemas import VideoResult
    from facefleet.core.video_pipeline import render

    rt = get_runtime()
    job = self.open_step(job_id, lambda keys: keys.part(k))
    if job is None:
        return
    keys = job.keys
    chunk = self.plan_of(job).chunks[k]
    result = rt.store.get_model(keys.result, VideoResult)
    with tempfile.TemporaryDirectory(prefix="facefleet-render-") as tmp:
        local = rt.store.get_file(keys.chunk_video(k), Path(tmp) / "frames.mkv")
        part = render(
            local, result, chunk.start, chunk.end, Path(tmp) / "part.mp4", offset=chunk.start
        )
        rt.store.put_file(keys.part(k), part, "video/mp4")
    job.keep_if_running(keys.part(k))


@app.task(base=JobTask, bind=True, name="facefleet.finalize_video")
def finalize_video(self: JobTask, job_id: str) -> None:
    """Join the parts with the source audio into output/<name>.mp4 + .json; mark done."""
    from facefleet.core.schemas import VideoResult
    from facefleet.core.video_pipeline import finalize

    rt = get_runtime()
    job = self.open_step(job_id)
    if job is None:
        return
    keys = job.keys
    plan, spec = self.plan_of(job), job.spec()
    (source,) = spec.inputs
    result = rt.store.get_model(keys.result, VideoResult)
    job.finishing()
    video_key, json_key = keys.output(f"{source.name}.mp4"), keys.output(f"{source.name}.json")
    # The JSON is written after the video: when it exists, an earlier copy of this step
    # wrote both and may already have removed the parts.
    if not rt.store.exists(json_key):
        with tempfile.TemporaryDirectory(prefix="facefleet-final-") as tmp:
            parts = []
            for chunk in plan.chunks:
                try:
                    parts.append(
                        rt.store.get_file(
                            keys.part(chunk.index), Path(tmp) / f"{chunk.index:05d}.mp4"
                        )
                    )
                except ObjectNotFound:
                    raise InputError(f"rendered part {chunk.index} is missing") from None
            audio = None
            if plan.video is not None and plan.video.has_audio:
                audio = rt.store.get_file(
                    source.key, Path(tmp) / ("input" + Path(source.key).suffix)
                )
            out = finalize(parts, Path(tmp) / "out.mp4", audio)
            rt.store.put_file(video_key, out, "video/mp4")
            rt.store.put_bytes(
                json_key, result.model_dump_json(indent=1).encode(), "application/json"
            )
    named = sorted({t.identity for t in result.tracks if t.identity})
    # Outputs first, then the intermediates go, status last: a job marked done has all of
    # its output and nothing else.
    job.cleanup()
    final = job.set_status(
        "done",
        stage="done",
        outputs=[video_key, json_key],
        summary={source.name: named},
        message=f"{result.frame_count} frames, {len(result.tracks)} tracks",
    )
    # Cancelled while the outputs were written: they must not stay behind.
    job.cleanup(outputs=final.state != "done")
