"""Where the real test data lives: the tests' own setting, not a production one.

`FACEFLEET_TEST_DATA` (default: `../shared/data` beside the repository). The benchmarks read
the same setting."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO = Path(__file__).resolve().parents[1]


class DataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEFLEET_", extra="ignore")

    test_data: Path = REPO.parent / "shared" / "data"


def shared_data_root() -> Path:
    return DataSettings().test_data
