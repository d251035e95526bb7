"""The CUDA path: what only a GPU can check (they skip elsewhere; `bash bench/gpu.sh run`
runs them on the lent GPU machine). fp16 embeddings against the CPU's fp32, the detector on
the device, a video job in-process on cuda against the same job on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facefleet.core.extractors import ExtractorConfig, create_extractor

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU is visible to torch (bench/gpu.sh)"
)


@pytest.mark.parametrize("name", ["dlib-resnet", "facefleet-b0"])
def test_fp16_embeddings_on_cuda_match_the_cpu(name: str, astronaut_bgr, retinaface) -> None:
    from facefleet.core.alignment import align_faces

    cpu = create_extractor(name, ExtractorConfig(device="cpu"))
    gpu = create_extractor(name, ExtractorConfig(device="cuda"))
    faces = retinaface.detect([astronaut_bgr])[0]
    crops = align_faces(astronaut_bgr, faces, cpu.geometry)
    rng = np.random.default_rng(0)
    jittered = np.clip(crops.astype(int) + rng.integers(-20, 21, (16, *crops.shape[1:])), 0, 255)
    batch = np.concatenate([crops, jittered.astype(np.uint8)])
    agreement = (cpu.embed(batch) * gpu.embed(batch)).sum(axis=1)
    assert agreement.min() > 0.999, agreement.min()


def test_detector_on_the_device_finds_what_the_cpu_finds(astronaut_bgr) -> None:
    from facefleet.core.detectors import DetectorConfig, create_detector

    cpu = create_detector("retinaface", DetectorConfig(device="cpu")).detect([astronaut_bgr])[0]
    gpu_detector = create_detector("retinaface", DetectorConfig(device="cuda"))
    gpu = gpu_detector.detect([astronaut_bgr] * 8)
    assert all(len(found) == len(cpu) for found in gpu)
    assert np.allclose(gpu[0][0].box, cpu[0].box, atol=1.0)
    print("detector runs on", getattr(gpu_detector, "runs_on", "?"))


@pytest.mark.data
def test_video_job_in_process_on_cuda_names_like_the_cpu(data_root: Path, tmp_path: Path) -> None:
    from facefleet.core.pipeline import build_pipeline
    from facefleet.core.settings import get_settings
    from facefleet.core.video_pipeline import run_video

    case = data_root / "videos" / "hamilton_whitehouse"
    names = {}
    for device in ("cpu", "cuda"):
        pipeline, _ = build_pipeline(get_settings(device=device), case / "gallery")
        result = run_video(case / "short_hamilton_clip.mp4", pipeline, tmp_path / f"{device}.mp4")
        names[device] = sorted({t.identity for t in result.tracks if t.identity})
    assert names["cuda"] == names["cpu"] and "Lin_Manuel_Miranda" in names["cuda"]
