"""Open-set identification on LFW DevTest people: what a gallery does with faces.

The protocol (people of peopleDevTest.txt only, so a model trained on DevTrain never saw
them): the gallery holds the first image of every person with two or more images; their
other images are the genuine probes; every image of a person with a single image is an
impostor probe (never enrolled). For each probe the nearest gallery face decides.

- rank-1 rate: genuine probes whose nearest gallery face is their own person's;
- DIR at a false-accept rate f: the threshold t lets a fraction f of the impostor probes'
  best similarities through; a genuine probe counts when it is named right *and* at or
  above t (the detection-and-identification rate of the open-set literature).

The 1% threshold is the gallery threshold an extractor ships with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel

from facefleet.core.errors import InputError
from facefleet.core.schemas import IdentificationReport, OperatingPoint
from facefleet.training.lfw import LFWDataset, person_of

FARS = (1e-2, 1e-3)


class IdentificationSplit(BaseModel):
    gallery: list[str]
    genuine: list[str]
    impostors: list[str]

    @property
    def images(self) -> list[str]:
        return self.gallery + self.genuine + self.impostors


def devtest_split(dataset: LFWDataset, people: int | None = None) -> IdentificationSplit:
    """The protocol's images (relpaths), from peopleDevTest.txt (its first `people` only:
    a quick run's slice, with the same structure)."""
    gallery, genuine, impostors = [], [], []
    for name, _ in dataset.people("devtest")[:people]:
        paths = [path for path, _ in dataset.images_of([name])]
        if len(paths) >= 2:
            gallery.append(paths[0])
            genuine += paths[1:]
        else:
            impostors += paths
    return IdentificationSplit(gallery=gallery, genuine=genuine, impostors=impostors)


def identification_report(
    gallery: np.ndarray,
    gallery_people: Sequence[str],
    genuine: np.ndarray,
    genuine_people: Sequence[str],
    impostors: np.ndarray,
    fars: Sequence[float] = FARS,
) -> IdentificationReport:
    """The protocol's figures from unit embeddings (rows) of the three sets."""
    if len(gallery) == 0 or len(genuine) == 0 or len(impostors) == 0:
        raise InputError("identification needs gallery, genuine and impostor faces")
    people = np.asarray(gallery_people)
    genuine_sims = genuine @ gallery.T
    best = genuine_sims.argmax(axis=1)
    best_sim = genuine_sims[np.arange(len(genuine)), best]
    correct = people[best] == np.asarray(genuine_people)
    impostor_best = (impostors @ gallery.T).max(axis=1)
    points = []
    for far in fars:
        if len(impostors) * far < 1:
            raise InputError(f"{len(impostors)} impostor probes cannot measure a FAR of {far:g}")
        # The threshold above which a fraction `far` of the impostors still gets through.
        threshold = float(np.quantile(impostor_best, 1.0 - far, method="higher"))
        accepted = best_sim >= threshold
        points.append(
            OperatingPoint(far=far, threshold=threshold, dir=float((correct & accepted).mean()))
        )
    return IdentificationReport(
        gallery=len(gallery),
        genuine_probes=len(genuine),
        impostor_probes=len(impostors),
        rank1=float(correct.mean()),
        points=points,
    )


def evaluate_identification(
    embed: Callable[[Sequence[str]], np.ndarray],
    split: IdentificationSplit,
    fars: Sequence[float] = FARS,
) -> IdentificationReport:
    """`embed(relpaths)` gives unit embeddings of those LFW images."""
    vectors = embed(split.images)
    g, n = len(split.gallery), len(split.genuine)
    return identification_report(
        vectors[:g],
        [person_of(p) for p in split.gallery],
        vectors[g : g + n],
        [person_of(p) for p in split.genuine],
        vectors[g + n :],
        fars,
    )
