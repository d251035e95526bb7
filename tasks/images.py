"""An image batch job on the same machinery: plan_images → group(recognize_images) →
finalize_images. Each chunk writes its annotated images and JSON under parts/<k>/; only
`finalize_images` copies them to output/ and marks the job done, so a failed or
cancelled job never leaves outputs that look complete."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from facefleet.jobs.records import ChunkPlan, ImageChunkResult, ImageOutcome, JobPlan
from facefleet.tasks.app import app
from facefleet.tasks.common import JobTask, fan_out
from facefleet.tasks.metrics import record_chunk
from facefleet.tasks.runtime import get_runtime
from facefleet.tasks.webhooks import announce_end


@app.task(base=JobTask, bind=True, name="facefleet.plan_images")
def plan_images(self: JobTask, job_id: str) -> None:
    rt = get_runtime()
    job = self.open_step(job_id)
    if job is None:
        return
    spec = job.spec()
    size = rt.settings.image_chunk
    numbers = list(range(len(spec.inputs)))
    chunks = [
        ChunkPlan(index=k, start=s, end=min(s + size, len(numbers)), inputs=numbers[s : s + size])
        for k, s in enumerate(range(0, len(numbers), size))
    ]
    plan = JobPlan(
        job_id=job_id,
        model_id=rt.registry.current_model_id(spec.options.extractor),
        chunks=chunks,
    )
    rt.store.put_model(job.keys.plan, plan)
    job.set_status("running", stage="recognize", chunks=len(chunks))
    if job.stopped():
        return
    fan_out(job_id, recognize_images, chunks, finalize_images)


@app.task(base=JobTask, bind=True, name="facefleet.recognize_images")
def recognize_images(self: JobTask, job_id: str, k: int) -> None:
    from facefleet.core.drawing import draw_faces
    from facefleet.core.images import encode_jpeg

    rt = get_runtime()
    job = self.open_step(job_id, lambda keys: keys.chunk_result(k))
    if job is None:
        return
    keys = job.keys
    plan, spec = self.plan_of(job), job.spec()
    pipeline = rt.registry.pipeline(plan.model_id, spec.gallery, spec.options)
    outcomes, written = [], []
    numbers = plan.chunks[k].inputs
    items = [spec.inputs[number] for number in numbers]
    with tempfile.TemporaryDirectory(prefix="facefleet-images-") as tmp:
        # The chunk's files are fetched first, then recognized as one batch.
        paths = [
            rt.store.get_file(item.key, Path(tmp) / f"{number}{Path(item.key).suffix}")
            for number, item in zip(numbers, items, strict=True)
        ]
        started = time.perf_counter()
        # A generator: the images are analysed as the loop below draws them.
        processed = pipeline.process_images(paths, [item.source for item in items])
        for number, item, done in zip(numbers, items, processed, strict=True):
            if done.error is not None or done.result is None or done.image is None:
                error = done.error.about(item.source) if done.error else "not recognized"
                outcomes.append(ImageOutcome(input=number, name=item.name, error=str(error)))
                continue
            faces = done.result.faces
            jpg, json_key = keys.part(k, f"{item.name}.jpg"), keys.part(k, f"{item.name}.json")
            rt.store.put_bytes(jpg, encode_jpeg(draw_faces(done.image, faces)), "image/jpeg")
            rt.store.put_bytes(
                json_key, done.result.model_dump_json(indent=2).encode(), "application/json"
            )
            written += [jpg, json_key]
            outcomes.append(
                ImageOutcome(
                    input=number,
                    name=item.name,
                    faces=len(faces),
                    identities=sorted({f.identity for f in faces if f.identity}),
                )
            )
        seconds = time.perf_counter() - started
    rt.store.put_model(keys.chunk_result(k), ImageChunkResult(outcomes=outcomes))
    job.keep_if_running(keys.chunk_result(k), *written)
    faces = sum(o.faces for o in outcomes)
    record_chunk(rt.settings, len(items), faces, seconds, "images")


@app.task(base=JobTask, bind=True, name="facefleet.finalize_images")
def finalize_images(self: JobTask, job_id: str) -> None:
    rt = get_runtime()
    job = self.open_step(job_id)
    if job is None:
        return
    keys = job.keys
    plan = self.plan_of(job)
    job.finishing()
    # All outcomes are kept in merged.json before the parts are copied to output/ and
    # removed: a second copy of this step, after the first cleaned up, finishes from it.
    merged = rt.store.get_model_or_none(keys.result, ImageChunkResult)
    if merged is None:
        outcomes = []
        for chunk in plan.chunks:
            for outcome in rt.store.get_model(
                keys.chunk_result(chunk.index), ImageChunkResult
            ).outcomes:
                outcomes.append(outcome)
                for ext in () if outcome.error else ("jpg", "json"):
                    rt.store.copy(
                        keys.part(chunk.index, f"{outcome.name}.{ext}"),
                        keys.output(f"{outcome.name}.{ext}"),
                    )
        merged = ImageChunkResult(outcomes=outcomes)
        rt.store.put_model(keys.result, merged)
    outputs, errors, summary = [], [], {}
    for outcome in merged.outcomes:
        if outcome.error:
            errors.append(outcome.error)
            continue
        outputs += [keys.output(f"{outcome.name}.jpg"), keys.output(f"{outcome.name}.json")]
        summary[outcome.name] = outcome.identities
    done = len(summary)
    # Intermediates go before the status shows the end: a finished job has nothing else.
    job.cleanup()
    final = job.set_status(
        "done" if done or not errors else "failed",
        stage="done" if done or not errors else "failed",
        outputs=outputs,
        errors=errors,
        summary=summary,
        message=f"{done} image(s) processed" + (f", {len(errors)} failed" if errors else ""),
    )
    job.cleanup(outputs=final.state != "done")
    announce_end(rt.settings, rt.store, job_id)
