"""dlib's face descriptor network re-built in torch (`dlib-resnet`): the weights file read in
Python, the same descriptors as dlib itself, and the same accuracy through facefleet's own
landmarks and chip template as through dlib's pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facefleet.core.errors import ModelError
from facefleet.core.extractors import ExtractorConfig, create_extractor
from facefleet.core.extractors.dlib_net import load_dlib_resnet, preprocess, read_dlib_net
from facefleet.core.extractors.dlib_resnet import default_weights

DAT = default_weights()
MODELS = DAT.parent


@pytest.fixture(scope="module")
def network():
    return load_dlib_resnet(DAT)


def test_the_file_is_read_as_dlibs_anet(network) -> None:
    net = read_dlib_net(DAT)
    kinds = [layer.spec.kind for layer in net.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29
    assert net.input_means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert sum(p.numel() for p in network.parameters()) == 5_614_592
    with torch.inference_mode():
        assert network(torch.zeros(2, 3, 150, 150)).shape == (2, 128)


@pytest.mark.parametrize("keep", [0, 200, 11_000_000, -1])
def test_a_truncated_file_is_one_clear_error(tmp_path: Path, keep: int) -> None:
    data = DAT.read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(ModelError, match=r"cut\.dat: .*(truncated|ends)"):
        load_dlib_resnet(cut)


@pytest.mark.parametrize(
    "name", ["mmod_human_face_detector.dat", "shape_predictor_5_face_landmarks.dat"]
)
def test_another_dlib_file_is_refused(name: str) -> None:
    with pytest.raises(ModelError, match=name.replace(".", r"\.") + ": not a readable"):
        load_dlib_resnet(MODELS / name)


def test_missing_or_compressed_weights_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope\.dat: dlib face recognition model file not found"):
        create_extractor("dlib-resnet", ExtractorConfig(weights=tmp_path / "nope.dat"))
    packed = tmp_path / "model.dat.bz2"
    packed.write_bytes(b"BZh91AY&SY" + bytes(100))
    with pytest.raises(ModelError, match="bzip2"):
        load_dlib_resnet(packed)


def test_onnx_runtime_gives_the_torch_descriptors() -> None:
    chips = np.random.default_rng(0).integers(0, 256, (4, 150, 150, 3), dtype=np.uint8)
    onnx = create_extractor("dlib-resnet", ExtractorConfig(runtime="auto"))
    eager = create_extractor("dlib-resnet", ExtractorConfig(runtime="torch"))
    assert onnx.runtime == "onnx" and eager.runtime == "torch"  # type: ignore[attr-defined]
    assert np.abs(onnx.embed(chips) - eager.embed(chips)).max() < 1e-4
    rows = onnx.embed(chips)
    assert rows.shape == (4, 128) and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)


def _dlib_chip(dlib, rgb: np.ndarray, box, predictor) -> np.ndarray:
    rect = dlib.rectangle(*(round(v) for v in box))
    return dlib.get_face_chip(rgb, predictor(rgb, rect), size=150, padding=0.25)


@pytest.mark.data
def test_descriptors_equal_dlibs_on_real_faces(data_root: Path, network, retinaface) -> None:
    """300 LFW faces: dlib's compute_face_descriptor and the torch network on the very same
    dlib chips agree to cosine 0.999 or better (measured: 1 - 4e-13)."""
    dlib = pytest.importorskip("dlib", reason="dlib-bin comes with the distill extra")
    from facefleet.core.images import read_image
    from facefleet.training.facecache import central_face
    from facefleet.training.lfw import LFWDataset

    predictor = dlib.shape_predictor(str(MODELS / "shape_predictor_5_face_landmarks.dat"))
    reference = dlib.face_recognition_model_v1(str(DAT))
    dataset = LFWDataset(data_root / "lfw")
    pairs = dataset.pairs("devtest")[::3][:150]
    chips = []
    for relpath in dict.fromkeys(p for pair in pairs for p in (pair.left, pair.right)):
        image = read_image(data_root / "lfw" / relpath)
        face = central_face(retinaface.detect([image])[0], image.shape)
        if face is not None:
            chips.append(
                _dlib_chip(dlib, np.ascontiguousarray(image[..., ::-1]), face.box, predictor)
            )
    assert len(chips) >= 250
    theirs = np.array([np.array(d) for d in reference.compute_face_descriptor(chips)])
    with torch.inference_mode():
        ours = network(preprocess(np.stack(chips))).numpy()
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= 0.999, cosine.min()


@pytest.mark.data
def test_devtest_through_facefleets_chip_matches_dlibs_pipeline(
    data_root: Path, retinaface
) -> None:
    """LFW DevTest, the same RetinaFace boxes: dlib's own pipeline (5-point shape predictor,
    get_face_chip, dlib's network) against facefleet's (refined landmarks, the fitted
    template, the torch network): no more than 0.005 worse (measured: 0.981 and 0.986)."""
    dlib = pytest.importorskip("dlib", reason="dlib-bin comes with the distill extra")
    from facefleet.core.images import read_image
    from facefleet.training.evaluate import evaluate_pairs
    from facefleet.training.facecache import central_face, lfw_face_cache
    from facefleet.training.lfw import LFWDataset
    from facefleet.training.metrics import verification_report

    lfw = data_root / "lfw"
    pairs = LFWDataset(lfw).pairs("devtest")
    images = list(dict.fromkeys(p for pair in pairs for p in (pair.left, pair.right)))
    ours = evaluate_pairs(
        create_extractor("dlib-resnet"),
        lfw_face_cache(lfw, images, Path.home() / ".cache" / "facefleet", progress=False, log=str),
        pairs,
        "devtest",
    )
    predictor = dlib.shape_predictor(str(MODELS / "shape_predictor_5_face_landmarks.dat"))
    reference = dlib.face_recognition_model_v1(str(DAT))
    vectors = {}
    for relpath in images:
        image = read_image(lfw / relpath)
        face = central_face(retinaface.detect([image])[0], image.shape)
        box = face.box if face is not None else (67, 80, 175, 187)  # dlib's box on LFW
        chip = _dlib_chip(dlib, np.ascontiguousarray(image[..., ::-1]), box, predictor)
        vector = np.array(reference.compute_face_descriptor(chip))
        vectors[relpath] = vector / np.linalg.norm(vector)
    left = np.stack([vectors[p.left] for p in pairs])
    right = np.stack([vectors[p.right] for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    theirs = verification_report(left, right, same, folds)["cosine"].accuracy
    assert ours.cosine.accuracy >= theirs - 0.005, (ours.cosine.accuracy, theirs)
    assert ours.cosine.accuracy >= 0.98
