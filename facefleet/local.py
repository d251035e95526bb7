"""`facefleet process` in-process: load the models once, then run every input through them."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from facefleet.cli import EXIT_INPUT_ERRORS, EXIT_OK, EXIT_SETUP_ERROR
from facefleet.inputs import collect_inputs, display_path

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _error(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True)


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", markup=True)


def _write_json(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def process_inputs(args: argparse.Namespace) -> int:
    from core.drawing import draw_faces
    from core.errors import FacefleetError
    from core.images import write_image
    from core.pipeline import build_pipeline
    from core.settings import get_settings

    try:
        settings = get_settings(
            detector=args.detector,
            detector_weights=args.detector_weights,
            det_score_threshold=args.det_threshold,
            model=args.model,
            metric=args.metric,
            threshold=args.threshold,
            device=args.device,
        )
    except ValueError as exc:
        _error(f"invalid setting: {exc}")
        return EXIT_SETUP_ERROR

    items, problems = collect_inputs(list(args.inputs))
    for problem in problems:
        _error(str(problem))
    if not items:
        _error("no input to process")
        return EXIT_INPUT_ERRORS

    try:
        if settings.resolved_model_path() is None:
            _warn(
                "no extractor model given (--model) and none is shipped with this install: "
                "faces are detected but not recognized"
            )
            if args.gallery:
                _warn(f"gallery {display_path(args.gallery)} ignored: recognition needs a model")
        pipeline, issues = build_pipeline(settings, args.gallery)
    except FacefleetError as exc:
        _error(str(exc))
        return EXIT_SETUP_ERROR
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
        TimeRemainingColumn(),
        console=err,
        disable=args.quiet,
        transient=True,
    )
    done = 0
    with progress:
        task = progress.add_task("images", total=len(items))
        for item in items:
            progress.update(task, description=display_path(item.path.name)[:40])
            try:
                result, image = pipeline.process_image(item.path, source=display_path(item.path))
                target = out_dir / item.output_stem
                target.parent.mkdir(parents=True, exist_ok=True)
                write_image(target.with_name(target.name + ".jpg"), draw_faces(image, result.faces))
                _write_json(
                    target.with_name(target.name + ".json"), result.model_dump_json(indent=2)
                )
                done += 1
            except FacefleetError as exc:
                failed += 1
                _error(str(exc))
            progress.advance(task)
    err.print(
        f"{done} image(s) written to {display_path(out_dir)}"
        + (f", {failed} failed" if failed else ""),
        highlight=False,
    )
    return EXIT_INPUT_ERRORS if failed else EXIT_OK
