"""Security properties that need no servers: secrets only from the environment, json-only
Celery, expiring download links, validated names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from facefleet.core.settings import Settings
from facefleet.tasks.app import make_app
from tests.compose_secrets import COMPOSE_SECRETS

REPO = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [REPO / line for line in out.stdout.splitlines() if line]


def test_no_credentials_in_the_repository() -> None:
    assignment = re.compile(
        r"(SECRET_KEY|ACCESS_KEY|PASSWORD|requirepass)[\"']?\s*[:=]\s*[\"']([^\"'$\s]{8,})[\"']"
    )
    offenders = []
    for path in _tracked_files():
        if path.suffix in (".pt", ".png", ".jpg", ".npz", ".onnx") or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        for match in assignment.finditer(text):
            value = match.group(2)
            # Test fixtures say so in the value; anything else quoted is a real secret.
            if "dummy" in value or "example" in value.lower():
                continue
            offenders.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    assert not offenders, offenders


def test_compose_secrets_are_required_variables() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    for var in COMPOSE_SECRETS:
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", compose)
        assert uses, f"{var} not used"
        assert all(u.startswith(":?") for u in uses), f"{var} must be required, got {uses}"


def test_celery_accepts_json_only() -> None:
    app = make_app(Settings(broker_url="redis://127.0.0.1:1/0"))
    assert app.conf.accept_content == ["json"]
    assert app.conf.result_accept_content == ["json"]
    assert app.conf.task_serializer == app.conf.result_serializer == "json"
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] == 4 * 3600


def test_secrets_are_not_printed() -> None:
    settings = Settings(s3_secret_key="very-secret-value", flower_password="hunter2hunter2")
    assert "very-secret-value" not in repr(settings)
    assert "hunter2hunter2" not in str(settings.model_dump())


def test_presigned_urls_expire(tmp_path: Path) -> None:
    from facefleet.jobs.storage import S3Store

    assert Settings().presign_expiry_s == 3600
    # Presigning is local computation: no server needed to check the expiry it signs.
    store = S3Store("127.0.0.1:9", "AKEXAMPLE", "secretexample", "bucket", region="us-east-1")
    url = store.url("jobs/x/output/a.mp4", 600)
    assert "X-Amz-Expires=600" in url and "X-Amz-Signature=" in url
