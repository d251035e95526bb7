"""`facefleet eval`: a model on DevTest and View 2, saying whether it saw those people."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from facefleet.core.embedding import FaceEmbedder
from facefleet.core.names import METRICS
from facefleet.core.schemas import PairEvaluation
from facefleet.training.evaluate import evaluate_pairs
from facefleet.training.facecache import aligned_lfw_cache
from facefleet.training.lfw import LFWDataset, Pair, saw_lfw_people


class ModelEvaluation(BaseModel):
    model: str
    devtest: PairEvaluation
    devtest_saw_people: bool | None
    view2: PairEvaluation
    view2_saw_people: bool | None

    def lines(self) -> list[str]:
        out = [f"model {self.model}"]
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
        return out

    def as_json(self) -> dict[str, Any]:
        def block(evaluation: PairEvaluation, saw: bool | None) -> dict[str, Any]:
            data: dict[str, Any] = {"pairs": evaluation.pairs, "saw_lfw_people": saw}
            for metric in METRICS:
                data[metric] = getattr(evaluation, metric).model_dump(mode="json")
            return data

        return {
            "model": self.model,
            "devtest": block(self.devtest, self.devtest_saw_people),
            "view2": block(self.view2, self.view2_saw_people),
        }


def trained_people(embedder: FaceEmbedder, dataset: LFWDataset) -> set[str] | None:
    """The LFW people the model trained on, when its checkpoint says which protocol."""
    record = embedder.meta.training
    if record.train_protocol is None:
        return None
    people = dataset.people(record.train_protocol)  # type: ignore[arg-type]
    if record.train_people is not None:
        people = people[: record.train_people]
    return {name for name, _ in people}


def evaluate_model(
    embedder: FaceEmbedder,
    lfw: Path,
    cache_dir: Path,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> ModelEvaluation:
    dataset = LFWDataset(lfw)
    devtest, view2 = dataset.pairs("devtest"), dataset.pairs("view2")
    needed = [p for pairs in (devtest, view2) for pair in pairs for p in (pair.left, pair.right)]
    cache = aligned_lfw_cache(
        lfw, needed, cache_dir, embedder.meta.input_size, embedder.device, log, progress
    )
    seen = trained_people(embedder, dataset)

    def saw(pairs: list[Pair]) -> bool | None:
        return None if seen is None else saw_lfw_people(seen, pairs)

    return ModelEvaluation(
        model=embedder.model_id,
        devtest=evaluate_pairs(embedder, cache, devtest, "devtest"),
        devtest_saw_people=saw(devtest),
        view2=evaluate_pairs(embedder, cache, view2, "view2"),
        view2_saw_people=saw(view2),
    )


def calibrate_checkpoint(
    model: Path,
    lfw: Path,
    cache_dir: Path,
    out: Path,
    far: float = 1e-2,
    half: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Recompute both threshold calibrations on DevTest and write them into a checkpoint."""
    from facefleet.core.embedding import load_checkpoint, save_checkpoint
    from facefleet.core.schemas import Thresholds
    from facefleet.training.evaluate import identification_thresholds

    net, meta = load_checkpoint(model)
    embedder = FaceEmbedder(net, meta, "cpu", batch_size=256)
    dataset = LFWDataset(lfw)
    pairs = dataset.pairs("devtest")
    images = list(dict.fromkeys([p.left for p in pairs] + [p.right for p in pairs]))
    cache = aligned_lfw_cache(lfw, images, cache_dir, meta.input_size, log=log, progress=False)
    result = evaluate_pairs(embedder, cache, pairs, "devtest")
    strict = identification_thresholds(
        embedder, cache, images, far, at_least=result.cosine.best_threshold
    )
    thresholds = Thresholds(
        cosine=result.cosine.best_threshold, euclidean=result.euclidean.best_threshold, **strict
    )
    saved = save_checkpoint(net, meta.model_copy(update={"thresholds": thresholds}), out, half=half)
    for line in result.lines():
        log(line)
    log(
        f"identification (FAR {far:g}): cosine >= {strict['identification_cosine']:.4f}, "
        f"euclidean <= {strict['identification_euclidean']:.4f}; written to {out} "
        f"({saved.model_id})"
    )
    return thresholds.model_dump()
