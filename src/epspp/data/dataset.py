"""The VOC-layout dataset: images, saliency maps, masks and image-level labels of one split.

Layout (see docs/architecture.md)::

    ROOT/JPEGImages/<id>.jpg  ROOT/SegmentationClassAug/<id>.png  ROOT/saliency/<id>.png
    ROOT/ImageSets/Segmentation/<split>.txt  ROOT/cls_labels.npy (optional, EPS format)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from epspp.data.io import DatasetError, read_image, read_mask, read_saliency, read_split
from epspp.data.transforms import IGNORE_INDEX, JointTransform, eval_transform

Mode = Literal["localization", "segmentation", "predict"]
LABEL_CACHE = Path(".cache") / "cls_labels_from_masks.npy"


def _load_label_table(path: Path) -> dict[str, np.ndarray]:
    try:
        return dict(np.load(path, allow_pickle=True).item())
    except Exception as error:
        hint = " (a cache epspp made: delete it and it is rebuilt)" if path.parent.name == ".cache" else ""
        raise DatasetError(f"cannot read {path}{hint}: expected a pickled dict id -> multi-hot ({error})") from error


def image_labels(
    root: str | Path, ids: list[str], num_classes: int, mask_dir: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Image-level multi-hot labels (C object classes, float32) for ``ids``.

    Read from ``ROOT/cls_labels.npy`` when it exists (the EPS format); otherwise derived from the
    ground-truth masks (classes 1..C present; 0 and 255 are not labels) and cached in
    ``ROOT/.cache/`` when the root is writable (one cache file per mask folder).
    """
    root = Path(root)
    given = root / "cls_labels.npy"
    if given.is_file():
        table = _load_label_table(given)
        missing = [i for i in ids if i not in table]
        if missing:
            raise DatasetError(f"{given} has no label for {len(missing)} ids, e.g. {missing[:5]}")
        return {i: np.asarray(table[i], np.float32) for i in ids}
    masks = Path(mask_dir) if mask_dir else root / "SegmentationClassAug"
    cache = root / LABEL_CACHE
    if masks.resolve() != (root / "SegmentationClassAug").resolve():  # one cache per mask folder
        digest = hashlib.sha1(str(masks.resolve()).encode()).hexdigest()[:12]
        cache = cache.with_name(f"{cache.stem}_{digest}{cache.suffix}")
    table = _load_label_table(cache) if cache.is_file() else {}
    todo = [i for i in ids if i not in table]
    for image_id in todo:
        path = masks / f"{image_id}.png"
        if not path.is_file():
            raise DatasetError(
                f"image-level labels are derived from the masks, and {path} is missing: add the mask, or give "
                f"the labels of every id in {root / 'cls_labels.npy'} (EPS format: dict id -> float32 multi-hot)"
            )
        mask = read_mask(path, num_classes + 1)
        present = np.unique(mask)
        label = np.zeros(num_classes, np.float32)
        label[[c - 1 for c in present if 0 < c <= num_classes]] = 1.0
        table[image_id] = label
    if todo:
        _save_cache(cache, table)
    return {i: table[i] for i in ids}


def _save_cache(path: Path, table: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, np.array(table, dtype=object), allow_pickle=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only dataset root: labels are recomputed next time


class VOCLayoutDataset(Dataset):
    """One split of a dataset in the VOC layout.

    Every sample is a dict with ``id`` (str), ``image`` (3, H, W) normalized float, ``mask`` (H, W)
    int64 (255 where unknown), ``size`` (2,) original (H, W); plus, by mode:

    - ``localization``: ``saliency`` (1, H, W) in [0, 1] and ``label`` (C,) multi-hot;
    - ``segmentation``: ``is_labeled`` (float 1 for ground truth, 0 for a pseudo-mask);
    - ``predict``: ``label`` (unless ``with_labels`` is False) and ``has_mask`` (bool: ground truth exists).

    Args:
        root: dataset root.
        split: split name (``ImageSets/Segmentation/<split>.txt``).
        num_classes: number of object classes C (background excluded).
        mode: which sample fields to produce.
        transform: joint transform; defaults to the evaluation pipeline at full resolution.
        saliency_dir: saliency folder (default ``ROOT/saliency``).
        mask_dir: ground-truth folder (default ``ROOT/SegmentationClassAug``).
        pseudo_mask_dir: segmentation mode: read masks of ids not in ``labeled_ids`` from here.
        labeled_ids: segmentation mode: ids whose ground truth is used (semi-supervised).
        ids: use these ids instead of reading the split file.
        with_labels: predict mode: read the image-level labels (pseudo-masks need them; segmentation
            predictions of an unlabelled split such as VOC test do not).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int,
        mode: Mode = "localization",
        transform: JointTransform | None = None,
        saliency_dir: str | Path | None = None,
        mask_dir: str | Path | None = None,
        pseudo_mask_dir: str | Path | None = None,
        labeled_ids: set[str] | None = None,
        ids: list[str] | None = None,
        with_labels: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.split_file = str(self.root / "ImageSets" / "Segmentation" / f"{split}.txt")
        self.num_classes = num_classes
        self.mode = mode
        self.transform = transform or eval_transform(None)
        self.saliency_dir = Path(saliency_dir) if saliency_dir else self.root / "saliency"
        self.mask_dir = Path(mask_dir) if mask_dir else self.root / "SegmentationClassAug"
        self.pseudo_mask_dir = Path(pseudo_mask_dir) if pseudo_mask_dir else None
        self.labeled_ids = labeled_ids
        self.ids = list(ids) if ids is not None else read_split(self.root, split)
        self._check_files()
        needs_labels = mode == "localization" or (mode == "predict" and with_labels)
        self.labels = image_labels(self.root, self.ids, num_classes, self.mask_dir) if needs_labels else {}

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def target_path(self, image_id: str) -> Path:
        """The mask this sample trains on: a pseudo-mask, or ground truth for labelled ids."""
        if self.mode == "segmentation" and self.pseudo_mask_dir is not None:
            if self.labeled_ids is None or image_id not in self.labeled_ids:
                return self.pseudo_mask_dir / f"{image_id}.png"
        return self.mask_dir / f"{image_id}.png"

    def _check_files(self) -> None:
        needed = [self.image_path]
        if self.mode == "localization":
            needed.append(lambda i: self.saliency_dir / f"{i}.png")
        if self.mode == "segmentation":
            needed.append(self.target_path)
        for path_of in needed:
            missing = [path_of(i) for i in self.ids if not path_of(i).is_file()]
            if missing:
                raise DatasetError(
                    f"{len(missing)} file(s) listed in {self.split_file} are missing, e.g. "
                    f"{[str(p) for p in missing[:3]]}"
                )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        image = read_image(self.image_path(image_id), self.split_file)
        size = image.shape[:2]
        mask_path = self.target_path(image_id)
        has_mask = mask_path.is_file()
        if has_mask:
            mask = read_mask(mask_path, self.num_classes + 1, self.split_file)
            self._check_size(mask.shape, size, mask_path, image_id)
        else:
            mask = np.full(size, IGNORE_INDEX, np.uint8)
        saliency = None
        if self.mode == "localization":
            sal_path = self.saliency_dir / f"{image_id}.png"
            saliency = read_saliency(sal_path, self.split_file)
            self._check_size(saliency.shape, size, sal_path, image_id)
        sample = self.transform(image, mask, saliency)
        sample["id"] = image_id
        sample["size"] = torch.tensor(size)
        if self.labels:
            sample["label"] = torch.from_numpy(self.labels[image_id])
        if self.mode == "predict":
            sample["has_mask"] = torch.tensor(has_mask)
        if self.mode == "segmentation":
            labeled = self.pseudo_mask_dir is None or (self.labeled_ids is not None and image_id in self.labeled_ids)
            sample["is_labeled"] = torch.tensor(float(labeled))
        return sample

    def _check_size(self, shape: tuple[int, ...], size: tuple[int, ...], path: Path, image_id: str) -> None:
        if tuple(shape) != tuple(size):
            raise DatasetError(
                f"{path} is {shape[1]}x{shape[0]} (WxH) but image {self.image_path(image_id)} is "
                f"{size[1]}x{size[0]}: maps must have the size of their image"
            )
