"""`facefleet process` on images, end to end through the real CLI entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefleet.cli import main
from facefleet.core.images import read_image, write_image
from facefleet.core.schemas import ImageResult


@pytest.fixture
def detection_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """FACEFLEET_EXTRACTOR=none: faces are found, not named (and no model loads)."""
    monkeypatch.setenv("FACEFLEET_EXTRACTOR", "none")


def load_result(path: Path) -> ImageResult:
    return ImageResult.model_validate_json(path.read_text(encoding="utf-8"))


def test_help_explains_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "facefleet.cli", "process", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--gallery",
        "--out",
        "--detector",
        "--detector-weights",
        "--model",
        "--metric",
        "--threshold",
        "--device",
        "exit status",
    ):
        assert flag in out


def test_process_with_gallery_and_model(
    tmp_path: Path, astronaut_bgr, random_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    write_image(tmp_path / "people" / "Eileen_Collins" / "a.jpg", astronaut_bgr)
    write_image(tmp_path / "in" / "photo.jpg", astronaut_bgr)
    code = main(
        [
            "process",
            str(tmp_path / "in"),
            "--gallery",
            str(tmp_path / "people"),
            "--extractor",
            "facefleet-b0",
            "--model",
            str(random_checkpoint),
            "--threshold",
            "0.9",
            "--out",
            str(tmp_path / "out"),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    result = load_result(tmp_path / "out" / "photo.json")
    assert (result.width, result.height) == (512, 512)
    assert result.model.detector == "retinaface" and result.model.extractor.startswith("b0-")
    assert result.model.gallery_size == 1 and result.model.threshold == 0.9
    assert [f.identity for f in result.faces] == ["Eileen_Collins"]
    annotated = read_image(tmp_path / "out" / "photo.jpg")
    assert annotated.shape == astronaut_bgr.shape
    assert np.abs(annotated.astype(int) - astronaut_bgr.astype(int)).max() > 100  # drawn on


def test_without_an_extractor_detections_are_still_written(
    tmp_path: Path, astronaut_bgr, capsys: pytest.CaptureFixture
) -> None:
    write_image(tmp_path / "a.jpg", astronaut_bgr)
    write_image(tmp_path / "people" / "Eileen_Collins" / "a.jpg", astronaut_bgr)
    code = main(
        [
            *("process", str(tmp_path / "a.jpg"), "--out", str(tmp_path / "out"), "-q"),
            *("--extractor", "none", "--gallery", str(tmp_path / "people")),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "ignored: --extractor none names nobody" in err
    result = load_result(tmp_path / "out" / "a.json")
    assert result.model.extractor is None
    assert len(result.faces) == 1 and result.faces[0].identity is None


def test_bad_inputs_are_reported_and_the_rest_processed(
    tmp_path: Path, astronaut_bgr, detection_only, capsys: pytest.CaptureFixture
) -> None:
    inputs = tmp_path / "in"
    write_image(inputs / "good.jpg", astronaut_bgr)
    (inputs / "empty.jpg").write_bytes(b"")
    (inputs / "text.png").write_text("not a picture")
    rgba = np.dstack([astronaut_bgr[..., ::-1], np.full(astronaut_bgr.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(inputs / "alpha.png")
    Image.fromarray(astronaut_bgr[..., 1]).save(inputs / "gray.png")
    odd = os.fsdecode(b"odd-\xff.jpg")
    write_image(inputs / odd, astronaut_bgr)
    (tmp_path / "empty_dir").mkdir()
    code = main(
        [
            "process",
            str(inputs),
            str(tmp_path / "empty_dir"),
            str(tmp_path / "nope.jpg"),
            "--out",
            str(tmp_path / "out"),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 4, err
    assert any("empty.jpg: empty file" in line for line in error_lines)
    assert any("text.png: not an image" in line for line in error_lines)
    assert any("empty_dir: folder contains no image or video files" in line for line in error_lines)
    assert any("nope.jpg: no such file" in line for line in error_lines)
    for name in ("good", "alpha", "gray", os.fsdecode(b"odd-\xff")):
        result = load_result(tmp_path / "out" / f"{name}.json")
        assert len(result.faces) == 1, name
    assert not (tmp_path / "out" / "empty.json").exists()
    assert not list((tmp_path / "out").glob("*.part"))


def test_setup_errors_exit_2_with_one_line(
    tmp_path: Path, astronaut_bgr, random_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    write_image(tmp_path / "a.jpg", astronaut_bgr)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    write_image(tmp_path / "faceless" / "X" / "wall.jpg", np.full((64, 64, 3), 40, np.uint8))
    (tmp_path / "not.onnx").write_bytes(b"not an onnx model")
    cases = [
        (["--extractor", "facefleet-b0", "--model", str(tmp_path / "junk.pt")], "junk.pt"),
        # The default extractor (dlib-resnet) with a file that is not dlib's weights.
        (["--model", str(tmp_path / "junk.pt")], "not a readable dlib"),
        (["--extractor", "dlib-resnet", "--model", str(tmp_path / "no.dat")], "not found"),
        (["--extractor", "onnx", "--model", str(tmp_path / "not.onnx")], "not a loadable ONNX"),
        (["--extractor", "onnx"], "the onnx extractor needs a model file"),
        (["--detector", "yolov8-face", "--detector-weights", str(tmp_path / "y.pt")], "y.pt"),
        (["--gallery", str(tmp_path / "no-gallery")], "no-gallery"),
        (["--gallery", str(tmp_path / "faceless")], "no face could be enrolled"),
    ]
    for extra, needle in cases:
        args = ["process", str(tmp_path / "a.jpg"), "--out", str(tmp_path / "o"), "-q", *extra]
        if "--model" not in extra and "--extractor" not in extra:
            args += ["--extractor", "facefleet-b0", "--model", str(random_checkpoint)]
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2, (extra, err)
        assert needle in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.data
def test_process_real_group_photos(
    data_root: Path, tmp_path: Path, random_checkpoint: Path
) -> None:
    """Done-when: annotated images + JSON that validate against the schema."""
    misc = data_root / "images" / "misc"
    code = main(
        [
            "process",
            str(misc),
            "--gallery",
            str(data_root / "videos" / "hamilton_whitehouse" / "gallery"),
            "--extractor",
            "facefleet-b0",
            "--model",
            str(random_checkpoint),
            "--out",
            str(tmp_path / "out"),
            "-q",
        ]
    )
    assert code == 0
    expected_faces = {"multiface": 6, "two_people": 2, "obama_and_biden": 2}
    for name, count in expected_faces.items():
        raw = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        result = ImageResult.model_validate(raw)
        assert set(raw) == {"source", "width", "height", "model", "faces"}
        assert len(result.faces) >= count, name
        for face in result.faces:
            assert len(face.landmarks) == 5 and 0 <= face.score <= 1
            x0, y0, x1, y1 = face.box
            assert 0 <= x0 < x1 <= result.width and 0 <= y0 < y1 <= result.height
        source = read_image(misc / f"{name}.jpg")
        assert read_image(tmp_path / "out" / f"{name}.jpg").shape == source.shape
