"""Promotion as a head-to-head: a retrained extractor replaces its parent only if it does
better on the open-set identification protocol of `facefleet eval` (DevTest people, DIR at
1% FAR: genuine probes named right at the threshold that lets 1% of impostors through),
both measured here, on the same images, by the same code.

A quick run (`max_people`) is compared on the first people of DevTest only: a slice with
the protocol's structure, fair between the two models, not a release figure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from facefleet.core.extractors.base import Extractor
from facefleet.training.evaluate import embed_images
from facefleet.training.facecache import lfw_face_cache
from facefleet.training.identification import devtest_split, evaluate_identification
from facefleet.training.lfw import LFWDataset

FAR = 0.01
SLICE_PEOPLE = 200  # DevTest people of a quick run's comparison


class HeadToHead(BaseModel):
    protocol: str
    far: float = FAR
    child: str
    child_dir: float = Field(description="DIR at `far` of the retrained model")
    parent: str | None
    parent_dir: float | None

    @property
    def child_wins(self) -> bool:
        return self.parent_dir is None or self.child_dir > self.parent_dir

    def line(self) -> str:
        parent = (
            f"{self.parent} {self.parent_dir:.4f}" if self.parent_dir is not None else "no parent"
        )
        return (
            f"{self.protocol}, DIR at {self.far:.0%} FAR: {self.child} {self.child_dir:.4f} "
            f"vs {parent}"
        )


def head_to_head(
    child: Extractor,
    parent: Extractor | None,
    lfw: Path,
    cache_dir: Path,
    quick: bool,
    device: str,
    log: Callable[[str], None] = print,
) -> HeadToHead:
    dataset = LFWDataset(lfw)
    split = devtest_split(dataset, SLICE_PEOPLE if quick else None)
    cache = lfw_face_cache(lfw, split.images, cache_dir, device, log, False)

    def dir_of(extractor: Extractor) -> float:
        report = evaluate_identification(
            lambda paths: embed_images(extractor, cache, paths), split, fars=(FAR,)
        )
        return float(report.at(FAR).dir)

    protocol = (
        f"DevTest open-set identification, first {SLICE_PEOPLE} people"
        if quick
        else "DevTest open-set identification"
    )
    return HeadToHead(
        protocol=protocol,
        child=child.model_id,
        child_dir=round(dir_of(child), 4),
        parent=parent.model_id if parent is not None else None,
        parent_dir=round(dir_of(parent), 4) if parent is not None else None,
    )
