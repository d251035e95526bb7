"""Identification per real video case, and end-to-end frames/s (a benchmark, not a test).

Run: .venv/bin/python bench/video_cases.py [--data ../shared/data] [--json out.json]

Per case (who appears when is taken from each case's CASE.md):
  right   = frames of the person's segment in which a face carries their name
  seen    = frames of that segment with at least one detected face
  false   = faces given a name that is not who the case says is there at that frame
fps is the whole in-process job (decode, detect, embed, track, name, render, encode).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' data setting

from facefleet.core.gallery import Gallery  # noqa: E402
from facefleet.core.pipeline import build_pipeline  # noqa: E402
from facefleet.core.schemas import VideoResult  # noqa: E402
from facefleet.core.settings import get_settings  # noqa: E402
from facefleet.core.video_pipeline import run_video  # noqa: E402
from tests.data import shared_data_root  # noqa: E402


@dataclass(frozen=True)
class Expect:
    person: str
    first: int
    last: int


ANYWHERE = ((0, 10**9),)


@dataclass(frozen=True)
class Case:
    name: str
    video: str
    galleries: tuple[str, ...]
    expect: tuple[Expect, ...]
    # Who may be named, and on which frames (first, last): a name elsewhere is a false one.
    allowed: dict[str, tuple[tuple[int, int], ...]]


CASES = [
    Case(
        "hamilton_whitehouse",
        "hamilton_whitehouse/short_hamilton_clip.mp4",
        ("hamilton_whitehouse",),
        (
            Expect("Lin_Manuel_Miranda", 90, 210),
            Expect("Alex_Lacamoire", 20, 75),  # his profile close-ups
            Expect("Barack_Obama", 215, 274),
        ),
        {  # CASE.md: wide shot, Lacamoire's close-ups, Miranda's segment, the audience shot
            "Lin_Manuel_Miranda": ((0, 19), (76, 210)),
            "Alex_Lacamoire": ((0, 81),),
            "Barack_Obama": ((211, 274),),
        },
    ),
    Case(
        "trump_speech",
        "trump_speech/trump.mp4",
        ("trump_speech",),
        (Expect("Donald_Trump", 0, 242),),
        {"Donald_Trump": ANYWHERE},
    ),
    Case(
        "obama_curry",
        "obama_curry_whitehouse/obama_curry.mp4",
        ("obama_curry_whitehouse",),
        (),
        {"Barack_Obama": ANYWHERE, "Stephen_Curry": ANYWHERE},
    ),
    Case(  # the longer cut: Curry's close-up, then both, then Curry shooting
        "obam",
        "obama_curry_whitehouse/obam.mp4",
        ("obama_curry_whitehouse",),
        (),
        {"Barack_Obama": ANYWHERE, "Stephen_Curry": ANYWHERE},
    ),
    Case(
        "crowd_no_known_identity",
        "crowd_no_known_identity/video.mp4",
        ("hamilton_whitehouse", "obama_curry_whitehouse", "trump_speech"),
        (),
        {},
    ),
]


def score(case: Case, result: VideoResult) -> dict[str, object]:
    out: dict[str, object] = {
        "case": case.name,
        "frames": result.frame_count,
        "tracks": len(result.tracks),
    }
    for exp in case.expect:
        frames = [f for f in result.frames if exp.first <= f.index <= exp.last]
        seen = [f for f in frames if f.faces]
        right = [f for f in seen if any(face.identity == exp.person for face in f.faces)]
        out[exp.person] = {
            "right": len(right),
            "seen": len(seen),
            "rate": round(len(right) / len(seen), 3) if seen else None,
        }
    wrong = [
        face
        for f in result.frames
        for face in f.faces
        if face.identity is not None
        and not any(a <= f.index <= b for a, b in case.allowed.get(face.identity, ()))
    ]
    out["false_names"] = len(wrong)
    out["false_names_who"] = sorted({f.identity for f in wrong})  # type: ignore[misc]
    return out


def case_gallery(case: Case, data: Path, pipeline) -> Gallery:
    """The case's galleries enrolled under the pipeline's extractor."""
    gallery = Gallery.empty(pipeline.extractor)
    for g in case.galleries:
        folder = data / "videos" / g / "gallery"
        part, _ = Gallery.enroll_folder(folder, pipeline.detector, pipeline.extractor)
        # The LFW copy of Trump's photo may have been seen in training: leave it out.
        part.remove_samples(lambda s: "Donald_Trump_0001" in s.source)
        gallery.add_samples_from(part)
    return gallery


def run_case(case: Case, data: Path, pipeline, every: int = 1) -> dict[str, object]:
    """One case end to end in-process: its score and frames/s."""
    pipeline.gallery = case_gallery(case, data, pipeline)
    return run_enrolled(case, data, pipeline, every)[0]


def run_enrolled(
    case: Case, data: Path, pipeline, every: int = 1
) -> tuple[dict[str, object], VideoResult]:
    """One case with the pipeline's gallery already enrolled: its score, frames/s and the
    result (so other benches can compare runs of one enrolment)."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = run_video(data / "videos" / case.video, pipeline, Path(tmp) / "o.mp4", every=every)
        seconds = time.perf_counter() - started
    row = score(case, result)
    row["fps"] = round(result.frame_count / seconds, 1)
    row["size"] = f"{result.width}x{result.height}"
    return row, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--every", type=int, default=1)
    args = parser.parse_args()
    settings = get_settings()
    data = args.data or shared_data_root()
    rows = []
    pipeline, _ = build_pipeline(settings, None)  # models load once, galleries change per case
    assert pipeline.extractor is not None, "needs an extractor model"
    for case in CASES:
        row = run_case(case, data, pipeline, args.every)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
