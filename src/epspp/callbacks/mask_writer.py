"""MaskWriter: writes one palette PNG per image of the predicted split (stage 2, and stage-3
predictions), resumable and DDP-safe, and a manifest with the masks' mIoU where ground truth exists."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter

from epspp.data.classes import voc_palette
from epspp.data.dataset import ImageFolderDataset
from epspp.data.io import DatasetError, read_image, read_split, write_mask_png
from epspp.errors import EPSError, OutputError
from epspp.files import write_atomic, write_json
from epspp.metrics import SegmentationMetrics, iou_table
from epspp.panels import overlay_with_legend
from epspp.runs.mask_files import OVERVIEW, is_overview, mask_files
from epspp.runs.provenance import (
    check_resume,
    check_writable,
    dataset_identity,
    provenance,
    refuse_dataset_folder,
    refuse_escaping_folders,
    write_provenance,
)
from epspp.runs.provenance import sha256 as _sha256
from epspp.scoring import evaluate_folder, scores_to_json

#: rows of the writer's ``overview.png`` (masks evenly spread over the sorted ids)
OVERVIEW_ROWS = 12


class MaskWriter(BasePredictionWriter):
    """Writes ``OUT/<id>.png`` (palette PNG, 0..C, 255 ignore) for every predicted image.

    Each file is written under a temporary name and renamed, so an interrupted run leaves no
    truncated file; a rerun skips ids whose PNG exists (unless ``overwrite``), and only when
    ``OUT/provenance.json`` shows the folder was made with the same checkpoint and inference options.
    The folder may not be (inside) the dataset's image, mask or saliency folder.  Under DDP every rank
    writes its own samples; after a barrier the masks are scored against the ground truth (ranks
    share the reading, torchmetrics syncs the counts) and rank 0 writes ``OUT/manifest.json``.

    Args:
        output_dir: where to write (``--pseudo_masks.output_dir``); required by ``epspp predict``.
        save_scores: also write ``OUT/scores/<id>.npy``: float16 score maps of the labelled classes
            (background score first, then the labelled classes in label order).
        overwrite: rewrite masks that already exist.
        save_overlays: also write ``OUT/overlays/<id>.png`` (the image with the mask's class colours blended in,
            and a legend of the classes present below it) and ``OUT/overview.png`` (``epspp render``'s picture of
            up to 12 masks: image | mask overlay, each row captioned with its id and labels).
        report_split: also score the masks of this split's ids (``manifest.json`` key ``report``): VOC
            ``train``, the 1,464 images the papers' pseudo-mask mIoU is measured on, while the masks are
            written for ``train_aug``.
        mask_subdir: write the PNGs in ``OUT/<mask_subdir>`` (manifest and scores stay in OUT), e.g. the PASCAL
            VOC server's ``results/VOC2012/Segmentation/comp6_test_cls`` (configs/voc/segmentation_test.yaml).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        save_scores: bool = False,
        overwrite: bool = False,
        save_overlays: bool = False,
        report_split: str | None = None,
        mask_subdir: str = "",
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir) if output_dir else None
        self.mask_subdir = mask_subdir
        self.save_scores = save_scores
        self.overwrite = overwrite
        self.save_overlays = save_overlays
        #: the checkpoint the masks come from (``epspp predict`` sets it from ``--ckpt_path``; Lightning
        #: restores checkpoints after the callbacks' ``setup``, where the folder's provenance is checked)
        self.checkpoint_path: str | None = None
        self.report_split = report_split
        self._existing: set[str] = set()
        self._written = 0
        self._start = 0.0
        self._finished = False

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the output folder before predicting: refusals, resume and the folder's provenance."""
        if stage != "predict":
            return
        if self.output_dir is None:
            raise DatasetError("set where the masks go: --pseudo_masks.output_dir DIR")
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise DatasetError(f"--pseudo_masks.output_dir {self.output_dir} is a file, not a folder")
        dataset = _datamodule(trainer).datasets["predict"]
        refuse_dataset_folder(self.output_dir, dataset_folders(dataset))
        refuse_escaping_folders(self.output_dir, self._derived_folders(), dataset_folders(dataset))
        check_writable(self.output_dir)
        self.mask_dir.mkdir(parents=True, exist_ok=True)
        for wanted, sub in ((self.save_scores, "scores"), (self.save_overlays, "overlays")):
            if wanted:
                (self.output_dir / sub).mkdir(exist_ok=True)
        record = provenance(
            pl_module,
            dict(_datamodule(trainer).hparams),
            self.checkpoint_path or trainer.ckpt_path,
            dataset_identity(dataset),
        )
        done = len(mask_files(self.mask_dir))  # not overview.png, overlays/ or scores/
        check_resume(self.output_dir, record, done, self.overwrite)
        if trainer.is_global_zero:
            _remove_stale_temporaries(self.output_dir)
            _remove_stale_temporaries(self.mask_dir)
            write_provenance(self.output_dir, record)
        # the full-resolution score maps of every image would pile up in memory otherwise
        trainer.predict_loop.return_predictions = False
        if self.report_split:
            outside = sorted(set(read_split(_datamodule(trainer).hparams.root, self.report_split)) - set(dataset.ids))
            if outside:
                raise DatasetError(
                    f"{len(outside)} ids of report_split '{self.report_split}' are not in predict_split "
                    f"'{_datamodule(trainer).hparams.predict_split}', e.g. {outside[:3]}: set "
                    "--pseudo_masks.report_split null or a subset"
                )
        self._existing = {i for i in dataset.ids if self._is_done(i)}
        if self._existing and not self.overwrite:
            todo = [i for i in dataset.ids if i not in self._existing]
            if trainer.is_global_zero:
                print(
                    f"[epspp] {len(self._existing)} masks already in {self.output_dir}: "
                    f"predicting the {len(todo)} missing (overwrite: true to redo all)"
                )
            dataset.ids = todo
        self._written = 0
        self._finished = False
        self._start = time.perf_counter()

    # ----------------------------------------------------------------- writing
    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the masks (and scores, overlays) of one batch, each file atomically."""
        for index, image_id in enumerate(prediction["id"]):
            path = self.mask_dir / f"{image_id}.png"
            if self._is_done(image_id) and image_id not in self._existing:
                continue  # a DDP padding duplicate another rank has written in this run
            mask = prediction["mask"][index].to(torch.uint8).cpu().numpy()
            try:
                if self.save_scores:
                    self._write_scores(image_id, prediction["scores"][index], prediction["label"][index])
                if self.save_overlays:
                    self._write_overlay(image_id, mask, _datamodule(trainer))
                write_mask_png(path, mask, voc_palette())
            except OutputError as error:  # a full disk, a folder made read-only during the run (no temporary left)
                raise OutputError(
                    f"cannot write the mask of {image_id} in {self.output_dir}: {error.reason}: free space or fix "
                    "the folder, then rerun (it resumes; the masks written so far are kept)"
                ) from None
            self._written += 1

    @property
    def _out(self) -> Path:
        """``output_dir``: None only until ``setup``, which refuses to predict without it."""
        return cast(Path, self.output_dir)

    @property
    def mask_dir(self) -> Path:
        """Where the PNG masks go: ``output_dir / mask_subdir``."""
        return self._out / self.mask_subdir

    def _derived_folders(self) -> dict[str, Path]:
        """The folders this writer writes in besides ``output_dir`` (the option that makes each -> folder)."""
        folders = {f"--pseudo_masks.mask_subdir {self.mask_subdir!r}": self.mask_dir}
        for wanted, sub in ((self.save_scores, "scores"), (self.save_overlays, "overlays")):
            if wanted:
                folders[f"--pseudo_masks.save_{sub} (OUT/{sub})"] = self._out / sub
        return folders

    def _is_done(self, image_id: str) -> bool:
        """The mask exists, and its score map too when ``save_scores`` asks for it (it is written first)."""
        return (self.mask_dir / f"{image_id}.png").is_file() and (
            not self.save_scores or (self._out / "scores" / f"{image_id}.npy").is_file()
        )

    def _write_overlay(self, image_id: str, mask: np.ndarray, datamodule: Any) -> None:
        image = read_image(datamodule.datasets["predict"].image_path(image_id))
        picture = overlay_with_legend(image, mask, datamodule.class_names)
        path = self._out / "overlays" / f"{image_id}.png"
        write_atomic(path, Image.fromarray(picture).save)

    def _write_scores(self, image_id: str, scores: torch.Tensor, label: torch.Tensor) -> None:
        keep = [0] + [c + 1 for c in torch.nonzero(label).flatten().tolist()]
        array = scores[keep].to(torch.float16).cpu().numpy()
        path = self._out / "scores" / f"{image_id}.npy"
        write_atomic(path, lambda tmp: np.save(tmp, array))

    # ---------------------------------------------------------------- manifest
    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Wait for every process, then write the manifest and the scores."""
        trainer.strategy.barrier()
        self._finish(trainer, pl_module, distributed=True)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Nothing was left to predict (Lightning skips the loop and its hooks): still write the manifest."""
        if stage == "predict" and not self._finished and self.output_dir is not None:
            self._finish(trainer, pl_module, distributed=False)

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, distributed: bool) -> None:
        """Score the masks against the ground truth (shared by the ranks when ``distributed``); write the manifest."""
        self._finished = True
        if not distributed and not trainer.is_global_zero:
            return
        if isinstance(_datamodule(trainer).datasets["predict"], ImageFolderDataset):
            self._finish_folder(trainer, _datamodule(trainer).datasets["predict"], distributed, pl_module.device)
            return
        elapsed = time.perf_counter() - self._start
        datamodule = _datamodule(trainer)
        split = datamodule.hparams.predict_split
        written = int(self._reduce(trainer, distributed, float(self._written), pl_module.device))  # by every rank
        evaluated, scores = self._score(trainer, pl_module, split, distributed)
        report = self._score(trainer, pl_module, self.report_split, distributed) if self.report_split else None
        if not trainer.is_global_zero:
            return
        names = datamodule.class_names
        manifest = self._manifest(trainer, pl_module, split, evaluated)
        manifest["written_this_run"] = written
        manifest["images_per_s_rank0"] = round(self._written / max(elapsed, 1e-6), 2)
        print(f"[epspp] wrote {written} masks to {self.mask_dir} ({manifest['images_per_s_rank0']} images/s on rank 0)")
        if manifest["no_label_all_background"]:
            print(
                f"[epspp] {manifest['no_label_all_background']} images of '{split}' have no labelled class: "
                "their masks are all background"
            )
        if scores is not None:
            manifest |= scores_to_json(scores, names)
            print(
                f"\npseudo-masks of '{split}' vs ground truth ({evaluated} images):\n" + iou_table(scores["iou"], names)
            )
            for logger in trainer.loggers:
                logger.log_metrics({"pseudo_masks/mIoU": 100 * float(scores["miou"])})
        if report is not None:
            manifest["report"] = {"split": self.report_split, "evaluated": report[0]}
            if report[1] is not None:
                manifest["report"] |= scores_to_json(report[1], names)
                print(
                    f"\npseudo-masks of '{self.report_split}' (the report split) vs ground truth ({report[0]} "
                    "images):\n" + iou_table(report[1]["iou"], names)
                )
        path = self._out / "manifest.json"
        write_json(path, manifest)
        self._write_overview(trainer)

    def _finish_folder(
        self, trainer: pl.Trainer, dataset: ImageFolderDataset, distributed: bool, device: torch.device
    ) -> None:
        """The manifest of a plain image folder's predictions (no split, no ground truth)."""
        written = int(self._reduce(trainer, distributed, float(self._written), device))
        if not trainer.is_global_zero:
            return
        checkpoint = self.checkpoint_path or trainer.ckpt_path
        manifest = {
            "images": str(dataset.image_dir),
            "count": sum(self._is_done(i) for i in dataset.all_ids),
            "folder_size": len(dataset.all_ids),
            "written_this_run": written,
            "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
            "checkpoint_sha256": _sha256(checkpoint) if checkpoint else None,
            "class_names": list(_datamodule(trainer).class_names),
        }
        print(
            f"[epspp] wrote {written} masks of {dataset.image_dir} to {self.output_dir}"
            + (f" (overlays in {self._out / 'overlays'})" if self.save_overlays else "")
        )
        path = self._out / "manifest.json"
        write_json(path, manifest)
        self._write_overview(trainer)

    def _write_overview(self, trainer: pl.Trainer) -> None:
        """``OUT/overview.png`` (with ``save_overlays``): ``epspp render``'s picture of up to ``OVERVIEW_ROWS`` masks.

        Only a note when it cannot be drawn (e.g. ``OUT/overview.png`` is a file of the user's, or the mask of an
        image named ``overview``): the masks themselves are written.
        """
        if not self.save_overlays:
            return
        from epspp.render import render

        dataset = _datamodule(trainer).datasets["predict"]
        target = self._out / OVERVIEW
        folder = isinstance(dataset, ImageFolderDataset)
        if os.path.lexists(target) and not is_overview(target):
            print(
                f"[epspp] note: {target} is not an overview drawn by epspp (the mask of an image named 'overview', "
                f"or a file of yours): kept; draw one with epspp render --pred-dir {self.mask_dir} --out FILE"
            )
            return
        try:
            render(
                self.mask_dir,
                None if folder else dataset.root,
                target,
                OVERVIEW_ROWS,
                images=dataset.image_dir,
                saliency_dir=None if folder else dataset.saliency_dir,
                mask_dir=None if folder else dataset.mask_dir,
                class_names=list(_datamodule(trainer).class_names),
            )
        except (EPSError, OSError) as error:  # e.g. a full disk: the masks are written, the picture is extra
            print(f"[epspp] note: {target} not drawn: {error}")
            return
        print(f"[epspp] overview of the masks: {target}")

    @staticmethod
    def _reduce(trainer: pl.Trainer, distributed: bool, value: float, device: torch.device) -> float:
        """The sum of ``value`` over the processes (``value`` itself without ``distributed``)."""
        if not distributed:
            return value
        return float(trainer.strategy.reduce(torch.tensor([value], device=device), reduce_op="sum")[0])

    def _score(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str, distributed: bool
    ) -> tuple[int, dict | None]:
        """(images with ground truth, scores or None) of the masks of ``split``'s ids, shared by the ranks."""
        datamodule = _datamodule(trainer)
        device = pl_module.device if distributed else torch.device("cpu")
        metric = SegmentationMetrics(datamodule.num_classes + 1, sync_on_compute=distributed).to(device)
        rank, world_size = (trainer.global_rank, trainer.world_size) if distributed else (0, 1)
        error = None
        try:
            evaluated = evaluate_folder(
                self.mask_dir, datamodule.hparams.root, split, datamodule.hparams.mask_dir, metric, rank, world_size
            )["evaluated"]
        except DatasetError as caught:  # e.g. a mis-sized mask left by an earlier run: every rank must stop
            error, evaluated = caught, 0
        failures = self._reduce(trainer, distributed, float(error is not None), device)
        evaluated = int(self._reduce(trainer, distributed, float(evaluated), device))
        if failures:
            raise error or DatasetError(f"scoring the masks in {self.output_dir} failed on another process")
        return evaluated, (metric.compute() if evaluated else None)  # same on every rank: compute() syncs

    def _manifest(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str, evaluated: int) -> dict:
        datamodule = _datamodule(trainer)
        dataset = datamodule.datasets["predict"]
        ids = read_split(datamodule.hparams.root, split)
        no_label = [i for i in ids if i in dataset.labels and not dataset.labels[i].any()]
        checkpoint = self.checkpoint_path or trainer.ckpt_path
        return {
            "split": split,
            "count": sum((self.mask_dir / f"{i}.png").is_file() for i in ids),
            "split_size": len(ids),
            "no_label_all_background": len(no_label),
            "evaluated": evaluated,
            "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
            "checkpoint_sha256": _sha256(checkpoint) if checkpoint else None,
            "class_names": list(datamodule.class_names),
            "config": {
                "model": _plain(dict(pl_module.hparams)),
                "data": _plain(dict(datamodule.hparams)),
                "writer": {
                    "output_dir": str(self.output_dir),
                    "mask_subdir": self.mask_subdir,
                    "save_scores": self.save_scores,
                    "overwrite": self.overwrite,
                    "report_split": self.report_split,
                },
            },
        }


def dataset_folders(dataset: Any) -> dict[str, Path]:
    """The folders of a dataset that an output folder must stay out of (name -> folder)."""
    folders = {"image": Path(dataset.image_dir)}
    for name, attribute in (("mask", "mask_dir"), ("saliency", "saliency_dir"), ("root", "root")):
        if getattr(dataset, attribute, None) is not None:
            folders[name] = Path(getattr(dataset, attribute))
    return folders


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files of an earlier run that was killed while writing (never valid masks)."""
    for pattern in (
        ".*.tmp.png",
        ".*.tmp.npy",
        "scores/.*.tmp.npy",
        "overlays/.*.tmp.png",
        ".manifest.*.tmp.json",
        ".manifest.json.tmp",
    ):
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    """JSON-friendly copy of hyper-parameters (tuples -> lists, other objects -> str)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


PseudoMaskWriter = MaskWriter  # the old name, kept: configs and users name epspp.callbacks.PseudoMaskWriter


def _datamodule(trainer: pl.Trainer) -> Any:
    """The trainer's datamodule: Lightning sets ``trainer.datamodule`` without declaring it on the class."""
    return trainer.datamodule  # type: ignore[attr-defined]
