"""Your own faces as training data: a folder of `<Person>/<image>` files (`train --data`).

The faces are found and aligned exactly as LFW's are (facecache: the same detector, central
face, refine pass and crops). People whose name is a person of LFW View 1 DevTest are
dropped, with one warning line naming them, so that DevTest stays an evaluation on people
the model never trained on. Names are compared loosely ("george w. bush" is
George_W_Bush): case, spaces and punctuation do not count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from facefleet.core.errors import InputError
from facefleet.training.facecache import FaceCache, folder_face_cache

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
_EXAMPLE = "<folder>/Ada_Lovelace/photo1.jpg"


def name_key(name: str) -> str:
    """A person's name as compared with LFW's: lower case, runs of anything but letters and
    digits as one underscore."""
    return re.sub(r"[^0-9a-z]+", "_", name.casefold()).strip("_")


@dataclass(frozen=True)
class FolderData:
    """The usable faces of a --data folder: relpaths (under `root`) and their people."""

    root: Path
    cache: FaceCache
    relpaths: list[str]
    persons: list[str]

    @property
    def people(self) -> list[str]:
        return list(dict.fromkeys(self.persons))


def scan_folder(root: Path) -> list[tuple[str, str]]:
    """(relpath, person) of every image file in the person folders of `root`, sorted.
    Hidden files and folders are skipped, so are files that are not images by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"not a folder (expected person folders like {_EXAMPLE})", subject=root)
    found: list[tuple[str, str]] = []
    for person in sorted(root.iterdir()):
        if person.name.startswith(".") or not person.is_dir():
            continue
        for image in sorted(person.iterdir()):
            if (
                not image.name.startswith(".")
                and image.suffix.lower() in IMAGE_SUFFIXES
                and image.is_file()
            ):
                found.append((f"{person.name}/{image.name}", person.name))
    if not found:
        raise InputError(
            f"no images: expected person folders of photos like {_EXAMPLE}", subject=root
        )
    return found


def load_folder(
    root: Path,
    devtest_people: Iterable[str],
    cache_dir: Path,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> FolderData:
    """The folder's faces, DevTest people dropped (one warning line), unreadable images and
    photos with no detected face skipped (one line each with the count)."""
    root = Path(root)
    samples = scan_folder(root)
    held_out = {name_key(n) for n in devtest_people}
    dropped = sorted({p for _, p in samples if name_key(p) in held_out})
    if dropped:
        log(
            f"warning: --data: {len(dropped)} of its people are LFW DevTest people and are "
            f"left out so evaluation stays on unseen people: {', '.join(dropped)}"
        )
        samples = [(rel, p) for rel, p in samples if p not in dropped]
        if not samples:
            raise InputError("every person in it is an LFW DevTest person", subject=root)
    cache, unreadable = folder_face_cache(
        root, [rel for rel, _ in samples], cache_dir, device, log, progress
    )
    if unreadable:
        first, why = next(iter(unreadable.items()))
        log(f"--data: {len(unreadable)} unreadable images skipped (e.g. {first}: {why})")
    readable = [(rel, p) for rel, p in samples if rel not in unreadable]
    if not readable:
        raise InputError(f"none of its {len(samples)} images can be read", subject=root)
    kept = [(rel, p) for rel, p in readable if not cache.fallback_count([rel])]
    if not kept:
        raise InputError(f"no face found in any of its {len(readable)} images", subject=root)
    if len(kept) < len(readable):
        log(f"--data: {len(readable) - len(kept)} images with no face found skipped")
    return FolderData(root, cache, [rel for rel, _ in kept], [p for _, p in kept])
