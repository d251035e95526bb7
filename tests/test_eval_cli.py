"""`facefleet eval` on the shipped model: the JSON interface other checks rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.embedding import load_checkpoint
from core.settings import SHIPPED_MODEL
from facefleet.cli import main

pytestmark = pytest.mark.data


def test_eval_json_interface_and_model_card_figures(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    assert main(["eval", "--lfw", str(data_root / "lfw"), "--json", str(out), "-q"]) == 0
    report = json.loads(out.read_text())
    _, meta = load_checkpoint(SHIPPED_MODEL)
    assert report["model"] == meta.model_id
    for view in ("devtest", "view2"):
        for metric in ("cosine", "euclidean"):
            block = report[view][metric]
            for key in ("accuracy", "accuracy_std", "best_threshold", "f1"):
                assert isinstance(block[key], float), (view, metric, key)
    assert report["devtest"]["pairs"] == 1000 and report["view2"]["pairs"] == 6000
    # Trained on DevTrain: DevTest people are unseen, View 2 overlaps the training people.
    assert report["devtest"]["saw_lfw_people"] is False
    assert report["view2"]["saw_lfw_people"] is True
    # The checkpoint's recorded DevTest figures are reproduced (half-precision weights).
    recorded = meta.training["devtest"]["cosine"]
    assert report["devtest"]["cosine"]["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.01)
    assert recorded["best_threshold"] == pytest.approx(
        report["devtest"]["cosine"]["best_threshold"], abs=0.01
    )
    # The shipped thresholds are this very evaluation's (calibrated on the shipped weights).
    assert meta.thresholds.cosine == pytest.approx(
        report["devtest"]["cosine"]["best_threshold"], abs=1e-4
    )
