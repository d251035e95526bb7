"""The `facefleet` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from facefleet import __version__

EXIT_OK, EXIT_INPUT_ERRORS, EXIT_SETUP_ERROR = 0, 1, 2

PROCESS_EPILOG = """\
outputs:
  For each input image OUT/<name>.jpg (annotated: boxes, scores, five landmarks, name and
  match confidence) and OUT/<name>.json (see README, "Results JSON").

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
        help="recognize faces in images and write annotated copies plus JSON",
        description="Detect faces, match them against a gallery of enrolled people, and write "
        "annotated images and machine-readable results.",
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
    process.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    process.set_defaults(func=_run_process)
    return parser


def _run_process(args: argparse.Namespace) -> int:
    from facefleet.local import process_inputs

    return process_inputs(args)


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
