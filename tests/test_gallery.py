"""Gallery: enrollment from folders, matching rules, persistence and re-embedding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facefleet.core.alignment import align_face
from facefleet.core.errors import GalleryError
from facefleet.core.extractors.b0 import (
    B0Extractor,
    ExtractorMeta,
    build_extractor,
    save_checkpoint,
)
from facefleet.core.gallery import REGION, Gallery, GallerySample
from facefleet.core.images import read_image, write_image
from facefleet.core.pipeline import FacePipeline
from facefleet.core.schemas import Thresholds


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def synthetic_gallery() -> Gallery:
    """Three people with known directions in a 4-d space (matching math, no model)."""
    vectors = np.stack(
        [unit([1, 0, 0, 0]), unit([1, 0.1, 0, 0]), unit([0, 1, 0, 0]), unit([0, 0, 1, 0])]
    )
    samples = [GallerySample(person=p, source=f"{p}.jpg") for p in ("Ann", "Ann", "Bob", "Cy")]
    regions = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    return Gallery("synthetic", vectors, regions, samples)


def test_match_top1_and_threshold_cosine() -> None:
    gallery = synthetic_gallery()
    queries = np.stack(
        [unit([1, 0.05, 0, 0]), unit([0.1, 1, 0, 0]), unit([0, 0, 0, 1]), unit([0.6, 0.8, 0, 0])]
    )
    matches = gallery.match(queries, "cosine", threshold=0.7)
    assert [m.identity for m in matches] == ["Ann", "Bob", None, "Bob"]
    assert matches[2].best_candidate in {"Ann", "Bob", "Cy"}
    assert matches[0].similarity == pytest.approx(float(queries[0] @ unit([1, 0.1, 0, 0])), 1e-5)
    # Raising the threshold turns the weaker match into "unknown".
    assert gallery.match(queries[3:], "cosine", threshold=0.9)[0].identity is None


def test_match_euclidean_uses_distance_between_unit_vectors() -> None:
    gallery = synthetic_gallery()
    query = unit([0.6, 0.8, 0, 0])[None]
    (m,) = gallery.match(query, "euclidean", threshold=0.7)
    assert m.distance == pytest.approx(np.sqrt(2 - 2 * m.similarity), 1e-5)
    assert m.identity == "Bob"  # distance ~0.63 <= 0.7
    assert gallery.match(query, "euclidean", threshold=0.5)[0].identity is None


def test_default_threshold_comes_from_the_thresholds_object() -> None:
    gallery = synthetic_gallery()
    query = unit([0.6, 0.8, 0, 0])[None]
    assert gallery.match(query, "cosine", thresholds=Thresholds(cosine=0.75))[0].identity == "Bob"
    assert gallery.match(query, "cosine", thresholds=Thresholds(cosine=0.85))[0].identity is None


def test_remove_person_removes_regions_and_embeddings() -> None:
    gallery = synthetic_gallery()
    assert gallery.remove_person("Ann") == 2
    assert gallery.people == ["Bob", "Cy"]
    assert len(gallery.embeddings) == len(gallery.regions) == len(gallery.samples) == 2


@pytest.mark.parametrize("name", ["../../x", "a/b", "", "..", " padded"])
def test_path_like_person_names_are_refused(name: str, extractor: B0Extractor) -> None:
    gallery = Gallery.empty(extractor)
    with pytest.raises(GalleryError, match="invalid person name"):
        gallery.add_regions(name, np.zeros((1, 192, 192, 3), np.uint8), extractor, ["x"])


def make_gallery_folder(root: Path, astronaut: np.ndarray) -> Path:
    person = root / "Eileen_Collins"
    write_image(person / "a.jpg", astronaut)
    write_image(person / "b.png", cv2.flip(astronaut, 1))
    (person / "notes.txt").write_text("not an image, ignored")
    write_image(root / "Nobody" / "blank.jpg", np.full((200, 200, 3), 90, np.uint8))
    (root / "Broken").mkdir()
    (root / "Broken" / "bad.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    return root


def test_enroll_folder_reports_what_it_skips(
    tmp_path: Path, astronaut_bgr, retinaface, extractor: B0Extractor
) -> None:
    folder = make_gallery_folder(tmp_path / "people", astronaut_bgr)
    gallery, issues = Gallery.enroll_folder(folder, retinaface, extractor)
    assert gallery.people == ["Eileen_Collins"]
    assert len(gallery) == 2 and gallery.regions.shape == (2, REGION.size, REGION.size, 3)
    reasons = {Path(i.source).name: i.reason for i in issues}
    assert reasons["blank.jpg"] == "no face detected"
    assert "not an image" in reasons["bad.jpg"]
    assert {i.person for i in issues if "not enrolled" in i.reason} == {"Nobody", "Broken"}


def test_enroll_folder_honours_refine_off(
    tmp_path: Path, astronaut_bgr, retinaface, extractor: B0Extractor
) -> None:
    """FACEFLEET_ALIGN_REFINE=false reaches folder enrolment: the crop comes from the
    detector's own landmarks, not from the second landmark pass."""
    folder = make_gallery_folder(tmp_path / "people", astronaut_bgr)
    plain, _ = Gallery.enroll_folder(folder, retinaface, extractor, refine=False)
    refined, _ = Gallery.enroll_folder(folder, retinaface, extractor, refine=True)
    photo = read_image(folder / "Eileen_Collins" / "a.jpg")
    (face,) = retinaface.detect([photo])[0]
    direct = extractor.embed(align_face(photo, face, extractor.geometry)[None])[0]
    assert np.allclose(plain.embeddings[0], direct, atol=1e-6)
    assert np.array_equal(plain.regions[0], align_face(photo, face, REGION))
    assert not np.array_equal(refined.regions[0], plain.regions[0])


def test_enrolled_face_matches_itself(
    tmp_path: Path, astronaut_bgr, retinaface, extractor: B0Extractor
) -> None:
    folder = make_gallery_folder(tmp_path / "people", astronaut_bgr)
    gallery, _ = Gallery.enroll_folder(folder, retinaface, extractor)
    pipeline = FacePipeline(
        detector=retinaface, extractor=extractor, gallery=gallery, threshold=0.9
    )
    (faces,) = pipeline.recognize([astronaut_bgr])
    assert len(faces) == 1
    assert faces[0].identity == "Eileen_Collins"
    assert faces[0].similarity == pytest.approx(1.0, abs=1e-3)


def test_empty_or_faceless_gallery_folders_are_errors(
    tmp_path: Path, retinaface, extractor: B0Extractor
) -> None:
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery.enroll_folder(tmp_path / "missing", retinaface, extractor)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GalleryError, match="no person folders"):
        Gallery.enroll_folder(tmp_path / "empty", retinaface, extractor)
    write_image(tmp_path / "faceless" / "X" / "wall.jpg", np.full((100, 100, 3), 50, np.uint8))
    with pytest.raises(GalleryError, match="no face could be enrolled"):
        Gallery.enroll_folder(tmp_path / "faceless", retinaface, extractor)


def test_save_load_and_reembed_under_another_model(
    tmp_path: Path, astronaut_bgr, retinaface, extractor: B0Extractor
) -> None:
    import torch

    folder = make_gallery_folder(tmp_path / "people", astronaut_bgr)
    gallery, _ = Gallery.enroll_folder(folder, retinaface, extractor)
    gallery.save(tmp_path / "saved")
    same = Gallery.load(tmp_path / "saved", extractor)
    assert same.model_id == extractor.model_id
    assert np.array_equal(same.embeddings, gallery.embeddings)
    assert np.array_equal(same.regions, gallery.regions)
    assert same.samples == gallery.samples

    torch.manual_seed(123)
    other_path = tmp_path / "other.pt"
    save_checkpoint(build_extractor(), ExtractorMeta(), other_path)
    other = B0Extractor.from_checkpoint(other_path)
    assert other.model_id != extractor.model_id
    moved = Gallery.load(tmp_path / "saved", other)
    assert moved.model_id == other.model_id
    # Re-embedded from the stored regions: what `other` makes of the photos themselves.
    direct, _ = Gallery.enroll_folder(folder, retinaface, other)
    agreement = (moved.embeddings * direct.embeddings).sum(axis=1)
    assert agreement.min() > 0.99, agreement
    assert not np.allclose(moved.embeddings[:, :8], gallery.embeddings[:, :8], atol=1e-3)


def test_damaged_saved_gallery_is_a_clear_error(tmp_path: Path) -> None:
    synthetic_gallery().save(tmp_path / "g")
    (tmp_path / "g" / "embeddings.npy").write_bytes(b"garbage")
    with pytest.raises(GalleryError, match="damaged"):
        Gallery.load(tmp_path / "g")


def test_checkpoint_thresholds_reach_the_pipeline(
    tmp_path: Path, retinaface, random_checkpoint: Path
) -> None:
    import torch

    payload = torch.load(random_checkpoint, weights_only=True)
    payload["meta"]["thresholds"] = {"cosine": 0.42, "euclidean": 1.07}
    torch.save(payload, tmp_path / "calibrated.pt")
    extractor = B0Extractor.from_checkpoint(tmp_path / "calibrated.pt")
    pipeline = FacePipeline(detector=retinaface, extractor=extractor, gallery=synthetic_gallery())
    assert pipeline.model_info().threshold == pytest.approx(0.42)
    pipeline.metric = "euclidean"
    assert pipeline.model_info().threshold == pytest.approx(1.07)
    pipeline.threshold = 0.9
    assert pipeline.model_info().threshold == pytest.approx(0.9)


@pytest.mark.data
def test_enroll_real_video_gallery(data_root: Path, retinaface, extractor: B0Extractor) -> None:
    folder = data_root / "videos" / "hamilton_whitehouse" / "gallery"
    gallery, issues = Gallery.enroll_folder(folder, retinaface, extractor)
    assert gallery.people == ["Alex_Lacamoire", "Barack_Obama", "Lin_Manuel_Miranda"]
    assert len(gallery) == 6
    assert issues == []


@pytest.fixture(scope="module")
def dlib_resnet():
    from facefleet.core.extractors import ExtractorConfig, create_extractor

    return create_extractor("dlib-resnet", ExtractorConfig())


def test_gallery_moves_between_extractors_of_other_geometry(
    tmp_path: Path, astronaut_bgr, retinaface, extractor: B0Extractor, dlib_resnet
) -> None:
    """Made under the B0 (ArcFace 112 px crops), re-embedded under dlib's network (its
    150 px chip reaches further out) from the stored regions: the person is still found,
    as strongly as when enrolled under dlib directly."""
    folder = make_gallery_folder(tmp_path / "people", astronaut_bgr)
    Gallery.enroll_folder(folder, retinaface, extractor)[0].save(tmp_path / "b0")
    moved = Gallery.load(tmp_path / "b0", dlib_resnet)
    assert moved.model_id == dlib_resnet.model_id and moved.embeddings.shape == (2, 128)
    direct, _ = Gallery.enroll_folder(folder, retinaface, dlib_resnet)
    assert (moved.embeddings * direct.embeddings).sum(axis=1).min() > 0.98
    pipeline = FacePipeline(detector=retinaface, extractor=dlib_resnet, gallery=moved)
    (face,) = pipeline.recognize([astronaut_bgr])[0]
    assert face.identity == "Eileen_Collins" and face.similarity > 0.95


def test_old_galleries_of_tight_crops_say_what_they_lack(
    tmp_path: Path, extractor: B0Extractor, dlib_resnet
) -> None:
    """A version 1 gallery kept 112 px ArcFace crops only: enough for an extractor of that
    geometry, not for dlib's wider chip, and the error says so in one line."""
    old = tmp_path / "v1"
    old.mkdir()
    crops = np.full((1, 112, 112, 3), 128, np.uint8)
    np.save(old / "crops.npy", crops)
    np.save(old / "embeddings.npy", extractor.embed(crops))
    (old / "gallery.json").write_text(
        '{"version": 1, "model_id": "b0-old", "embedding_size": 512, "crop_size": 112, '
        '"samples": [{"person": "Ann", "source": "ann.jpg"}]}'
    )
    assert Gallery.load(old, extractor).people == ["Ann"]
    with pytest.raises(GalleryError, match="does not cover the dlib-chip crop"):
        Gallery.load(old, dlib_resnet)
