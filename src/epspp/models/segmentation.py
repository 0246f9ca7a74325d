"""Stage 3: DeepLab trained on pseudo-masks (WSSS) or on ground truth + pseudo-masks (SSSS)."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from epspp.metrics import IGNORE_INDEX, SegmentationMetrics, iou_table
from epspp.models.checkpoint import check_num_classes
from epspp.models.deeplab import DeepLab
from epspp.models.optim import OptimizerName, build_optimizer, poly_schedule


class SegmentationModule(pl.LightningModule):
    """DeepLab with cross-entropy (ignore 255); labelled and pseudo-labelled pixels weighted apart.

    Args:
        num_classes: object classes C (linked from the datamodule); the network predicts C+1.
        class_names: names with background first (linked from the datamodule).
        architecture: ``deeplabv2`` (the papers) or ``deeplabv3plus``.
        backbone: timm encoder (the papers: ``resnet101``).
        backbone_kwargs: extra ``timm.create_model`` arguments.
        pretrained: timm's pretrained weights.
        pretrained_path: local weights file for the encoder.
        output_stride: 8 (papers) or 16.
        pseudo_weight: weight of the loss on pseudo-labelled images (SSSS); labelled images weigh 1.
        optimizer: ``sgd`` (papers), ``adam`` or ``adamw``.
        lr: encoder learning rate; the head gets ``head_lr_mult`` times it.
        head_lr_mult: learning-rate multiplier of the head.
        weight_decay: weight decay.
        momentum: SGD momentum.
        poly_power: polynomial decay power.
        tta_scales: test-time scales for validation, test and prediction (``[1.0]`` = none).
        tta_flip: add flipped inputs at test time.
    """

    #: arguments that ``epspp validate|test|predict --ckpt_path`` take from the config, not the checkpoint
    inference_options = ("tta_scales", "tta_flip")

    def __init__(
        self,
        num_classes: int = 20,
        class_names: list[str] | None = None,
        architecture: Literal["deeplabv2", "deeplabv3plus"] = "deeplabv2",
        backbone: str = "resnet101",
        backbone_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        output_stride: int = 8,
        pseudo_weight: float = 1.0,
        optimizer: OptimizerName = "sgd",
        lr: float = 2.5e-4,
        head_lr_mult: float = 10.0,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        poly_power: float = 0.9,
        tta_scales: tuple[float, ...] = (1.0,),
        tta_flip: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.num_classes = num_classes
        self.class_names = class_names or ["background"] + [f"class_{i}" for i in range(1, num_classes + 1)]
        self.net = DeepLab(num_classes + 1, architecture, backbone, output_stride, pretrained, pretrained_path,
                           backbone_kwargs)
        self.val_metrics = SegmentationMetrics(num_classes + 1)
        self.test_metrics = SegmentationMetrics(num_classes + 1)
        self.last_iou: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> logits (B, C+1, H, W)."""
        return self.net(images)

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax scores averaged over ``tta_scales`` (and flips), at the input resolution."""
        hp, size = self.hparams, images.shape[-2:]
        total = 0
        for scale in hp.tta_scales:
            scaled = images if scale == 1.0 else F.interpolate(images, scale_factor=scale, mode="bilinear")
            batch = torch.cat([scaled, scaled.flip(-1)]) if hp.tta_flip else scaled
            probs = F.interpolate(self(batch).float(), size, mode="bilinear", align_corners=False).softmax(dim=1)
            total = total + (probs[: len(images)] + probs[len(images):].flip(-1) if hp.tta_flip else probs)
        return total / (len(hp.tta_scales) * (2 if hp.tta_flip else 1))

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"]).float()
        pixel_loss = F.cross_entropy(logits, batch["mask"], ignore_index=IGNORE_INDEX, reduction="none")
        valid = (batch["mask"] != IGNORE_INDEX).float()
        labeled = batch["is_labeled"].bool()
        logs: dict[str, torch.Tensor] = {}
        loss = logits.new_zeros(())
        for name, selected, weight in (("gt", labeled, 1.0), ("pseudo", ~labeled, self.hparams.pseudo_weight)):
            if selected.any():
                term = pixel_loss[selected].sum() / valid[selected].sum().clamp_min(1.0)
                logs[f"train/loss_{name}"] = term
                loss = loss + weight * term
        logs["train/loss"] = loss
        logs["train/lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log_dict(logs, prog_bar=True, sync_dist=True, batch_size=len(logits))
        return loss

    # --------------------------------------------------------------- evaluation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_metrics.update(self.predict_logits(batch["image"]).argmax(dim=1), batch["mask"])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_metrics.update(self.predict_logits(batch["image"]).argmax(dim=1), batch["mask"])

    def on_validation_epoch_end(self) -> None:
        self._report(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._report(self.test_metrics, "test")

    def _report(self, metric: SegmentationMetrics, stage: str) -> None:
        scores = metric.compute()
        metric.reset()
        self.last_iou = scores["iou"]
        self.log_dict({f"{stage}/mIoU": scores["miou"], f"{stage}/pixel_accuracy": scores["pixel_accuracy"]})
        # the per-class table, logged too (classes absent from ground truth and predictions have no IoU)
        self.log_dict({f"{stage}/IoU/{name}": value
                       for name, value in zip(self.class_names, scores["iou"], strict=True) if not torch.isnan(value)})
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.print(f"\n{stage} segmentation IoU (step {self.global_step}):\n"
                       + iou_table(scores["iou"], self.class_names))

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Segmentation masks, in the PseudoMaskWriter's format."""
        scores = self.predict_logits(batch["image"])
        return {"id": batch["id"], "mask": scores.argmax(dim=1), "scores": scores, "label": batch["label"],
                "target": batch["mask"], "has_mask": batch["has_mask"]}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        check_num_classes(checkpoint, self.num_classes)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = build_optimizer(self.net.encoder, self.net.head, hp.optimizer, hp.lr, hp.head_lr_mult,
                                    hp.weight_decay, hp.momentum)
        return {"optimizer": optimizer,
                "lr_scheduler": poly_schedule(optimizer, self.trainer.estimated_stepping_batches, hp.poly_power)}
