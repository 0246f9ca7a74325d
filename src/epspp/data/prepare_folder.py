"""``epspp prepare folder``: a practitioner's own images, labels and saliency maps in the VOC layout.

Input: a folder of images of any common type (read as they are, never re-encoded), image-level labels
as CSV (``id,classes`` with class names separated by spaces or ``;``; a header row is optional) or
JSON (``{id: [names]}`` or ``{id: "a;b"}``), and optionally a folder of ``<id>.png`` saliency maps.
Ids are the image file names without extension (a label file may also give the file name).

Output (``--out``): ``JPEGImages/`` and ``saliency/`` holding links to the inputs (``--copy`` copies),
``classes.json`` (background first, then the classes, given or sorted), ``cls_labels.json``
(``{id: [names]}``, the safe label format) and the splits ``train`` / ``val`` (a seeded random
``--val-fraction``; a rerun keeps the split of every image already there) and ``all``.  No ground truth:
stages 1-3 run without it (see docs/data.md, "Your own data").
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from epspp.data.classes import CLASSES_FILE, check_class_names, write_classes
from epspp.data.io import IMAGE_EXTENSIONS, check_id, exif_orientation, image_files, read_split
from epspp.data.labels import JSON_LABELS
from epspp.errors import DatasetError
from epspp.files import write_atomic, write_text
from epspp.runs.ownership import OutputRecord, refuse_inside

SPLITS = Path("ImageSets") / "Segmentation"
HEADER_NAMES = ("id", "image", "filename", "file", "name")


def read_label_file(path: Path) -> dict[str, list[str]]:
    """Class names per id from a CSV or JSON label file (ids as given; extensions are stripped later)."""
    if not path.is_file():
        raise DatasetError(f"label file {path} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read label file {path}: {error}") from error
    if path.suffix.lower() == ".json":
        return _json_labels(text, path)
    labels: dict[str, list[str]] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip():
            continue
        if number == 1 and row[0].strip().lower() in HEADER_NAMES:
            extra = [column.strip() for column in row[2:] if column.strip()]
            if extra:
                raise DatasetError(
                    f"{path} line 1: columns {extra} are not read: a label file has two columns, id "
                    "and classes (names separated by ';' or spaces); remove the others"
                )
            continue  # a header
        image_id = row[0].strip()
        if image_id in labels:
            raise DatasetError(f"{path} line {number}: id {image_id!r} is listed twice")
        labels[image_id] = _names(" ".join(row[1:]))
    if not labels:
        raise DatasetError(f"{path} lists no image: expected lines 'id,class names' (e.g. 'img001,cat;dog')")
    return labels


def _json_labels(text: str, path: Path) -> dict[str, list[str]]:
    try:
        table = json.loads(text)
    except ValueError as error:
        raise DatasetError(f"label file {path} is not valid JSON: {error}") from error
    if not isinstance(table, dict):
        raise DatasetError(f"{path} must hold an object {{id: [class names]}}")
    labels = {}
    for image_id, names in table.items():
        if isinstance(names, str):
            names = _names(names)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}: the classes of {image_id!r} must be a list of names, got {names!r}")
        labels[str(image_id)] = [n.strip() for n in names if n.strip()]
    return labels


def _names(field: str) -> list[str]:
    return [name for name in re.split(r"[;\s]+", field.strip()) if name]


def _link_or_copy(source: Path, target: Path, copy: bool) -> None:
    """``target`` -> ``source`` (a link, or a copy), atomically; a rerun keeps what is already right."""
    if os.path.lexists(target):
        if target.resolve() == source.resolve() or (copy and target.stat().st_size == source.stat().st_size):
            return
        raise DatasetError(f"{target} exists and is not {source}: choose an empty --out")
    if copy:
        write_atomic(target, lambda tmp: shutil.copy2(source, tmp))
    else:
        write_atomic(target, lambda tmp: os.symlink(source.resolve(), tmp))


def prepare_folder(
    images: str | Path,
    labels: str | Path,
    out: str | Path,
    saliency: str | Path | None = None,
    val_fraction: float = 0.1,
    classes: list[str] | None = None,
    seed: int = 0,
    copy: bool = False,
) -> dict:
    """Build a VOC-layout root at ``out`` from a folder of images, a label file and saliency maps.

    Args:
        images: folder of images (``.jpg``, ``.png``, ...; the file name without extension is the id).
        labels: CSV or JSON label file (see the module docstring).
        out: dataset root to create (must be empty or a root made by this command from the same inputs).
        saliency: folder of ``<id>.png`` grey saliency maps (8- or 16-bit); needed by stage 1.
        val_fraction: share of the images in the ``val`` split (at least one image each in train and val).
        classes: class names in label order (default: every name of the label file, sorted).
        seed: seed of the train/val split.
        copy: copy the files instead of linking them.

    Returns:
        Counts (images, train, val) and the class names (background first).
    """
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise DatasetError(f"image folder {images} not found")
    found = image_files(images)
    if not found:
        raise DatasetError(f"no image in {images} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    for image_id in found:
        check_id(image_id, f"image {found[image_id]}")
        orientation = exif_orientation(found[image_id])
        if orientation != 1:
            raise DatasetError(
                f"image {found[image_id]} has an EXIF orientation tag ({orientation}): viewers show "
                "it turned, epspp reads the stored pixels, so its saliency map may not match; save "
                "it upright without the tag (PIL: ImageOps.exif_transpose(image).save(...))"
            )
    table = _by_id(read_label_file(Path(labels)), found, Path(labels))
    names = _class_names(table, classes, Path(labels))
    ids = sorted(found)
    saliency_files = _saliency(Path(saliency), ids) if saliency else {}
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"--val-fraction must be within (0, 1), got {val_fraction}")
    if len(ids) < 2:
        raise DatasetError(f"{len(ids)} image(s): need at least 2 (one for train, one for val)")
    refuse_inside(out, {images: "the image folder", saliency: "the saliency folder"}, "--out")
    record = OutputRecord.open(
        out, "epspp prepare folder", "--out", legacy=lambda folder: (folder / JSON_LABELS).is_file()
    )  # an older epspp's root
    record.claim(
        [
            *(out / "JPEGImages" / found[i].name for i in ids),
            *(out / "saliency" / f"{i}.png" for i in ids if saliency),
            out / CLASSES_FILE,
            out / JSON_LABELS,
            *(out / SPLITS / f"{split}.txt" for split in ("train", "val", "all")),
        ]
    )
    train, val = _splits(out, ids, val_fraction, seed)
    for sub in ("JPEGImages", "saliency" if saliency else None, str(SPLITS)):
        if sub:
            (out / sub).mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        _link_or_copy(found[image_id], out / "JPEGImages" / found[image_id].name, copy)
        if saliency:
            _link_or_copy(saliency_files[image_id], out / "saliency" / f"{image_id}.png", copy)
    write_classes(out, ["background", *names])
    write_text(out / JSON_LABELS, json.dumps({i: table[i] for i in ids}, indent=1))
    for split, members in (("train", train), ("val", val), ("all", ids)):
        write_text(out / SPLITS / f"{split}.txt", "".join(f"{i}\n" for i in members))
    return {"images": len(ids), "train": len(train), "val": len(val), "classes": ["background", *names]}


def _splits(out: Path, ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Train and val ids: those of an earlier run at ``out`` keep their split; the others are drawn (seeded)
    so that val holds ``val_fraction`` of all images, at least one image each in train and val."""
    earlier = {
        name: set(read_split(out, name)) if (out / SPLITS / f"{name}.txt").is_file() else set()
        for name in ("train", "val")
    }
    kept_train, kept_val = earlier["train"] & set(ids), earlier["val"] & set(ids)
    new = [i for i in ids if i not in kept_train | kept_val]
    gone = len(earlier["train"] | earlier["val"]) - len(kept_train | kept_val)
    if gone:
        print(
            f"[epspp] {gone} image(s) of the earlier splits of {out} are no longer in the image folder: "
            "left out of the new splits",
            file=sys.stderr,
        )
    target = min(max(1, round(val_fraction * len(ids))), len(ids) - 1)
    num_val = min(max(target - len(kept_val), 0), len(new))
    if not kept_val:
        num_val = max(num_val, 1)
    if not kept_train:
        num_val = min(num_val, len(new) - 1)
    order = np.random.default_rng(seed).permutation(len(new))
    val = kept_val | {new[i] for i in order[:num_val]}
    train = sorted(set(ids) - val)
    if not train or not val:
        raise DatasetError(
            f"the earlier splits of {out} and the new images leave {'train' if val else 'val'} "
            "empty: add images, or build the dataset anew in an empty --out"
        )
    return train, sorted(val)


def _by_id(labels: dict[str, list[str]], found: dict[str, Path], path: Path) -> dict[str, list[str]]:
    """Labels keyed by image id (a label file may name the file, ``img1.jpg``); every image needs a line."""
    table: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for given, names in labels.items():
        stem, ext = os.path.splitext(given)
        image_id = stem if ext.lower() in IMAGE_EXTENSIONS and stem in found else given
        if image_id in table:
            raise DatasetError(
                f"{path}: image {image_id!r} is labelled twice, as {spelling[image_id]!r} and "
                f"{given!r}: keep one line per image"
            )
        table[image_id], spelling[image_id] = names, given
    unknown = sorted(set(table) - set(found))
    if unknown:
        raise DatasetError(f"{path} labels {len(unknown)} ids with no image in the image folder, e.g. {unknown[:3]}")
    unlabelled = sorted(set(found) - set(table))
    if unlabelled:
        raise DatasetError(
            f"{len(unlabelled)} images have no line in {path}, e.g. {unlabelled[:3]}: add them "
            "(an empty class list for an image without any object)"
        )
    return table


def _class_names(table: dict[str, list[str]], classes: list[str] | None, path: Path) -> list[str]:
    used = sorted({n for names in table.values() for n in names})
    names = list(classes) if classes else used
    if not names:
        raise DatasetError(f"{path} names no class at all")
    if "background" in names:
        raise DatasetError("'background' is class 0 of every dataset: do not list it as a class")
    check_class_names(names, "--classes" if classes else str(path))
    unknown = sorted(set(used) - set(names))
    if unknown:
        raise DatasetError(f"{path} uses classes {unknown[:5]} that --classes does not list")
    return names


def _saliency(folder: Path, ids: list[str]) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"saliency folder {folder} not found")
    files = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == ".png"}
    missing = [i for i in ids if i not in files]
    if missing:
        others = [p.name for p in folder.iterdir() if p.stem in missing[:50] and p.suffix.lower() != ".png"]
        hint = f" ({others[0]} is not a PNG: save saliency maps as grey PNGs)" if others else ""
        raise DatasetError(f"{len(missing)} images have no saliency map <id>.png in {folder}, e.g. {missing[:3]}{hint}")
    return files
