"""Scheduled retraining that means something (in-process: the task the beat entry fires).
It fine-tunes the current B0 with the teacher online, on LFW DevTrain plus the faces users
labelled, and is promoted only when it beats its parent head to head on the open-set
identification protocol; a promoted model records its lineage."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch

from facefleet.client import Client
from facefleet.core.extractors.b0 import load_checkpoint, save_checkpoint, shipped_checkpoint
from facefleet.core.settings import get_settings
from facefleet.jobs.records import (
    MODEL_POINTER_KEY,
    ModelLineage,
    ModelPointer,
    lineage_key,
    model_key,
)
from facefleet.tasks.inprocess import run_task
from facefleet.training.records import TrainProgress


def _retrain(client: Client, **settings: object) -> TrainProgress:
    config = client.settings.model_copy(update=settings)
    run = run_task(config, client.store, "facefleet.scheduled_retrain", [], None).get()
    progress = client.store.get_model(f"training/{run}/progress.json", TrainProgress)
    assert progress.state == "done", progress.message
    return progress


@pytest.mark.data
def test_retraining_keeps_a_better_parent(tmp_path: Path, data_root: Path) -> None:
    client = Client(
        get_settings(
            store_dir=tmp_path / "store", lfw_dir=data_root / "lfw", archive=False, model_check_s=0
        )
    )
    # Parent: the release B0. One epoch on 40 people (66 images) does not beat it: kept
    # (measured: DIR 0.281 against 0.352 on the first 200 DevTest people).
    kept = _retrain(client, retrain_epochs=1, retrain_max_people=40)
    assert kept.promoted is False
    assert "not promoted: DevTest open-set identification" in (kept.message or "")
    assert client.store.get_model_or_none(MODEL_POINTER_KEY, ModelPointer) is None


@pytest.mark.data
def test_retraining_replaces_a_parent_made_worse_and_records_its_lineage(
    tmp_path: Path, data_root: Path, astronaut_bgr
) -> None:
    client = Client(
        get_settings(
            store_dir=tmp_path / "store", lfw_dir=data_root / "lfw", archive=False, model_check_s=0
        )
    )
    # Made worse on purpose: the release with noise of 0.2 of each weight's spread added
    # (DIR 0.04), promoted as the current model.
    model, meta = load_checkpoint(shipped_checkpoint())
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.add_(torch.randn_like(p) * p.std() * 0.2)
    worse = save_checkpoint(model, meta, tmp_path / "worse.pt", half=True)
    client.store.put_file(model_key(worse.model_id), tmp_path / "worse.pt")
    client.store.put_model(
        MODEL_POINTER_KEY, ModelPointer(model_id=worse.model_id, key=model_key(worse.model_id))
    )
    # A face a user enrolled: part of what the retraining learns from.
    photo = tmp_path / "eileen.png"
    cv2.imwrite(str(photo), astronaut_bgr)
    client.gallery.enroll("Eileen_Example", [photo])

    promoted = _retrain(client, retrain_epochs=2, retrain_max_people=300)
    assert promoted.promoted is True, promoted.message
    pointer = client.store.get_model(MODEL_POINTER_KEY, ModelPointer)
    assert pointer.model_id != worse.model_id
    lineage = client.store.get_model(lineage_key(pointer.model_id), ModelLineage)
    assert lineage.parent == worse.model_id and lineage.run == pointer.run
    assert lineage.recipe["distill"] == "dlib-online" and lineage.labelled_faces == 1
    assert lineage.figures["child_dir"] > lineage.figures["parent_dir"]
    assert "own faces" in lineage.data
    _, meta = load_checkpoint(client.store.get_file(pointer.key, tmp_path / "promoted.pt"))
    assert meta.training.parent_model == worse.model_id
