"""The `facefleet` command line.

Flags that set an option are derived from the model that declares it (`Settings`,
`TrainConfig`, `JobOptions`; see facefleet.options), and every command runs under one
error-to-exit-status mapping (facefleet.exits). Commands import what they need when they
run, so `facefleet --help` and the cluster commands work on a client-only install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from facefleet import __version__
from facefleet.core.settings import Settings
from facefleet.exits import EXIT_SETUP_ERROR, guarded
from facefleet.jobs.records import JobOptions
from facefleet.options import add_model_options
from facefleet.training.records import LOCAL_TRAIN_OPTIONS, TrainConfig, TrainOptions

PROCESS_EPILOG = """\
outputs:
  For each input image OUT/<name>.jpg (annotated: boxes, scores, five landmarks, name and
  match confidence) and OUT/<name>.json; for each video OUT/<name>.mp4 (H.264, the source
  audio kept) and OUT/<name>.json with faces per frame and tracks with times (see README).

exit status:
  0 every input processed; 1 some inputs failed (each named on stderr, the others are still
  processed); 2 nothing could start (bad model, detector weights or gallery).

examples:
  facefleet process photos/ --gallery people/ --out results/
  facefleet process group.jpg --detector yolov8-face --detector-weights yolov8n-face.pt --out o/
"""

TRAIN_EPILOG = """\
outputs in --out: extractor.pt (inference checkpoint with calibrated thresholds, from the
best evaluation), latest.pt and best.pt (full training state), metrics.jsonl, plots/*.png
(threshold vs F1 for both metrics). With --remote every recipe option travels with the run.
"""

# The recognition settings that `process` (and, in part, `demo` and `eval`) expose as flags.
PIPELINE_SETTINGS = (
    "detector",
    "detector_weights",
    "det_score_threshold",
    "extractor",
    "model",
    "metric",
    "threshold",
    "embedding_budget",
    "device",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facefleet",
        description="Face recognition for bulk images and video: detect, align, embed, match.",
    )
    parser.add_argument("--version", action="version", version=f"facefleet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    process = sub.add_parser(
        "process",
        help="recognize faces in images and videos; write annotated copies plus JSON",
        description="Detect faces, match them against a gallery of enrolled people, and write "
        "annotated images/videos and machine-readable results. In videos faces are tracked "
        "and each track is named once, from all of its faces.",
        epilog=PROCESS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    process.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="image files or folders (searched recursively)",
    )
    process.add_argument("--out", type=Path, required=True, help="output folder (created)")
    process.add_argument(
        "--gallery",
        type=Path,
        help="folder of people (<DIR>/<Person_Name>/*.jpg) or a saved gallery",
    )
    add_model_options(
        process, Settings, PIPELINE_SETTINGS, flags={"det_score_threshold": ["--det-threshold"]}
    )
    add_model_options(process, JobOptions, ("every", "chunk_frames"))
    process.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    process.set_defaults(func=_run_process)

    demo = sub.add_parser(
        "demo",
        help="run the main job end to end on photos that ship with the installed packages",
        description="Enroll two real photographs that come with installed libraries "
        "(scikit-image's astronaut Eileen Collins, matplotlib's Grace Hopper), render a short "
        "clip that pans across them, recognize the faces in it and write the annotated MP4 "
        "and the results JSON. Needs no data and no network.",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("facefleet-demo"),
        help="output folder (default ./facefleet-demo)",
    )
    add_model_options(demo, Settings, ("extractor", "device"))
    demo.set_defaults(func=_run_demo)

    train = sub.add_parser(
        "train",
        help="train the face feature extractor on LFW (EfficientNet-B0 + ArcFace)",
        description="Train on the people of LFW View 1 peopleDevTrain.txt and/or your own "
        "faces (--data: <Person>/<image> folders; LFW DevTest people in it are dropped); "
        "every N epochs "
        "evaluate on pairsDevTest.txt (other people) and report, for cosine and euclidean, "
        "the best threshold and its F1. The state is saved after every epoch; --resume "
        "continues a run that was stopped.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(train, TrainOptions)
    local = train.add_argument_group(
        "paths of a run (with --remote: --data, --data-only and --init-from are uploaded, "
        "the others are the worker's own)"
    )
    add_model_options(local, TrainConfig, LOCAL_TRAIN_OPTIONS)
    local.add_argument("--resume", action="store_true", help="continue the run in --out")
    remote = train.add_argument_group("remote runs")
    remote.add_argument(
        "--remote",
        action="store_true",
        help="run on a gpu worker of the cluster (checkpoints in S3, promoted if better)",
    )
    remote.add_argument("--run", help="run name (resumes a run of that name)")
    remote.add_argument("--wait", action="store_true", help="follow the run until it ends")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_run_train)

    calibrate = sub.add_parser(
        "calibrate",
        help="measure an extractor's match thresholds on LFW DevTest and store them with it",
        description="Best-F1 thresholds on the DevTest pairs (cosine and euclidean) and the "
        "gallery threshold at a fixed false-accept rate on the DevTest open-set "
        "identification protocol (see `facefleet eval`). A facefleet-b0 checkpoint is "
        "written as a calibrated copy; any other extractor gets a calibration file (for an "
        "ONNX model: its sidecar, <model>.json).",
    )
    add_model_options(calibrate, Settings, ("extractor", "model", "device"))
    calibrate.add_argument("--lfw", type=Path, required=True, help="LFW root")
    calibrate.add_argument(
        "--out", type=Path, required=True, help="calibrated checkpoint or calibration file"
    )
    calibrate.add_argument(
        "--far",
        type=float,
        default=1e-2,
        help="false-accept rate for identification (default 0.01)",
    )
    calibrate.set_defaults(func=_run_calibrate)

    evaluate = sub.add_parser(
        "eval",
        help="evaluate an extractor on LFW: verification and open-set identification",
        description="Verification accuracy and F1 with cosine and euclidean distance: "
        "pairsDevTest.txt (10-fold cross-validated threshold, plus the best-F1 threshold) "
        "and View 2 pairs.txt (10 folds, mean ± std). Open-set identification on DevTest "
        "people only: the gallery holds one image of each person with two or more, their "
        "other images are genuine probes, every image of a person with one image is an "
        "impostor probe; reported: rank-1 rate and the detection-and-identification rate "
        "at 1% and 0.1% false accepts (JSON: the `identification` key).",
    )
    evaluate.add_argument("--lfw", type=Path, required=True, help="LFW root")
    add_model_options(evaluate, Settings, ("extractor", "model", "device"))
    evaluate.add_argument("--json", type=Path, metavar="OUT.json", help="write the report here")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=_run_eval)

    from facefleet import api_cli, cluster_cli, service_cli

    cluster_cli.add_commands(sub)
    service_cli.add_commands(sub)
    api_cli.add_commands(sub)
    return parser


def _run_process(args: argparse.Namespace) -> int:
    from facefleet.local import process_inputs

    return process_inputs(args)


def _run_demo(args: argparse.Namespace) -> int:
    from facefleet.demo import run_demo

    return run_demo(args)


def _run_train(args: argparse.Namespace) -> int:
    if args.remote:
        from facefleet.cluster_cli import train_remote

        return train_remote(args)
    from facefleet.training_cli import train

    return train(args)


def _run_calibrate(args: argparse.Namespace) -> int:
    from facefleet.training_cli import calibrate

    return calibrate(args)


def _run_eval(args: argparse.Namespace) -> int:
    from facefleet.training_cli import evaluate

    return evaluate(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_SETUP_ERROR
    try:
        return int(guarded(args.func)(args))
    except KeyboardInterrupt:
        print("facefleet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
