"""The extractor: shape and normalization of embeddings, checkpoint format and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facefleet.core.errors import ModelError
from facefleet.core.extractors.b0 import (
    B0Extractor,
    ExtractorMeta,
    TrainingRecord,
    build_extractor,
    load_checkpoint,
    save_checkpoint,
)
from facefleet.core.schemas import Thresholds


def test_architecture_is_b0_with_dropout_and_512_linear() -> None:
    model = build_extractor()
    head = model.classifier
    assert isinstance(head[0], torch.nn.Dropout) and head[0].p == pytest.approx(0.05)
    assert isinstance(head[1], torch.nn.Linear)
    assert (head[1].in_features, head[1].out_features) == (1280, 512)


def test_embeddings_are_unit_length_float32(extractor: B0Extractor) -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, size=(5, 112, 112, 3), dtype=np.uint8)
    vectors = extractor.embed(crops)
    assert vectors.shape == (5, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert extractor.embed(np.zeros((0, 112, 112, 3), dtype=np.uint8)).shape == (0, 512)


def test_batching_does_not_change_results(random_checkpoint: Path) -> None:
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 255, size=(7, 112, 112, 3), dtype=np.uint8)
    a = B0Extractor.from_checkpoint(random_checkpoint, batch_size=2).embed(crops)
    b = B0Extractor.from_checkpoint(random_checkpoint, batch_size=64).embed(crops)
    assert np.allclose(a, b, atol=1e-4)


def test_checkpoint_round_trip_keeps_meta_and_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build_extractor()
    meta = ExtractorMeta(
        thresholds=Thresholds(cosine=0.31, euclidean=1.17),
        training=TrainingRecord(epochs_planned=3, data="x"),
    )
    saved = save_checkpoint(model, meta, tmp_path / "m.pt")
    assert saved.model_id.startswith("b0-")
    loaded, loaded_meta = load_checkpoint(tmp_path / "m.pt")
    assert loaded_meta == saved
    assert loaded_meta.thresholds.cosine == pytest.approx(0.31)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_half_precision_checkpoint_is_smaller_and_close(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = build_extractor()
    save_checkpoint(model, ExtractorMeta(), tmp_path / "full.pt")
    save_checkpoint(model, ExtractorMeta(), tmp_path / "half.pt", half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    crops = np.random.default_rng(2).integers(0, 255, size=(3, 112, 112, 3), dtype=np.uint8)
    full = B0Extractor.from_checkpoint(tmp_path / "full.pt").embed(crops)
    half = B0Extractor.from_checkpoint(tmp_path / "half.pt").embed(crops)
    assert np.min(np.sum(full * half, axis=1)) > 0.99


def test_missing_corrupt_and_mismatched_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a facefleet extractor"):
        load_checkpoint(tmp_path / "other.pt")
    # Right format, wrong shape: a 128-d head saved under a meta that says 512.
    small = build_extractor(embedding_size=128)
    save_checkpoint(small, ExtractorMeta(embedding_size=128), tmp_path / "small.pt")
    payload = torch.load(tmp_path / "small.pt", weights_only=True)
    payload["meta"]["embedding_size"] = 512
    torch.save(payload, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match="does not match"):
        load_checkpoint(tmp_path / "wrong.pt")
