"""facefleet on one accelerator: in-process frames/s on a 720p video, and training images/s.

    bash bench/gpu.sh                      # a bare NVIDIA machine: set-up, then this script
    .venv/bin/python bench/gpu.py [--device cuda] [--frames 900] [--batch 64]
                                  [--train-batch 512] [--train-people N] [--json PATH]

The 720p video is the hamilton clip scaled to 1280×720 and looped to `--frames` frames
(made before timing). Frames/s is the whole in-process job (decode, detect, refine
landmarks, align, embed, track, name, render, encode with audio), after a warm-up run that
lets cuDNN pick its kernels. Training images/s is the second of two epochs on LFW
DevTrain (mixed precision on CUDA; the first epoch includes the kernel search). On the CPU
it runs too (a smoke test): pass small --frames and --train-people there.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Appended, not prepended: where facefleet is installed apart from this tree (bench/gpu.sh's
# .gpu/site on the GPU machine) the installed package must win over the facefleet/ folder.
sys.path.append(str(REPO))
sys.path.append(str(REPO / "bench"))

from facefleet.core.settings import get_settings  # noqa: E402
from tests.data import shared_data_root  # noqa: E402


def make_clip(source: Path, out: Path, frames: int, width: int, height: int) -> Path:
    """`source` scaled to width×height and looped to `frames` frames."""
    from clips import write_looped

    from facefleet.core.video import probe

    return write_looped([source], out, frames, (width, height), probe(source).fps)


def stage_rates(clip: Path, pipeline, batch: int, frames: int = 256) -> dict:
    """Each stage alone on the first `frames` frames, to say which one limits the whole:
    decoding (PyAV, one thread), detection (with the refine pass), embedding."""
    from facefleet.core.alignment import align_faces
    from facefleet.core.video import read_frames

    started = time.perf_counter()
    images = [f.image for f in read_frames(clip, 0, frames)]
    decode_fps = len(images) / (time.perf_counter() - started)
    pipeline.detect(images[:batch])  # warm-up
    started = time.perf_counter()
    detections = [
        d for s in range(0, len(images), batch) for d in pipeline.detect(images[s : s + batch])
    ]
    detect_fps = len(images) / (time.perf_counter() - started)
    crops = [
        c
        for image, dets in zip(images, detections, strict=True)
        for c in align_faces(image, dets, pipeline.extractor.geometry)
    ]
    pipeline.extractor.embed(crops[:batch])  # warm-up
    started = time.perf_counter()
    pipeline.extractor.embed(crops)
    embed_fps = len(crops) / max(time.perf_counter() - started, 1e-9)
    return {
        "decode_fps": round(decode_fps, 1),
        "detect_fps": round(detect_fps, 1),
        "embed_faces_per_s": round(embed_fps, 1),
        "faces_per_frame": round(len(crops) / len(images), 2),
    }


def video_fps(
    clip: Path, gallery: Path, device: str, extractor: str, batch: int, out: Path
) -> dict:
    from facefleet.core.pipeline import build_pipeline
    from facefleet.core.video import probe
    from facefleet.core.video_pipeline import analyze, run_video

    settings = get_settings(device=device, batch_size=batch, extractor=extractor)
    started = time.perf_counter()
    pipeline, _ = build_pipeline(settings, gallery)
    load_s = time.perf_counter() - started
    analyze(clip, 0, 2 * batch, pipeline, batch_size=batch)  # warm-up: kernel search
    frames = probe(clip).frame_count
    started = time.perf_counter()
    analyze(clip, 0, None, pipeline, batch_size=batch)
    analyze_s = time.perf_counter() - started
    started = time.perf_counter()
    result = run_video(clip, pipeline, out / "gpu.mp4", batch_size=batch)
    total_s = time.perf_counter() - started
    faces = sum(len(f.faces) for f in result.frames)
    return {
        "extractor": pipeline.extractor.model_id,
        "batch": batch,
        "frames": frames,
        "faces": faces,
        "named": sorted({t.identity for t in result.tracks if t.identity}),
        "load_s": round(load_s, 2),
        "analyze_fps": round(frames / analyze_s, 1),
        "end_to_end_fps": round(frames / total_s, 1),
        "detector": pipeline.detector.name,
        "detector_runs_on": getattr(pipeline.detector, "runs_on", device),
    } | stage_rates(clip, pipeline, batch)


def training_images_per_s(lfw: Path, device: str, batch: int, people: int | None) -> dict:
    from facefleet.training.trainer import TrainConfig, Trainer

    with tempfile.TemporaryDirectory(prefix="facefleet-gpu-train-") as tmp:
        config = TrainConfig(
            lfw=lfw,
            out=Path(tmp) / "run",
            epochs=2,
            eval_every=2,
            batch_size=batch,
            device=device,
            max_people=people,
            cache_dir=get_settings().cache_dir / "bench-gpu",
        )
        epochs: list = []
        trainer = Trainer(
            config,
            log=lambda line: print(line, file=sys.stderr),
            on_epoch=epochs.append,
            progress=False,
        )
        trainer.run()
    return {
        "train_batch": batch,
        "train_images": len(trainer.train_paths),
        "train_images_per_s": round(epochs[-1].images_per_s, 1),
        "first_epoch_images_per_s": round(epochs[0].images_per_s, 1),
    }


def main() -> int:
    data = shared_data_root()
    case = data / "videos" / "hamilton_whitehouse"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--video", type=Path, default=case / "short_hamilton_clip.mp4")
    parser.add_argument("--gallery", type=Path, default=case / "gallery")
    parser.add_argument("--lfw", type=Path, default=data / "lfw")
    parser.add_argument("--frames", type=int, default=900, help="length of the 720p video")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[16, 64, 128], help="frames per batch, swept"
    )
    parser.add_argument(
        "--extractors", nargs="+", default=["dlib-resnet", "facefleet-b0"], help="each measured"
    )
    parser.add_argument("--train-batch", type=int, default=512)
    parser.add_argument("--train-people", type=int, default=None, help="DevTrain subset")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    for path in (args.video, args.gallery):
        if not path.exists():
            parser.error(f"{path} does not exist (set FACEFLEET_TEST_DATA or pass it)")

    import torch

    if args.device == "cuda":
        if not torch.cuda.is_available():
            parser.error("no CUDA GPU is visible to torch (pass --device cpu for a smoke test)")
        torch.backends.cudnn.benchmark = True
    figures: dict[str, object] = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.machine(),
        "torch": torch.__version__,
    }
    runs = []
    with tempfile.TemporaryDirectory(prefix="facefleet-gpu-") as tmp:
        clip = make_clip(args.video, Path(tmp) / "clip720.mp4", args.frames, 1280, 720)
        for extractor in args.extractors:
            for batch in args.batches:
                run = video_fps(clip, args.gallery, args.device, extractor, batch, Path(tmp))
                print(json.dumps(run), file=sys.stderr, flush=True)
                runs.append(run)
    figures["video"] = runs
    best = max(runs, key=lambda r: r["end_to_end_fps"])
    figures["end_to_end_fps"], figures["analyze_fps"] = best["end_to_end_fps"], best["analyze_fps"]
    if not args.no_train:
        if not (args.lfw / "pairsDevTest.txt").exists():
            parser.error(f"{args.lfw} holds no LFW with the View 1 files (or pass --no-train)")
        figures.update(
            training_images_per_s(args.lfw, args.device, args.train_batch, args.train_people)
        )
    print(json.dumps(figures, indent=2))
    print(
        f"720p end to end: {figures['end_to_end_fps']} frames/s "
        f"(analysis alone {figures['analyze_fps']}); training: "
        f"{figures.get('train_images_per_s', '-')} images/s on {figures['device']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
