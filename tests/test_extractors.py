"""The extractor registry: backends by name, each declaring its geometry, size, id and
thresholds; a user's ONNX model in the ArcFace convention (here the B0 exported that way,
a stand-in for insightface's files, which cannot be downloaded here)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from facefleet.core.alignment import ARCFACE_112
from facefleet.core.errors import ModelError
from facefleet.core.extractors import EXTRACTORS, ExtractorConfig, create_extractor
from facefleet.core.extractors.b0 import B0Extractor, load_checkpoint, shipped_checkpoint
from facefleet.core.extractors.dlib_resnet import DLIB_150


def export(module: torch.nn.Module, path: Path, shape: tuple[int, ...]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            torch.zeros(shape),
            str(path),
            input_names=["input.1"],
            output_names=["embedding"],
            dynamic_axes={"input.1": {0: "n"}, "embedding": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    return path


@pytest.fixture(scope="module")
def b0_onnx(random_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The B0 as an ArcFace-convention file: RGB 112 px, (pixel - 127.5) / 127.5 is exactly
    the B0's own x/255 with mean and std 0.5."""
    model, _ = load_checkpoint(random_checkpoint)
    return export(model, tmp_path_factory.mktemp("onnx") / "b0.onnx", (1, 3, 112, 112))


def test_every_backend_declares_what_it_needs(random_checkpoint: Path, b0_onnx: Path) -> None:
    assert set(EXTRACTORS) == {"dlib-resnet", "facefleet-b0", "onnx"}
    dlib = create_extractor("dlib-resnet")
    assert dlib.card.geometry == DLIB_150 and dlib.dim == 128
    assert dlib.model_id.startswith("dlib-resnet-") and dlib.card.lfw_disjoint is True
    assert dlib.thresholds.identification_cosine is not None  # shipped calibration
    assert dlib.card.identification is not None and dlib.card.tracking.link > 0.9
    b0 = create_extractor("facefleet-b0", ExtractorConfig(weights=random_checkpoint))
    assert b0.geometry == ARCFACE_112 and b0.dim == 512 and b0.model_id.startswith("b0-")
    onnx = create_extractor("onnx", ExtractorConfig(weights=b0_onnx))
    assert onnx.geometry == ARCFACE_112 and onnx.dim == 512 and onnx.model_id.startswith("onnx-")


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown extractor 'arcface'.*dlib-resnet.*onnx"):
        create_extractor("arcface")


def test_onnx_file_in_the_arcface_convention(random_checkpoint: Path, b0_onnx: Path) -> None:
    crops = np.random.default_rng(1).integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)
    expected = B0Extractor.from_checkpoint(random_checkpoint, runtime="torch").embed(crops)
    onnx = create_extractor("onnx", ExtractorConfig(weights=b0_onnx, batch_size=2))
    assert np.abs(onnx.embed(crops) - expected).max() < 1e-4


def test_sidecar_gives_size_normalization_and_thresholds(tmp_path: Path) -> None:
    class Gray(torch.nn.Module):  # averages the channels: BGR vs RGB does not matter
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    model = export(Gray(), tmp_path / "m.onnx", (1, 3, 128, 128))
    (tmp_path / "m.json").write_text(
        json.dumps(
            {
                "channel_order": "BGR",
                "mean": [0, 0, 0],
                "std": [255, 255, 255],
                "thresholds": {"cosine": 0.42, "euclidean": 1.0},
            }
        )
    )
    extractor = create_extractor("onnx", ExtractorConfig(weights=model))
    assert extractor.geometry == ARCFACE_112.scaled(128) and extractor.dim == 48
    assert extractor.thresholds.cosine == 0.42
    assert extractor.embed(np.full((1, 128, 128, 3), 255, np.uint8)).shape == (1, 48)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 1, 112, 112), r"input shape \[\['n', 1, 112, 112\]\] is not one"),
        ((1, 3, 112, 96), "input 112x96 is not square"),
    ],
)
def test_onnx_files_of_the_wrong_shape_are_refused(
    tmp_path: Path, shape: tuple[int, ...], message: str
) -> None:
    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :8]

    model = export(Flat(), tmp_path / "wrong.onnx", shape)
    with pytest.raises(ModelError, match=r"wrong\.onnx: " + message):
        create_extractor("onnx", ExtractorConfig(weights=model))


def test_bad_onnx_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(ModelError, match=r"text\.onnx: not a loadable ONNX model"):
        create_extractor("onnx", ExtractorConfig(weights=tmp_path / "text.onnx"))
    with pytest.raises(ModelError, match=r"gone\.onnx: ONNX model file not found"):
        create_extractor("onnx", ExtractorConfig(weights=tmp_path / "gone.onnx"))
    (tmp_path / "ok.onnx").write_bytes(b"")
    (tmp_path / "ok.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"ok\.json: not a readable ONNX sidecar"):
        create_extractor("onnx", ExtractorConfig(weights=tmp_path / "ok.onnx"))


def test_shipped_b0_records_its_lineage() -> None:
    """The released checkpoint says what it was trained on and which release it continues,
    so a promoted successor's chain of parents reaches back through it."""
    _, meta = load_checkpoint(shipped_checkpoint())
    record = meta.training
    assert record.train_protocol == "devtrain" and record.config.get("distill") == "dlib-online"
    assert record.parent_model is not None and record.parent_model.startswith("b0-")
    assert record.parent_model != meta.model_id
