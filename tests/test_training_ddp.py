"""Training under torchrun: two processes, DistributedDataParallel over gloo on the CPU, on a
few real LFW people. The global batch is split over the processes, so two processes follow
one process's loss curve; rank 0 alone writes; --resume continues under torchrun; a bad
launch is one line.

Run as a module (`python -m tests.test_training_ddp train ...`, also under torchrun) this
file is `facefleet train` with a deterministic network: see `_deterministic_extractor`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.data

REPO = Path(__file__).resolve().parents[1]
LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# As tests/test_training.py (m=0.2, small batches: a few CPU epochs move the model), at 64 px
# to keep the runs short on two cores.
RECIPE = {
    "max_people": 40, "lr": 3e-3, "warmup_epochs": 0.5, "margin": 0.2, "input_size": 64,
    "device": "cpu",
}  # fmt: skip
SMALL = [*(f"--{k.replace('_', '-')}={v}" for k, v in RECIPE.items()), "-q"]


def _env() -> dict[str, str]:
    """This environment without any launcher's variables (pytest itself might run under
    one)."""
    return {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}


def _train(
    lfw: Path,
    out: Path,
    cache: Path,
    *extra: str,
    processes: int = 1,
    module: str = "facefleet.cli",
) -> subprocess.CompletedProcess[str]:
    """`facefleet train` in one process, or under torchrun in `processes`."""
    args = ["train", "--lfw", str(lfw), "--out", str(out), "--cache-dir", str(cache), *SMALL]
    if processes == 1:
        command = [sys.executable, "-m", module, *args, *extra]
    else:
        command = [*_torchrun(processes), "-m", module, *args, *extra]
    return subprocess.run(
        command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600
    )


def _torchrun(processes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
    ]


def _records(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


@pytest.fixture(scope="module")
def lfw(data_root: Path) -> Path:
    return data_root / "lfw"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One face cache for the module, first built under torchrun (rank 0 writes it)."""
    return tmp_path_factory.mktemp("ddp-cache")


@pytest.fixture(scope="module")
def resumed(lfw: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """One epoch under torchrun (which also builds the face cache), then --resume to two."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    common = ["--batch-size", "8", "--eval-every", "1"]
    first = _train(lfw, out, cache, *common, "--epochs", "1", processes=2)
    assert first.returncode == 0, first.stderr
    again = _train(lfw, out, cache, *common, "--epochs", "2", "--resume", processes=2)
    assert again.returncode == 0, again.stderr
    return out, first.stderr, again.stderr


def test_rank_0_alone_writes_and_resume_continues(resumed, cache: Path) -> None:
    import torch

    from facefleet.core.extractors.b0 import B0Extractor, build_extractor

    out, first, again = resumed
    for stderr in (first, again):
        assert "Traceback" not in stderr, stderr
        # Rank 0 alone logs: each of its lines once.
        assert stderr.count("distributed: 2 processes (gloo), 4 images each") == 1, stderr
        assert stderr.count("done: best epoch") == 1, stderr
    assert again.count("resuming after epoch 1 of 2") == 1, again
    # Every epoch and evaluation once, though two processes trained each.
    epochs = _records(out, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert [r["epoch"] for r in _records(out, "eval")] == [1, 2]
    assert epochs[1]["loss"] < epochs[0]["loss"], epochs
    # One of each file, none left half-written by a second writer.
    names = sorted(p.name for p in out.iterdir())
    assert names == ["best.pt", "extractor.pt", "latest.pt", "metrics.jsonl", "plots"], names
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["devtest-epoch-001.png", "devtest-epoch-002.png"], plots
    caches = sorted(p.name for p in cache.iterdir())
    assert len(caches) == 1 and caches[0].startswith("lfw-landmarks-"), caches

    # The state is the unwrapped network's: a one-process run loads it as it is.
    state = torch.load(out / "latest.pt", weights_only=True)
    assert state["epoch"] == 2 and state["world_size"] == 2
    build_extractor().load_state_dict(state["model"])  # strict: no DDP "module." prefix
    assert len(state["history"]) == 4  # two epochs, two evaluations
    exported = B0Extractor.from_checkpoint(out / "extractor.pt", runtime="torch")
    assert exported.meta.training.epoch in (1, 2)


def _deterministic_extractor(embedding_size: int = 512):
    """EfficientNet-B0 with GroupNorm for BatchNorm and no stochastic depth or dropout:
    what it computes for a face depends on that face alone, so two processes that each see
    half of every batch must give one process's losses up to float error. (BatchNorm's
    statistics of half batches, and dropout's masks drawn per process, make the real
    network's curves differ by as much as a wrong split would: ~1 in 11 after 4 epochs.)"""
    from torch import nn
    from torchvision.models import efficientnet_b0

    from facefleet.core.extractors.b0 import BACKBONE_FEATURES

    model = efficientnet_b0(
        weights=None, norm_layer=lambda c: nn.GroupNorm(1, c), stochastic_depth_prob=0.0
    )
    model.classifier = nn.Sequential(
        nn.Dropout(p=0.0), nn.Linear(BACKBONE_FEATURES, embedding_size)
    )
    return model


def _in_process(lfw: Path, out: Path, cache: Path, **options) -> None:
    """The one-process reference, in this process (no second start of torch)."""
    from facefleet.training.trainer import TrainConfig, Trainer

    recipe = {**RECIPE, **options}
    config = TrainConfig(lfw=lfw, out=out, cache_dir=cache, **recipe)
    Trainer(config, log=lambda _: None, progress=False).run()


def test_two_processes_follow_the_one_process_loss_curve(
    lfw: Path, cache: Path, resumed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seed, same global batch (16: 8 per process; the last batch of each epoch, 2
    faces, goes to rank 0 alone), the deterministic network. Measured on this recipe: the
    losses agree to 1e-7 relative (float summation order; 60 people at 112 px over 4
    epochs: 8e-6). Deliberately wrong variants, measured on the same recipe, miss one
    process's losses (13.94, 12.72) by 0.04 and 1.29 (no gradient averaging: each process
    its own model), 0.63 and 1.57 (both processes train on the same half of every batch),
    0.35 and 0.17 (a seed per process: its own order and augmentation). The tolerance,
    1e-4 relative (~1.4e-3), is 1000x the agreement and 30x below the smallest of those."""
    from facefleet.training import trainer

    me = "tests.test_training_ddp"
    common = ["--batch-size", "16", "--epochs", "2", "--eval-every", "2"]
    two = _train(lfw, tmp_path / "two", cache, *common, processes=2, module=me)
    assert two.returncode == 0, two.stderr
    monkeypatch.setattr(trainer, "build_extractor", _deterministic_extractor)
    _in_process(lfw, tmp_path / "one", cache, batch_size=16, epochs=2, eval_every=2)
    single, double = _records(tmp_path / "one", "epoch"), _records(tmp_path / "two", "epoch")
    assert [r["epoch"] for r in double] == [1, 2]
    for a, b in zip(single, double, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), (single, double)
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9)  # the same schedule: no step lost


@pytest.fixture(scope="module")
def teacher_weights() -> Path:
    from facefleet.core.errors import ModelError
    from facefleet.core.extractors.dlib_resnet import default_weights

    try:
        path = default_weights()
    except ModelError as exc:
        pytest.skip(str(exc))
    if not path.is_file():
        pytest.skip(f"dlib's weights not found at {path}")
    return path


def test_online_distillation_keeps_one_teacher_centre(
    lfw: Path, cache: Path, resumed, teacher_weights: Path, tmp_path: Path
) -> None:
    """dlib-online under torchrun: each process runs the teacher on its half of the batch,
    the running centre of the teacher's descriptors takes the whole batch's mean. The
    teacher sees the very views one process would (the batch's augmentation is drawn whole),
    so the centre equals one process's (measured: 3e-8 in its largest element); each
    process's own half-batch mean, not all-reduced, leaves it 3.5e-2 away."""
    import torch

    options = {"distill": "dlib-online", "max_people": 20, "batch_size": 8, "epochs": 1}
    options["teacher_weights"] = teacher_weights
    _in_process(lfw, tmp_path / "one", cache, **options)
    common = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    two = _train(lfw, tmp_path / "two", cache, *common, processes=2)
    assert two.returncode == 0, two.stderr
    assert "Traceback" not in two.stderr, two.stderr
    single = torch.load(tmp_path / "one" / "latest.pt", weights_only=True)
    double = torch.load(tmp_path / "two" / "latest.pt", weights_only=True)
    assert double["projection"]["weight"].shape == (128, 512)
    assert torch.allclose(single["teacher_mean"], double["teacher_mean"], atol=1e-5)
    losses = [r["distill_loss"] for r in _records(tmp_path / "two", "epoch")]
    assert len(losses) == 1 and losses[0] > 0


def test_a_batch_that_cannot_be_split_is_one_line(tmp_path: Path) -> None:
    """Every process refuses it before waiting for the others; torchrun then reports the
    failed processes (its own report, from its own code: each process's stream is kept in
    a log file here, so this checks facefleet's output alone)."""
    logs = tmp_path / "logs"
    command = [*_torchrun(2), "--log-dir", str(logs), "--redirects", "3"]
    command += ["-m", "facefleet.cli", "train", "--lfw", str(tmp_path / "lfw")]
    command += ["--out", str(tmp_path / "run"), "--batch-size", "7", "-q"]
    done = subprocess.run(
        command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    streams = sorted(logs.rglob("stderr.log"))
    assert len(streams) == 2, streams
    for stream in streams:
        text = stream.read_text()
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert "Traceback" not in text, text
        assert len(errors) == 1, text
        assert "--batch-size 7 cannot be split over 2 processes: give a multiple of 2" in errors[0]
    assert not (tmp_path / "run").exists()


def test_an_incomplete_launch_is_one_line(tmp_path: Path) -> None:
    """WORLD_SIZE without the rest of torchrun's variables: refused, not a hang waiting for
    a rendezvous."""
    command = [sys.executable, "-m", "facefleet.cli", "train", "--lfw", str(tmp_path)]
    command += ["--out", str(tmp_path / "run"), "-q"]
    env = {**_env(), "WORLD_SIZE": "2"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "incomplete distributed launch: RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT" in errors[0]


def test_launch_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    from facefleet.core.errors import FacefleetError
    from facefleet.training.distributed import LaunchSettings, launch, read_launch

    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not launch("cpu", 7).active  # a plain run: one process, no process group
    full = {"master_addr": "127.0.0.1", "master_port": 29500, "local_rank": 0, "rank": 0}
    assert not launch("cpu", 7, LaunchSettings(world_size=1, **full)).active
    cases = [
        (dict(full, world_size=2, rank=2), "RANK 2, LOCAL_RANK 0 with WORLD_SIZE 2"),
        (dict(full, world_size=2, local_rank=-1), "LOCAL_RANK -1 with WORLD_SIZE 2"),
        ({"rank": 0, "world_size": 2}, "LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"),
        (dict(full, world_size=4), "--batch-size 6 cannot be split over 4 processes"),
        (dict(full, world_size=3), "give a multiple of 3, at least 6"),
    ]
    for given, message in cases:
        batch = 3 if given.get("world_size") == 3 else 6
        with pytest.raises(FacefleetError) as refused:
            launch("cpu", batch, LaunchSettings(**given))
        assert message in str(refused.value), (given, str(refused.value))
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(FacefleetError, match="WORLD_SIZE='two' is not an integer"):
        read_launch()


def test_an_unused_projection_still_takes_part_under_ddp() -> None:
    """A slice with under two teacher targets: `_distill_loss` leaves the projection out;
    under DDP (`every_parameter`) it joins with a zero gradient, so every process's step
    holds every parameter; in one process it stays out (no gradient, as before)."""
    import torch

    from facefleet.training.arcface import ArcFaceHead
    from facefleet.training.trainer import _Objective

    torch.manual_seed(0)
    model, head = torch.nn.Linear(12, 8), ArcFaceHead(8, 3)
    projection = torch.nn.Linear(8, 128, bias=False)
    x, y = torch.randn(4, 12), torch.tensor([0, 1, 2, 0])
    targets = torch.zeros(4, 128)  # no face found by the teacher
    for every, expected in ((True, "zero"), (False, None)):
        projection.zero_grad(set_to_none=True)
        loss, distill = _Objective(model, head, projection, 10.0, False, every)(
            x, y, targets=targets
        )
        loss.backward()
        assert distill is not None and float(distill.detach()) == 0.0
        grad = projection.weight.grad
        assert (grad is None) if expected is None else bool((grad == 0).all())


def test_every_face_of_a_batch_is_trained_once_with_its_weight() -> None:
    """The slices of the processes cover the batch exactly once, two faces at least each;
    their weights (size * world / n) make DDP's mean of gradients the batch mean's."""
    from facefleet.training.distributed import Distributed

    for world in (1, 2, 3, 4):
        for n in range(2, 40):
            parts = [Distributed(world_size=world, rank=r).shard(n) for r in range(world)]
            counted = [(s, w) for s, w in parts if w > 0]
            covered = sorted(i for s, _ in counted for i in range(n)[s])
            assert covered == list(range(n)), (world, n, parts)
            assert all(s.stop - s.start >= 2 for s, _ in parts), (world, n, parts)
            assert sum(w for _, w in counted) == pytest.approx(world)
            for s, w in counted:
                assert w == pytest.approx((s.stop - s.start) * world / n)
            if n % world == 0 and n >= 2 * world:
                assert all(w == 1.0 for _, w in parts)  # even slices: DDP's plain mean


if __name__ == "__main__":
    from facefleet.cli import main
    from facefleet.training import trainer

    trainer.build_extractor = _deterministic_extractor  # type: ignore[assignment]
    sys.exit(main(sys.argv[1:]))
