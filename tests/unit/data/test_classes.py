"""Class names: the VOC palette, ``classes.json`` (written, read, checked) and names that differ only in case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epspp.data.classes import (
    CLASSES_FILE,
    COCO_CLASSES,
    VOC_CLASSES,
    check_class_names,
    lists_classes,
    read_classes,
    voc_palette,
    write_classes,
)
from epspp.data.prepare_folder import prepare_folder
from epspp.errors import DatasetError


def test_classes_option_and_classes_json_refuse_case_twins(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("im00", "im01"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / f"{name}.png")
    (tmp_path / "labels.csv").write_text("im00,cat\nim01,dog\n")
    with pytest.raises(DatasetError, match=r"--classes: class 'CAT' is listed as 'cat' and 'CAT'"):
        prepare_folder(images, tmp_path / "labels.csv", tmp_path / "root", classes=["cat", "dog", "CAT"])
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["background", "Dog", "dog"]}))
    with pytest.raises(DatasetError, match=r"classes\.json: class 'dog' is listed as 'Dog' and 'dog'"):
        read_classes(tmp_path)


def test_voc_palette_entries_of_the_voc_colour_map() -> None:
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    # VOC's colours: background black, aeroplane dark red, bicycle dark green, bird olive, boat navy, person
    assert palette[[0, 1, 2, 3, 4, 15]].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [128, 128, 0],
        [0, 0, 128],
        [192, 128, 128],
    ]
    assert palette[255].tolist() == [224, 224, 192]  # the ignore index: bits 1,1,1 | 1,1,1 | 1,1,0
    assert voc_palette(3).tolist() == palette[:3].tolist()


def test_voc_palette_is_a_copy_the_caller_may_change() -> None:
    palette = voc_palette(4)
    palette[:] = 7
    assert voc_palette(4)[1].tolist() == [128, 0, 0]


def test_write_then_read_classes_and_lists_classes(tmp_path: Path) -> None:
    names = ["background", "cat", "dog"]
    write_classes(tmp_path, names)
    record = json.loads((tmp_path / CLASSES_FILE).read_text())
    assert record == {"names": names, "palette": [[0, 0, 0], [128, 0, 0], [0, 128, 0]]}
    assert not (tmp_path / (CLASSES_FILE + ".tmp")).exists()
    assert read_classes(tmp_path) == names
    assert lists_classes(tmp_path, names) and lists_classes(tmp_path, tuple(names))
    assert not lists_classes(tmp_path, ["background", "dog", "cat"])  # the order is the label order
    assert not lists_classes(tmp_path / "elsewhere", names)
    (tmp_path / CLASSES_FILE).write_text("[1, 2]")  # not a mapping
    assert not lists_classes(tmp_path, names)


def test_check_class_names_refuses_twins_and_keeps_the_order() -> None:
    assert check_class_names(["background", "b", "a"], "x") == ["background", "b", "a"]
    with pytest.raises(DatasetError, match=r"^here: class 'cat' is listed twice: use one spelling per class$"):
        check_class_names(["background", "cat", "cat"], "here")


@pytest.mark.parametrize(
    "record",
    [{"names": ["background"]}, {"names": "background,cat"}, {"names": ["bg", 3]}, {"classes": ["background", "cat"]}],
)
def test_read_classes_refuses_a_record_without_two_names(tmp_path: Path, record: dict) -> None:
    (tmp_path / CLASSES_FILE).write_text(json.dumps(record))
    with pytest.raises(DatasetError, match=r"classes\.json"):
        read_classes(tmp_path)


def test_read_classes_without_a_record_names_the_file_and_how_to_write_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"classes\.json not found: .*\"names\": \[\"background\", \"cat\""):
        read_classes(tmp_path)


# the published class lists, written out: PASCAL VOC 2012's 20 classes (devkit order) and COCO's 80 thing
# classes in the order of their category ids 1..90 (gaps skipped), each after background
PUBLISHED_VOC = (
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person pottedplant "
    "sheep sofa train tvmonitor"
).split()
PUBLISHED_COCO = [
    *"person bicycle car motorcycle airplane bus train truck boat".split(),
    *["traffic light", "fire hydrant", "stop sign", "parking meter"],
    *"bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase".split(),
    *["frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard"],
    *["surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana"],
    *["apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch"],
    *["potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone"],
    *["microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear"],
    *["hair drier", "toothbrush"],
]


def test_class_lists_are_the_published_ones_with_background_first() -> None:
    assert list(VOC_CLASSES) == ["background", *PUBLISHED_VOC] and len(VOC_CLASSES) == 21
    assert list(COCO_CLASSES) == ["background", *PUBLISHED_COCO] and len(COCO_CLASSES) == 81
    # mask value = index: VOC 15 is person, COCO 1 is person and 80 the toothbrush
    assert (VOC_CLASSES[15], COCO_CLASSES[1], COCO_CLASSES[80]) == ("person", "person", "toothbrush")


def test_classes_json_holds_at_most_the_254_classes_of_8_bit_masks(tmp_path: Path) -> None:
    names = ["background"] + [f"c{i}" for i in range(1, 255)]  # ids 1..254; 255 is the ignore label
    write_classes(tmp_path, names)
    assert read_classes(tmp_path) == names
    write_classes(tmp_path, [*names, "c255"])
    with pytest.raises(DatasetError, match=r"classes\.json lists 255 classes besides the background; .* at most 254"):
        read_classes(tmp_path)


@pytest.mark.parametrize(
    ("count", "expected"),
    [(20, VOC_CLASSES), (80, COCO_CLASSES), (3, ("background", "class_1", "class_2", "class_3"))],
)
def test_without_classes_json_the_label_length_of_cls_labels_npy_names_the_classes(
    tmp_path: Path, count: int, expected: tuple[str, ...]
) -> None:
    """EPS's download has no classes.json: 20 labels are VOC's classes, 80 COCO's, any other count numbered."""
    np.save(tmp_path / "cls_labels.npy", {"2007_000032": np.zeros(count, np.float32)})
    assert read_classes(tmp_path) == list(expected)
