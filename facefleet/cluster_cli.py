"""CLI over the SDK: `submit`, `status`, `cancel`, `resume`, `gallery`, `train --remote`.
A producer machine runs these with the client-only install (no torch, OpenCV or PyAV)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from facefleet.console import err
from facefleet.console import error as _error
from facefleet.exits import EXIT_INPUT_ERRORS, EXIT_OK
from facefleet.jobs.records import JobOptions
from facefleet.options import add_model_options, given

SUBMIT_EPILOG = """\
Each video becomes one job; all images of one call become one job. Without
FACEFLEET_BROKER_URL the jobs run here, in this process, on a local store
(FACEFLEET_STORE_DIR); with it they go to the workers and files through S3.

exit status: 0 submitted (or, with --wait, all done); 1 an input was refused or a job
failed; 2 the services or settings are unusable.

examples:
  facefleet gallery enroll Barack_Obama obama/*.jpg
  facefleet submit speech.mp4 photos/*.jpg --wait --out results/
  facefleet status 3f2a...; facefleet cancel 3f2a...
"""


def add_commands(sub: Any) -> None:
    submit = sub.add_parser(
        "submit",
        help="submit images and videos as batch jobs (to the workers, or in-process)",
        description="Upload inputs and start jobs: detection, tracking and naming run on the "
        "workers; results land in the object store.",
        epilog=SUBMIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    submit.add_argument(
        "--gallery", default="default", help="enrolled gallery to match against (default: default)"
    )
    add_model_options(submit, JobOptions)
    submit.add_argument("--wait", action="store_true", help="wait for the jobs, with progress")
    submit.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up after S")
    submit.add_argument("--out", type=Path, help="with --wait: download the outputs here")
    submit.set_defaults(func=_submit)

    status = sub.add_parser("status", help="show a job's state and progress")
    status.add_argument("job", help="job id (printed by submit)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--urls", action="store_true", help="print download links when done")
    status.set_defaults(func=_status)

    cancel = sub.add_parser("cancel", help="cancel a job: pending chunks stop, no output")
    cancel.add_argument("job", help="job id (printed by submit)")
    cancel.set_defaults(func=_cancel)

    resume = sub.add_parser(
        "resume",
        help="re-publish a stalled job (e.g. after a broker restart); done steps are kept",
    )
    resume.add_argument("job", help="job id (printed by submit)")
    resume.set_defaults(func=_resume)

    gallery = sub.add_parser("gallery", help="enroll, list and remove people of a gallery")
    gsub = gallery.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)
    enroll = gsub.add_parser("enroll", help="enroll a person from photos (largest face each)")
    enroll.add_argument("person", help="name shown on matches, e.g. Barack_Obama")
    enroll.add_argument("images", nargs="+", type=Path)
    enroll.add_argument("--gallery", default="default")
    enroll.set_defaults(func=_enroll)
    listing = gsub.add_parser("list", help="list the people of a gallery (or all galleries)")
    listing.add_argument("--gallery", help="one gallery; default: every gallery")
    listing.set_defaults(func=_list)
    remove = gsub.add_parser("remove", help="remove a person's crops and embeddings everywhere")
    remove.add_argument("person")
    remove.add_argument("--gallery", default="default")
    remove.set_defaults(func=_remove)


def _client() -> Any:
    from facefleet.client import Client

    return Client()


def _submit(args: argparse.Namespace) -> int:
    from facefleet.core.errors import InputError
    from facefleet.core.media import is_image_path, is_video_path
    from facefleet.inputs import display_path

    client = _client()
    videos = [p for p in args.inputs if is_video_path(p)]
    images = [p for p in args.inputs if is_image_path(p)]
    refused = 0
    for path in args.inputs:
        if path not in videos and path not in images:
            _error(f"{display_path(path)}: neither an image nor a video file name")
            refused += 1
    jobs = []
    options = JobOptions(**given(args, JobOptions))
    for video in videos:
        try:
            jobs.append(client.submit_video(video, args.gallery, options))
        except InputError as exc:
            _error(str(exc))
            refused += 1
    if images:
        try:
            jobs.append(client.submit_images(images, args.gallery, options))
        except InputError as exc:
            _error(str(exc))
            refused += len(images)
    for job in jobs:
        print(job.id)
    failed = 0
    if args.wait or args.out:
        for job in jobs:
            status = job.wait(timeout=args.timeout, progress_bar=True)
            _print_status(status)
            if status.state != "done":
                failed += 1
            elif args.out:
                for path in job.download(args.out):
                    err.print(f"  {display_path(path)}", highlight=False)
    return EXIT_INPUT_ERRORS if refused or failed else EXIT_OK


def _print_status(status: Any) -> None:
    line = f"job {status.job_id}: {status.state}"
    if status.message:
        line += f" ({status.message})"
    err.print(line, highlight=False)
    for name, people in status.summary.items():
        err.print(f"  {name}: {', '.join(people) if people else 'nobody named'}", highlight=False)
    for problem in status.errors:
        _error(problem)


def _status(args: argparse.Namespace) -> int:
    job = _client().job(args.job)
    status = job.status()
    if args.json:
        print(status.model_dump_json(indent=2))
    else:
        progress = job.progress()
        _print_status(status)
        if not status.finished:
            err.print(
                f"  {progress.stage}: {progress.done}/{progress.total} steps", highlight=False
            )
    if args.urls and status.state == "done":
        for name, url in job.urls().items():
            print(f"{name}\t{url}")
    return EXIT_OK if status.state in ("done", "queued", "running") else EXIT_INPUT_ERRORS


def _cancel(args: argparse.Namespace) -> int:
    status = _client().job(args.job).cancel()
    _print_status(status)
    return EXIT_OK if status.state == "cancelled" else EXIT_INPUT_ERRORS


def _resume(args: argparse.Namespace) -> int:
    status = _client().job(args.job).resume()
    _print_status(status)
    return EXIT_OK if status.state != "failed" else EXIT_INPUT_ERRORS


def _enroll(args: argparse.Namespace) -> int:
    report = _client().gallery.enroll(args.person, args.images, gallery=args.gallery)
    for issue in report.issues:
        err.print(f"[yellow]skipped:[/] {issue}", markup=True, highlight=False)
    err.print(
        f"{report.person}: {report.added} face(s) enrolled; gallery {report.gallery} has "
        f"{len(report.people)} people, {report.faces} faces",
        highlight=False,
    )
    return EXIT_OK if report.added else EXIT_INPUT_ERRORS


def _list(args: argparse.Namespace) -> int:
    client = _client()
    names = [args.gallery] if args.gallery else sorted(client.gallery.galleries())
    listing = {name: client.gallery.list(name) for name in names}
    print(json.dumps(listing, indent=2))
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    report = _client().gallery.remove(args.person, gallery=args.gallery)
    if not report.removed:
        _error(f"{args.person} is not in gallery {args.gallery}")
        return EXIT_INPUT_ERRORS
    err.print(
        f"{args.person}: {report.removed} face(s) removed from {report.gallery}", highlight=False
    )
    return EXIT_OK


def train_remote(args: argparse.Namespace) -> int:
    """`facefleet train --remote`: the run goes to a gpu worker with every recipe option
    given; --wait follows it, printing each evaluation as it is reported."""
    from facefleet.core.errors import FacefleetError
    from facefleet.training.records import LOCAL_TRAIN_OPTIONS, TrainOptions

    local = [f"--{n.replace('_', '-')}" for n in LOCAL_TRAIN_OPTIONS if getattr(args, n, None)]
    if local or args.resume:
        named = ", ".join(local + (["--resume"] if args.resume else []))
        raise FacefleetError(
            f"{named}: local-run options, not taken by --remote (a worker uses its own "
            "FACEFLEET_LFW_DIR and device; a remote run resumes by --run name)"
        )
    client = _client()
    run = client.train(TrainOptions(**given(args, TrainOptions)), run=args.run)
    print(run.run)
    if not args.wait:
        err.print(f"training run {run.run} queued", highlight=False)
        return EXIT_OK
    progress = run.wait(on_evaluation=lambda e: err.print(e.line(), highlight=False))
    err.print(f"{progress.state}: {progress.message or ''}", highlight=False)
    return EXIT_OK if progress.state == "done" else EXIT_INPUT_ERRORS
