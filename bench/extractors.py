"""Every extractor side by side: the table the default is chosen by (a benchmark, not a test).

Run: .venv/bin/python bench/extractors.py [--extractors dlib-resnet facefleet-b0] [--json out]

Per extractor, one row:
  devtest      LFW DevTest verification accuracy (10-fold CV, cosine)
  rank1, dir1, dir01   DevTest open-set identification: rank-1 rate, DIR at 1% and 0.1% FAR
  knn          images/knn_stills: known faces named right of 7, the stranger unknown (y/n),
               wrong names
  video        every case of bench/video_cases.py: the enrolled people's share of their
               frames, and false names (a name outside the frames CASE.md gives that person)
  ms/face      embedding time per face, batches of 32, median of 3 (this machine, its threads)
  fps          hamilton clip end to end in-process (decode, detect, embed, track, render)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from video_cases import CASES, run_case  # noqa: E402

from facefleet.core.gallery import Gallery  # noqa: E402
from facefleet.core.pipeline import build_pipeline  # noqa: E402
from facefleet.core.settings import get_settings  # noqa: E402
from facefleet.core.tracking import iou_matrix  # noqa: E402
from facefleet.training.evaluate import evaluate_pairs  # noqa: E402
from facefleet.training.evaluation_report import devtest_identification  # noqa: E402
from facefleet.training.facecache import lfw_face_cache  # noqa: E402
from facefleet.training.identification import devtest_split  # noqa: E402
from facefleet.training.lfw import LFWDataset  # noqa: E402
from tests.data import shared_data_root  # noqa: E402

# knn_stills/CASE.md: box (x0, y0, x1, y1) and who it is; None is the stranger.
KNN_TRUTH = [
    ("johnsnow_test1.jpg", (262, 131, 440, 362), "kit_harington"),
    ("kit_with_rose.jpg", (260, 74, 351, 203), "kit_harington"),
    ("kit_with_rose.jpg", (79, 108, 156, 213), "rose_leslie"),
    ("obama1.jpg", (541, 124, 894, 633), "obama"),
    ("obama_and_biden.jpg", (763, 388, 932, 644), "biden"),
    ("obama_and_biden.jpg", (1144, 353, 1325, 605), "obama"),
    ("obama_and_biden.jpg", (1625, 1038, 1776, 1228), None),
    ("alex_lacamoire1.jpg", (642, 110, 937, 551), "alex_lacamoire"),
]


def knn_stills(data: Path, pipeline) -> dict[str, object]:
    root = data / "images" / "knn_stills"
    pipeline.gallery, _ = Gallery.enroll_folder(
        root / "gallery", pipeline.detector, pipeline.extractor
    )
    right = wrong = 0
    stranger_unknown = True
    for name, box, person in KNN_TRUTH:
        result, _ = pipeline.process_image(root / "test" / name)
        faces = [f for f in result.faces if iou_matrix([f.box], [box])[0, 0] >= 0.3]
        identity = faces[0].identity if faces else None
        if person is None:
            stranger_unknown = identity is None
        elif identity == person:
            right += 1
        elif identity is not None:
            wrong += 1
    wrong += 0 if stranger_unknown else 1
    return {"knn_right": right, "knn_stranger_unknown": stranger_unknown, "knn_wrong": wrong}


def lfw_figures(data: Path, extractor) -> dict[str, object]:
    lfw = data / "lfw"
    dataset = LFWDataset(lfw)
    pairs = dataset.pairs("devtest")
    images = list(dict.fromkeys(p for pair in pairs for p in (pair.left, pair.right)))
    cache = lfw_face_cache(
        lfw, images + devtest_split(dataset).images, get_settings().cache_dir, progress=False
    )
    devtest = evaluate_pairs(extractor, cache, pairs, "devtest")
    ident = devtest_identification(extractor, dataset, cache)
    return {
        "devtest": round(devtest.cosine.accuracy, 4),
        "rank1": round(ident.rank1, 4),
        "dir1": round(ident.at(0.01).dir, 4),
        "dir01": round(ident.at(0.001).dir, 4),
    }


def ms_per_face(extractor, repeat: int = 3) -> float:
    size = extractor.geometry.size
    crops = np.random.default_rng(0).integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    extractor.embed(crops)  # warm-up
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(4):
            extractor.embed(crops)
        runs.append((time.perf_counter() - started) / (4 * len(crops)) * 1000)
    return round(statistics.median(runs), 2)


def video_figures(data: Path, pipeline) -> dict[str, object]:
    return {
        case.name: {
            k: v
            for k, v in run_case(case, data, pipeline).items()
            if k not in ("case", "frames", "false_names_who", "size")
        }
        for case in CASES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractors", nargs="+", default=["dlib-resnet", "facefleet-b0"])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-video", action="store_true", help="skip the video cases")
    args = parser.parse_args()
    data = args.data or shared_data_root()
    rows = []
    for name in args.extractors:
        pipeline, _ = build_pipeline(get_settings(extractor=name))
        extractor = pipeline.extractor
        row: dict[str, object] = {"extractor": name, "model_id": extractor.model_id}
        row |= lfw_figures(data, extractor)
        row |= knn_stills(data, pipeline)
        row["ms_per_face"] = ms_per_face(extractor)
        if not args.no_video:
            row["video"] = video_figures(data, pipeline)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
