"""Stage 3: DeepLab trained on pseudo-masks (WSSS) or on ground truth + pseudo-masks (SSSS).

The papers' recipe is kazuto1011/deeplab-pytorch's (``main.py``): DeepLab-v2 ResNet-101 with frozen
BatchNorm, multi-scale training (``MSC``: a loss on the logits at each scale and on their pixel-wise
max), the max over the same scales at test time, and a dense CRF on the test predictions.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.parsing import AttributeDict
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig

from epspp.config_checks import check_segmentation_options
from epspp.constants import IGNORE_INDEX
from epspp.losses import segmentation_loss
from epspp.metrics import SegmentationMetrics, iou_table
from epspp.nets.deeplab import DeepLab
from epspp.nets.fast import use_fast_paths
from epspp.ops.crf import DenseCRF, to_uint8_rgb
from epspp.tasks.checkpoint import check_classes
from epspp.tasks.optim import OptimizerName, build_optimizer, poly_schedule


class SegmentationModule(pl.LightningModule):
    """DeepLab with one cross-entropy over the valid pixels of a batch (``epspp.losses.segmentation_loss``).

    Args:
        num_classes: object classes C (linked from the datamodule); the network predicts C+1.
        class_names: names with background first (linked from the datamodule).
        architecture: ``deeplabv2`` (the papers) or ``deeplabv3plus``.
        backbone: ``deeplab_resnet101`` (the papers' network and deeplab-pytorch's checkpoints) or a timm
            encoder (ImageNet init, e.g. ``resnet101``).
        backbone_kwargs: extra ``timm.create_model`` arguments.
        pretrained: timm's pretrained weights.
        pretrained_path: local weights file (``deeplab_resnet101``: ``deeplabv1_resnet101-coco.pth``).
        output_stride: 8 (papers) or 16.
        freeze_bn: the encoder's BatchNorm fixed at its loaded statistics, without gradient (deeplab-pytorch).
        pseudo_weight: weight of the pixels of pseudo-labelled images (SSSS); labelled pixels weigh 1.
        optimizer: ``sgd`` (papers), ``adam`` or ``adamw``.
        lr: encoder learning rate; the head gets ``head_lr_mult`` times it.
        head_lr_mult: learning-rate multiplier of the head.
        bias_lr_mult: biases train at this multiple of their part's rate (deeplab-pytorch: 2, ASPP biases 20x).
        bias_decay: weight decay on biases too (deeplab-pytorch: False).
        weight_decay: weight decay.
        momentum: SGD momentum.
        poly_power: polynomial decay power.
        msc_scales: multi-scale inputs as deeplab-pytorch's ``MSC`` (``[1.0, 0.75, 0.5]``): in training a loss
            on the logits at each scale and on their pixel-wise max (labels resized by nearest neighbour to
            each), at test time the max; empty = single scale.
        tta_scales: test-time scales for validation, test and prediction (``[1.0]`` = none), averaged softmax.
        tta_flip: add flipped inputs at test time.
        crf: dense CRF (``epspp.ops.dense_crf``, deeplab-pytorch's parameters) on the predictions of
            validation, test and prediction.
        crf_workers: processes that run the CRF over the images of a batch (0: this process).
        channels_last: the network's weights and inputs in channels-last memory format (``epspp.nets.fast``).
        torch_compile: compile the network's forward with ``torch.compile`` (``epspp.nets.fast``).
    """

    hparams: AttributeDict  # the property's type, narrowed: save_hyperparameters() stores an AttributeDict

    #: arguments that ``epspp validate|test|predict --ckpt_path`` take from the config, not the checkpoint
    inference_options = ("tta_scales", "tta_flip", "crf", "crf_workers")
    #: arguments taken from the config too, that do not change the predictions (not in the masks' provenance)
    speed_options = ("channels_last", "torch_compile")

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
        freeze_bn: bool = False,
        pseudo_weight: float = 1.0,
        optimizer: OptimizerName = "sgd",
        lr: float = 2.5e-4,
        head_lr_mult: float = 10.0,
        bias_lr_mult: float = 1.0,
        bias_decay: bool = True,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        poly_power: float = 0.9,
        msc_scales: tuple[float, ...] = (),
        tta_scales: tuple[float, ...] = (1.0,),
        tta_flip: bool = False,
        crf: bool = False,
        crf_workers: int = 0,
        channels_last: bool = False,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_segmentation_options(self.hparams)
        self.num_classes = num_classes
        self.class_names = class_names or ["background"] + [f"class_{i}" for i in range(1, num_classes + 1)]
        self.net = DeepLab(
            num_classes + 1,
            architecture,
            backbone,
            output_stride,
            pretrained,
            pretrained_path,
            backbone_kwargs,
            freeze_bn,
        )
        use_fast_paths(self.net, channels_last, torch_compile)
        self.crf = DenseCRF(crf_workers) if crf else None
        self.val_metrics = SegmentationMetrics(num_classes + 1)
        self.test_metrics = SegmentationMetrics(num_classes + 1)
        self.last_iou: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> logits (B, C+1, H, W); with ``msc_scales`` the pixel-wise max over the scales."""
        if not self.hparams.msc_scales:
            return self.net(images)
        return F.interpolate(self.msc_logits(images)[-1], images.shape[-2:], mode="bilinear", align_corners=False)

    def msc_logits(self, images: torch.Tensor) -> list[torch.Tensor]:
        """deeplab-pytorch's ``MSC``: logits of the image at each of ``msc_scales`` (the network's resolution),
        then their pixel-wise max at the first scale's resolution (the others bilinearly resized to it)."""
        outputs = [
            self.net.logits(
                images
                if scale == 1.0
                else F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
            )
            for scale in self.hparams.msc_scales
        ]
        size = outputs[0].shape[-2:]
        resized = [F.interpolate(o, size, mode="bilinear", align_corners=False) for o in outputs[1:]]
        return outputs + [torch.stack([outputs[0], *resized]).amax(dim=0)]

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax scores averaged over ``tta_scales`` (and flips), at the input resolution."""
        hp, size = self.hparams, images.shape[-2:]
        total: Any = 0  # then the sum of the scales' tensors
        for scale in hp.tta_scales:
            scaled = images if scale == 1.0 else F.interpolate(images, scale_factor=scale, mode="bilinear")
            batch = torch.cat([scaled, scaled.flip(-1)]) if hp.tta_flip else scaled
            probs = F.interpolate(self(batch).float(), size, mode="bilinear", align_corners=False).softmax(dim=1)
            total = total + (probs[: len(images)] + probs[len(images) :].flip(-1) if hp.tta_flip else probs)
        return total / (len(hp.tta_scales) * (2 if hp.tta_flip else 1))

    def predict_probs(self, batch: dict) -> torch.Tensor:
        """``predict_logits``, refined by the dense CRF when ``crf`` (each image cropped to its own size)."""
        probs = self.predict_logits(batch["image"])
        if self.crf is None:
            return probs
        height, width = probs.shape[-2:]
        sizes = [(min(h, height), min(w, width)) for h, w in batch["size"].tolist()]
        images = to_uint8_rgb(batch["image"])
        refined = self.crf(
            [images[i, :h, :w] for i, (h, w) in enumerate(sizes)],
            [probs[i, :, :h, :w].cpu().numpy() for i, (h, w) in enumerate(sizes)],
        )
        probs = probs.clone()
        for i, ((h, w), result) in enumerate(zip(sizes, refined, strict=True)):
            probs[i, :, :h, :w] = torch.from_numpy(result).to(probs)
        return probs

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """``segmentation_loss`` on the logits (with ``msc_scales``: summed over every MSC output)."""
        hp, mask = self.hparams, batch["mask"]
        outputs = self.msc_logits(batch["image"]) if hp.msc_scales else [self(batch["image"])]
        targets = [_resize_mask(mask, o.shape[-2:]) for o in outputs]
        loss = cast(
            torch.Tensor,
            sum(
                segmentation_loss(o.float(), t, batch["is_labeled"], hp.pseudo_weight)
                for o, t in zip(outputs, targets, strict=True)
            ),
        )
        logs = {"train/loss": loss, "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"]}
        labeled = batch["is_labeled"].bool()
        for name, selected in (("gt", labeled), ("pseudo", ~labeled)):  # plain cross-entropy of each kind
            if selected.any():
                logs[f"train/loss_{name}"] = F.cross_entropy(
                    outputs[-1][selected].detach().float(), targets[-1][selected], ignore_index=IGNORE_INDEX
                )
        self.log_dict(logs, prog_bar=True, sync_dist=True, batch_size=len(mask))
        return loss

    # --------------------------------------------------------------- evaluation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Accumulate the validation's confusion matrix."""
        self.val_metrics.update(self.predict_probs(batch).argmax(dim=1), batch["mask"])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """Accumulate the test's confusion matrix."""
        self.test_metrics.update(self.predict_probs(batch).argmax(dim=1), batch["mask"])

    def on_validation_epoch_end(self) -> None:
        """Log the validation's mIoU."""
        self._report(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        """Log the test's mIoU."""
        self._report(self.test_metrics, "test")

    def _report(self, metric: SegmentationMetrics, stage: str) -> None:
        scores = metric.compute()
        metric.reset()
        self.last_iou = scores["iou"]
        self.log_dict({f"{stage}/mIoU": scores["miou"], f"{stage}/pixel_accuracy": scores["pixel_accuracy"]})
        # the per-class table, logged too (classes absent from ground truth and predictions have no IoU)
        self.log_dict(
            {
                f"{stage}/IoU/{name}": value
                for name, value in zip(self.class_names, scores["iou"], strict=True)
                if not torch.isnan(value)
            }
        )
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.print(
                f"\n{stage} segmentation IoU (step {self.global_step}):\n" + iou_table(scores["iou"], self.class_names)
            )

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Segmentation masks in the MaskWriter's format: per image, cropped to its own size (batches are
        padded to their largest image)."""
        scores: torch.Tensor | list[torch.Tensor] = self.predict_probs(batch)
        sizes = batch["size"].tolist()
        scores = [s[:, :h, :w] for s, (h, w) in zip(scores, sizes, strict=True)]
        label = batch.get("label", torch.ones(len(scores), self.num_classes))  # unlabelled split: every class
        return {"id": batch["id"], "mask": [s.argmax(dim=0) for s in scores], "scores": scores, "label": label}

    def teardown(self, stage: str) -> None:
        """Stop the CRF's worker processes."""
        if self.crf is not None:
            self.crf.close()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of other classes."""
        check_classes(checkpoint, self.num_classes, self.hparams.class_names)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """SGD (or the configured optimizer) with the poly schedule, stepped every batch."""
        hp = self.hparams
        optimizer = build_optimizer(
            self.net.encoder,
            self.net.head,
            hp.optimizer,
            hp.lr,
            hp.head_lr_mult,
            hp.weight_decay,
            hp.momentum,
            hp.bias_lr_mult,
            hp.bias_decay,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": poly_schedule(optimizer, self.trainer.estimated_stepping_batches, hp.poly_power),
        }


def _resize_mask(mask: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """(B, H, W) class ids to ``size`` by nearest neighbour at pixel centres (PIL's NEAREST, as deeplab-pytorch)."""
    if mask.shape[-2:] == size:
        return mask
    return F.interpolate(mask[:, None].float(), size, mode="nearest-exact")[:, 0].long()
