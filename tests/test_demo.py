"""`facefleet demo`: the README's first command works offline on a fresh install."""

from __future__ import annotations

import json
from pathlib import Path

from facefleet.cli import main
from facefleet.core.video import probe


def test_demo_recognizes_both_people(tmp_path: Path) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "demo_annotated.json").read_text())
    info = probe(tmp_path / "demo_annotated.mp4")
    assert info.frame_count == result["frame_count"] == 100 and info.codec == "h264"
    named = {t["identity"] for t in result["tracks"] if t["num_faces"] >= 10}
    assert named == {"Eileen_Collins", "Grace_Hopper"}, result["tracks"]
    # The astronaut is on screen first, Grace Hopper last.
    first = {t["identity"]: t["start_s"] for t in result["tracks"] if t["identity"]}
    assert first["Eileen_Collins"] < first["Grace_Hopper"]
