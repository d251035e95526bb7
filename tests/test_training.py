"""Training on a few dozen real LFW people: the loop, the periodic report, resume, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facefleet.core.extractors.b0 import B0Extractor
from facefleet.core.pipeline import FacePipeline
from facefleet.training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.data

# The first 40 DevTrain people hold 80 images. From random weights ArcFace learns slowly
# with m=0.5 (a known convergence problem); m=0.2 and small batches make the fall clear
# within a few CPU epochs (measured: 15.0 -> 10.2 over 6 epochs).
SMALL = {"max_people": 40, "batch_size": 8, "lr": 3e-3, "warmup_epochs": 0.5, "margin": 0.2}


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def small_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("run")
    lines: list[str] = []
    config = TrainConfig(
        lfw=data_root / "lfw", out=out, epochs=6, eval_every=2, cache_dir=out / "cache", **SMALL
    )
    Trainer(config, log=lines.append, progress=False).run()
    return out, lines


def test_loss_falls(small_run: tuple[Path, list[str]]) -> None:
    out, _ = small_run
    losses = [r["loss"] for r in records(out) if r["type"] == "epoch"]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses


def test_periodic_report_has_both_metrics(small_run: tuple[Path, list[str]]) -> None:
    out, lines = small_run
    evals = [r for r in records(out) if r["type"] == "eval"]
    assert [r["epoch"] for r in evals] == [2, 4, 6]
    for r in evals:
        for metric in ("cosine", "euclidean"):
            block = r["devtest"][metric]
            assert 0.0 <= block["best_f1"] <= 1.0 and "best_threshold" in block
    for epoch in (2, 4, 6):
        for metric in ("cosine", "euclidean"):
            assert any(
                line.startswith(f"epoch {epoch:3d} devtest {metric}")
                and "best threshold" in line
                and "F1" in line
                for line in lines
            )
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "devtest-epoch-002.png",
        "devtest-epoch-004.png",
        "devtest-epoch-006.png",
    ]


def test_exported_thresholds_reach_the_gallery(
    small_run: tuple[Path, list[str]], retinaface
) -> None:
    out, _ = small_run
    best = max(
        (r for r in records(out) if r["type"] == "eval"),
        key=lambda r: r["devtest"]["cosine"]["accuracy"],
    )
    extractor = B0Extractor.from_checkpoint(out / "extractor.pt")
    assert extractor.meta.training.train_protocol == "devtrain"
    thresholds = extractor.meta.thresholds
    assert thresholds.cosine == pytest.approx(best["devtest"]["cosine"]["best_threshold"])
    assert thresholds.euclidean == pytest.approx(best["devtest"]["euclidean"]["best_threshold"])
    # A subset run is not measured on the open-set protocol (it needs every DevTest person):
    # its galleries use the best-F1 threshold (full runs: see tests/test_eval_cli.py).
    assert thresholds.identification_far is None and extractor.meta.identification is None
    pipeline = FacePipeline(detector=retinaface, extractor=extractor)
    assert pipeline.model_info().threshold == pytest.approx(thresholds.cosine)
    pipeline.metric = "euclidean"
    assert pipeline.model_info().threshold == pytest.approx(thresholds.euclidean)
    assert (out / "extractor.pt").stat().st_size < 20_000_000


def test_resume_after_a_kill(data_root: Path, tmp_path: Path) -> None:
    """SIGKILL a real `facefleet train` mid-run; --resume continues from the saved epoch."""
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "facefleet.cli",
        "train",
        "--lfw",
        str(data_root / "lfw"),
        "--out",
        str(out),
        "--epochs",
        "4",
        "--eval-every",
        "4",
        "--max-people",
        "40",
        "--batch-size",
        "16",
        "-q",
    ]
    env = {**os.environ, "FACEFLEET_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (out / "latest.pt").is_file() and proc.poll() is None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "latest.pt").is_file(), "training never saved a state before the kill"
    import torch

    saved_epoch = torch.load(out / "latest.pt", weights_only=True)["epoch"]
    assert saved_epoch < 4, "the run finished before it could be killed"

    again = subprocess.run(
        [*args, "--resume"], env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    assert f"resuming after epoch {saved_epoch} of 4" in again.stderr
    epochs = [r["epoch"] for r in records(out) if r["type"] == "epoch"]
    assert epochs == [1, 2, 3, 4]  # each epoch exactly once, none lost, none repeated
    assert [r["epoch"] for r in records(out) if r["type"] == "eval"] == [4]

    # A second resume of a finished run does nothing and says so.
    done = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "already complete" in done.stderr


def test_training_refuses_to_overwrite_a_run(small_run: tuple[Path, list[str]], data_root) -> None:
    from facefleet.core.errors import FacefleetError

    out, _ = small_run
    config = TrainConfig(lfw=data_root / "lfw", out=out, epochs=1, cache_dir=out / "cache", **SMALL)
    with pytest.raises(FacefleetError, match="--resume"):
        Trainer(config, progress=False).run()


def test_distilled_variant_is_trained_and_labelled(data_root: Path, tmp_path: Path) -> None:
    import torch

    config = TrainConfig(
        lfw=data_root / "lfw",
        out=tmp_path / "run",
        epochs=1,
        eval_every=1,
        cache_dir=tmp_path / "cache",
        distill="dlib",
        **SMALL,
    )
    Trainer(config, progress=False).run()
    state = torch.load(tmp_path / "run" / "latest.pt", weights_only=True)
    assert state["projection"]["weight"].shape == (128, 512)
    meta = B0Extractor.from_checkpoint(tmp_path / "run" / "extractor.pt").meta
    assert meta.training.variant == "distilled-dlib"
    assert meta.training.teacher == "dlib_face_recognition_resnet_model_v1"
    teacher = np.load(tmp_path / "cache" / "teacher-dlib.npz")["vectors"]
    assert np.allclose(np.linalg.norm(teacher, axis=1), 1.0, atol=1e-4)


def test_fine_tuning_starts_from_an_earlier_run(
    small_run: tuple[Path, list[str]], data_root: Path, tmp_path: Path
) -> None:
    import torch

    from facefleet.core.errors import FacefleetError

    source, _ = small_run
    lines: list[str] = []
    # A learning rate too small to move a weight: what the run ends with is what it loaded.
    config = TrainConfig(
        lfw=data_root / "lfw",
        out=tmp_path / "tuned",
        epochs=1,
        cache_dir=source / "cache",
        init_from=source / "latest.pt",
        **{**SMALL, "lr": 1e-12},
    )
    Trainer(config, log=lines.append, progress=False).run()
    assert any("network, ArcFace head" in line for line in lines), lines
    before = torch.load(source / "latest.pt", weights_only=True)
    after = torch.load(tmp_path / "tuned" / "latest.pt", weights_only=True)
    assert after["epoch"] == 1  # a fresh run with its own schedule, not a resume
    assert after["parent"] is None  # the source was trained from scratch
    for part in ("model", "head"):
        for name, tensor in before[part].items():
            if tensor.is_floating_point() and "running_" not in name:
                assert torch.allclose(tensor, after[part][name], atol=1e-6), name

    # An inference checkpoint (a promoted model, the release) gives the network alone; the
    # new ArcFace head starts at each person's mean embedding.
    lines.clear()
    config = config.model_copy(
        update={"out": tmp_path / "again", "init_from": source / "extractor.pt"}
    )
    Trainer(config, log=lines.append, progress=False).run()
    assert any("ArcFace head from each person's mean embedding" in line for line in lines)
    exported = torch.load(source / "extractor.pt", weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "again" / "latest.pt", weights_only=True)
    # Its lineage: the exported model is the parent, in the state and in the new export.
    parent = B0Extractor.from_checkpoint(source / "extractor.pt").meta.model_id
    assert after["parent"] == parent
    child = B0Extractor.from_checkpoint(tmp_path / "again" / "extractor.pt").meta
    assert child.training.parent_model == parent
    for name, tensor in exported.items():
        if tensor.is_floating_point() and "running_" not in name:
            assert torch.allclose(tensor.float(), after["model"][name], atol=1e-3), name

    # Anything else is refused with a reason.
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    config = config.model_copy(
        update={"out": tmp_path / "third", "init_from": tmp_path / "junk.pt"}
    )
    with pytest.raises(FacefleetError, match="cannot start from"):
        Trainer(config, progress=False).run()
