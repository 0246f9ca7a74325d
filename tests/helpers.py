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


# Real photos for the own-data tests: scikit-image's bundled photos (offline), as a new user would bring them.
#: source photo -> (scikit-image function, class names of the photo)
PHOTOS = {
    "cameraman": ("camera", ["person"]),
    "cat": ("chelsea", ["cat"]),
    "cup": ("coffee", ["cup"]),
    "rocket": ("rocket", ["rocket"]),
    "astronaut": ("astronaut", ["person"]),
    "motorcycle": ("stereo_motorcycle", ["motorcycle"]),
}
#: variant -> (top, left, bottom, right) as fractions of the photo, and whether it is mirrored; each crop is
#: non-square, also for the square cameraman and astronaut
PHOTO_VARIANTS = {
    "full": ((0.0, 0.0, 1.0, 1.0), False),
    "flip": ((0.0, 0.05, 0.95, 1.0), True),
    "crop": ((0.05, 0.0, 0.9, 0.8), False),
}
NEW_PHOTO_CROP = (0.1, 0.15, 1.0, 0.95)  # the --predict photos: crops of the same photos not in the training set


def source_photo(name: str) -> np.ndarray:
    """One of ``PHOTOS`` as scikit-image ships it: (H, W, 3) or (H, W) uint8 (the cameraman is grey)."""
    import skimage.data

    function, _ = PHOTOS[name]
    photo = getattr(skimage.data, function)()
    return np.asarray(photo[0] if function == "stereo_motorcycle" else photo, np.uint8)


def _cut(photo: np.ndarray, box: tuple[float, float, float, float], mirror: bool, long_side: int) -> np.ndarray:
    """The ``box`` fraction of ``photo``, mirrored if asked, resized so that its longer side is ``long_side``."""
    height, width = photo.shape[:2]
    top, left, bottom, right = box
    part = photo[round(top * height): round(bottom * height), round(left * width): round(right * width)]
    image = Image.fromarray(part[:, ::-1] if mirror else part)
    scale = long_side / max(image.size)
    return np.asarray(image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                   Image.BILINEAR))


def border_contrast_saliency(image: np.ndarray) -> np.ndarray:
    """A crude saliency map (H, W) uint8: each pixel's colour distance to the image border's mean colour,
    blurred, from the border's median distance (0) to the image's 99th percentile (255)."""
    from scipy.ndimage import gaussian_filter

    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    rgb = rgb.astype(np.float32)
    margin = max(2, round(0.06 * min(rgb.shape[:2])))
    border = np.ones(rgb.shape[:2], bool)
    border[margin:-margin, margin:-margin] = False
    distance = np.linalg.norm(rgb - rgb[border].mean(axis=0), axis=2)
    radius = max(1.0, 0.02 * max(rgb.shape[:2]))
    blurred = gaussian_filter(distance, radius)
    low, high = np.median(blurred[border]), np.percentile(blurred, 99)
    return np.round(255 * np.clip((blurred - low) / max(high - low, 1e-6), 0, 1)).astype(np.uint8)


def _save_photo(folder: Path, image_id: str, image: np.ndarray) -> Path:
    """A grey photo as PNG, a colour one as JPEG (a folder of mixed types, as a user's)."""
    path = folder / f"{image_id}.{'png' if image.ndim == 2 else 'jpg'}"
    Image.fromarray(image).save(path, **({} if image.ndim == 2 else {"quality": 92}))
    return path


def write_photo_set(dest: Path, count: int = 20, long_side: int = 400, num_new: int = 4) -> dict[str, Path]:
    """A folder of real photos with a labels.csv and crude saliency maps, as README "Your own data" expects.

    ``count`` photos: the variants of ``PHOTO_VARIANTS`` of each of ``PHOTOS`` in turn (ids such as ``cat flip``,
    with a space), the last two of them (from 8 photos on) side-by-side composites of two photos with both
    labels (``cat+cup``); ``num_new`` further crops of the photos in ``new_photos/`` (for ``--predict``), no labels
    and no saliency. Every image's longer side is ``long_side`` px (composites: twice that).

    Returns:
        The paths ``images``, ``saliency``, ``labels`` (labels.csv) and ``new_photos`` under ``dest``.
    """
    paths = {"images": dest / "photos", "saliency": dest / "saliency", "labels": dest / "labels.csv",
             "new_photos": dest / "new_photos"}
    for key in ("images", "saliency", "new_photos"):
        paths[key].mkdir(parents=True, exist_ok=True)
    names, variants = list(PHOTOS), list(PHOTO_VARIANTS)
    sources = {name: source_photo(name) for name in names}
    composites = [("cat", "cup"), ("cameraman", "motorcycle")][: 2 if count >= 8 else 0]
    lines = ["id,classes"]
    for index in range(count - len(composites)):
        name, variant = names[index % len(names)], variants[(index // len(names)) % len(variants)]
        box, mirror = PHOTO_VARIANTS[variant]
        image_id = name if variant == "full" else f"{name} {variant}"
        image = _cut(sources[name], box, mirror, long_side)
        _save_photo(paths["images"], image_id, image)
        write_png(paths["saliency"] / f"{image_id}.png", border_contrast_saliency(image))
        lines.append(f"{image_id},{';'.join(PHOTOS[name][1])}")
    for left, right in composites:
        halves = [_cut(sources[n], PHOTO_VARIANTS["full"][0], False, long_side) for n in (left, right)]
        halves = [np.repeat(h[..., None], 3, axis=2) if h.ndim == 2 else h for h in halves]
        height = min(h.shape[0] for h in halves)
        image = np.concatenate([h[:height] for h in halves], axis=1)
        image_id = f"{left}+{right}"
        _save_photo(paths["images"], image_id, image)
        write_png(paths["saliency"] / f"{image_id}.png", border_contrast_saliency(image))
        lines.append(f"{image_id},{';'.join(sorted(set(PHOTOS[left][1] + PHOTOS[right][1])))}")
    for name in names[:num_new]:
        _save_photo(paths["new_photos"], f"new {name}", _cut(sources[name], NEW_PHOTO_CROP, False, long_side))
    paths["labels"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths
