"""CLI over the SDK: `submit`, `status`, `cancel`, `resume`, `gallery`, `train --remote`,
and the archive's `search`, `people`, `track` and `jobs`. A producer machine runs these with
the client-only install (no torch, OpenCV or PyAV)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from facefleet.console import err, print_table
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

ARCHIVE_EPILOG = """\
Every finished video job's tracks are kept in the archive (PostgreSQL + pgvector): each
track's best faces and one embedding. On a cluster the workers need FACEFLEET_ARCHIVE_URL;
in the in-process mode an embedded server under FACEFLEET_ARCHIVE_DIR starts on first use.
"""

SEARCH_EPILOG = (
    ARCHIVE_EPILOG
    + """
exit status: 0 searched (also when nothing was found); 1 a user mistake (the person is not
enrolled, the photo is missing, not an image or shows no face); 2 the services or settings
are unusable.

examples:
  facefleet search --person Barack_Obama
  facefleet search --photo suspect.jpg --json
"""
)

PEOPLE_EPILOG = (
    ARCHIVE_EPILOG
    + """
Tracks that no enrolled person matched are clustered by who they look like (after each
indexed job, and afresh by beat). Name a cluster to enroll its best faces and rename its
past tracks; split off tracks that are someone else; merge clusters of one person.

examples:
  facefleet people list
  facefleet people name 7 Jane_Doe
  facefleet people split 7 3f2a...:12 3f2a...:15
  facefleet people merge 7 9 12
"""
)

TRACK_EPILOG = """\
--is NAME: the track is NAME. Its result JSON and archive entry are renamed, its best
faces enrolled in --gallery and kept as labelled faces (training data).
--not NAME: it is not NAME. It becomes unknown (unless it carried another name) and will
not be matched to NAME again by re-clustering.

TRACK is the track's number in the job's results (`tracks[].id`, or `facefleet search`).

examples:
  facefleet track 3f2a... 12 --is Jane_Doe
  facefleet track 3f2a... 15 --not Barack_Obama
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
    remove.add_argument(
        "--forget",
        action="store_true",
        help="also forget them: their name removed from every past result and from the "
        "archive, their labelled faces deleted (needs the archive)",
    )
    remove.set_defaults(func=_remove)

    add_archive_commands(sub)


def add_archive_commands(sub: Any) -> None:
    """`search`, `people ...`, `track`, `jobs ...`: what the archive of tracks answers."""
    raw = argparse.RawDescriptionHelpFormatter
    search = sub.add_parser(
        "search",
        help="find every appearance of a person (or of a photo's face) in processed videos",
        description="Search the archive of every processed video's tracks for an enrolled "
        "person (their gallery faces) or for the largest face of a photo; list the tracks "
        "that reach the extractor's match threshold, the most similar first.",
        epilog=SEARCH_EPILOG,
        formatter_class=raw,
    )
    who = search.add_mutually_exclusive_group(required=True)
    who.add_argument("--person", metavar="NAME", help="an enrolled person (of --gallery)")
    who.add_argument(
        "--photo", type=Path, metavar="FILE", help="a photo; its largest face is searched for"
    )
    search.add_argument(
        "--gallery", default="default", help="with --person: their gallery (default: default)"
    )
    search.add_argument("--json", action="store_true", help="print the report as JSON")
    search.set_defaults(func=_search)

    people = sub.add_parser(
        "people",
        help="unknown people: clusters of unmatched faces; list, name, split, merge",
        description="The clusters of archived tracks that no enrolled person matched.",
        epilog=PEOPLE_EPILOG,
        formatter_class=raw,
    )
    psub = people.add_subparsers(dest="people_command", metavar="ACTION", required=True)
    plist = psub.add_parser(
        "list", help="list the clusters: id, version, tracks, jobs, first/last seen, thumbnail"
    )
    plist.add_argument("--json", action="store_true", help="print the clusters as JSON")
    plist.set_defaults(func=_people_list)
    pshow = psub.add_parser(
        "show", help="the tracks of one cluster (the JOB:TRACK pairs `people split` takes)"
    )
    pshow.add_argument("cluster", metavar="CLUSTER", help="cluster id (from `people list`)")
    pshow.add_argument("--json", action="store_true", help="print the tracks as JSON")
    pshow.set_defaults(func=_people_show)
    pcluster = psub.add_parser(
        "cluster",
        help="cluster the unknown tracks now (afresh; split and merged clusters are kept)",
    )
    pcluster.add_argument(
        "--incremental",
        action="store_true",
        help="only place the tracks not in a cluster yet (what follows each indexed job)",
    )
    pcluster.add_argument("--json", action="store_true", help="print the report as JSON")
    pcluster.set_defaults(func=_people_cluster)
    pname = psub.add_parser(
        "name",
        help="name a cluster: its best faces enrolled, its past tracks renamed",
        description="Give a cluster of unknown tracks a name: its best faces are enrolled "
        "in --gallery (future jobs match them) and its tracks renamed in past results.",
    )
    pname.add_argument("cluster", metavar="CLUSTER", help="cluster id (from `people list`)")
    pname.add_argument("name", metavar="NAME", help="the person's name, e.g. Jane_Doe")
    pname.add_argument("--gallery", default="default", help="enroll into (default: default)")
    pname.add_argument(
        "--version",
        metavar="V",
        help="the cluster's version from `people list`: refused if it changed since",
    )
    pname.add_argument("--json", action="store_true", help="print the report as JSON")
    pname.set_defaults(func=_people_name)
    psplit = psub.add_parser(
        "split",
        help="move tracks out of a cluster into a new one (printed)",
        description="Move the given tracks out of CLUSTER into a new cluster; both are "
        "pinned, so re-clustering leaves them as they are. Prints the new cluster's id.",
    )
    psplit.add_argument("cluster", metavar="CLUSTER", help="cluster id (from `people list`)")
    psplit.add_argument(
        "tracks",
        nargs="+",
        metavar="JOB:TRACK",
        help="a job id and a track number, e.g. 3f2a...:12",
    )
    psplit.set_defaults(func=_people_split)
    pmerge = psub.add_parser(
        "merge",
        help="move every track of the OTHER clusters into INTO",
        description="Merge clusters of one person: every track of each OTHER cluster moves "
        "into INTO (pinned: re-clustering keeps it).",
    )
    pmerge.add_argument("into", metavar="INTO", help="the cluster that stays")
    pmerge.add_argument("others", nargs="+", metavar="OTHER", help="clusters merged into INTO")
    pmerge.set_defaults(func=_people_merge)

    track = sub.add_parser(
        "track",
        help="correct who a track of a video job is (--is NAME) or is not (--not NAME)",
        description="Correct the name of one track of a processed video.",
        epilog=TRACK_EPILOG,
        formatter_class=raw,
    )
    track.add_argument("job", metavar="JOB", help="job id")
    track.add_argument("track", metavar="TRACK", help="track number in the job's results")
    correction = track.add_mutually_exclusive_group(required=True)
    correction.add_argument("--is", dest="is_name", metavar="NAME", help="the track is NAME")
    correction.add_argument("--not", dest="not_name", metavar="NAME", help="the track is not NAME")
    track.add_argument(
        "--gallery", default="default", help="with --is: enroll into (default: default)"
    )
    track.add_argument("--json", action="store_true", help="print the report as JSON")
    track.set_defaults(func=_track)

    jobs = sub.add_parser(
        "jobs",
        help="list the jobs in the store, delete finished ones",
        description="The jobs in the object store, with their archived tracks.",
    )
    jsub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    jlist = jsub.add_parser(
        "list", help="every job: id, kind, state, created, updated, sources, archived tracks"
    )
    jlist.add_argument("--json", action="store_true", help="print the jobs as JSON")
    jlist.set_defaults(func=_jobs_list)
    jdelete = jsub.add_parser(
        "delete",
        help="delete finished jobs: inputs, outputs, face regions and archived tracks",
        description="Delete finished jobs from the store and the archive (a running job is "
        "refused: `facefleet cancel` it first).",
    )
    jdelete.add_argument("jobs", nargs="+", metavar="JOB", help="job ids")
    jdelete.set_defaults(func=_jobs_delete)


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
    if args.forget:
        return _forget(args)
    report = _client().gallery.remove(args.person, gallery=args.gallery)
    if not report.removed:
        _error(f"{args.person} is not in gallery {args.gallery}")
        return EXIT_INPUT_ERRORS
    err.print(
        f"{args.person}: {report.removed} face(s) removed from {report.gallery}", highlight=False
    )
    return EXIT_OK


def _forget(args: argparse.Namespace) -> int:
    """`gallery remove --forget`: out of the gallery (when enrolled there) and forgotten
    everywhere else; a person found nowhere is a mistake."""
    client = _client()
    removed = 0
    if args.person in client.gallery.list(args.gallery):
        removed = client.gallery.remove(args.person, gallery=args.gallery).removed
    report = client.forget(args.person, gallery=args.gallery)
    if not (removed or report.tracks or report.labelled or report.results):
        _error(f"{args.person} is not in gallery {args.gallery} nor named in the archive")
        return EXIT_INPUT_ERRORS
    if removed:
        _say(f"{args.person}: {removed} face(s) removed from {args.gallery}")
    else:
        _say(f"{args.person} was not enrolled in gallery {args.gallery}")
    _say(
        f"{args.person}: forgotten: name removed from {report.tracks} track(s) and "
        f"{report.results} result file(s); {report.labelled} labelled face(s) deleted"
    )
    return EXIT_OK


# ---- the archive ------------------------------------------------------------------------


def _number(text: str, what: str) -> int:
    """A cluster, track or version id as typed: a whole number, else an input error."""
    from facefleet.core.errors import InputError

    if not (text.isascii() and text.isdigit()):
        raise InputError(f"invalid {what} {text!r} (expected a whole number)")
    return int(text)


def parse_track_ref(text: str) -> tuple[str, int]:
    """`JOB:TRACK` (a job id, a colon, a track number) as a (job id, track id) pair."""
    from facefleet.core.errors import InputError
    from facefleet.jobs.records import check_job_id

    job_id, sep, track = text.rpartition(":")
    if not sep or not job_id or not track:
        raise InputError(f"invalid track {text!r} (expected JOB:TRACK, e.g. 3f2a...:12)")
    return check_job_id(job_id), _number(track, "track number")


def _when(moment: Any) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _table(*columns: str) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        right = column in ("seconds", "similarity", "version", "tracks", "jobs", "cluster")
        table.add_column(column, justify="right" if right else "left", no_wrap=True)
    return table


def _row(table: Any, *cells: str) -> None:
    from rich.text import Text

    table.add_row(*(Text(cell) for cell in cells))  # names and file names are not markup


def _say(message: str) -> None:
    err.print(message, markup=False)


def _dump(models: Any) -> None:
    if isinstance(models, list):
        print(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
    else:
        print(models.model_dump_json(indent=2))


def _search(args: argparse.Namespace) -> int:
    client = _client()
    if args.person is not None:
        report = client.search(person=args.person, gallery=args.gallery)
    else:
        report = client.search(photo=args.photo)
    if args.json:
        _dump(report)
        return EXIT_OK
    if report.note:
        _say(f"note: {report.note}")
    criterion = f"similarity >= {report.threshold:.3f}, extractor {report.extractor}"
    if not report.appearances:
        _say(f"no appearance of {report.query} in the archive ({criterion})")
        return EXIT_OK
    _say(f"{report.query}: {len(report.appearances)} appearance(s) ({criterion})")
    table = _table("job", "track", "source", "seconds", "similarity", "name", "thumbnail")
    for a in report.appearances:
        _row(
            table,
            a.job_id,
            str(a.track_id),
            a.source,
            f"{a.start_s:.1f}-{a.end_s:.1f}",
            f"{a.similarity:.3f}",
            a.identity or "unknown",
            a.thumbnail_url or a.thumbnail,
        )
    print_table(table)
    return EXIT_OK


def _people_list(args: argparse.Namespace) -> int:
    clusters = _client().people.list()
    if args.json:
        _dump(clusters)
        return EXIT_OK
    if not clusters:
        _say("no clusters of unknown people (yet: they form as video jobs are indexed)")
        return EXIT_OK
    table = _table("cluster", "version", "tracks", "jobs", "first seen", "last seen", "thumbnail")
    for c in clusters:
        _row(
            table,
            str(c.cluster_id) + ("*" if c.pinned else ""),
            str(c.version),
            str(c.tracks),
            str(c.jobs),
            _when(c.first_seen),
            _when(c.last_seen),
            c.thumbnail_url or c.thumbnail,
        )
    print_table(table)
    if any(c.pinned for c in clusters):
        _say("* pinned by a split or merge: re-clustering leaves it as it is")
    return EXIT_OK


def _people_show(args: argparse.Namespace) -> int:
    tracks = _client().people.show(_number(args.cluster, "cluster id"))
    if args.json:
        _dump(tracks)
        return EXIT_OK
    table = _table("job:track", "source", "seconds", "thumbnail")
    for t in tracks:
        _row(
            table,
            f"{t.job_id}:{t.track_id}",
            t.source,
            f"{t.start_s:.1f}-{t.end_s:.1f}",
            t.thumbnail_url or t.thumbnail,
        )
    print_table(table)
    return EXIT_OK


def _people_cluster(args: argparse.Namespace) -> int:
    report = _client().people.cluster(full=not args.incremental)
    if args.json:
        _dump(report)
        return EXIT_OK
    _say(
        f"{report.tracks} unknown track(s): {report.clustered} in {report.clusters} "
        f"cluster(s) ({report.created} new, {report.joined} joined one)"
    )
    return EXIT_OK


def _people_name(args: argparse.Namespace) -> int:
    version = None if args.version is None else _number(args.version, "cluster version")
    report = _client().people.name(
        _number(args.cluster, "cluster id"), args.name, gallery=args.gallery, version=version
    )
    if args.json:
        _dump(report)
        return EXIT_OK
    _say(
        f"cluster {report.cluster_id} is {report.name}: {report.tracks} track(s) renamed in "
        f"{report.results} result file(s); {report.enrolled} face(s) enrolled in gallery "
        f"{report.gallery}"
    )
    return EXIT_OK


def _people_split(args: argparse.Namespace) -> int:
    cluster = _number(args.cluster, "cluster id")
    tracks = [parse_track_ref(text) for text in args.tracks]
    created = _client().people.split(cluster, tracks)
    print(created)
    _say(f"{len(tracks)} track(s) moved from cluster {cluster} to new cluster {created}")
    return EXIT_OK


def _people_merge(args: argparse.Namespace) -> int:
    into = _number(args.into, "cluster id")
    others = [_number(text, "cluster id") for text in args.others]
    moved = _client().people.merge(into, others)
    _say(f"{moved} track(s) moved into cluster {into}")
    return EXIT_OK


def _track(args: argparse.Namespace) -> int:
    from facefleet.jobs.records import check_job_id

    report = _client().correct_track(
        check_job_id(args.job),
        _number(args.track, "track number"),
        is_name=args.is_name,
        not_name=args.not_name,
        gallery=args.gallery,
    )
    if args.json:
        _dump(report)
        return EXIT_OK
    line = (
        f"job {report.job_id} track {report.track_id}: {report.before or 'unknown'} -> "
        f"{report.after or 'unknown'} ({report.results} result file(s) rewritten"
    )
    if report.gallery:
        line += f"; {report.enrolled} face(s) enrolled in gallery {report.gallery}"
    _say(line + ")")
    return EXIT_OK


def _jobs_list(args: argparse.Namespace) -> int:
    entries = _client().jobs()
    if args.json:
        _dump(entries)
        return EXIT_OK
    if not entries:
        _say("no jobs")
        return EXIT_OK
    table = _table("job", "kind", "state", "created", "updated", "tracks", "sources")
    for e in entries:
        _row(
            table,
            e.job_id,
            e.kind,
            e.state,
            _when(e.created),
            _when(e.updated),
            "-" if e.tracks is None else str(e.tracks),
            ", ".join(e.sources),
        )
    print_table(table)
    return EXIT_OK


def _jobs_delete(args: argparse.Namespace) -> int:
    from facefleet.core.errors import InputError

    client = _client()
    refused = 0
    for job_id in args.jobs:
        try:
            report = client.delete_job(job_id)
        except InputError as exc:
            _error(str(exc))
            refused += 1
            continue
        _say(
            f"job {report.job_id} deleted: {report.objects} object(s), "
            f"{report.tracks} archived track(s)"
        )
    return EXIT_INPUT_ERRORS if refused else EXIT_OK


def train_remote(args: argparse.Namespace) -> int:
    """`facefleet train --remote`: the run goes to a gpu worker with every recipe option
    given; --wait follows it, printing each evaluation as it is reported."""
    from facefleet.core.errors import FacefleetError
    from facefleet.training.records import (
        LOCAL_TRAIN_OPTIONS,
        UPLOADED_TRAIN_OPTIONS,
        TrainOptions,
    )

    local = [
        f"--{n.replace('_', '-')}"
        for n in LOCAL_TRAIN_OPTIONS
        if n not in UPLOADED_TRAIN_OPTIONS and getattr(args, n, None)
    ]
    if local or args.resume:
        named = ", ".join(local + (["--resume"] if args.resume else []))
        raise FacefleetError(
            f"{named}: local-run options, not taken by --remote (a worker uses its own "
            "FACEFLEET_LFW_DIR and device; a remote run resumes by --run name)"
        )
    client = _client()
    run = client.train(
        TrainOptions(**given(args, TrainOptions)),
        run=args.run,
        data=args.data,
        data_only=bool(args.data_only),
        init_from=args.init_from,
    )
    print(run.run)
    if not args.wait:
        err.print(f"training run {run.run} queued", highlight=False)
        return EXIT_OK
    progress = run.wait(on_evaluation=lambda e: err.print(e.line(), highlight=False))
    err.print(f"{progress.state}: {progress.message or ''}", highlight=False)
    return EXIT_OK if progress.state == "done" else EXIT_INPUT_ERRORS
