"""A video job as a Celery canvas over core.video_pipeline:

plan_video → group(analyze_chunk) → merge_video → group(render_chunk) → finalize_video

The plan step demuxes the source once into a frame index (`core.frame_index`: each frame's
presentation time and the keyframes, no decoding) and stores that small index; each analyse
and render task reads the source itself (one download per worker machine,
`jobs.source_cache`), seeks to the keyframe before its range and numbers the frames it
decodes from the index. The frames and times are those of an in-process run, which reads
the same way, and nothing but the index is written before analysis starts.

A source whose seeking cannot be trusted (packets without times, a head or tail that
decodes other frames than the container lists) is cut instead into lossless chunks
(`core.video.cut_lossless`, about 15× the source at 360p) and the plan says why.

Every task writes deterministic keys and returns early when its output exists or the job
has ended, so a redelivered or duplicated task is harmless.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from facefleet.core.errors import InputError
from facefleet.jobs.job_store import JobStore
from facefleet.jobs.records import ChunkMeta, ChunkPlan, JobInput, JobKeys, JobPlan
from facefleet.jobs.storage import ObjectNotFound
from facefleet.tasks.app import app
from facefleet.tasks.archive import archive_video
from facefleet.tasks.common import JobTask, fan_out
from facefleet.tasks.metrics import record_chunk
from facefleet.tasks.runtime import Runtime, get_runtime
from facefleet.tasks.webhooks import announce_end

if TYPE_CHECKING:
    from facefleet.core.frame_index import FrameIndex
    from facefleet.core.schemas import VideoResult

log = logging.getLogger("facefleet.tasks.video")

# A source whose keyframes lie further apart than this (and than 4 chunks) is cut into
# lossless chunks: seeking stays exact there, but every range would first decode up to a
# GOP of frames it does not need (a screen recording may have one keyframe in all).
LONG_GOP_FRAMES = 1000


@app.task(base=JobTask, bind=True, name="facefleet.plan_video")
def plan_video(self: JobTask, job_id: str) -> None:
    """Index the input's frames (or cut lossless chunks), then start the analysis chord."""
    from facefleet.core.video import probe_indexed
    from facefleet.core.video_pipeline import frame_ranges

    rt = get_runtime()
    job = self.open_step(job_id)
    if job is None:
        return
    spec = job.spec()
    (source,) = spec.inputs
    keys = job.keys
    local = rt.sources.path(source.key)  # kept: this machine's analyse tasks read it too
    try:
        info, index = probe_indexed(local)
    except InputError as exc:
        job.fail(str(exc.about(source.source)))
        announce_end(rt.settings, rt.store, job_id)
        return
    if info.frame_count > rt.settings.max_job_frames:
        job.fail(
            f"{source.source}: {info.frame_count} frames is more than this deployment "
            f"accepts (FACEFLEET_MAX_JOB_FRAMES={rt.settings.max_job_frames})"
        )
        announce_end(rt.settings, rt.store, job_id)
        return
    chunk_frames = spec.options.chunk_frames or rt.settings.chunk_frames
    lossless_reason = index.reason
    if index.seekable and index.longest_gop() > max(4 * chunk_frames, LONG_GOP_FRAMES):
        # Exact, but each range would decode up to a whole GOP first: cut once instead.
        lossless_reason = f"keyframes up to {index.longest_gop()} frames apart"
    from_source = lossless_reason is None
    starts = index.keyframe_numbers() if from_source else []
    ranges = frame_ranges(info.frame_count, chunk_frames, starts)
    if from_source:
        rt.store.put_model(keys.frame_index, index, compress=True)
        chunks = [ChunkPlan(index=k, start=s, end=e) for k, (s, e) in enumerate(ranges)]
    else:
        log.warning("job %s: %s: lossless chunks (%s)", job_id, source.source, lossless_reason)
        chunks = _cut_lossless_chunks(rt, job, local, ranges)
    video = info.model_copy(update={"source": source.source, "frame_count": chunks[-1].end})
    # Short videos render in the last step, in one pass: parts would double what the job
    # writes to the object store, for a step that takes a fraction of the analysis.
    render_parts = not from_source or video.frame_count > rt.settings.render_parts_above_frames
    plan = JobPlan(
        job_id=job_id,
        model_id=rt.registry.current_model_id(spec.options.extractor),
        chunks=chunks,
        video=video,
        reading="source" if from_source else "lossless-chunks",
        reading_reason=lossless_reason,
        render_parts=render_parts,
    )
    rt.store.put_model(keys.plan, plan)
    job.set_status("running", stage="analyze", chunks=len(chunks), render_parts=render_parts)
    log.info(
        "job %s: %d frames in %d chunks, read from %s",
        job_id,
        video.frame_count,
        len(chunks),
        plan.reading,
    )
    if job.stopped():
        return
    fan_out(job_id, analyze_chunk, chunks, merge_video)


def _cut_lossless_chunks(
    rt: Runtime, job: JobStore, local: Path, ranges: list[tuple[int, int]]
) -> list[ChunkPlan]:
    from facefleet.core.video import cut_lossless

    keys = job.keys
    chunks = []
    with tempfile.TemporaryDirectory(prefix="facefleet-plan-") as tmp:
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
    return chunks


def _output_keys(keys: JobKeys, source: JobInput) -> tuple[str, str]:
    """The job's deliverables: output/<name>.mp4 and output/<name>.json."""
    return keys.output(f"{source.name}.mp4"), keys.output(f"{source.name}.json")


def _chunk_frames(
    rt: Runtime, keys: JobKeys, plan: JobPlan, source: JobInput, k: int, tmp: Path
) -> tuple[Path, int, FrameIndex | None]:
    """What to decode chunk k from: (file, index of its first frame, frame index). The
    source and its index, or the chunk's lossless file, whose first frame is the chunk's."""
    from facefleet.core.frame_index import FrameIndex

    if plan.reading == "source":
        index = rt.store.get_model(keys.frame_index, FrameIndex)
        return rt.sources.path(source.key), 0, index
    local = rt.store.get_file(keys.chunk_video(k), tmp / "frames.mkv")
    return local, plan.chunks[k].start, None


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
    (source,) = spec.inputs
    chunk = plan.chunks[k]
    pipeline = rt.registry.pipeline(plan.model_id, None, spec.options)
    with tempfile.TemporaryDirectory(prefix="facefleet-chunk-") as tmp:
        local, offset, index = _chunk_frames(rt, keys, plan, source, k, Path(tmp))
        started = time.perf_counter()
        result = analyze(
            local,
            chunk.start,
            chunk.end,
            pipeline,
            every=spec.options.every,
            offset=offset,
            index=index,
        )
    seconds = time.perf_counter() - started
    if index is None:
        meta = rt.store.get_model(keys.chunk_meta(k), ChunkMeta)
        result = result.model_copy(update={"times": meta.times})
    rt.store.put_model(keys.chunk_result(k), result, compress=True)
    job.keep_if_running(keys.chunk_result(k))
    log.info(
        "job %s chunk %d: %d frames, %d faces, %.1f frames/s",
        job_id,
        k,
        chunk.end - chunk.start,
        len(result.faces),
        (chunk.end - chunk.start) / max(seconds, 1e-6),
    )
    record_chunk(rt.settings, chunk.end - chunk.start, len(result.faces), seconds, "video")


@app.task(base=JobTask, bind=True, name="facefleet.merge_video")
def merge_video(self: JobTask, job_id: str) -> None:
    """Stitch the chunks' tracks, name each track (written as the output JSON: it is the
    job's result, not a copy of it), then start the render chord or the final step."""
    from facefleet.archive.service import summaries_key
    from facefleet.core.track_summary import summarize_tracks
    from facefleet.core.video_pipeline import ChunkResult, merge

    rt = get_runtime()
    job = self.open_step(job_id)
    if job is None:
        return
    keys = job.keys
    plan, spec = self.plan_of(job), job.spec()
    (source,) = spec.inputs
    _, json_key = _output_keys(keys, source)
    if not rt.store.exists(json_key):
        try:
            chunks = [
                rt.store.get_model(keys.chunk_result(c.index), ChunkResult) for c in plan.chunks
            ]
        except ObjectNotFound as exc:
            raise InputError(f"a chunk result is missing ({exc})") from None
        pipeline = rt.registry.pipeline(plan.model_id, spec.gallery, spec.options)
        result = merge(chunks, plan.video, pipeline)
        if plan.model_id is not None:
            # What the archive keeps of each track, while the chunks' embeddings exist.
            rt.store.put_model(
                summaries_key(job_id),
                summarize_tracks(
                    chunks, pipeline.tracking, plan.model_id, rt.settings.archive_faces
                ),
                compress=True,
            )
        rt.store.put_model(json_key, result)
    job.set_status("running", stage="render")
    if plan.render_parts:
        fan_out(job_id, render_chunk, plan.chunks, finalize_video)
    else:
        finalize_video.si(job_id).apply_async()


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
    plan = self.plan_of(job)
    if not plan.render_parts:
        return  # a stray delivery: this job renders in its last step
    chunk = plan.chunks[k]
    (source,) = job.spec().inputs
    result = rt.store.get_model(_output_keys(keys, source)[1], VideoResult)
    with tempfile.TemporaryDirectory(prefix="facefleet-render-") as tmp:
        local, offset, index = _chunk_frames(rt, keys, plan, source, k, Path(tmp))
        part = render(local, result, chunk.start, chunk.end, Path(tmp) / "part.mp4", offset, index)
        rt.store.put_file(keys.part(k), part, "video/mp4")
    job.keep_if_running(keys.part(k))


@app.task(base=JobTask, bind=True, name="facefleet.finalize_video")
def finalize_video(self: JobTask, job_id: str) -> None:
    """Join the parts (or render the whole video, when it was not rendered in parts) with
    the source audio into output/<name>.mp4 + .json; mark done."""
    from facefleet.core.schemas import VideoResult
    from facefleet.core.video_pipeline import finalize

    rt = get_runtime()
    job = self.open_step(job_id)
    if job is None:
        return
    plan, spec = self.plan_of(job), job.spec()
    (source,) = spec.inputs
    video_key, json_key = _output_keys(job.keys, source)
    result = rt.store.get_model(json_key, VideoResult)
    # The video is the last output written: when it exists, an earlier copy of this step
    # wrote it and may already have removed the parts.
    if not rt.store.exists(video_key):
        with tempfile.TemporaryDirectory(prefix="facefleet-final-") as tmp:
            parts = _rendered(rt, job.keys, plan, source, result, Path(tmp))
            audio = None
            if plan.video is not None and plan.video.has_audio:
                audio = rt.sources.path(source.key)
            out = finalize(parts, Path(tmp) / "out.mp4", audio)
            rt.store.put_file(video_key, out, "video/mp4")
    named = sorted({t.identity for t in result.tracks if t.identity})
    indexed = archive_video(rt, job, plan, source, result)
    # Outputs first, then the intermediates go, status last: a job marked done has all of
    # its output and nothing else.
    job.finishing()
    job.cleanup()
    final = job.set_status(
        "done",
        stage="done",
        outputs=[video_key, json_key],
        summary={source.name: named},
        message=f"{result.frame_count} frames, {len(result.tracks)} tracks",
        indexed=indexed,
    )
    # Cancelled while the outputs were written: they must not stay behind.
    job.cleanup(outputs=final.state != "done")
    announce_end(rt.settings, rt.store, job_id)


def _rendered(
    rt: Runtime, keys: JobKeys, plan: JobPlan, source: JobInput, result: VideoResult, tmp: Path
) -> list[Path]:
    """The video's rendered parts: downloaded, or (not rendered in parts) drawn now in one
    pass over the source."""
    from facefleet.core.video_pipeline import render

    if not plan.render_parts:
        local, offset, index = _chunk_frames(rt, keys, plan, source, 0, tmp)
        end = plan.chunks[-1].end
        return [render(local, result, 0, end, tmp / "video.mp4", offset, index)]
    parts = []
    for chunk in plan.chunks:
        try:
            parts.append(rt.store.get_file(keys.part(chunk.index), tmp / f"{chunk.index:05d}.mp4"))
        except ObjectNotFound:
            raise InputError(f"rendered part {chunk.index} is missing") from None
    return parts
