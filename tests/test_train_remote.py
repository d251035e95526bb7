"""`train --remote` carries the whole local run: the recipe, and --data / --init-from
uploaded to the store for the worker; the worker's own paths are refused, and a bad data
folder is refused before anything is uploaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facefleet.cli import main
from facefleet.client import Client
from facefleet.core.errors import InputError
from facefleet.core.settings import get_settings
from facefleet.training.records import TrainRequest


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> list[TrainRequest]:
    """The requests the SDK sends (the task itself is exercised by the training tests)."""
    requests: list[TrainRequest] = []

    def capture(self: Client, name: str, args: list[Any], task_id: str | None = None) -> None:
        assert name == "facefleet.train"
        requests.append(TrainRequest.model_validate(args[0]))

    monkeypatch.setattr(Client, "_run", capture)
    return requests


def _faces(folder: Path) -> Path:
    for person in ("Ada_Example", "Bo_Example"):
        (folder / person).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(folder / person / f"{i}.jpg"), np.full((64, 64, 3), 80 * i, np.uint8))
    (folder / "notes.txt").write_text("not a person")
    return folder


def test_data_and_init_from_travel_through_the_store(
    tmp_path: Path, sent: list[TrainRequest]
) -> None:
    client = Client(get_settings(store_dir=tmp_path / "store", archive=False))
    init = tmp_path / "best.pt"
    init.write_bytes(b"a training state")
    client.train(
        run="mine", epochs=3, data=_faces(tmp_path / "faces"), data_only=True, init_from=init
    )
    (request,) = sent
    assert request.options.epochs == 3 and request.data_only
    assert request.data_prefix == "training/mine/data/"
    assert sorted(client.store.list("training/mine/data/")) == [
        "training/mine/data/Ada_Example/0.jpg",
        "training/mine/data/Ada_Example/1.jpg",
        "training/mine/data/Bo_Example/0.jpg",
        "training/mine/data/Bo_Example/1.jpg",
    ]
    assert request.init_from_key == "training/mine/init.pt"
    assert client.store.get_bytes("training/mine/init.pt") == b"a training state"


def test_a_bad_data_folder_is_refused_before_any_upload(
    tmp_path: Path, sent: list[TrainRequest]
) -> None:
    client = Client(get_settings(store_dir=tmp_path / "store", archive=False))
    (tmp_path / "empty" / "Nobody").mkdir(parents=True)
    with pytest.raises(InputError, match="no <Person>/<image>"):
        client.train(run="x", data=tmp_path / "empty")
    with pytest.raises(InputError, match="not a folder"):
        client.train(run="x", data=tmp_path / "missing")
    with pytest.raises(InputError, match="--data-only needs --data"):
        client.train(run="x", data_only=True)
    assert not sent and not client.store.list("training/")


def test_the_cli_refuses_the_workers_own_paths(
    tmp_path: Path, sent: list[TrainRequest], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("FACEFLEET_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("FACEFLEET_ARCHIVE", "false")
    code = main(["train", "--remote", "--teacher-weights", str(tmp_path / "w.dat")])
    assert code != 0 and "--teacher-weights: local-run options" in capsys.readouterr().err
    assert main(["train", "--remote", "--run", "cli", "--data", str(_faces(tmp_path / "f"))]) == 0
    assert sent[-1].data_prefix == "training/cli/data/"
