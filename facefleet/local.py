"""`facefleet process` in-process: load the models once, then run every input through them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from facefleet.console import err
from facefleet.console import error as _error
from facefleet.console import warn as _warn
from facefleet.exits import EXIT_INPUT_ERRORS, EXIT_OK, EXIT_SETUP_ERROR
from facefleet.inputs import collect_inputs, display_path
from facefleet.jobs.records import JobOptions
from facefleet.options import given

if TYPE_CHECKING:
    from facefleet.core.pipeline import FacePipeline


def _write_json(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def process_inputs(args: argparse.Namespace) -> int:
    from facefleet.core.drawing import draw_faces
    from facefleet.core.errors import FacefleetError
    from facefleet.core.images import write_image
    from facefleet.core.pipeline import build_pipeline
    from facefleet.core.settings import Settings, get_settings

    settings = get_settings(**given(args, Settings))
    options = JobOptions(**given(args, JobOptions))

    items, problems = collect_inputs(list(args.inputs))
    for problem in problems:
        _error(str(problem))
    if not items:
        _error("no input to process")
        return EXIT_INPUT_ERRORS

    if settings.extractor == "none" and args.gallery:
        _warn(f"gallery {display_path(args.gallery)} ignored: --extractor none names nobody")
    pipeline, issues = build_pipeline(settings, args.gallery)
    for issue in issues:
        _warn(f"gallery: {display_path(issue.source)}: {issue.reason}")
    if pipeline.gallery is not None:
        err.print(
            f"gallery: {len(pipeline.gallery.people)} people, {len(pipeline.gallery)} faces",
            highlight=False,
        )

    out_dir: Path = args.out
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _error(f"cannot create output folder {display_path(out_dir)}: {exc.strerror}")
        return EXIT_SETUP_ERROR

    failed = len(problems)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        disable=args.quiet,
        transient=True,
    )
    done = 0
    images = [item for item in items if not item.is_video]
    videos = [item for item in items if item.is_video]
    with progress:
        overall = progress.add_task("inputs", total=len(items), rate="")
        # Images first, batched through the models; then each video.
        processed = pipeline.process_images(
            [item.path for item in images], [display_path(item.path) for item in images]
        )
        for item, outcome in zip(images, processed, strict=True):
            progress.update(overall, description=display_path(item.path.name)[:40])
            target = out_dir / item.output_stem
            try:
                if outcome.error is not None:
                    raise outcome.error
                assert outcome.result is not None and outcome.image is not None
                target.parent.mkdir(parents=True, exist_ok=True)
                write_image(
                    target.with_name(target.name + ".jpg"),
                    draw_faces(outcome.image, outcome.result.faces),
                )
                _write_json(
                    target.with_name(target.name + ".json"),
                    outcome.result.model_dump_json(indent=2),
                )
                done += 1
            except FacefleetError as exc:
                failed += 1
                _error(str(exc))
            progress.advance(overall)
        for item in videos:
            progress.update(overall, description=display_path(item.path.name)[:40])
            target = out_dir / item.output_stem
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                _process_video(item.path, target, pipeline, options, progress)
                done += 1
            except FacefleetError as exc:
                failed += 1
                _error(str(exc))
            progress.advance(overall)
    err.print(
        f"{done} input(s) written to {display_path(out_dir)}"
        + (f", {failed} failed" if failed else ""),
        highlight=False,
    )
    return EXIT_INPUT_ERRORS if failed else EXIT_OK


def _process_video(
    path: Path, target: Path, pipeline: FacePipeline, options: JobOptions, progress: Progress
) -> None:
    """One video: OUT/<name>.mp4 (annotated, with the source audio) and OUT/<name>.json."""
    import time

    from facefleet.core.video import probe_indexed
    from facefleet.core.video_pipeline import run_video

    info, index = probe_indexed(path)
    info = info.model_copy(update={"source": display_path(path)})
    task = progress.add_task(
        f"  {display_path(path.name)[:30]}", total=2 * info.frame_count, rate=""
    )
    started = time.perf_counter()
    counted = {"analyze": 0, "render": 0}

    def advance(stage: str, n: int) -> None:
        counted[stage] += n
        elapsed = max(time.perf_counter() - started, 1e-6)
        progress.update(task, advance=n, rate=f"{stage} {counted[stage] / elapsed:.1f} frames/s")

    result = run_video(
        path,
        pipeline,
        target.with_name(target.name + ".mp4"),
        every=options.every,
        chunk_frames=options.chunk_frames,
        on_frames=advance,
        info=info,
        index=index,
    )
    _write_json(target.with_name(target.name + ".json"), result.model_dump_json(indent=1))
    progress.remove_task(task)
    named = sorted({t.identity for t in result.tracks if t.identity})
    err.print(
        f"{display_path(path.name)}: {result.frame_count} frames, {len(result.tracks)} tracks"
        + (f", named: {', '.join(named)}" if named else ""),
        highlight=False,
    )
