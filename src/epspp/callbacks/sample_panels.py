"""Logs sample panels and per-class IoU tables to Weights & Biases (no-op for other loggers)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from epspp.panels import Pen, legend_band, legend_of, stack
from epspp.visualize import colorize, denormalize, grid, heatmap, overlay


class SamplePanelLogger(pl.Callback):
    """Every ``every_n_steps`` training steps, log panels of the first ``num_samples`` images of the batch.

    Localization: image | saliency | localization map | IRD's inconsistent region | pseudo-mask |
    ground truth, the last only for batches that carry a ``mask`` (stage-1 training batches carry none:
    the augmented crop's ground truth is not read; validation batches do).  Segmentation: image |
    prediction overlay | target.  Below the panels, a legend of the classes in their masks.  At the end of every
    validation the per-class IoU of the module (``last_iou``) is logged as a table.

    Args:
        every_n_steps: logging period in optimizer steps.
        num_samples: images per panel.
    """

    def __init__(self, every_n_steps: int = 100, num_samples: int = 4) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples

    @staticmethod
    def _wandb(trainer: pl.Trainer) -> WandbLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        """Log the panels of the first samples of a batch every ``every_n_steps`` steps."""
        logger = self._wandb(trainer)
        step = trainer.global_step
        if logger is None or not trainer.is_global_zero or (step - 1) % self.every_n_steps:
            return
        was_training = pl_module.training
        pl_module.eval()
        rows, masks = self.panels_and_masks(pl_module, {k: v[: self.num_samples] for k, v in batch.items()})
        pl_module.train(was_training)
        picture = with_legend(rows, masks, cast(Any, pl_module).class_names)
        caption = self.caption(pl_module, "mask" in batch)
        logger.log_image("samples/train", [picture], step=step, caption=[caption])

    @staticmethod
    def caption(pl_module: pl.LightningModule, with_mask: bool = True) -> str:
        """The caption of the panels' columns (``with_mask``: the batch carries the ground truth)."""
        if hasattr(pl_module, "explain"):
            columns = "image | saliency | localization | inconsistent (IRD) | pseudo-mask"
            return f"{columns} | ground truth" if with_mask else columns
        return "image | prediction | target"

    @staticmethod
    def panels(pl_module: pl.LightningModule, batch: dict) -> list[list]:
        """Rows of uint8 panels for a batch (see the class docstring)."""
        return SamplePanelLogger.panels_and_masks(pl_module, batch)[0]

    @staticmethod
    @torch.no_grad()
    def panels_and_masks(pl_module: pl.LightningModule, batch: dict) -> tuple[list[list], list[torch.Tensor]]:
        """Rows of uint8 panels for a batch, and the class masks drawn in them (for the legend)."""
        rows, masks = [], []
        if hasattr(pl_module, "explain"):
            views = cast(Any, pl_module).explain(batch["image"], batch["saliency"], batch["label"])
            for i in range(len(batch["image"])):
                image = denormalize(batch["image"][i])
                row = [
                    image,
                    heatmap(batch["saliency"][i, 0]),
                    overlay(image, heatmap(views["localization"][i]), 0.6),
                    overlay(image, heatmap(views["inconsistent"][i].float()), 0.6),
                    colorize(views["pseudo_mask"][i]),
                ]
                masks.append(views["pseudo_mask"][i])
                if "mask" in batch:
                    row.append(colorize(batch["mask"][i]))
                    masks.append(batch["mask"][i])
                rows.append(row)
        else:
            predictions = pl_module(batch["image"]).argmax(dim=1)
            for i in range(len(batch["image"])):
                image = denormalize(batch["image"][i])
                rows.append([image, overlay(image, colorize(predictions[i])), colorize(batch["mask"][i])])
                masks += [predictions[i], batch["mask"][i]]
        return rows, masks

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the per-class IoU of the validation as a W&B table."""
        logger = self._wandb(trainer)
        iou = getattr(pl_module, "last_iou", None)
        if logger is None or iou is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        names, values = cast(Any, pl_module).class_names, iou.tolist()
        data = [[name, None if v != v else round(100 * v, 2)] for name, v in zip(names, values, strict=True)]
        logger.log_table("val/per_class_iou", columns=["class", "IoU"], data=data, step=trainer.global_step)


def with_legend(rows: list[list], masks: list[torch.Tensor], names: list[str]) -> np.ndarray:
    """``grid(rows)`` with a legend band below: a swatch and name per class in ``masks`` (13-px text)."""
    picture = grid(rows)
    arrays = [m.detach().cpu().numpy().astype(np.uint8) for m in masks]
    legend = legend_of(arrays, names) or {"no object class": (255, 255, 255)}
    return stack([picture, legend_band(legend, picture.shape[1], Pen(13))])
