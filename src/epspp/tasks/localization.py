"""Stage 1: the localization network (CAM baseline, EPS, EPS++) as a LightningModule.

EPS (Lee et al., CVPR 2021) and EPS++ (Lee et al., TPAMI 2023, Sec. 3): a classifier with C+1
output maps (background last) trained with ``L_cls + saliency_weight * L_sal``.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.parsing import AttributeDict
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

from epspp.callbacks.ird_monitor import IRDMonitor
from epspp.config_checks import check_localization_options
from epspp.constants import IMAGENET_MEAN, IMAGENET_STD
from epspp.errors import ConfigError
from epspp.losses import (
    IRD_FLOOR,
    IRD_FLOOR_FRACTION,
    classification_loss,
    eps_saliency_loss,
    ird_saliency_loss,
    ird_telemetry,
    ird_threshold_map,
)
from epspp.metrics import SegmentationMetrics, iou_table
from epspp.nets.backbone import FeatureBackbone
from epspp.nets.classifier import Classifier
from epspp.nets.fast import use_fast_paths
from epspp.ops import (
    PAMR,
    bicubic_resize,
    bilinear_resize,
    labelled_argmax,
    maps_to_mask,
    multiscale_maps,
    normalize_maps,
    object_maps,
    pil_bicubic_resize,
    with_background,
)
from epspp.ops.crf import crf_refine_scores, require_solver
from epspp.tasks.checkpoint import check_classes
from epspp.tasks.optim import OptimizerName, build_optimizer, poly_schedule


class LocalizationModule(pl.LightningModule):
    """Classification + saliency loss; predicts multi-scale localization maps and pseudo-masks.

    Args:
        num_classes: object classes C (linked from the datamodule by the CLI).
        class_names: names with background first (linked from the datamodule), for IoU tables.
        backbone: ``resnet38d`` (the papers' ResNet-38d) or a timm model name.
        backbone_kwargs: extra ``timm.create_model`` arguments.
        pretrained: load timm's pretrained weights.
        pretrained_path: local weights file for the backbone (ResNet-38d: the MXNet ``.params`` or a PSA ``.pth``).
        output_stride: 8 or 16 (ResNet-38d: 8).
        freeze_bn: BatchNorm fixed at the loaded statistics, without gradient (EPS).
        freeze_stem: no gradient for the first layers (ResNet-38d: conv1a and b2, as EPS).
        saliency_loss: ``none`` (CAM baseline), ``eps`` (EPS) or ``ird`` (EPS++).
        saliency_weight: weight of L_sal.
        ird_warmup_steps: ird only: for the first steps keep every pixel in L_sal (no drop). The
            refined maps of a network that has not learned anything yet mark every salient pixel as
            inconsistent, which leaves only background pixels in the loss; 0 = the paper's loss throughout.
        eps_warmup_steps: eps only: for the first steps every labelled class counts as foreground in
            L_sal (no overlap test). The softmax maps of a network that has not learned anything yet are
            below 0.5 everywhere, so every class fails the test at first; a class whose map then grows
            onto its context (a boat's onto the water) keeps failing it, and the loss, which counts the
            failed class as background, pushes its map off the object and onto the context; 0 = the
            paper's loss throughout.
        tau: EPS overlap threshold.
        lam: EPS fg/bg balance.
        pamr_iter: PAMR iterations (ird training and ``refine: pamr``).
        pamr_dilations: PAMR dilations.
        ird_refine: ird only: how ``M_r``, the maps that the inconsistent region compares with the saliency,
            is made: ``pamr`` (the paper) refines the softmax maps; ``none`` uses them as they are (``M_r = M``):
            an ablation, not the paper, that separates what PAMR contributes from what dropping contributes.
        ird_threshold_maps: ird only: which refined map B() thresholds in ``N = B(M_r) XOR B(M_s)`` (the paper's
            formula does not say): ``normalized`` (default) each labelled class's refined map divided by its
            per-image maximum, max over the labelled classes, as WSSS thresholds a CAM localization map;
            ``softmax`` the sum of the labelled classes' refined softmax maps, which a new head starts below 0.5
            on every pixel (every salient pixel is then dropped from the first step); ``floored`` 1-stage-wseg's
            reading, relative with an absolute floor: a pixel passes where a labelled class's refined softmax map
            exceeds both ``ird_floor_fraction`` x its per-image maximum and ``ird_floor`` (``ird_threshold_map``).
            docs/architecture.md, "How we read IRD's B()".
        ird_floor_fraction: ird ``floored`` only: the fraction of a class's per-image maximum to exceed
            (1-stage-wseg's ``cutoff_top`` 0.6, visinf/1-stage-wseg models/stage_net.py line 28).
        ird_floor: ird ``floored`` only: the absolute floor to exceed (1-stage-wseg's ``cutoff_low`` 0.2, same line).
        optimizer: ``sgd`` (EPS), ``adam`` or ``adamw``.
        lr: backbone learning rate; the classifier gets ``head_lr_mult`` times it.
        head_lr_mult: learning-rate multiplier of the new classifier.
        weight_decay: weight decay of the weights.
        momentum: SGD momentum (the official EPS runs trained with 5e-4, see configs/voc).
        bias_lr_mult: biases train at this multiple of their part's rate (EPS: 2, so the head's are 20x).
        bias_decay: weight decay on biases (EPS: none).
        poly_power: power of the polynomial decay over the trainer's total steps.
        scales: inference scales (pseudo-masks).
        flip: add flipped inputs at inference.
        bg_threshold: background score of the pseudo-masks (EPS: 0.2).
        refine: ``pamr`` or ``crf`` (dense CRF over background + labelled classes, ``epspp.ops.crf``) refines
            the full-resolution score maps before the argmax.
        map_kind: ``auto`` = softmax maps for eps/ird (EPS inference), ReLU CAMs for the baseline.
        inference_resize: how inference scales the image: ``bilinear`` on the normalized tensor,
            ``pil_bicubic`` on the uint8 picture with PIL (EPS's ``infer.py``; on the CPU), or ``bicubic``: the
            same picture resized by torch's antialiased bicubic on the image's device (no round trip to the CPU;
            within a few grey levels of PIL's, see BENCHMARKS.md).
        image_mean: the data's normalization mean (``data.mean``), to recover the picture for the bicubic resizes.
        image_std: the data's normalization std (``data.std``).
        channels_last: the network's weights and inputs in channels-last memory format (``epspp.nets.fast``).
        torch_compile: compile the network's forward with ``torch.compile`` (``epspp.nets.fast``).
    """

    hparams: AttributeDict  # the property's type, narrowed: save_hyperparameters() stores an AttributeDict

    #: arguments that ``epspp predict --ckpt_path`` takes from the config, not from the checkpoint
    inference_options = (
        "scales",
        "flip",
        "bg_threshold",
        "refine",
        "map_kind",
        "pamr_iter",
        "pamr_dilations",
        "inference_resize",
    )
    #: arguments taken from the config too, that do not change the predictions (not in the masks' provenance)
    speed_options = ("channels_last", "torch_compile")

    def __init__(
        self,
        num_classes: int = 20,
        class_names: list[str] | None = None,
        backbone: str = "resnet50",
        backbone_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        output_stride: int = 16,
        freeze_bn: bool = False,
        freeze_stem: bool = False,
        saliency_loss: Literal["none", "eps", "ird"] = "ird",
        saliency_weight: float = 1.0,
        ird_warmup_steps: int = 0,
        eps_warmup_steps: int = 0,
        tau: float = 0.5,
        lam: float = 0.5,
        pamr_iter: int = 10,
        pamr_dilations: tuple[int, ...] = (1, 2, 4, 8, 12, 24),
        ird_refine: Literal["pamr", "none"] = "pamr",
        ird_threshold_maps: Literal["normalized", "softmax", "floored"] = "normalized",
        ird_floor_fraction: float = IRD_FLOOR_FRACTION,
        ird_floor: float = IRD_FLOOR,
        optimizer: OptimizerName = "sgd",
        lr: float = 0.01,
        head_lr_mult: float = 10.0,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        bias_lr_mult: float = 1.0,
        bias_decay: bool = True,
        poly_power: float = 0.9,
        scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0),
        flip: bool = True,
        bg_threshold: float = 0.2,
        refine: Literal["none", "pamr", "crf"] = "none",
        map_kind: Literal["auto", "softmax", "relu"] = "auto",
        inference_resize: Literal["bilinear", "pil_bicubic", "bicubic"] = "bilinear",
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
        channels_last: bool = False,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_localization_options(self.hparams)
        self.num_classes = num_classes
        self.class_names = class_names or ["background"] + [f"class_{i}" for i in range(1, num_classes + 1)]
        if len(self.class_names) != num_classes + 1:
            raise ValueError(f"class_names has {len(self.class_names)} entries, expected {num_classes + 1}")
        body = FeatureBackbone(
            backbone, pretrained, pretrained_path, output_stride, backbone_kwargs, freeze_bn, freeze_stem
        )
        self.net = Classifier(body, num_classes)
        use_fast_paths(self.net, channels_last, torch_compile)
        self.pamr = PAMR(pamr_iter, tuple(pamr_dilations))
        if refine == "crf":
            require_solver()
        self.map_kind = ("relu" if saliency_loss == "none" else "softmax") if map_kind == "auto" else map_kind
        self.train_ap = MultilabelAveragePrecision(num_labels=num_classes, average="macro")
        self.val_ap = MultilabelAveragePrecision(num_labels=num_classes, average="macro")
        self.val_f1 = MultilabelF1Score(num_labels=num_classes, average="macro")
        self.val_cam = SegmentationMetrics(num_classes + 1)
        self.last_iou: torch.Tensor | None = None
        #: IRD's telemetry of the steps not yet moved to the host: ``(step, names, values on the device)``
        self.ird_pending: list[tuple[int, tuple[str, ...], torch.Tensor]] = []
        #: rank-averaged IRD telemetry on the host, ``(step, {name: value})`` per step, for ``IRDMonitor`` to record
        self.ird_values: list[tuple[int, dict[str, float]]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized images -> logit maps (B, C+1, h, w)."""
        return self.net(images)

    def class_logits(self, cam_logits: torch.Tensor) -> torch.Tensor:
        """Global average pooling of the C object maps: (B, C+1, h, w) -> (B, C)."""
        return cam_logits[:, :-1].float().mean(dim=(2, 3))

    # ----------------------------------------------------------------- training
    def saliency_term(self, batch: dict, cam: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """L_sal of the configured method; for ird also its regions (else None): ``inconsistent``, the region N
        (B, 1, h, w) bool, and ``threshold_map``, the refined map that B() thresholds (``ird_threshold_map``)."""
        hp = self.hparams
        if hp.saliency_loss != "none" and "saliency" not in batch:
            raise ConfigError(
                f"saliency_loss {hp.saliency_loss} needs saliency maps, but the data serves none "
                "(--data.with_saliency false): set saliency_loss none or --data.with_saliency true"
            )
        if hp.saliency_loss == "eps":
            overlap_test = self.global_step >= hp.eps_warmup_steps
            return eps_saliency_loss(cam, batch["saliency"], batch["label"], hp.tau, hp.lam, overlap_test), None
        if hp.saliency_loss == "ird":
            refined = self.refine_maps(batch["image"], cam)
            drop = self.global_step >= hp.ird_warmup_steps
            loss, inconsistent = ird_saliency_loss(
                cam,
                batch["saliency"],
                batch["label"],
                refined,
                return_inconsistent=True,
                drop=drop,
                threshold_maps=hp.ird_threshold_maps,
                floor_fraction=hp.ird_floor_fraction,
                floor=hp.ird_floor,
            )
            threshold_map = ird_threshold_map(
                refined, batch["label"], hp.ird_threshold_maps, hp.ird_floor_fraction, hp.ird_floor
            )
            return loss, {"inconsistent": inconsistent, "threshold_map": threshold_map}
        return cam.new_zeros(()), None

    @torch.no_grad()
    def refine_maps(self, images: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        """IRD's ``M_r``: PAMR of the detached softmax maps, with the images resized to the map size (or, with
        ``ird_refine: none``, the detached softmax maps themselves)."""
        maps = cam.detach().float().softmax(dim=1)
        if self.hparams.ird_refine == "none":
            return maps
        small = F.interpolate(images.float(), cam.shape[-2:], mode="bilinear", align_corners=False)
        return self.pamr(small, maps)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Classification loss plus the weighted saliency loss of one batch."""
        cam = self(batch["image"])
        logits = self.class_logits(cam)
        loss_cls = classification_loss(logits, batch["label"])
        loss_sal, ird = self.saliency_term(batch, cam)
        loss = loss_cls + self.hparams.saliency_weight * loss_sal
        self.train_ap.update(logits.detach(), batch["label"].long())
        logs = {
            "train/loss": loss,
            "train/loss_cls": loss_cls,
            "train/loss_sal": loss_sal,
            "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"],
        }
        self.log_dict(logs, prog_bar=True, sync_dist=True, batch_size=len(logits))
        if ird is not None:
            self.watch_ird(cam, batch, ird)
        self.log("train/mAP", self.train_ap, on_step=False, on_epoch=True)
        return loss

    def watch_ird(self, cam: torch.Tensor, batch: dict, ird: dict[str, torch.Tensor]) -> None:
        """IRD's telemetry of this step (``train/inconsistent*``, ``train/fg_salient``, ``train/threshold_map_*`` and,
        when the batch carries ``saliency_error`` (``data.saliency_errors``), ``train/error_precision``,
        ``train/error_recall`` and ``train/correct_dropped``), warm-up included, kept on the device; at the
        trainer's logging steps ``flush_ird`` moves the steps kept to the host (one transfer, no host sync in
        between) and the last one is logged.  ``IRDMonitor`` records every step (``ird_telemetry.csv``) and warns
        of a collapse (``warnings.txt``)."""
        telemetry = ird_telemetry(
            cam,
            batch["saliency"],
            batch["label"],
            ird["inconsistent"],
            ird["threshold_map"],
            batch.get("saliency_error"),
        )
        self.ird_pending.append((self.global_step, tuple(telemetry), torch.stack(list(telemetry.values())).detach()))
        if self.trainer._logger_connector.should_update_logs:  # the steps Lightning sends to the loggers
            self.flush_ird()
            _, values = self.ird_values[-1]
            self.log_dict({f"train/{key}": value for key, value in values.items()}, batch_size=len(cam))

    def flush_ird(self) -> None:
        """Average the kept steps' telemetry over the ranks (one collective for all of them; every rank calls
        this at the same steps), move it to the host and append it to ``ird_values``."""
        if not self.ird_pending:
            return
        steps, names, values = zip(*self.ird_pending, strict=True)
        self.ird_pending = []
        reduced = self.trainer.strategy.reduce(torch.stack(values), reduce_op="mean")
        self.ird_values += [
            (step, dict(zip(keys, row, strict=True)))
            for step, keys, row in zip(steps, names, reduced.tolist(), strict=True)
        ]

    def configure_callbacks(self) -> list[pl.Callback]:
        """``IRDMonitor`` when training with IRD, in every config (it replaces one the trainer's callbacks name)."""
        hp = self.hparams
        if hp.saliency_loss != "ird":
            return []
        return [IRDMonitor(reading=hp.ird_threshold_maps, warmup_steps=hp.ird_warmup_steps)]

    # --------------------------------------------------------------- validation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Accumulate the classification loss, mAP and F1 and, with ground truth, the CAM mIoU."""
        cam = self(batch["image"])
        logits = self.class_logits(cam)
        labels = batch["label"]
        self.log("val/loss_cls", classification_loss(logits, labels), sync_dist=True, batch_size=len(logits))
        self.val_ap.update(logits, labels.long())
        self.val_f1.update(logits, labels.long())
        maps = F.interpolate(object_maps(cam, self.map_kind), batch["image"].shape[-2:], mode="bilinear")
        masks = maps_to_mask(normalize_maps(maps, labels), self.hparams.bg_threshold)
        self.val_cam.update(masks, batch["mask"])

    def on_validation_epoch_end(self) -> None:
        """Log the validation's mAP, F1 and (with ground truth) mIoU."""
        scores = self.val_cam.compute()
        self.log_dict({"val/mAP": self.val_ap.compute(), "val/F1": self.val_f1.compute()})
        scored = int(scores["pixels"]) > 0  # without ground truth there is no mIoU (not 0): nothing is logged
        self.last_iou = scores["iou"] if scored else None
        if scored:
            self.log("val/mIoU", scores["miou"])
        self.val_ap.reset()
        self.val_f1.reset()
        self.val_cam.reset()
        if scored and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.print(
                f"\nval CAM pseudo-mask IoU (single scale, step {self.global_step}):\n"
                + iou_table(scores["iou"], self.class_names)
            )

    @torch.no_grad()
    def explain(self, images: torch.Tensor, saliency: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Single-scale pictures of what the network does, at the input resolution.

        Returns ``localization`` (B, H, W): the labelled classes' normalized maps (max over classes);
        ``inconsistent`` (B, H, W) bool: IRD's region where B() of the refined map (``ird_threshold_maps``'s
        reading) and of the saliency map disagree; ``pseudo_mask`` (B, H, W): the single-scale pseudo-mask.
        """
        cam = self(images)
        size = images.shape[-2:]
        refined = self.refine_maps(images, cam)
        hp = self.hparams
        _, inconsistent = ird_saliency_loss(
            cam,
            saliency,
            labels,
            refined,
            return_inconsistent=True,
            threshold_maps=hp.ird_threshold_maps,
            floor_fraction=hp.ird_floor_fraction,
            floor=hp.ird_floor,
        )
        maps = normalize_maps(F.interpolate(object_maps(cam, self.map_kind), size, mode="bilinear"), labels)
        return {
            "localization": maps.amax(dim=1),
            "inconsistent": F.interpolate(inconsistent.float(), size, mode="nearest")[:, 0].bool(),
            "pseudo_mask": maps_to_mask(maps, self.hparams.bg_threshold),
        }

    # --------------------------------------------------------------- prediction
    def resize(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Scale a normalized image for multi-scale inference, as ``inference_resize`` says."""
        hp = self.hparams
        if hp.inference_resize == "pil_bicubic":
            return pil_bicubic_resize(image, size, hp.image_mean, hp.image_std)
        if hp.inference_resize == "bicubic":
            return bicubic_resize(image, size, hp.image_mean, hp.image_std)
        return bilinear_resize(image, size)

    def on_predict_start(self) -> None:
        """The bicubic resizes recover the picture with ``image_mean``/``image_std``: they must be the data's."""
        data = getattr(getattr(self.trainer, "datamodule", None), "hparams", None)
        if self.hparams.inference_resize == "bilinear" or data is None:
            return
        for key, mine in (("mean", self.hparams.image_mean), ("std", self.hparams.image_std)):
            theirs = data.get(key)
            if theirs is not None and not torch.allclose(torch.tensor(theirs).double(), torch.tensor(mine).double()):
                raise ConfigError(
                    f"data.{key} {list(theirs)} differs from model image_{key} {list(mine)}: "
                    f"set --model.init_args.image_{key} to the data's values for "
                    f"{self.hparams.inference_resize} inference"
                )

    @torch.autocast("cpu", enabled=False)
    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Pseudo-masks of one image per batch: multi-scale maps -> normalize -> (PAMR) -> argmax.

        Only the labelled classes' maps are upsampled and summed (the others are zero after
        ``normalize_maps`` anyway). Mixed precision (``trainer.precision``) applies on the GPU only: on the
        CPU, where Lightning would turn ``16-mixed`` into ``bf16-mixed`` (slow without bf16 hardware), the step
        runs in float32.
        """
        hp = self.hparams
        image, labels = batch["image"], batch["label"]
        if image.shape[0] != 1:
            raise ValueError(f"prediction runs one image per batch (images differ in size), got {image.shape[0]}")
        maps = self.labelled_maps(image, labels)
        maps = normalize_maps(maps, labels)
        scores = with_background(maps, hp.bg_threshold)
        if hp.refine == "pamr":
            scores = self.pamr(image.float(), scores)
        elif hp.refine == "crf":
            scores = crf_refine_scores(image, scores, labels)
        mask = labelled_argmax(scores, labels)
        return {
            "id": batch["id"],
            "mask": mask,
            "scores": scores,
            "label": labels,
            "target": batch["mask"],
            "has_mask": batch["has_mask"],
        }

    def labelled_maps(self, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``multiscale_maps`` (1, C, H, W) of one image, computed for its labelled classes only, the other
        channels zero (all zero, without running the network, for an image without labels)."""
        hp = self.hparams
        maps = image.new_zeros(1, self.num_classes, *image.shape[-2:], dtype=torch.float32)
        classes = labels[0].nonzero()[:, 0]
        if len(classes) > 0:
            maps[:, classes] = multiscale_maps(self, image, hp.scales, hp.flip, self.map_kind, self.resize, classes)
        return maps

    # ---------------------------------------------------------------- optimizer
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of other classes; ``map_kind: auto`` follows the trained saliency loss."""
        check_classes(checkpoint, self.num_classes, self.hparams.class_names)
        trained_loss = checkpoint.get("hyper_parameters", {}).get("saliency_loss")
        if self.hparams.map_kind == "auto" and trained_loss is not None:
            self.map_kind = "relu" if trained_loss == "none" else "softmax"

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """SGD (or the configured optimizer) with the poly schedule, stepped every batch."""
        hp = self.hparams
        optimizer = build_optimizer(
            self.net.backbone,
            self.net.head,
            hp.optimizer,
            hp.lr,
            hp.head_lr_mult,
            hp.weight_decay,
            hp.momentum,
            hp.bias_lr_mult,
            hp.bias_decay,
        )
        schedule = poly_schedule(optimizer, self.trainer.estimated_stepping_batches, hp.poly_power)
        return {"optimizer": optimizer, "lr_scheduler": schedule}
