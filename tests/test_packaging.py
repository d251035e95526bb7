"""What gets installed: one `facefleet` package (built as a wheel here), the layers of the
design held on it by import-linter, and a client-only install with no pipeline behind it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PIPELINE_PACKAGES = ("torch", "torchvision", "cv2", "av", "numpy", "onnxruntime", "PIL")
# Where each installed package's modules come from in the repository.
FOLDERS = {
    "facefleet": "facefleet",
    "facefleet/core": "core",
    "facefleet/tasks": "tasks",
    "facefleet/workers": "workers",
    "facefleet/training": "training",
    "facefleet/localstack": "deploy/localstack",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources: setuptools reuses an in-tree build/
    folder, which would hide a module missing from the package list."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for folder in FOLDERS.values():
        shutil.copytree(
            REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    (built,) = out.glob("facefleet-*.whl")
    return built


@pytest.fixture(scope="module")
def unpacked(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_wheel_holds_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"facefleet"}
    # Every module of the repository's folders lands under the one namespace (the package
    # list in pyproject.toml is explicit: a new subpackage must be added there) ...
    for installed, folder in FOLDERS.items():
        for module in (REPO / folder).rglob("*.py"):
            relative = module.relative_to(REPO / folder).as_posix()
            assert f"{installed}/{relative}" in names, f"{folder}/{relative} is not installed"
    # ... with the shipped model and calibrations, and the licence.
    assert "facefleet/models/facefleet-b0.pt" in names
    assert any(n.startswith("facefleet/models/calibration/dlib-resnet-") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_design_layers_hold(unpacked: Path) -> None:
    """import-linter over the installed layout (the contracts are in pyproject.toml)."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (it comes with the dev extra)")
    result = subprocess.run(
        [str(lint), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        # From the unpacked wheel: lint-imports puts its working folder first on the path.
        cwd=unpacked,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "broken" not in result.stdout.lower().split("contracts:")[-1].split(",")[0]


@pytest.fixture(scope="module")
def client_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with `pip install facefleet` (the client) and nothing
    else; its dependencies come from the package index."""
    venv = tmp_path_factory.mktemp("client") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return venv


def _run(venv: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args),
        cwd=venv,
        env={"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(venv), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_client_install_has_no_pipeline(client_venv: Path, tmp_path: Path) -> None:
    python = str(client_venv / "bin" / "python")
    listed = _run(client_venv, python, "-m", "pip", "list", "--format=freeze").stdout.lower()
    for dist in ("torch", "opencv", "av==", "numpy", "onnxruntime", "ultralytics", "pillow"):
        assert not any(line.startswith(dist) for line in listed.splitlines()), dist
    probe = (
        "import sys, facefleet.client, facefleet.cli; "
        "facefleet.cli.build_parser(); "
        f"print(sorted(m for m in {PIPELINE_PACKAGES!r} if m in sys.modules))"
    )
    imported = _run(client_venv, python, "-c", probe)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"

    facefleet = str(client_venv / "bin" / "facefleet")
    assert _run(client_venv, facefleet, "submit", "--help").returncode == 0
    # The cluster commands work against a store (here a local folder store) ...
    env = {"FACEFLEET_STORE_DIR": str(tmp_path / "store")}
    listing = _run(client_venv, facefleet, "gallery", "list", env=env)
    assert listing.returncode == 0 and listing.stdout.strip() == "{}", listing.stderr
    missing = _run(client_venv, facefleet, "status", "0" * 32, env=env)
    assert missing.returncode == 2 and "no job" in missing.stderr
    # ... and what needs the pipeline says which extra to install, in one line.
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 not really")
    process = _run(client_venv, facefleet, "process", str(photo), "--out", str(tmp_path / "o"))
    assert process.returncode == 2
    assert "pip install 'facefleet[worker]'" in process.stderr
    assert "Traceback" not in process.stderr
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    submit = _run(client_venv, facefleet, "submit", str(video), env=env)
    assert submit.returncode == 2 and "facefleet[worker]" in submit.stderr, submit.stderr
