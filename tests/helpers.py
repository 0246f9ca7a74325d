"""Independent readers of the VOC-layout files, for checking the package against them.

Import with ``from helpers import ...`` (``tests/`` is on ``sys.path`` through its conftest).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import timm
from PIL import Image

SPLITS = "ImageSets/Segmentation"

# the smallest timm CNN available: timm's test model where it exists, else a narrow ResNet-10
TINY = "test_resnet" if "test_resnet" in timm.list_models("test_resnet") else "resnet10t"
TINY_KWARGS = None if TINY == "test_resnet" else {"channels": [16, 32, 64, 128], "stem_width": 8}


def split_ids(root: Path, split: str) -> list[str]:
    """Ids listed in ``ROOT/ImageSets/Segmentation/<split>.txt``."""
    return (Path(root) / SPLITS / f"{split}.txt").read_text().split()


def read_png(path: Path) -> np.ndarray:
    """A PNG as a numpy array of its raw values (palette indices for palette PNGs)."""
    with Image.open(path) as image:
        return np.array(image)


def gt_mask(root: Path, image_id: str) -> np.ndarray:
    """Ground-truth class ids (H, W) uint8 of ``image_id``."""
    return read_png(Path(root) / "SegmentationClassAug" / f"{image_id}.png")


def labels_from_masks(root: Path, ids: list[str], num_classes: int) -> dict[str, np.ndarray]:
    """Multi-hot (C,) labels: the classes 1..C present in each ground-truth mask."""
    labels = {}
    for image_id in ids:
        label = np.zeros(num_classes, np.float32)
        for value in np.unique(gt_mask(root, image_id)):
            if 0 < value <= num_classes:
                label[value - 1] = 1.0
        labels[image_id] = label
    return labels


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha1 of every file under ``root`` (hidden ones included)."""
    root = Path(root)
    return {
        str(path.relative_to(root)): hashlib.sha1(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def write_png(path: Path, array: np.ndarray, mode: str = "L") -> None:
    """Write a uint8 array as a PNG of the given mode (``L`` grey, ``P`` palette, ``RGB``)."""
    Image.fromarray(np.asarray(array, np.uint8), mode=mode).save(path)


def psa_to_mxnet(name: str) -> str | None:
    """The MXNet key of a PSA-named ResNet-38d tensor, written from the .params naming (None: not saved)."""
    if name.endswith("num_batches_tracked"):
        return None
    bn_leaf = {"weight": ("arg", "gamma"), "bias": ("arg", "beta"), "running_mean": ("aux", "moving_mean"),
               "running_var": ("aux", "moving_var")}
    if name == "conv1a.weight":
        return "arg:conv1a_weight"
    module, leaf = name.rsplit(".", 1)
    if module == "bn7":
        prefix, suffix = bn_leaf[leaf]
        return f"{prefix}:bn7_{suffix}"
    block, layer = module.split(".")
    stage, _, index = block[1:].partition("_")
    unit = f"{stage}{'b' + index if index else 'a'}"
    kind, branch = layer.split("_", 1)
    if kind == "conv":
        return f"arg:res{unit}_{branch}_weight"
    prefix, suffix = bn_leaf[leaf]
    return f"{prefix}:bn{unit}_{branch}_{suffix}"


def write_mxnet_params(path: Path, arrays: dict[str, np.ndarray], layout: str = "legacy") -> None:
    """An MXNet NDArray-list file: header 0x112, arrays (``legacy``, ``v1`` or ``v2`` layout), names."""
    import struct

    with open(path, "wb") as out:
        out.write(struct.pack("<QQQ", 0x112, 0, len(arrays)))
        for array in arrays.values():
            if layout == "legacy":
                out.write(struct.pack(f"<I{array.ndim}I", array.ndim, *array.shape))
            else:
                magic = {"v1": 0xF993FAC8, "v2": 0xF993FAC9}[layout]
                out.write(struct.pack("<I", magic))
                if layout == "v2":
                    out.write(struct.pack("<i", 0))  # dense storage
                out.write(struct.pack(f"<I{array.ndim}q", array.ndim, *array.shape))
            flag = {np.dtype(np.float32): 0, np.dtype(np.float16): 2, np.dtype(np.int64): 6}[array.dtype]
            out.write(struct.pack("<iii", 1, 0, flag))  # cpu context, dtype flag
            out.write(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
        out.write(struct.pack("<Q", len(arrays)))
        for name in arrays:
            encoded = name.encode()
            out.write(struct.pack("<Q", len(encoded)) + encoded)


VOC_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
             "tvmonitor")


def write_voc_tree(root: Path, sizes: dict[str, tuple[int, int]], splits: dict[str, list[str]], seed: int = 0) -> Path:
    """A tiny VOC-layout tree: per id (width, height) a JPEG with a bright rectangle of one VOC class,
    its ground-truth mask (with a 255 border), its saliency map; split files; VOC's classes.json."""
    from epspp.data.classes import write_classes

    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "SegmentationClassAug", "saliency", SPLITS):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index, (image_id, (width, height)) in enumerate(sizes.items()):
        cls = 1 + index % 3
        mask = np.zeros((height, width), np.uint8)
        top, left = rng.integers(2, height // 3), rng.integers(2, width // 3)
        mask[top:top + height // 2, left:left + width // 2] = cls
        mask[:1] = 255
        image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        image[mask == cls] = (200 + 20 * (cls == 1), 180, 160 + 30 * (cls == 2))
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        Image.fromarray(mask, mode="L").save(root / "SegmentationClassAug" / f"{image_id}.png")
        Image.fromarray(np.where(mask == cls, 255, 0).astype(np.uint8), mode="L").save(
            root / "saliency" / f"{image_id}.png")
    for split, ids in splits.items():
        (root / SPLITS / f"{split}.txt").write_text("\n".join(ids) + "\n")
    write_classes(root, VOC_NAMES)
    return root


def miou_of_folder(pred_dir: Path, root: Path, ids: list[str], num_classes: int) -> float:
    """mIoU (percent) of ``pred_dir/<id>.png`` against the ground truth, by a plain numpy confusion matrix."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for image_id in ids:
        target = gt_mask(root, image_id).astype(np.int64)
        pred = read_png(Path(pred_dir) / f"{image_id}.png").astype(np.int64)
        keep = target != 255
        np.add.at(confusion, (target[keep], np.clip(pred[keep], 0, num_classes - 1)), 1)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    present = union > 0
    return float(100 * np.mean(np.diag(confusion)[present] / union[present]))
