"""Validation scores every image at its full resolution, also when a batch mixes image sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from fixtures.helpers import TINY, TINY_KWARGS, gt_mask, write_voc_tree

from epspp.data.datamodule import EPSDataModule
from epspp.data.io import read_image
from epspp.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from epspp.ops import maps_to_mask, normalize_maps, object_maps
from epspp.tasks import LocalizationModule

SIZES = {"wide": (70, 50), "tall": (64, 90), "square": (48, 48)}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_voc_tree(
        tmp_path_factory.mktemp("fullres") / "data", SIZES, {"train": list(SIZES), "val": ["wide", "tall"]}
    )


def _validate(root: Path, model: LocalizationModule, batch_size: int) -> LocalizationModule:
    data = EPSDataModule(str(root), val_split="val", val_batch_size=batch_size, num_workers=0)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.validate(model, datamodule=data, verbose=False)
    return model


def _reference_confusion(root: Path, model: LocalizationModule) -> np.ndarray:
    """Each val image alone, at full resolution: maps upsampled to it, scored against its full-size mask."""
    confusion = np.zeros((21, 21), np.int64)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for image_id in ("wide", "tall"):
        picture = read_image(root / "JPEGImages" / f"{image_id}.jpg")
        image = ((torch.from_numpy(picture.copy()).permute(2, 0, 1).float() / 255 - mean) / std)[None]
        target = gt_mask(root, image_id).astype(np.int64)
        label = torch.zeros(1, 20)
        label[0, np.unique(target[(target > 0) & (target < 255)]) - 1] = 1
        with torch.no_grad():
            maps = F.interpolate(object_maps(model(image), model.map_kind), image.shape[-2:], mode="bilinear")
            pred = maps_to_mask(normalize_maps(maps, label), model.hparams.bg_threshold)[0].numpy()
        keep = target != 255
        np.add.at(confusion, (target[keep], pred[keep]), 1)
    return confusion


def test_validation_matches_each_image_scored_alone_at_full_resolution(root: Path, one_thread) -> None:
    torch.manual_seed(0)
    model = LocalizationModule(
        num_classes=20, backbone=TINY, backbone_kwargs=TINY_KWARGS, output_stride=8, saliency_loss="eps"
    ).eval()
    _validate(root, model, batch_size=1)
    reference = _reference_confusion(root, model)
    assert int(reference.sum()) == sum((gt_mask(root, i) != 255).sum() for i in ("wide", "tall"))
    union = reference.sum(0) + reference.sum(1) - np.diag(reference)
    iou = np.where(union > 0, np.diag(reference) / np.maximum(union, 1), np.nan)
    ours = model.last_iou.numpy()
    np.testing.assert_allclose(ours[union > 0], iou[union > 0], atol=1e-6)
    # a batch of both sizes is padded, not resized: the same pixels are scored
    model.val_cam.reset()
    _validate(root, model, batch_size=2)
    assert not np.isnan(model.last_iou.numpy()[union > 0]).any()


def test_padded_batches_count_every_ground_truth_pixel_once(root: Path, one_thread) -> None:
    data = EPSDataModule(str(root), val_split="val", val_batch_size=2, num_workers=0)
    data.setup("validate")
    (batch,) = list(data.val_dataloader())
    assert batch["image"].shape[-2:] == (90, 70)  # the tallest and the widest image, unresized
    valid = int((batch["mask"] != 255).sum())
    assert valid == sum(int((gt_mask(root, i) != 255).sum()) for i in ("wide", "tall"))
