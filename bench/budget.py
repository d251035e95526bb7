"""The embedding budget on every dev video case: extractor calls, names, false names, fps,
with the budget on and off (a benchmark, not a test).

Run: .venv/bin/python bench/budget.py [--data ../shared/data] [--every 1] [--case NAME ...]

Per case and mode:
  calls   = faces that went through the extractor (its gallery's enrolment not counted),
            and embed_s the seconds spent in it (less noisy than fps on a shared machine)
  names   = the identities the case's tracks carry
  named   = per identity, the frames in which a face carries it
  false   = faces given a name that is not who the case says is there (bench/video_cases)
  closest = the highest similarity of a track left unnamed: how near a stranger came to a
            name (the threshold is the extractor's calibrated one)
  fps     = the whole in-process job (decode, detect, embed, track, name, render, encode)
Results: bench/results/budget.json and budget.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.video_cases import CASES, Case, case_gallery, run_enrolled  # noqa: E402
from facefleet.core.pipeline import FacePipeline, build_pipeline  # noqa: E402
from facefleet.core.schemas import VideoResult  # noqa: E402
from facefleet.core.settings import get_settings  # noqa: E402
from tests.data import shared_data_root  # noqa: E402

RESULTS = REPO / "bench" / "results"


class ModeRun(BaseModel):
    calls: int
    forwards: int
    embed_s: float
    names: list[str]
    named_frames: dict[str, int]
    false_names: int
    closest_unnamed: float | None
    tracks: int
    fps: float


class CaseRun(BaseModel):
    case: str
    frames: int
    threshold: float | None  # the case's: it depends on the size of its gallery
    on: ModeRun
    off: ModeRun

    @property
    def cut(self) -> float:
        """How many times fewer faces went through the extractor."""
        return self.off.calls / max(self.on.calls, 1)

    @property
    def same_names(self) -> bool:
        return self.on.names == self.off.names

    @property
    def new_false(self) -> int:
        return max(self.on.false_names - self.off.false_names, 0)


class EmbedCounter:
    """Wraps the extractor's embed to count the faces (and the forwards) it is given."""

    def __init__(self, pipeline: FacePipeline) -> None:
        extractor = pipeline.extractor
        assert extractor is not None, "needs an extractor model"
        self.reset()
        inner = extractor.embed

        def counted(crops):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            out = inner(crops)
            if len(crops):
                self.faces += len(crops)
                self.forwards += 1
                self.seconds += time.perf_counter() - started
            return out

        extractor.embed = counted  # type: ignore[method-assign]

    def reset(self) -> None:
        self.faces = self.forwards = 0
        self.seconds = 0.0


def run_mode(
    case: Case, data: Path, pipeline: FacePipeline, counter: EmbedCounter, on: bool, every: int
) -> tuple[ModeRun, VideoResult]:
    pipeline.embedding_budget = on
    counter.reset()
    row, result = run_enrolled(case, data, pipeline, every)
    named: dict[str, int] = {}
    for frame in result.frames:
        for who in {f.identity for f in frame.faces if f.identity}:
            named[who] = named.get(who, 0) + 1
    unnamed = [t.similarity for t in result.tracks if not t.identity and t.similarity is not None]
    run = ModeRun(
        calls=counter.faces,
        forwards=counter.forwards,
        embed_s=round(counter.seconds, 2),
        names=sorted({t.identity for t in result.tracks if t.identity}),
        named_frames=dict(sorted(named.items())),
        false_names=int(row["false_names"]),  # type: ignore[call-overload]
        closest_unnamed=max(unnamed) if unnamed else None,
        tracks=len(result.tracks),
        fps=float(row["fps"]),  # type: ignore[arg-type]
    )
    return run, result


def _sim(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown(runs: list[CaseRun], every: int) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        f"Embedding budget on/off, every={every}, default extractor, {cpu}, "
        f"{os.cpu_count()} cores. calls: faces through the extractor (embed s: the seconds "
        "in it); named: frames in which a face carries the name; closest: the highest "
        "similarity of a track left unnamed, and the case's threshold.",
        "",
        "| case | frames | calls off | calls on | fewer | embed s off → on | names off | "
        "names on | named frames off → on | false off | false on | closest off → on | "
        "fps off | fps on |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        who = sorted(set(r.off.named_frames) | set(r.on.named_frames))
        named = ", ".join(
            f"{w}: {r.off.named_frames.get(w, 0)} → {r.on.named_frames.get(w, 0)}" for w in who
        )
        lines.append(
            f"| {r.case} | {r.frames} | {r.off.calls} | {r.on.calls} | {r.cut:.1f}× | "
            f"{r.off.embed_s} → {r.on.embed_s} | "
            f"{', '.join(r.off.names) or '-'} | {', '.join(r.on.names) or '-'} | "
            f"{named or '-'} | {r.off.false_names} | {r.on.false_names} | "
            f"{_sim(r.off.closest_unnamed)} → {_sim(r.on.closest_unnamed)} "
            f"({_sim(r.threshold)}) | "
            f"{r.off.fps} | {r.on.fps} |"
        )
    total_off, total_on = sum(r.off.calls for r in runs), sum(r.on.calls for r in runs)
    ok = all(r.same_names and not r.new_false and r.cut >= 3 for r in runs)
    lines += [
        "",
        f"All cases: {total_off} → {total_on} extractor calls "
        f"({total_off / max(total_on, 1):.1f}× fewer); goal (≥3× fewer on every case, the "
        f"same names, no new false names) {'met' if ok else 'NOT met'}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--case", action="append", help="only these cases (by name)")
    parser.add_argument("--out", type=Path, default=RESULTS / "budget")
    args = parser.parse_args()
    data = args.data or shared_data_root()
    pipeline, _ = build_pipeline(get_settings(), None)  # models load once
    counter = EmbedCounter(pipeline)
    runs = []
    for case in CASES:
        if args.case and case.name not in args.case:
            continue
        pipeline.gallery = case_gallery(case, data, pipeline)  # one enrolment for both modes
        off, result = run_mode(case, data, pipeline, counter, False, args.every)
        on, _ = run_mode(case, data, pipeline, counter, True, args.every)
        run = CaseRun(
            case=case.name,
            frames=result.frame_count,
            threshold=pipeline.effective_threshold,
            on=on,
            off=off,
        )
        runs.append(run)
        print(run.model_dump_json(), f"fewer {run.cut:.1f}x", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"every": args.every, "cases": [r.model_dump() | {"fewer": r.cut} for r in runs]}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    table = markdown(runs, args.every)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
