"""The GPU training recipe's transfer and run (bench/gpu_train.py, bench/gpu.sh train), on
the CPU: parts stay under their size, unpack to the very files, a missing part is one line,
and the unpacked tree trains through the recipe's own entry point, with no video package."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_train.py"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_train", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_parts_stay_under_their_cap_and_unpack_to_the_same_files(
    recipe: ModuleType, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    source = tmp_path / "source"
    source.mkdir()
    items = []
    for k in range(40):  # incompressible, like JPEGs: gzip cannot hide an overfull part
        path = source / f"f{k:02d}.bin"
        path.write_bytes(rng.bytes(int(rng.integers(20_000, 120_000))))
        items.append((path, f"lfw/P{k % 5}/{path.name}"))
    cap = recipe.SLACK + 600_000
    root = tmp_path / "gpu"
    paths = recipe._write_parts(items, root / "parts", cap)
    assert len(paths) >= 3
    assert all(p.stat().st_size <= cap for p in paths)

    # One call at a time: what is not yet unpacked is named, then everything arrives intact.
    held = tmp_path / "held"
    held.mkdir()
    for p in paths[1:]:
        shutil.move(p, held / p.name)
    recipe.unpack(recipe._unpack_parser().parse_args(["--root", str(root)]))
    with pytest.raises(recipe.RecipeError, match="not the last one"):
        recipe.check_unpacked(root / "unpacked")
    shutil.move(held / paths[-1].name, paths[-1])
    recipe.unpack(recipe._unpack_parser().parse_args(["--root", str(root)]))
    with pytest.raises(recipe.RecipeError, match=r"parts \[2(, \d+)*\] of \d+"):
        recipe.check_unpacked(root / "unpacked")
    for name in os.listdir(held):
        shutil.move(held / name, root / "parts" / name)
    recipe.unpack(recipe._unpack_parser().parse_args(["--root", str(root)]))
    assert recipe.check_unpacked(root / "unpacked").parts == len(paths)
    for path, arcname in items:
        assert (root / "unpacked" / arcname).read_bytes() == path.read_bytes()

    # A newer pack replaces what an older one left, rather than mixing with it.
    fresh = recipe._write_parts(items[:3], root / "parts", 10 * MIB)
    recipe.unpack(recipe._unpack_parser().parse_args(["--root", str(root)]))
    info = recipe.check_unpacked(root / "unpacked")
    assert info.parts == len(fresh) == 1
    assert not (root / "unpacked" / items[-1][1]).exists()


def test_a_part_larger_than_a_call_is_refused(recipe: ModuleType, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (recipe.SLACK + 10_000))
    with pytest.raises(recipe.RecipeError, match="larger than a part may be"):
        recipe._write_parts([(big, "big.bin")], tmp_path / "parts", recipe.SLACK + 5_000)


@pytest.mark.data
def test_the_packed_subset_trains_through_the_recipe(
    recipe: ModuleType, data_root: Path, tmp_path: Path
) -> None:
    from facefleet.core.errors import ModelError
    from facefleet.core.extractors.dlib_resnet import default_weights
    from facefleet.training.facecache import FaceCache, centre_landmarks, landmark_fingerprint

    lfw = data_root / "lfw"
    try:
        teacher = Path(default_weights())
    except ModelError as exc:
        pytest.skip(str(exc))
    if not teacher.is_file():
        pytest.skip(f"dlib's weights (the teacher) not found at {teacher}")
    people = 4
    cropped, present_only = recipe.needed_images(lfw, people)
    # Centre landmarks (LFW's photos are 250 px, centred): the transfer and the run are
    # under test here, not the detector, which would take minutes on a CPU.
    cache_dir = tmp_path / "cache"
    points = np.stack([centre_landmarks((250, 250, 3))] * len(cropped))
    FaceCache(lfw, cropped, points, np.ones(len(cropped), bool)).save(
        cache_dir / f"lfw-landmarks-{landmark_fingerprint()}.npz"
    )
    # Room for dlib's weights and a few images: the rest must go to further parts.
    part_mib = (teacher.stat().st_size + recipe.SLACK) / MIB + 0.5
    root = tmp_path / "gpu"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def gpu_train(*args: str, **kw: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args],
            env={**env, **kw},
            capture_output=True,
            text=True,
            timeout=600,
        )

    packed = gpu_train(
        "pack", "--root", str(root), "--lfw", str(lfw), "--cache-dir", str(cache_dir),
        "--max-people", str(people), "--no-wheels", "--part-mib", f"{part_mib:.3f}",
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    plan = json.loads((root / "parts" / "plan.json").read_text())
    assert len(plan["calls"]) >= 2 and plan["images"] == len(cropped) + len(present_only)
    assert all(c["part_mib"] <= part_mib for c in plan["calls"])
    assert plan["calls"][-1]["command"] == "bash bench/gpu.sh train"

    unpacked = gpu_train("unpack", "--root", str(root))
    assert unpacked.returncode == 0, unpacked.stderr
    # The video packages are no part of training: an import of either fails the run.
    blocker = tmp_path / "blocker"
    for name in ("av", "lap"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} imported')\n")
    results = tmp_path / "results"
    trained = gpu_train(
        "train", "--root", str(root), "--results", str(results), "--device", "cpu",
        "--max-people", str(people), "--epochs", "2", "--eval-every", "1",
        "--batch-size", "8", "--budget-s", "1",
        PYTHONPATH=str(blocker),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout + trained.stderr
    out = trained.stdout
    assert "epoch 1/2:" in out and "images/s" in out
    assert "devtest cosine" in out and "devtest euclidean" in out
    assert "stopped after epoch 1 of 2" in out  # the budget: no second interval begun
    assert {"extractor.pt", "metrics.jsonl", "summary.json", "devtest-best.png"} <= {
        p.name for p in results.iterdir()
    }
    summary = json.loads((results / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and summary["best_epoch"] == 1
    assert summary["images_per_s"] > 0 and summary["distill"] == "dlib-online"

    # The machine went cold: the parts are gone, and the run says so in one line.
    shutil.rmtree(root / "unpacked")
    (root / "unpacked" / ".parts").mkdir(parents=True)
    refused = gpu_train("train", "--root", str(root), "--device", "cpu")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "nothing unpacked" in refused.stderr
