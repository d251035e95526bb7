"""`facefleet eval` and `facefleet calibrate`: any extractor on LFW DevTest and View 2
(verification) and on the DevTest open-set identification protocol, saying whether the
model saw those people; calibration stores the thresholds with the extractor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from facefleet.core.errors import FacefleetError
from facefleet.core.extractors.base import Extractor
from facefleet.core.extractors.calibration import Calibration
from facefleet.core.names import METRICS
from facefleet.core.schemas import IdentificationReport, PairEvaluation, TrackingGates
from facefleet.training.evaluate import calibrated_thresholds, embed_images, evaluate_pairs
from facefleet.training.facecache import FaceCache, lfw_face_cache
from facefleet.training.identification import devtest_split, evaluate_identification
from facefleet.training.lfw import LFWDataset, Pair, person_of, saw_lfw_people


class ModelEvaluation(BaseModel):
    model: str
    backend: str
    devtest: PairEvaluation
    devtest_saw_people: bool | None
    view2: PairEvaluation
    view2_saw_people: bool | None
    identification: IdentificationReport

    def lines(self) -> list[str]:
        out = [f"model {self.model} ({self.backend})"]
        for evaluation, saw in (
            (self.devtest, self.devtest_saw_people),
            (self.view2, self.view2_saw_people),
        ):
            out += evaluation.lines()
            if saw is None:
                out.append(
                    f"{evaluation.protocol}: the model does not record its training "
                    "people; it may have seen these people"
                )
            elif saw:
                out.append(
                    f"{evaluation.protocol}: NOTE the model was trained on some of "
                    "these people, so this figure is optimistic"
                )
        return out + self.identification.lines()

    def as_json(self) -> dict[str, Any]:
        def block(evaluation: PairEvaluation, saw: bool | None) -> dict[str, Any]:
            data: dict[str, Any] = {"pairs": evaluation.pairs, "saw_lfw_people": saw}
            for metric in METRICS:
                data[metric] = getattr(evaluation, metric).model_dump(mode="json")
            return data

        return {
            "model": self.model,
            "backend": self.backend,
            "devtest": block(self.devtest, self.devtest_saw_people),
            "view2": block(self.view2, self.view2_saw_people),
            "identification": self.identification.model_dump(mode="json"),
        }


def trained_people(extractor: Extractor, dataset: LFWDataset) -> set[str] | None:
    """The LFW people the model trained on: none when its authors kept LFW out, those of
    the recorded protocol for facefleet's own models, None when unknown."""
    card = extractor.card
    if card.lfw_disjoint:
        return set()
    record = card.training
    if record is None or record.train_protocol is None:
        return None
    people = dataset.people(record.train_protocol)
    if record.train_people is not None:
        people = people[: record.train_people]
    return {name for name, _ in people}


def devtest_identification(
    extractor: Extractor, dataset: LFWDataset, cache: FaceCache
) -> IdentificationReport:
    return identification_and_impostors(extractor, dataset, cache)[0]


def identification_and_impostors(
    extractor: Extractor, dataset: LFWDataset, cache: FaceCache
) -> tuple[IdentificationReport, np.ndarray]:
    """The open-set protocol's figures, and the similarities of every pair of different
    DevTest people (what the gallery thresholds and tracking gates are read from)."""
    split = devtest_split(dataset)
    vectors = embed_images(extractor, cache, split.images)
    report = evaluate_identification(lambda _: vectors, split)
    return report, impostor_similarities(vectors, [person_of(p) for p in split.images])


def evaluate_model(
    extractor: Extractor,
    lfw: Path,
    cache_dir: Path,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> ModelEvaluation:
    dataset = LFWDataset(lfw)
    devtest, view2 = dataset.pairs("devtest"), dataset.pairs("view2")
    split = devtest_split(dataset)
    needed = [p for pairs in (devtest, view2) for pair in pairs for p in (pair.left, pair.right)]
    cache = lfw_face_cache(lfw, needed + split.images, cache_dir, extractor.device, log, progress)
    seen = trained_people(extractor, dataset)

    def saw(pairs: list[Pair]) -> bool | None:
        return None if seen is None else saw_lfw_people(seen, pairs)

    return ModelEvaluation(
        model=extractor.model_id,
        backend=extractor.card.backend,
        devtest=evaluate_pairs(extractor, cache, devtest, "devtest"),
        devtest_saw_people=saw(devtest),
        view2=evaluate_pairs(extractor, cache, view2, "view2"),
        view2_saw_people=saw(view2),
        identification=devtest_identification(extractor, dataset, cache),
    )


def calibrate(
    extractor: Extractor,
    lfw: Path,
    cache_dir: Path,
    far: float = 1e-2,
    log: Callable[[str], None] = print,
) -> Calibration:
    """Best-F1 thresholds on the DevTest pairs and the gallery threshold at `far` on the
    DevTest open-set protocol."""
    dataset = LFWDataset(lfw)
    pairs = dataset.pairs("devtest")
    split = devtest_split(dataset)
    images = list(dict.fromkeys([p.left for p in pairs] + [p.right for p in pairs]))
    cache = lfw_face_cache(lfw, images + split.images, cache_dir, log=log, progress=False)
    devtest = evaluate_pairs(extractor, cache, pairs, "devtest")
    identification, impostors = identification_and_impostors(extractor, dataset, cache)
    thresholds = calibrated_thresholds(devtest, identification, far, impostors)
    gates = tracking_gates(impostors)
    for line in devtest.lines() + identification.lines():
        log(line)
    log(
        f"gallery threshold (open-set FAR {far:g}): cosine >= "
        f"{thresholds.identification_cosine:.4f}, euclidean <= "
        f"{thresholds.identification_euclidean:.4f}; tracking gates: link >= {gates.link:.4f}, "
        f"appearance >= {gates.appearance:.4f}"
    )
    return Calibration(
        model_id=extractor.model_id,
        thresholds=thresholds,
        devtest=devtest,
        identification=identification,
        tracking=gates,
    )


def impostor_similarities(vectors: np.ndarray, people: Sequence[str]) -> np.ndarray:
    """Cosine similarity of every pair of images of different people."""
    sims = vectors @ vectors.T
    names = np.asarray(people)
    upper = np.triu(np.ones(sims.shape, dtype=bool), k=1)
    return sims[upper & (names[:, None] != names[None, :])]


def tracking_gates(impostors: np.ndarray) -> TrackingGates:
    """The tracker's gates in this extractor's own scale: two different people score above
    `link` in 1 of 1,000 pairs, above `appearance` in 1 of 10,000."""
    return TrackingGates(
        link=float(np.quantile(impostors, 0.999)), appearance=float(np.quantile(impostors, 0.9999))
    )


def write_calibration(extractor: Extractor, calibration: Calibration, out: Path) -> Path:
    """A B0 gets a calibrated copy of its checkpoint at `out`; any other extractor a
    calibration file (for an ONNX model: its sidecar `<model>.json`)."""
    out = Path(out)
    if extractor.card.backend == "facefleet-b0":
        from facefleet.core.extractors.b0 import B0Extractor, save_checkpoint

        assert isinstance(extractor, B0Extractor)
        meta = extractor.meta.model_copy(
            update={
                "thresholds": calibration.thresholds,
                "identification": calibration.identification,
            }
        )
        saved = save_checkpoint(extractor.model, meta, out, half=True)
        if saved.model_id != extractor.model_id:
            raise FacefleetError(
                f"{out}: the half-precision copy has id {saved.model_id}, not "
                f"{extractor.model_id}; calibrate a half-precision checkpoint"
            )
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if extractor.card.backend == "onnx":
        from facefleet.core.extractors.onnx_file import read_sidecar

        sidecar = read_sidecar(Path(extractor.card.source or out)).model_copy(
            update={
                "thresholds": calibration.thresholds,
                "identification": calibration.identification,
            }
        )
        out.write_text(sidecar.model_dump_json(indent=1), encoding="utf-8")
        return out
    out.write_text(calibration.model_dump_json(indent=1), encoding="utf-8")
    return out
