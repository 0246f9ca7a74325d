"""``epspp prepare``: build dataset roots in the VOC layout (see docs/architecture.md, data contract).

* ``synthetic``: the generated dataset (:func:`epspp.data.synthetic.generate_synthetic`).
* ``pretrain-corpus``: stage 0's classification corpus (:func:`epspp.data.pretrain_corpus.generate_pretrain_corpus`).
* ``voc``: PASCAL VOC 2012 + SBD, with the standard 10,582-image ``train_aug`` split.
* ``coco``: MS COCO 2014 as distributed for WSSS by EPS (images, PNG masks, saliency maps).
* ``folder``: your own images, a CSV/JSON of class names per image, saliency maps (no masks needed;
  :func:`epspp.data.prepare_folder.prepare_folder`).

Inputs are never copied: images (and, for COCO, masks and saliency maps) are symbolic links into
the input folders. Every file is written atomically (temporary name, then rename), so a rerun after
an interruption finds only complete files and skips the masks it already wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

from epspp.data.classes import CLASSES_FILE, COCO_CLASSES, VOC_CLASSES, lists_classes, voc_palette, write_classes
from epspp.data.io import DatasetError, check_id, write_mask_png
from epspp.files import write_atomic, write_text
from epspp.runs.ownership import OutputRecord, refuse_inside

SPLITS = Path("ImageSets") / "Segmentation"
IGNORE = 255


# ---------------------------------------------------------------- small helpers
def _require(path: Path, what: str, is_dir: bool = True) -> Path:
    if not (path.is_dir() if is_dir else path.is_file()):
        raise FileNotFoundError(f"{what} {path} not found")
    return path


def _read_ids(path: Path, what: str) -> list[str]:
    _require(path, what, is_dir=False)
    return [
        check_id(line.split()[0], f"{path} line {number}")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip()
    ]


def _write_split(out: Path, name: str, ids: list[str]) -> None:
    write_text(out / SPLITS / f"{name}.txt", "".join(f"{i}\n" for i in ids))


def _link(target: Path, link: Path) -> bool:
    """Create ``link`` -> ``target`` atomically; False if it already points there.

    Raises:
        FileExistsError: ``link`` exists and is something else.
    """
    target = target.resolve()
    if os.path.lexists(link):
        if link.exists() and link.resolve() == target:
            return False
        raise FileExistsError(f"{link} exists and is not a link to {target}: remove it or choose another --out")
    write_atomic(link, lambda tmp: os.symlink(target, tmp))
    return True


def _output_record(
    out: Path, inputs: dict[str | Path | None, str], dataset: str, classes: tuple[str, ...]
) -> OutputRecord:
    """The record of ``epspp prepare <dataset>`` in ``out``: never one of the inputs, never another command's folder
    (a root of an older epspp, whose ``classes.json`` lists ``classes`` and no record, is completed)."""
    refuse_inside(out, inputs, "--out")
    return OutputRecord.open(
        out, f"epspp prepare {dataset}", "--out", legacy=lambda folder: lists_classes(folder, classes)
    )


def _check_values(mask: np.ndarray, num_classes: int, path: Path) -> None:
    values = np.unique(mask)
    bad = values[(values >= num_classes) & (values != IGNORE)]
    if bad.size:
        raise DatasetError(f"mask {path} has values {bad.tolist()} outside 0..{num_classes - 1} (255 = ignore)")


def _read_png_mask(path: Path) -> np.ndarray:
    try:
        image = Image.open(path)
        image.load()
    except Exception as error:  # PIL raises several types for corrupt files
        raise DatasetError(f"cannot read mask {path}: {error}") from error
    if image.mode not in ("P", "L"):
        raise DatasetError(f"mask {path} has mode {image.mode}: expected a palette or grey PNG of class ids")
    return np.asarray(image, dtype=np.uint8)


def read_sbd_mat(path: str | Path) -> np.ndarray:
    """Class-index mask (H, W) uint8 from an SBD ``cls/<id>.mat`` file (struct ``GTcls.Segmentation``)."""
    try:
        gt = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True)["GTcls"]
        return np.asarray(gt.Segmentation, dtype=np.uint8)
    except (KeyError, AttributeError) as error:
        raise DatasetError(f"{path} has no GTcls.Segmentation field: is it an SBD cls/*.mat file?") from error
    except (OSError, ValueError, scipy.io.matlab.MatReadError) as error:  # MatReadError: a truncated file
        raise DatasetError(f"cannot read SBD file {path}: {error}") from error


def _index(folder: Path, suffix: str, what: str) -> dict[str, Path]:
    """Files ``folder/*<suffix>`` and ``folder/*/*<suffix>`` by stem (EPS ships per-split subfolders)."""
    found: dict[str, Path] = {}
    for directory in [folder] + sorted(p for p in folder.iterdir() if p.is_dir()):
        for entry in os.scandir(directory):
            if entry.name.endswith(suffix) and not entry.name.startswith("."):
                stem = entry.name[: -len(suffix)]
                if stem in found:
                    raise DatasetError(f"{what} {stem} found twice: {found[stem]} and {entry.path}")
                found[stem] = Path(entry.path)
    return found


# ---------------------------------------------------------------- PASCAL VOC 2012 + SBD
def prepare_voc(
    voc_root: str | Path, sbd_root: str | Path, out: str | Path, saliency_dir: str | Path | None = None
) -> dict:
    """Build PASCAL VOC 2012 + SBD in the VOC layout at ``out``.

    Writes ``OUT/SegmentationClassAug/<id>.png`` (palette PNGs: the VOC ``SegmentationClass`` PNG
    where the id has one, boundaries kept as 255, else the SBD ``cls/<id>.mat`` mask),
    ``OUT/JPEGImages`` (one symbolic link to the VOC ``JPEGImages`` folder), the splits
    ``train_aug`` = (SBD train + SBD val + VOC train) - VOC val (10,582 ids on the full data),
    ``train`` and ``val`` (copied from VOC), ``classes.json``, and ``OUT/saliency`` (a link to
    ``saliency_dir`` when given). Masks already present are skipped, so a rerun resumes.

    Args:
        voc_root: ``VOCdevkit/VOC2012`` (``JPEGImages/``, ``SegmentationClass/``,
            ``ImageSets/Segmentation/{train,val}.txt``).
        sbd_root: SBD's ``benchmark_RELEASE/dataset`` (``cls/<id>.mat``, ``train.txt``, ``val.txt``).
        out: dataset root to create or complete.
        saliency_dir: folder of ``<id>.png`` saliency maps (e.g. EPS's PFAN maps), linked as ``OUT/saliency``.

    Returns:
        Counts: split sizes and masks taken from VOC, from SBD, and skipped (already there).
    """
    voc_root, sbd_root, out = Path(voc_root), Path(sbd_root), Path(out)
    _require(voc_root, "VOC 2012 root (VOCdevkit/VOC2012)")
    _require(sbd_root, "SBD root (benchmark_RELEASE/dataset)")
    images = _require(voc_root / "JPEGImages", "VOC image folder")
    voc_masks = _require(voc_root / "SegmentationClass", "VOC mask folder")
    sbd_masks = _require(sbd_root / "cls", "SBD mask folder")
    saliency = _require(Path(saliency_dir), "saliency folder") if saliency_dir is not None else None  # before writing
    voc_train = _read_ids(voc_root / SPLITS / "train.txt", "VOC split file")
    voc_val = _read_ids(voc_root / SPLITS / "val.txt", "VOC split file")
    sbd_ids = _read_ids(sbd_root / "train.txt", "SBD split file") + _read_ids(sbd_root / "val.txt", "SBD split file")
    train_aug = sorted((set(sbd_ids) | set(voc_train)) - set(voc_val))
    wanted = sorted(set(train_aug) | set(voc_train) | set(voc_val))
    available = {name[:-4] for name in os.listdir(images) if name.endswith(".jpg")}
    missing = [i for i in wanted if i not in available]
    if missing:
        raise DatasetError(f"{len(missing)} listed images missing from {images}, e.g. {missing[:3]}")

    inputs = {voc_root: "the VOC root", sbd_root: "the SBD root", saliency_dir: "the saliency folder"}
    record = _output_record(out, inputs, "voc", VOC_CLASSES)
    record.claim(
        [
            out / "JPEGImages",
            *(out / "SegmentationClassAug" / f"{i}.png" for i in wanted),
            *(out / SPLITS / f"{name}.txt" for name in ("train_aug", "train", "val")),
            out / CLASSES_FILE,
            *([out / "saliency"] if saliency_dir else []),
        ]
    )
    for sub in ("SegmentationClassAug", SPLITS):
        (out / sub).mkdir(parents=True, exist_ok=True)
    _link(images, out / "JPEGImages")
    counts: dict[str, Any] = {
        "train_aug": len(train_aug),
        "train": len(voc_train),
        "val": len(voc_val),
        "masks_from_voc": 0,
        "masks_from_sbd": 0,
        "masks_skipped": 0,
    }
    palette = voc_palette()
    for image_id in wanted:
        target = out / "SegmentationClassAug" / f"{image_id}.png"
        if target.is_file():
            counts["masks_skipped"] += 1
            continue
        png, mat = voc_masks / f"{image_id}.png", sbd_masks / f"{image_id}.mat"
        if png.is_file():  # VOC's own mask wins (it keeps the 255 object boundaries)
            source, mask = png, _read_png_mask(png)
            counts["masks_from_voc"] += 1
        elif mat.is_file():
            source, mask = mat, read_sbd_mat(mat)
            counts["masks_from_sbd"] += 1
        else:
            raise DatasetError(f"no mask for {image_id}: neither {png} nor {mat} exists")
        _check_values(mask, len(VOC_CLASSES), source)
        with Image.open(images / f"{image_id}.jpg") as image:
            if image.size != (mask.shape[1], mask.shape[0]):
                raise DatasetError(
                    f"mask {source} is {mask.shape[1]}x{mask.shape[0]}, image is {image.size[0]}x{image.size[1]}"
                )
        write_mask_png(target, mask, palette)

    _write_split(out, "train_aug", train_aug)
    _write_split(out, "train", voc_train)
    _write_split(out, "val", voc_val)
    write_classes(out, VOC_CLASSES)
    counts["saliency"] = _saliency_link(saliency, out)
    return counts


def _saliency_link(saliency_dir: Path | None, out: Path) -> str | None:
    """Link an existing saliency folder as ``OUT/saliency``; without one, say where the maps go."""
    if saliency_dir is None:
        if not (out / "saliency").exists():
            print(
                f"note: no saliency maps given; put 8-bit grey maps as {out / 'saliency'}/<id>.png "
                f"(EPS uses PFAN maps trained on DUTS) or rerun with --saliency-dir DIR"
            )
        return None
    _link(saliency_dir, out / "saliency")
    return str(saliency_dir.resolve())


# ---------------------------------------------------------------- MS COCO 2014
#: the split stage 1 validates on (configs/coco/localization_*.yaml): 1,000 val images drawn with seed 0,
#: not the 40,137 of val at full resolution every 2,000 steps (as much compute as the training itself)
COCO_VAL_SUBSET = "val_1000"


def coco_val_subset(val: list[str], size: int = 1000, seed: int = 0) -> list[str]:
    """A fixed sample of ``size`` val ids (all when fewer), sorted; the same for the same ids in any order."""
    ids = sorted(val)
    chosen = np.random.default_rng(seed).choice(len(ids), min(size, len(ids)), replace=False)
    return sorted(ids[i] for i in chosen)


def prepare_coco(
    image_dirs: list[str | Path],
    mask_dir: str | Path,
    out: str | Path,
    saliency_dir: str | Path | None = None,
    check: int = 50,
) -> dict:
    """Build MS COCO 2014 (as EPS distributes it for WSSS) in the VOC layout at ``out``.

    Expected input, as released with EPS (github.com/halbielee/EPS, README "MS-COCO 2014"):
    the COCO 2014 images ``train2014/COCO_train2014_<12 digits>.jpg`` and
    ``val2014/COCO_val2014_<12 digits>.jpg``; the segmentation masks, one PNG ``<id>.png`` per image
    with class indices 0 (background), 1..80 (COCO_CLASSES order) and 255 (ignore), either flat in
    ``mask_dir`` or in per-split subfolders (EPS: ``SegmentationClass/{train2014,val2014}/``); and
    PFAN saliency maps ``<id>.png``, flat or in per-split subfolders likewise.

    Everything is linked per file (``OUT/JPEGImages/<id>.jpg``, ``OUT/SegmentationClassAug/<id>.png``,
    ``OUT/saliency/<id>.png``); ``train.txt`` / ``val.txt`` list the ids holding ``train2014`` /
    ``val2014`` that have a mask (labels are derived from the masks), ``val_1000.txt`` a fixed sample of
    val (``coco_val_subset``) that stage 1 validates on. The first ``check`` masks are
    verified (values, size equal to the image's).

    Args:
        image_dirs: folders of ``<id>.jpg`` (e.g. ``train2014`` and ``val2014``).
        mask_dir: folder of the ``<id>.png`` masks (optionally in subfolders).
        out: dataset root to create or complete.
        saliency_dir: folder of the ``<id>.png`` saliency maps (optionally in subfolders).
        check: how many masks to verify.

    Returns:
        Counts (images, train, val, unassigned, checked) and the ids missing a mask or a saliency map.
    """
    out = Path(out)
    images: dict[str, Path] = {}
    for folder in image_dirs:
        for image_id, path in _index(_require(Path(folder), "image folder"), ".jpg", "image").items():
            if image_id in images:
                raise DatasetError(f"image {image_id} found twice: {images[image_id]} and {path}")
            images[image_id] = path
    if not images:
        raise DatasetError(f"no .jpg images in {[str(d) for d in image_dirs]}")
    masks = _index(_require(Path(mask_dir), "mask folder"), ".png", "mask")
    saliency: dict[str, Path] = {}
    if saliency_dir:
        saliency = _index(_require(Path(saliency_dir), "saliency folder"), ".png", "saliency map")
    ids = sorted(images)
    with_mask = [i for i in ids if i in masks]
    for image_id in with_mask[: max(check, 0)]:
        mask = _read_png_mask(masks[image_id])
        _check_values(mask, len(COCO_CLASSES), masks[image_id])
        with Image.open(images[image_id]) as image:
            if image.size != (mask.shape[1], mask.shape[0]):
                raise DatasetError(
                    f"mask {masks[image_id]} is {mask.shape[1]}x{mask.shape[0]}, image "
                    f"{images[image_id]} is {image.size[0]}x{image.size[1]}"
                )
    train = [i for i in with_mask if "train2014" in i]
    val = [i for i in with_mask if "val2014" in i]
    if not train and not val:
        raise DatasetError(
            "no image id holds 'train2014' or 'val2014': expected COCO 2014 file names "
            "such as COCO_train2014_000000000009.jpg"
        )

    links = [("JPEGImages", ".jpg", images), ("SegmentationClassAug", ".png", masks)]
    if saliency_dir:
        links.append(("saliency", ".png", saliency))
    splits = [
        (name, split)
        for name, split in (("train", train), ("val", val), (COCO_VAL_SUBSET, coco_val_subset(val)))
        if split
    ]
    inputs: dict[str | Path | None, str] = {folder: "the image folder" for folder in image_dirs}
    record = _output_record(
        out, inputs | {mask_dir: "the mask folder", saliency_dir: "the saliency folder"}, "coco", COCO_CLASSES
    )
    record.claim(
        [
            *(out / sub / f"{i}{suffix}" for sub, suffix, files in links for i in ids if i in files),
            *(out / SPLITS / f"{name}.txt" for name, _ in splits),
            out / CLASSES_FILE,
        ]
    )
    for sub, suffix, files in links:
        (out / sub).mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            link = out / sub / f"{image_id}{suffix}"
            if image_id in files and not os.path.lexists(link):
                _link(files[image_id], link)
    (out / SPLITS).mkdir(parents=True, exist_ok=True)
    for name, split in splits:
        _write_split(out, name, split)
    write_classes(out, COCO_CLASSES)
    if not saliency_dir:
        _saliency_link(None, out)
    return {
        "images": len(ids),
        "train": len(train),
        "val": len(val),
        "unassigned": len(with_mask) - len(train) - len(val),
        "checked": min(max(check, 0), len(with_mask)),
        "missing_mask": [i for i in ids if i not in masks],
        "missing_saliency": [i for i in ids if i not in saliency] if saliency_dir else [],
    }
