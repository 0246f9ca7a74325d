"""The VOC-layout dataset: images, saliency maps, masks and image-level labels of one split.

Layout (see docs/architecture.md)::

    ROOT/JPEGImages/<id>.jpg (or .png, .jpeg, ...)  ROOT/SegmentationClassAug/<id>.png  ROOT/saliency/<id>.png
    ROOT/ImageSets/Segmentation/<split>.txt  ROOT/cls_labels.json or cls_labels.npy (optional)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from epspp.constants import ERRORS_DIR, IGNORE_INDEX
from epspp.data.io import (
    IMAGE_EXTENSIONS,
    DatasetError,
    check_id,
    image_files,
    read_image,
    read_mask,
    read_mask_pixels,
    read_saliency,
    read_split,
)
from epspp.data.labels import image_labels
from epspp.data.transforms import JointTransform, eval_transform

Mode = Literal["localization", "segmentation", "predict"]


class VOCLayoutDataset(Dataset):
    """One split of a dataset in the VOC layout.

    Every sample is a dict with ``id`` (str), ``image`` (3, H, W) normalized float, ``mask`` (H, W)
    int64 (255 where unknown; none with ``with_masks=False``), ``size`` (2,) original (H, W); plus, by mode:

    - ``localization``: ``saliency`` (1, H, W) in [0, 1] and ``label`` (C,) multi-hot (with
      ``with_saliency_errors`` also ``saliency_error`` (H, W) uint8, the flags of the saliency's injected errors);
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
        require_masks: segmentation mode: every id needs its mask (training); False for evaluation, where ids
            without ground truth are served with an all-ignore mask (scored on the ids that have one).
        with_labels: predict mode: read the image-level labels (pseudo-masks need them; segmentation
            predictions of an unlabelled split such as VOC test do not).
        with_saliency: localization mode: read the saliency maps (False: a classification corpus without
            them, such as stage 0's; the samples then hold no ``saliency``).
        with_masks: read the ground-truth masks (False: stage-1 training, whose loss never sees them; the
            samples then hold no ``mask``, and the pre-flight skips the mask files).
        with_saliency_errors: localization mode with saliency: also read ``<saliency_dir>/errors/<id>.png``, the
            uint8 flags of the errors the synthetic generator injected in the saliency (``data.saliency_errors``).
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
        require_masks: bool = True,
        with_labels: bool = True,
        with_saliency: bool = True,
        with_masks: bool = True,
        with_saliency_errors: bool = False,
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
        self.require_masks = require_masks
        self.reads_saliency = mode == "localization" and with_saliency
        self.reads_errors = self.reads_saliency and with_saliency_errors
        self.with_masks = with_masks
        self.ids = [check_id(i, "ids argument") for i in ids] if ids is not None else read_split(self.root, split)
        self.image_dir = self.root / "JPEGImages"
        self._images = image_files(self.image_dir)
        self._check_files()
        needs_labels = mode == "localization" or (mode == "predict" and with_labels)
        self.labels = image_labels(self.root, self.ids, num_classes, self.mask_dir) if needs_labels else {}

    def image_path(self, image_id: str) -> Path:
        """``ROOT/JPEGImages/<id>`` with the extension found there (``.jpg`` when there is none)."""
        return self._images.get(image_id) or self.image_dir / f"{image_id}.jpg"

    def target_path(self, image_id: str) -> Path:
        """The mask this sample trains on: a pseudo-mask, or ground truth for labelled ids."""
        if self.mode == "segmentation" and self.pseudo_mask_dir is not None:
            if self.labeled_ids is None or image_id not in self.labeled_ids:
                return self.pseudo_mask_dir / f"{image_id}.png"
        return self.mask_dir / f"{image_id}.png"

    def error_path(self, image_id: str) -> Path:
        """``<saliency_dir>/errors/<id>.png``: the flags of the errors injected in the image's saliency map."""
        return self.saliency_dir / ERRORS_DIR / f"{image_id}.png"

    def files(self) -> list[tuple[str, str | None, str | None, int]]:
        """(image, saliency or None, mask or None, classes with background) of every sample, for the pre-flight."""
        files = []
        for image_id in self.ids:
            saliency = str(self.saliency_dir / f"{image_id}.png") if self.reads_saliency else None
            mask = self.target_path(image_id) if self.with_masks else None
            files.append(
                (
                    str(self.image_path(image_id)),
                    saliency,
                    str(mask) if mask is not None and mask.is_file() else None,
                    self.num_classes + 1,
                )
            )
        return files

    def _check_files(self) -> None:
        needed: list[Callable[[str], Path]] = [self.image_path]
        if self.reads_saliency:
            needed.append(lambda i: self.saliency_dir / f"{i}.png")
        if self.mode == "segmentation" and self.require_masks:
            needed.append(self.target_path)
        for path_of in needed:
            missing = [path_of(i) for i in self.ids if not path_of(i).is_file()]
            if missing:
                raise DatasetError(
                    f"{len(missing)} file(s) listed in {self.split_file} are missing, e.g. "
                    f"{[str(p) for p in missing[:3]]}"
                )
        missing = (
            [self.error_path(i) for i in self.ids if not self.error_path(i).is_file()] if self.reads_errors else []
        )
        if missing:
            raise DatasetError(
                f"saliency error file {missing[0]} not found ({len(missing)} of {len(self.ids)} ids of "
                f"{self.split_file}): --data.saliency_errors true reads <saliency_dir>/errors/<id>.png, which the "
                "synthetic generator writes; regenerate the data or set --data.saliency_errors false"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        image = read_image(self.image_path(image_id), self.split_file)
        size = image.shape[:2]
        mask_path = self.target_path(image_id)
        has_mask = self.with_masks and mask_path.is_file()
        mask: np.ndarray | None = None
        if has_mask:
            mask = read_mask(mask_path, self.num_classes + 1, self.split_file)
            self._check_size(mask.shape, size, mask_path, image_id)
        elif self.with_masks:
            mask = np.full(size, IGNORE_INDEX, np.uint8)
        saliency = None
        if self.reads_saliency:
            sal_path = self.saliency_dir / f"{image_id}.png"
            saliency = read_saliency(sal_path, self.split_file)
            self._check_size(saliency.shape, size, sal_path, image_id)
        errors = None
        if self.reads_errors:
            errors = read_mask_pixels(self.error_path(image_id), self.split_file)
            self._check_size(errors.shape, size, self.error_path(image_id), image_id)
        sample: dict[str, Any] = self.transform(image, mask, saliency, errors)
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


class ImageFolderDataset(Dataset):
    """Every image of a plain folder (no split file, labels or masks), for ``epspp predict`` of a segmentation
    network on new images.  Samples hold ``id`` (the file name without extension), ``image``, ``size``,
    ``mask`` (all 255), ``has_mask`` (False) and ``label`` (zeros; unused by the segmentation network).

    Args:
        folder: the images (any of ``epspp.data.io.IMAGE_EXTENSIONS``).
        num_classes: object classes C of the network.
        transform: joint transform; defaults to the evaluation pipeline at full resolution.
    """

    def __init__(self, folder: str | Path, num_classes: int, transform: JointTransform | None = None) -> None:
        self.image_dir = Path(folder)
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder {self.image_dir} not found (--data.predict_image_dir)")
        self._images = image_files(self.image_dir)
        if not self._images:
            raise DatasetError(f"no image in {self.image_dir} (--data.predict_image_dir)")
        note_unread_entries(self.image_dir, self._images)
        self.ids = sorted(check_id(i, f"image in {self.image_dir}") for i in self._images)
        self.all_ids = list(self.ids)  # ``ids`` shrinks to those still to predict when a run resumes
        self.num_classes = num_classes
        self.transform = transform or eval_transform(None)
        self.split, self.split_file = "folder", str(self.image_dir)
        self.labels: dict[str, np.ndarray] = {}

    def image_path(self, image_id: str) -> Path:
        """The image file of ``image_id``."""
        return self._images[image_id]

    def files(self) -> list[tuple[str, str | None, str | None, int]]:
        """(image, None, None, classes with background) of every sample, for the pre-flight."""
        return [(str(self.image_path(i)), None, None, self.num_classes + 1) for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        image = read_image(self.image_path(image_id), self.split_file)
        size = image.shape[:2]
        sample: dict[str, Any] = self.transform(image, np.full(size, IGNORE_INDEX, np.uint8), None)
        sample |= {
            "id": image_id,
            "size": torch.tensor(size),
            "has_mask": torch.tensor(False),
            "label": torch.zeros(self.num_classes),
        }
        return sample


def note_unread_entries(folder: Path, images: dict[str, Path]) -> None:
    """Say which entries of a plain image folder are not read: its subfolders, and files that are not images."""
    read = {path.name for path in images.values()}
    entries = [entry for entry in os.scandir(folder) if not entry.name.startswith(".") and entry.name not in read]
    folders = sorted(entry.name for entry in entries if entry.is_dir())
    files = sorted(entry.name for entry in entries if not entry.is_dir())
    skipped = ([f"{len(folders)} subfolder(s), e.g. {folders[0]}/ (their images are not read)"] if folders else []) + (
        [f"{len(files)} file(s) that are not images ({' '.join(IMAGE_EXTENSIONS)}), e.g. {files[0]}"] if files else []
    )
    if skipped:
        print(f"[epspp] note: {folder} (--data.predict_image_dir): skipped {'; '.join(skipped)}", file=sys.stderr)
