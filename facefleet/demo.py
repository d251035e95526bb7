"""`facefleet demo`: the main job end to end on material that ships inside installed packages.

Two real photographs come with the installed libraries: scikit-image's astronaut (Eileen
Collins) and matplotlib's portrait of Grace Hopper. The demo enrolls both, renders a short
clip that pans and zooms across them, and processes it like any user video.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from facefleet.console import err, warn
from facefleet.exits import EXIT_OK
from facefleet.options import given

CLIP_SIZE = (640, 360)
CLIP_FPS = 25
CLIP_FRAMES = 100


def sample_photos() -> dict[str, np.ndarray]:
    """The two portraits as BGR arrays, read from the installed packages."""
    import matplotlib.cbook
    from skimage import data

    from facefleet.core.images import read_image

    hopper = read_image(Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return {"Eileen_Collins": astronaut, "Grace_Hopper": hopper}


def render_clip(photos: dict[str, np.ndarray], path: Path) -> Path:
    """Both photos side by side; the camera pans left to right while zooming in and out."""
    from facefleet.core.video import H264Writer

    height = 512
    tiles = [
        cv2.resize(p, (round(p.shape[1] * height / p.shape[0]), height)) for p in photos.values()
    ]
    gap = np.full((height, 64, 3), 40, np.uint8)
    canvas = np.hstack([tiles[0], gap, tiles[1]])
    width_out, height_out = CLIP_SIZE
    with H264Writer(path, width_out, height_out, CLIP_FPS) as writer:
        # Pan from the astronaut's face to Grace Hopper's (both sit in the upper third),
        # zooming in on the way and back out.
        start_x = tiles[0].shape[1] * 0.45
        end_x = tiles[0].shape[1] + gap.shape[1] + tiles[1].shape[1] * 0.5
        for k in range(CLIP_FRAMES):
            t = k / (CLIP_FRAMES - 1)
            ease = 0.5 - 0.5 * np.cos(np.pi * t)
            zoom = 1.3 + 0.3 * np.sin(np.pi * t)
            view_h = height / zoom
            view_w = view_h * width_out / height_out
            centre_x = start_x + ease * (end_x - start_x)
            x0 = float(np.clip(centre_x - view_w / 2, 0, canvas.shape[1] - view_w))
            y0 = float(np.clip(0.32 * height - view_h / 2, 0, height - view_h))
            matrix = np.array(
                [
                    [width_out / view_w, 0, -x0 * width_out / view_w],
                    [0, height_out / view_h, -y0 * height_out / view_h],
                ]
            )
            writer.write(
                cv2.warpAffine(
                    canvas,
                    matrix,
                    CLIP_SIZE,
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE,
                )
            )
    return path


def run_demo(args: argparse.Namespace) -> int:
    from facefleet.core.images import write_image
    from facefleet.core.pipeline import build_pipeline
    from facefleet.core.settings import Settings, get_settings
    from facefleet.core.video_pipeline import run_video

    console = err
    out: Path = args.out
    started = time.perf_counter()
    settings = get_settings(**given(args, Settings))
    if settings.extractor == "none":
        warn("--extractor none: faces are detected, not recognized")
    photos = sample_photos()
    gallery_dir = out / "gallery"
    for name, image in photos.items():
        write_image(gallery_dir / name / f"{name}.jpg", image)
    clip = render_clip(photos, out / "demo_clip.mp4")
    pipeline, issues = build_pipeline(settings, gallery_dir)
    for issue in issues:
        warn(f"gallery: {issue}")
    result = run_video(clip, pipeline, out / "demo_annotated.mp4")
    (out / "demo_annotated.json").write_text(result.model_dump_json(indent=1), encoding="utf-8")
    for track in result.tracks:
        who = track.identity or "unknown"
        sim = f" ({track.similarity:.2f})" if track.similarity is not None else ""
        console.print(
            f"track {track.track_id}: {who}{sim} from {track.start_s:.1f} s "
            f"to {track.end_s:.1f} s, {track.num_faces} faces"
        )
    console.print(f"annotated video: {out / 'demo_annotated.mp4'}")
    console.print(f"results JSON:    {out / 'demo_annotated.json'}")
    console.print(f"done in {time.perf_counter() - started:.1f} s")
    return EXIT_OK
