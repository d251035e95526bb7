"""The LFW data set on disk: image layout, protocol files (people and pairs) and their folds.

Protocols: "devtrain" and "devtest" are View 1 (peopleDevTrain/peopleDevTest,
pairsDevTrain/pairsDevTest), meant for development; "view2" is the 10-fold benchmark
(people.txt, pairs.txt). Every problem with the files is an InputError whose one-line message
names the file, and the line for a malformed line, so a bad copy of LFW is easy to fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from facefleet.core.errors import InputError

LFW_IMAGE = "{name}/{name}_{index:04d}.jpg"
N_FOLDS = 10

LFWProtocol = Literal["devtrain", "devtest", "view2"]
PROTOCOLS: tuple[str, ...] = get_args(LFWProtocol)

_PEOPLE_FILES: dict[str, str] = {
    "devtrain": "peopleDevTrain.txt",
    "devtest": "peopleDevTest.txt",
    "view2": "people.txt",
}
_PAIRS_FILES: dict[str, str] = {
    "devtrain": "pairsDevTrain.txt",
    "devtest": "pairsDevTest.txt",
    "view2": "pairs.txt",
}
# Names come from text files and become folder names: anything path-like would escape root.
_BAD_NAME = re.compile(r"[/\\\x00]")
_EXAMPLE_IMAGE = "George_W_Bush/George_W_Bush_0001.jpg"


def image_relpath(name: str, index: int) -> str:
    """The path of image `index` (1-based) of `name`, relative to the LFW root."""
    return LFW_IMAGE.format(name=name, index=index)


def person_of(relpath: str) -> str:
    """The person an LFW image relpath belongs to (its folder)."""
    return relpath.split("/", 1)[0]


@dataclass(frozen=True)
class Pair:
    """One verification pair; left/right are image relpaths, fold is 0..9."""

    left: str
    right: str
    same: bool
    fold: int


def pair_people(pairs: Iterable[Pair]) -> set[str]:
    """Every person that appears on either side of the pairs."""
    people: set[str] = set()
    for pair in pairs:
        people.add(person_of(pair.left))
        people.add(person_of(pair.right))
    return people


def saw_lfw_people(train_people: Iterable[str], eval_pairs: Iterable[Pair]) -> bool:
    """True if a person in the evaluation pairs was also trained on (the result is optimistic)."""
    return not pair_people(eval_pairs).isdisjoint(train_people)


def quick_run_pairs(pairs: Iterable[Pair], max_people: int) -> list[Pair]:
    """The slice of DevTest a quick run (`--max-people N`) evaluates on: the first
    max(2, N // 20) pairs of each kind in every fold, so every fold keeps both kinds."""
    keep = max(2, max_people // 20)
    taken: dict[tuple[int, bool], int] = {}
    subset = []
    for pair in pairs:
        key = (pair.fold, pair.same)
        if taken.get(key, 0) < keep:
            taken[key] = taken.get(key, 0) + 1
            subset.append(pair)
    return subset


def fold_sizes(n: int, folds: int = N_FOLDS) -> list[int]:
    """Contiguous, equal-as-possible part sizes; the first n % folds parts get one extra."""
    base, extra = divmod(n, folds)
    return [base + (1 if k < extra else 0) for k in range(folds)]


@dataclass(frozen=True)
class _Line:
    number: int
    fields: list[str]


def _read_lines(path: Path) -> list[_Line]:
    if not path.is_file():
        raise InputError(f"{path}: LFW protocol file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read LFW protocol file ({exc})") from exc
    lines = [_Line(i, raw.split()) for i, raw in enumerate(text.splitlines(), start=1)]
    # Copies of LFW differ in the final newline, so trailing blank lines are dropped.
    while lines and not lines[-1].fields:
        lines.pop()
    if not lines:
        raise InputError(f"{path}: LFW protocol file is empty")
    # Report a stray blank line itself rather than the header count it throws off.
    for line in lines:
        if not line.fields:
            raise _malformed(path, line, "a protocol line")
    return lines


def _malformed(path: Path, line: _Line, expected: str) -> InputError:
    got = repr(" ".join(line.fields)) if line.fields else "a blank line"
    return InputError(f"{path}:{line.number}: malformed line, expected {expected}, got {got}")


def _int(path: Path, line: _Line, text: str, expected: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _malformed(path, line, expected) from None
    if value < minimum:
        raise _malformed(path, line, expected)
    return value


def _name(path: Path, line: _Line, text: str, expected: str) -> str:
    if _BAD_NAME.search(text) or text in (".", ".."):
        raise _malformed(path, line, expected)
    return text


def _header_ints(path: Path, line: _Line, count: int, expected: str) -> list[int]:
    if len(line.fields) != count:
        raise _malformed(path, line, expected)
    return [_int(path, line, f, expected, 0) for f in line.fields]


def _check_count(path: Path, lines: list[_Line], want: int, what: str) -> None:
    """The body after the header must hold exactly `want` lines."""
    got = len(lines) - 1
    if got != want:
        raise InputError(
            f"{path}: header says {what} ({want} lines) but the file has {got} lines after it"
        )


class LFWDataset:
    """An LFW folder: `<Name>/<Name>_NNNN.jpg` images next to the protocol text files."""

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: LFW folder not found (expected a folder of person folders)")
        if not self._has_layout(root):
            hint = ""
            if (root / "lfw").is_dir() and self._has_layout(root / "lfw"):
                hint = f"; did you mean {root / 'lfw'}?"
            raise InputError(
                f"{root}: not an LFW folder, expected person folders like {_EXAMPLE_IMAGE}{hint}"
            )
        self.root = root
        self._people: dict[str, list[tuple[str, int]]] = {}
        self._pairs: dict[str, list[Pair]] = {}

    @staticmethod
    def _has_layout(root: Path) -> bool:
        # One person folder with its first image is proof enough; stop there, LFW has 5,749.
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_dir() and (root / image_relpath(entry.name, 1)).is_file():
                    return True
        return False

    def path(self, relpath: str) -> Path:
        """The file of an image relpath such as George_W_Bush/George_W_Bush_0001.jpg."""
        return self.root / relpath

    def protocol_file(self, kind: Literal["people", "pairs"], protocol: str) -> Path:
        files = _PEOPLE_FILES if kind == "people" else _PAIRS_FILES
        if protocol not in files:
            raise InputError(
                f"unknown LFW protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})"
            )
        return self.root / files[protocol]

    def people(self, protocol: str) -> list[tuple[str, int]]:
        """(name, number of images) in file order for "devtrain", "devtest" or "view2".

        view2 is people.txt with its 10 folds flattened.
        """
        path = self.protocol_file("people", protocol)
        if protocol not in self._people:
            lines = _read_lines(path)
            if protocol == "view2":
                self._people[protocol] = _parse_people_folds(path, lines)
            else:
                self._people[protocol] = _parse_people_dev(path, lines)
        return list(self._people[protocol])

    def pairs(self, protocol: str) -> list[Pair]:
        """Pairs of "devtrain", "devtest" or "view2", every image checked to exist on disk.

        Returned in fold order, matched before mismatched within a fold (pairs.txt's own order).

        View 1 files have no folds; their matched and mismatched lists are each cut into 10
        contiguous parts and fold k takes part k of both, so every fold has both kinds.
        """
        path = self.protocol_file("pairs", protocol)
        if protocol not in self._pairs:
            lines = _read_lines(path)
            if protocol == "view2":
                located = _parse_pairs_folds(path, lines)
            else:
                located = _parse_pairs_dev(path, lines)
            for line, pair in located:
                for rel in (pair.left, pair.right):
                    if not self.path(rel).is_file():
                        raise InputError(
                            f"{path}:{line.number}: image {rel} does not exist under {self.root}"
                        )
            pairs = [pair for _, pair in located]
            # Stable sort: view2 is already in this order, View 1 becomes fold-major.
            pairs.sort(key=lambda p: p.fold)
            self._pairs[protocol] = pairs
        return list(self._pairs[protocol])

    def images_of(self, names: Iterable[str]) -> list[tuple[str, str]]:
        """(relpath, person) of every `<Name>_NNNN.jpg` on disk for these people, sorted."""
        found: list[tuple[str, str]] = []
        for name in sorted(set(names)):
            if not name or _BAD_NAME.search(name) or name in (".", ".."):
                raise InputError(f"{self.root}: invalid LFW person name {name!r}")
            folder = self.root / name
            if not folder.is_dir():
                continue
            # Only the LFW naming counts, so stray files (.DS_Store, thumbnails) never train.
            pattern = re.compile(re.escape(name) + r"_\d{4}\.jpg")
            with os.scandir(folder) as entries:
                found.extend(
                    (f"{name}/{entry.name}", name)
                    for entry in entries
                    if pattern.fullmatch(entry.name) and entry.is_file()
                )
        found.sort()
        return found


_PERSON = "'Name<TAB>number_of_images'"


def _person_line(path: Path, line: _Line) -> tuple[str, int]:
    if len(line.fields) != 2:
        raise _malformed(path, line, _PERSON)
    return _name(path, line, line.fields[0], _PERSON), _int(path, line, line.fields[1], _PERSON, 1)


def _parse_people_dev(path: Path, lines: list[_Line]) -> list[tuple[str, int]]:
    (count,) = _header_ints(path, lines[0], 1, "a count of people")
    _check_count(path, lines, count, f"{count} people")
    return [_person_line(path, line) for line in lines[1:]]


def _parse_people_folds(path: Path, lines: list[_Line]) -> list[tuple[str, int]]:
    (folds,) = _header_ints(path, lines[0], 1, "a number of folds")
    people: list[tuple[str, int]] = []
    at = 1
    for fold in range(folds):
        if at >= len(lines):
            raise InputError(
                f"{path}: header says {folds} folds but the file ends after fold {fold}"
            )
        (count,) = _header_ints(path, lines[at], 1, f"the count of people in fold {fold + 1}")
        body = lines[at + 1 : at + 1 + count]
        if len(body) != count:
            raise InputError(
                f"{path}:{lines[at].number}: fold {fold + 1} says {count} people "
                f"but the file has {len(body)} lines after it"
            )
        for line in body:
            if len(line.fields) == 1 and line.fields[0].isdigit():
                # A bare number here is the next fold's header: this fold's count is too big.
                raise InputError(
                    f"{path}:{lines[at].number}: fold {fold + 1} says {count} people "
                    f"but line {line.number} is already the next fold's count"
                )
            people.append(_person_line(path, line))
        at += 1 + count
    if at != len(lines):
        raise InputError(
            f"{path}:{lines[at].number}: header says {folds} folds but more lines follow them"
        )
    return people


_MATCHED = "'name i j' (a matched pair)"
_MISMATCHED = "'name1 i name2 j' (a mismatched pair)"


def _matched(path: Path, line: _Line, fold: int) -> Pair:
    if len(line.fields) != 3:
        raise _malformed(path, line, _MATCHED)
    name = _name(path, line, line.fields[0], _MATCHED)
    i = _int(path, line, line.fields[1], _MATCHED, 1)
    j = _int(path, line, line.fields[2], _MATCHED, 1)
    if i == j:
        raise _malformed(path, line, _MATCHED + " with two different images")
    return Pair(image_relpath(name, i), image_relpath(name, j), same=True, fold=fold)


def _mismatched(path: Path, line: _Line, fold: int) -> Pair:
    if len(line.fields) != 4:
        raise _malformed(path, line, _MISMATCHED)
    name1 = _name(path, line, line.fields[0], _MISMATCHED)
    i = _int(path, line, line.fields[1], _MISMATCHED, 1)
    name2 = _name(path, line, line.fields[2], _MISMATCHED)
    j = _int(path, line, line.fields[3], _MISMATCHED, 1)
    if name1 == name2:
        raise _malformed(path, line, _MISMATCHED + " of two different people")
    return Pair(image_relpath(name1, i), image_relpath(name2, j), same=False, fold=fold)


def _parse_pairs_dev(path: Path, lines: list[_Line]) -> list[tuple[_Line, Pair]]:
    (n,) = _header_ints(path, lines[0], 1, "the number of matched (= mismatched) pairs")
    _check_count(path, lines, 2 * n, f"{n} matched + {n} mismatched pairs")
    folds = [k for k, size in enumerate(fold_sizes(n)) for _ in range(size)]
    matched = [(line, _matched(path, line, folds[i])) for i, line in enumerate(lines[1 : 1 + n])]
    mismatched = [
        (line, _mismatched(path, line, folds[i])) for i, line in enumerate(lines[1 + n :])
    ]
    return matched + mismatched


def _parse_pairs_folds(path: Path, lines: list[_Line]) -> list[tuple[_Line, Pair]]:
    folds, per = _header_ints(path, lines[0], 2, "'folds pairs_per_half' (e.g. '10 300')")
    _check_count(
        path, lines, 2 * folds * per, f"{folds} folds of {per} matched + {per} mismatched pairs"
    )
    located: list[tuple[_Line, Pair]] = []
    for k, line in enumerate(lines[1:]):
        fold, within = divmod(k, 2 * per)
        parse = _matched if within < per else _mismatched
        located.append((line, parse(path, line, fold)))
    return located
