"""Turning the paths a user typed into a list of work items with output names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facefleet.core.media import is_image_path, is_video_path


@dataclass(frozen=True)
class InputItem:
    path: Path
    output_stem: Path  # relative to the output folder, without suffix

    @property
    def is_video(self) -> bool:
        return is_video_path(self.path)


@dataclass(frozen=True)
class InputProblem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{display_path(self.path)}: {self.reason}"


def display_path(path: Path | str) -> str:
    """A printable form of a path, even when its bytes are not valid UTF-8."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", errors="replace")


def collect_inputs(paths: list[Path]) -> tuple[list[InputItem], list[InputProblem]]:
    """Files are taken as given; folders are searched recursively for images and videos.

    Output names mirror the input's relative path inside a folder, so two `x.jpg` in
    different subfolders never overwrite each other; clashes between arguments get a suffix.
    """
    items: list[InputItem] = []
    problems: list[InputProblem] = []
    taken: set[Path] = set()

    def add(path: Path, stem: Path) -> None:
        candidate, n = stem, 2
        while candidate in taken:
            candidate = stem.with_name(f"{stem.name}-{n}")
            n += 1
        taken.add(candidate)
        items.append(InputItem(path, candidate))

    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and (is_image_path(p) or is_video_path(p))
            )
            if not found:
                problems.append(InputProblem(path, "folder contains no image or video files"))
            for p in found:
                add(p, p.relative_to(path).with_suffix(""))
        elif path.is_file():
            add(path, Path(path.stem or path.name))
        else:
            problems.append(InputProblem(path, "no such file or folder"))
    return items, problems
