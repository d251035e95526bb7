"""LFW layout and protocol files: parsing, folds, errors (fake tree) and the real counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from facefleet.core.errors import InputError
from facefleet.training.lfw import (
    LFWDataset,
    Pair,
    fold_sizes,
    image_relpath,
    pair_people,
    person_of,
    saw_lfw_people,
)

# Images per person in the fake tree; Fay has a folder but is in no protocol file.
FAKE_PEOPLE = {"Ann_Lee": 3, "Bob_Ray": 2, "Cy_Young": 1, "Dee_Dee": 2, "Eve_Ott": 1, "Fay_Wu": 1}


def write_jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 80, 40)).save(path, "JPEG")


def write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def dev_pairs_lines(n: int) -> list[str]:
    """n matched then n mismatched pairs; mixes tabs and spaces like hand-edited copies."""
    matched = ["Ann_Lee\t1\t2", "Bob_Ray 1 2", "Dee_Dee\t2\t1", "Ann_Lee\t2\t3"]
    mismatched = ["Ann_Lee\t1\tBob_Ray\t2", "Cy_Young 1 Eve_Ott 1", "Dee_Dee\t1\tCy_Young\t1"]
    return (
        [str(n)]
        + [matched[i % len(matched)] for i in range(n)]
        + [mismatched[i % len(mismatched)] for i in range(n)]
    )


@pytest.fixture
def fake_lfw(tmp_path: Path) -> Path:
    root = tmp_path / "lfw"
    for name, count in FAKE_PEOPLE.items():
        for i in range(1, count + 1):
            write_jpeg(root / image_relpath(name, i))
    # Files that are not LFW images must never be listed.
    (root / "Ann_Lee" / ".DS_Store").write_bytes(b"junk")
    write_jpeg(root / "Ann_Lee" / "Ann_Lee_1.jpg")
    write(root / "peopleDevTrain.txt", ["3", "Ann_Lee\t3", "Bob_Ray\t2", "Fay_Wu 1  "])
    write(root / "peopleDevTest.txt", ["3", "Cy_Young\t1", "Dee_Dee\t2", "Eve_Ott\t1", "", ""])
    write(
        root / "people.txt",
        ["2", "2", "Ann_Lee\t3", "Bob_Ray\t2", "3", "Cy_Young\t1", "Dee_Dee\t2", "Eve_Ott\t1"],
    )
    write(root / "pairsDevTrain.txt", dev_pairs_lines(12))
    write(root / "pairsDevTest.txt", dev_pairs_lines(3))
    write(
        root / "pairs.txt",
        [
            "2\t2",
            "Ann_Lee\t1\t2",
            "Bob_Ray\t1\t2",
            "Ann_Lee\t1\tCy_Young\t1",
            "Bob_Ray\t2\tEve_Ott\t1",
            "Dee_Dee\t1\t2",
            "Ann_Lee\t2\t3",
            "Dee_Dee\t2\tAnn_Lee\t3",
            "Eve_Ott\t1\tCy_Young\t1",
        ],
    )
    return root


def test_image_relpath_and_person() -> None:
    rel = image_relpath("George_W_Bush", 1)
    assert rel == "George_W_Bush/George_W_Bush_0001.jpg"
    assert person_of(rel) == "George_W_Bush"
    assert fold_sizes(12) == [2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert fold_sizes(1100) == [110] * 10


def test_people_dev_and_view2(fake_lfw: Path) -> None:
    lfw = LFWDataset(fake_lfw)
    assert lfw.people("devtrain") == [("Ann_Lee", 3), ("Bob_Ray", 2), ("Fay_Wu", 1)]
    assert lfw.people("devtest") == [("Cy_Young", 1), ("Dee_Dee", 2), ("Eve_Ott", 1)]
    assert [name for name, _ in lfw.people("view2")] == [
        "Ann_Lee",
        "Bob_Ray",
        "Cy_Young",
        "Dee_Dee",
        "Eve_Ott",
    ]


def test_images_of_lists_only_lfw_images_sorted(fake_lfw: Path) -> None:
    lfw = LFWDataset(fake_lfw)
    images = lfw.images_of(["Bob_Ray", "Ann_Lee", "Ann_Lee", "Nobody_Here"])
    assert images == [
        ("Ann_Lee/Ann_Lee_0001.jpg", "Ann_Lee"),
        ("Ann_Lee/Ann_Lee_0002.jpg", "Ann_Lee"),
        ("Ann_Lee/Ann_Lee_0003.jpg", "Ann_Lee"),
        ("Bob_Ray/Bob_Ray_0001.jpg", "Bob_Ray"),
        ("Bob_Ray/Bob_Ray_0002.jpg", "Bob_Ray"),
    ]
    assert all(lfw.path(rel).is_file() for rel, _ in images)
    with pytest.raises(InputError, match="invalid LFW person name"):
        lfw.images_of(["../etc"])


def test_view2_pairs_keep_file_folds(fake_lfw: Path) -> None:
    pairs = LFWDataset(fake_lfw).pairs("view2")
    assert [(p.fold, p.same) for p in pairs] == [
        (0, True),
        (0, True),
        (0, False),
        (0, False),
        (1, True),
        (1, True),
        (1, False),
        (1, False),
    ]
    assert pairs[0] == Pair("Ann_Lee/Ann_Lee_0001.jpg", "Ann_Lee/Ann_Lee_0002.jpg", True, 0)
    assert pairs[2] == Pair("Ann_Lee/Ann_Lee_0001.jpg", "Cy_Young/Cy_Young_0001.jpg", False, 0)


def test_dev_pairs_get_contiguous_folds_with_both_kinds(fake_lfw: Path) -> None:
    pairs = LFWDataset(fake_lfw).pairs("devtrain")
    assert len(pairs) == 24
    assert [p.fold for p in pairs] == sorted(p.fold for p in pairs)
    for fold, size in enumerate(fold_sizes(12)):
        in_fold = [p for p in pairs if p.fold == fold]
        assert sum(p.same for p in in_fold) == size
        assert sum(not p.same for p in in_fold) == size
    # Contiguous: the first two matched lines of the file make fold 0.
    assert [(p.left, p.right) for p in pairs if p.fold == 0 and p.same] == [
        ("Ann_Lee/Ann_Lee_0001.jpg", "Ann_Lee/Ann_Lee_0002.jpg"),
        ("Bob_Ray/Bob_Ray_0001.jpg", "Bob_Ray/Bob_Ray_0002.jpg"),
    ]


def test_dev_pairs_fewer_than_ten_leave_empty_folds(fake_lfw: Path) -> None:
    pairs = LFWDataset(fake_lfw).pairs("devtest")
    assert [(p.fold, p.same) for p in pairs] == [
        (0, True),
        (0, False),
        (1, True),
        (1, False),
        (2, True),
        (2, False),
    ]


def test_saw_lfw_people(fake_lfw: Path) -> None:
    lfw = LFWDataset(fake_lfw)
    devtest = lfw.pairs("devtest")
    assert pair_people(devtest) == {"Ann_Lee", "Bob_Ray", "Cy_Young", "Dee_Dee", "Eve_Ott"}
    assert saw_lfw_people(["Ann_Lee"], devtest)
    assert not saw_lfw_people(["Fay_Wu"], devtest)
    assert not saw_lfw_people([], devtest)


def test_root_without_layout_is_refused(tmp_path: Path, fake_lfw: Path) -> None:
    with pytest.raises(InputError, match="LFW folder not found"):
        LFWDataset(tmp_path / "missing")
    empty = tmp_path / "empty"
    (empty / "Somebody").mkdir(parents=True)
    write_jpeg(empty / "Somebody" / "photo.jpg")
    with pytest.raises(InputError, match=r"not an LFW folder.*George_W_Bush_0001\.jpg"):
        LFWDataset(empty)
    # The parent of the LFW folder is a likely mistake: the message points at the right one.
    with pytest.raises(InputError, match="did you mean"):
        LFWDataset(tmp_path)


def test_missing_protocol_file(fake_lfw: Path) -> None:
    (fake_lfw / "pairs.txt").unlink()
    lfw = LFWDataset(fake_lfw)
    with pytest.raises(InputError, match=r"pairs\.txt: LFW protocol file not found"):
        lfw.pairs("view2")
    with pytest.raises(InputError, match="unknown LFW protocol 'view1'"):
        lfw.people("view1")


@pytest.mark.parametrize(
    ("file", "lines", "line_no"),
    [
        ("peopleDevTrain.txt", ["2", "Ann_Lee\t3", "Bob_Ray\ttwo"], 3),
        ("peopleDevTrain.txt", ["2", "Ann_Lee", "Bob_Ray\t2"], 2),
        ("peopleDevTrain.txt", ["x", "Ann_Lee\t3"], 1),
        ("people.txt", ["1", "2", "Ann_Lee\t3", "Bob_Ray\t2\t7"], 4),
        ("pairsDevTrain.txt", ["1", "Ann_Lee\t1\tBob_Ray\t1", "Ann_Lee\t1\tBob_Ray\t1"], 2),
        ("pairsDevTrain.txt", ["1", "Ann_Lee\t1\t2", "Ann_Lee\t1\t2"], 3),
        ("pairsDevTrain.txt", ["1", "Ann_Lee\t1\t1", "Ann_Lee\t1\tBob_Ray\t1"], 2),
        ("pairsDevTrain.txt", ["1", "Ann_Lee\t0\t2", "Ann_Lee\t1\tBob_Ray\t1"], 2),
        ("pairsDevTrain.txt", ["1", "../x\t1\t2", "Ann_Lee\t1\tBob_Ray\t1"], 2),
        ("pairs.txt", ["1\t1", "Ann_Lee\t1\t2", "", "Ann_Lee\t1\tBob_Ray\t1"], 3),
        ("pairs.txt", ["10", "Ann_Lee\t1\t2", "Ann_Lee\t1\tBob_Ray\t1"], 1),
    ],
)
def test_malformed_line_names_file_and_line(
    fake_lfw: Path, file: str, lines: list[str], line_no: int
) -> None:
    write(fake_lfw / file, lines)
    lfw = LFWDataset(fake_lfw)
    load = lfw.people if file.startswith("people") else lfw.pairs
    protocol = "view2" if file in ("people.txt", "pairs.txt") else "devtrain"
    with pytest.raises(InputError, match=rf"{file}:{line_no}: malformed line") as info:
        load(protocol)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("file", "lines", "match"),
    [
        ("peopleDevTrain.txt", ["4", "Ann_Lee\t3", "Bob_Ray\t2"], "header says 4 people"),
        ("peopleDevTrain.txt", ["1", "Ann_Lee\t3", "Bob_Ray\t2"], "header says 1 people"),
        ("people.txt", ["2", "1", "Ann_Lee\t3"], "2 folds but the file ends"),
        ("people.txt", ["1", "1", "Ann_Lee\t3", "Bob_Ray\t2"], "more lines follow"),
        ("people.txt", ["2", "3", "Ann_Lee\t3", "1", "Bob_Ray\t2"], "next fold's count"),
        ("pairsDevTrain.txt", ["2", "Ann_Lee\t1\t2", "Ann_Lee\t1\tBob_Ray\t1"], "2 matched"),
        ("pairs.txt", ["2\t1", "Ann_Lee\t1\t2", "Ann_Lee\t1\tBob_Ray\t1"], "2 folds of 1"),
    ],
)
def test_header_count_mismatch(fake_lfw: Path, file: str, lines: list[str], match: str) -> None:
    write(fake_lfw / file, lines)
    lfw = LFWDataset(fake_lfw)
    load = lfw.people if file.startswith("people") else lfw.pairs
    protocol = "view2" if file in ("people.txt", "pairs.txt") else "devtrain"
    with pytest.raises(InputError, match=rf"{file}.*{match}"):
        load(protocol)


def test_pair_to_missing_image(fake_lfw: Path) -> None:
    write(fake_lfw / "pairsDevTest.txt", ["1", "Ann_Lee\t1\t2", "Ann_Lee\t1\tBob_Ray\t9"])
    with pytest.raises(
        InputError, match=r"pairsDevTest\.txt:3: image Bob_Ray/Bob_Ray_0009\.jpg does not exist"
    ):
        LFWDataset(fake_lfw).pairs("devtest")


def test_empty_protocol_file(fake_lfw: Path) -> None:
    (fake_lfw / "peopleDevTest.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"peopleDevTest\.txt: LFW protocol file is empty"):
        LFWDataset(fake_lfw).people("devtest")


# Real data: the counts below are what the shared copy of deep-funneled LFW holds.
# The 1,711 often quoted for View 1 test is peopleDevTest.txt; its 1,000 pairs use fewer.
DEVTEST_PAIR_PEOPLE = 963


@pytest.fixture(scope="module")
def real_lfw(data_root: Path) -> LFWDataset:
    return LFWDataset(data_root / "lfw")


@pytest.mark.data
def test_real_devtrain_people(real_lfw: LFWDataset) -> None:
    people = real_lfw.people("devtrain")
    assert len(people) == 4038
    assert sum(n for _, n in people) == 9525
    images = real_lfw.images_of(name for name, _ in people)
    assert len(images) == 9525


@pytest.mark.data
def test_real_devtest_pairs_are_disjoint_from_devtrain(real_lfw: LFWDataset) -> None:
    pairs = real_lfw.pairs("devtest")
    assert len(pairs) == 1000
    assert sum(p.same for p in pairs) == 500
    train = {name for name, _ in real_lfw.people("devtrain")}
    involved = pair_people(pairs)
    assert involved.isdisjoint(train)
    assert not saw_lfw_people(train, pairs)
    # peopleDevTest.txt lists 1,711 people; the pairs draw on a subset of them.
    devtest_people = {name for name, _ in real_lfw.people("devtest")}
    assert len(devtest_people) == 1711
    assert involved <= devtest_people
    assert len(involved) == DEVTEST_PAIR_PEOPLE


@pytest.mark.data
def test_real_view2_people_cover_all_of_lfw(real_lfw: LFWDataset) -> None:
    people = real_lfw.people("view2")
    assert len(people) == len({name for name, _ in people}) == 5749
    assert sum(n for _, n in people) == 13233


@pytest.mark.data
def test_real_view2_pairs(real_lfw: LFWDataset) -> None:
    pairs = real_lfw.pairs("view2")
    assert len(pairs) == 6000
    for fold in range(10):
        in_fold = [p for p in pairs if p.fold == fold]
        assert len(in_fold) == 600
        assert sum(p.same for p in in_fold) == 300


@pytest.mark.data
def test_real_devtrain_pairs(real_lfw: LFWDataset) -> None:
    pairs = real_lfw.pairs("devtrain")
    assert len(pairs) == 2200
    assert {p.fold for p in pairs} == set(range(10))
    assert all(sum(p.same for p in pairs if p.fold == k) == 110 for k in range(10))
