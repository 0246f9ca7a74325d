"""One LightningDataModule for the three stages (localization, pseudo-masks, segmentation)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal, cast

import pytorch_lightning as pl
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.parsing import AttributeDict
from torch.utils.data import DataLoader, Sampler

from epspp.config_checks import check_data_options
from epspp.constants import IMAGENET_MEAN, IMAGENET_STD
from epspp.data.check import preflight
from epspp.data.classes import read_classes
from epspp.data.dataset import ImageFolderDataset, VOCLayoutDataset
from epspp.data.io import read_split
from epspp.data.sampler import MixedBatchSampler
from epspp.data.transforms import eval_transform, pad_collate, train_transform
from epspp.data.workers import CPU_WORKER_NICE, WorkerInit
from epspp.errors import ConfigError, DatasetError
from epspp.runs.provenance import check_source


class EPSDataModule(pl.LightningDataModule):
    """Data for every stage of EPS++, read from a dataset root in the VOC layout.

    ``task="localization"`` (stage 1): training samples hold image, saliency and multi-hot label;
    validation adds the ground-truth mask.  ``predict`` (stage 2, any task) serves full-resolution
    images one at a time with id, label and original size.  ``task="segmentation"`` (stage 3):
    training masks come from ``pseudo_mask_dir`` (weakly supervised), from ground truth for the ids
    of ``labeled_split`` plus pseudo-masks for the rest (semi-supervised, mixed in every batch), or
    from ground truth only when ``pseudo_mask_dir`` is None.

    Args:
        root: dataset root (VOC layout).
        task: ``localization`` or ``segmentation``.
        train_split: training split name.
        val_split: validation split (None: no validation).
        test_split: test split (None: none).
        predict_split: split written by ``epspp predict``.
        predict_image_dir: segmentation: predict every image of this plain folder instead (no split file, no
            labels); ``root`` still gives the class names.
        saliency_dir: saliency maps (default ``ROOT/saliency``).
        with_saliency: localization: read the saliency maps; false for a corpus without them (stage 0's
            pretraining, ``configs/demo/pretrain.yaml``), which only a ``saliency_loss: none`` model can train on.
        saliency_errors: localization: training samples also carry ``saliency_error`` (H, W) uint8, the flags of
            the errors the synthetic generator injected in the saliency, read from ``<saliency_dir>/errors/<id>.png``
            and augmented with the saliency (nearest); stage 1 then logs IRD's region N against them
            (``error_precision``, ``error_recall``, ``correct_dropped``, docs/monitoring_ird.md). Validation and
            predict samples do not carry them.
        mask_dir: ground-truth masks (default ``ROOT/SegmentationClassAug``).
        pseudo_mask_dir: stage-2 output, the training masks of stage 3.
        labeled_split: semi-supervised: ids of this split train on ground truth.
        labeled_per_batch: semi-supervised: labelled samples per batch (default: half the batch).
        allow_missing: skip training ids without a pseudo-mask instead of failing.
        batch_size: training batch size per process.
        val_batch_size: validation/test batch size, and that of segmentation predictions (default: ``batch_size``).
        num_workers: data-loading processes.
        worker_nice: niceness of the data-loading processes; ``None`` = 19 when the model runs on the CPU
            (the workers then only take the CPU time the training step leaves, see ``epspp.data.workers``),
            0 otherwise.
        crop_size: training crop (square).
        resize_long: training: random long side in [low, high] before the crop.
        train_scales: training as deeplab-pytorch (stage 3; its VOC config: 0.5, 0.75, 1, 1.25, 1.5): the whole
            image scaled by a random choice of these factors instead of ``resize_long``, padded at the bottom/right.
        eval_size: validation/test: ``None`` (default) scores every image at its full resolution (batches
            padded, padding ignored); a number shrinks larger images to that long side and pads all to squares.
        eval_scale: validation/test: every image and its mask resized by this factor first, the scale the
            network trains at (the demo's pretrained regime: 2, for 16x16 maps of its 64-px images). Not used by
            predict, which writes masks at the images' own size: the model's inference ``scales`` do it there.
        color_jitter: brightness/contrast/saturation jitter strength (0 disables).
        jitter_hue: hue jitter strength (EPS: 0.1).
        jitter_p: probability of jittering a training image (EPS: 1.0).
        train_interpolation: training resize of image and saliency, ``bilinear`` or ``bicubic`` (EPS).
        mean: normalization mean (RGB, 0..1 scale).
        std: normalization std.
        prepare_synthetic: when ``root`` does not exist, generate the default synthetic dataset there (off in
            every shipped config: a mistyped root is an error, not a new dataset).
        preflight: when a stage starts, check every file of its splits (decodes, sizes, mask values; cached by
            size and mtime in the dataset's cache folder, ``epspp.data.cache``), so a bad file fails the run at
            once, not after an epoch.
        seed: seed of the semi-supervised sampler; ``None`` (default) = the run's ``seed_everything``
            (every other random draw of the data, augmentation included, follows that seed through PyTorch's
            generators, see ``epspp.data.transforms``).
    """

    hparams: AttributeDict  # the property's type, narrowed: save_hyperparameters() stores an AttributeDict

    def __init__(
        self,
        root: str,
        task: Literal["localization", "segmentation"] = "localization",
        train_split: str = "train",
        val_split: str | None = "val",
        test_split: str | None = "val",
        predict_split: str = "train",
        predict_image_dir: str | None = None,
        saliency_dir: str | None = None,
        with_saliency: bool = True,
        saliency_errors: bool = False,
        mask_dir: str | None = None,
        pseudo_mask_dir: str | None = None,
        labeled_split: str | None = None,
        labeled_per_batch: int | None = None,
        allow_missing: bool = False,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 4,
        worker_nice: int | None = None,
        crop_size: int = 448,
        resize_long: tuple[int, int] = (256, 512),
        train_scales: tuple[float, ...] | None = None,
        eval_size: int | None = None,
        eval_scale: float = 1.0,
        color_jitter: float = 0.3,
        jitter_hue: float = 0.0,
        jitter_p: float = 0.8,
        train_interpolation: Literal["bilinear", "bicubic"] = "bilinear",
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        prepare_synthetic: bool = False,
        preflight: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_data_options(self.hparams)
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("val_batch_size", val_batch_size, 1),
        ):  # num_workers, crop_size and eval_size: check_data_options (their ranges)
            if value is not None and value < low:
                raise ConfigError(f"--data.{name} must be >= {low}, got {value}")
        if labeled_split and pseudo_mask_dir and batch_size < 2:
            raise ConfigError(
                f"semi-supervised batches mix labelled and pseudo-labelled images: batch_size must be "
                f">= 2, got {batch_size}"
            )
        if labeled_per_batch is not None and not 0 < labeled_per_batch < batch_size:
            raise ConfigError(
                f"labeled_per_batch must be in 1..batch_size-1 = 1..{batch_size - 1}, got "
                f"{labeled_per_batch} (set --data.labeled_per_batch)"
            )
        if not Path(root).exists():
            if not prepare_synthetic and not with_saliency:  # a classification corpus: stage 0's
                raise DatasetError(
                    f"dataset root {root} does not exist. Create stage 0's corpus with "
                    f"`epspp prepare pretrain-corpus --root {root}`."
                )
            if not prepare_synthetic:
                raise DatasetError(
                    f"dataset root {root} does not exist. Create the synthetic dataset with "
                    f"`epspp prepare synthetic --root {root}`, or a real one with `epspp prepare voc|coco`."
                )
            from epspp.data.synthetic import generate_synthetic

            print(f"[epspp] {root} not found: generating the default synthetic dataset there", file=sys.stderr)
            try:
                generate_synthetic(root)
            except FileExistsError:
                pass  # another process (DDP rank) made it first
        self.class_names: list[str] = read_classes(root)
        self.num_classes: int = len(self.class_names) - 1
        self.datasets: dict[str, VOCLayoutDataset | ImageFolderDataset] = {}

    # ---------------------------------------------------------------- datasets
    def _dataset(
        self,
        split: str,
        mode: Literal["localization", "segmentation", "predict"],
        training: bool = False,
        **kwargs: Any,
    ) -> VOCLayoutDataset:
        hp = self.hparams
        if training:
            transform = train_transform(
                hp.crop_size,
                hp.resize_long,
                hp.mean,
                hp.std,
                hp.color_jitter,
                hp.jitter_hue,
                hp.jitter_p,
                hp.train_interpolation,
                hp.train_scales,
            )
        else:
            transform = (
                eval_transform(None, hp.mean, hp.std)
                if mode == "predict"
                else eval_transform(hp.eval_size, hp.mean, hp.std, hp.eval_scale)
            )
        return VOCLayoutDataset(
            hp.root,
            split,
            self.num_classes,
            mode=mode,
            transform=transform,
            saliency_dir=hp.saliency_dir,
            mask_dir=hp.mask_dir,
            with_saliency=hp.with_saliency,
            **kwargs,
        )

    def _segmentation_train_set(self) -> VOCLayoutDataset:
        hp = self.hparams
        if hp.pseudo_mask_dir is None:
            split = hp.labeled_split or hp.train_split
            return self._dataset(split, "segmentation", training=True)
        labeled = set(read_split(hp.root, hp.labeled_split)) if hp.labeled_split else set()
        ids = read_split(hp.root, hp.train_split)
        ids += sorted(labeled.difference(ids))
        pseudo_dir = Path(hp.pseudo_mask_dir)
        if not pseudo_dir.is_dir():
            raise DatasetError(
                f"pseudo-mask folder {pseudo_dir} does not exist: run stage 2 (`epspp predict --config "
                f"configs/<dataset>/pseudo_masks.yaml ...`) or set --data.pseudo_mask_dir"
            )
        check_source(pseudo_dir, hp.root, self.class_names, "--data.pseudo_mask_dir")
        missing = [i for i in ids if i not in labeled and not (pseudo_dir / f"{i}.png").is_file()]
        if missing and not hp.allow_missing:
            raise DatasetError(
                f"{len(missing)} of {len(ids)} ids of split '{hp.train_split}' have no pseudo-mask in "
                f"{pseudo_dir}, e.g. {missing[:5]}; finish stage 2 or set --data.allow_missing true"
            )
        if missing:
            print(f"[epspp] skipping {len(missing)} ids without a pseudo-mask in {pseudo_dir}", file=sys.stderr)
            ids = [i for i in ids if i not in set(missing)]
        return self._dataset(
            hp.train_split,
            "segmentation",
            training=True,
            ids=ids,
            pseudo_mask_dir=pseudo_dir,
            labeled_ids=labeled or None,
        )

    def _evaluation_set(self, split: str) -> VOCLayoutDataset:
        """Validation/test split: segmentation scores the ids that have ground truth (at least one must)."""
        if self.hparams.task == "localization":
            return self._dataset(split, "localization")
        dataset = self._dataset(split, "segmentation", require_masks=False)
        if not any(dataset.target_path(i).is_file() for i in dataset.ids):
            raise DatasetError(
                f"split '{split}' ({dataset.split_file}) has no ground-truth mask in "
                f"{dataset.mask_dir}: nothing to score; give a split with masks (--data.val_split / "
                "--data.test_split)"
            )
        return dataset

    def setup(self, stage: str) -> None:
        """Build the datasets of ``stage`` (fit, validate, test or predict)."""
        hp = self.hparams
        if stage == "fit":
            self.datasets["train"] = (
                self._dataset(
                    hp.train_split,
                    "localization",
                    training=True,
                    with_masks=False,
                    with_saliency_errors=hp.saliency_errors,
                )
                if hp.task == "localization"
                else self._segmentation_train_set()
            )
        if stage in ("fit", "validate") and hp.val_split:
            self.datasets["val"] = self._evaluation_set(hp.val_split)
        if stage == "test" and hp.test_split:
            self.datasets["test"] = self._evaluation_set(hp.test_split)
        if stage == "predict" and hp.predict_image_dir:
            if hp.task != "segmentation":
                raise ConfigError(
                    "--data.predict_image_dir predicts a folder with a segmentation network; stage 2 "
                    "needs the image-level labels of a dataset split (--data.predict_split)"
                )
            self.datasets["predict"] = ImageFolderDataset(
                hp.predict_image_dir, self.num_classes, eval_transform(None, hp.mean, hp.std)
            )
        elif stage == "predict":
            self.datasets["predict"] = self._dataset(hp.predict_split, "predict", with_labels=hp.task == "localization")
        if hp.preflight:
            for dataset in self.datasets.values():
                preflight(hp.root, dataset.files(), f"split '{dataset.split}' ({dataset.split_file})")

    # ------------------------------------------------------------- dataloaders
    def _loader(self, dataset: VOCLayoutDataset | ImageFolderDataset, batch_size: int, **kwargs: Any) -> DataLoader:
        workers = self.hparams.num_workers
        nice = self._worker_nice() if workers > 0 else 0
        if nice > 0 and kwargs.get("worker_init_fn") is None:
            kwargs["worker_init_fn"] = WorkerInit(nice, getattr(getattr(self, "trainer", None), "global_rank", 0))
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self._device_type() == "cuda",  # page-locked batches: faster, asynchronous copies to the GPU
            **kwargs,
        )

    def _device_type(self) -> str | None:
        """The device type of the attached trainer (``cpu``, ``cuda``, ...), None when none is attached."""
        try:
            return cast(pl.Trainer, self.trainer).strategy.root_device.type  # None: AttributeError, as intended
        except (AttributeError, RuntimeError):  # no trainer attached (loaders built by hand)
            return None

    def _worker_nice(self) -> int:
        """The configured ``worker_nice``, or CPU_WORKER_NICE when the attached trainer runs on the CPU."""
        if self.hparams.worker_nice is not None:
            return max(0, int(self.hparams.worker_nice))
        return CPU_WORKER_NICE if self._device_type() == "cpu" else 0

    def train_dataloader(self) -> DataLoader:
        """The training loader (semi-supervised: mixed batches of labelled and pseudo-labelled images)."""
        hp, dataset = self.hparams, cast(VOCLayoutDataset, self.datasets["train"])
        if hp.task == "segmentation" and dataset.labeled_ids and dataset.pseudo_mask_dir is not None:
            labeled = [i for i, image_id in enumerate(dataset.ids) if image_id in dataset.labeled_ids]
            unlabeled = [i for i, image_id in enumerate(dataset.ids) if image_id not in dataset.labeled_ids]
            per_batch = hp.labeled_per_batch or max(1, hp.batch_size // 2)
            sampler: Sampler = MixedBatchSampler(labeled, unlabeled, hp.batch_size, per_batch, self.sampler_seed())
            rank, world_size = self._distributed()
            if world_size > 1:
                # Lightning would wrap the sampler in a *shuffling* DistributedSampler for training, which
                # scatters the mixed batches (some with no labelled image); strided without shuffling,
                # every process gets whole mixed batches (see MixedBatchSampler)
                sampler = DistributedSamplerWrapper(sampler, num_replicas=world_size, rank=rank, shuffle=False)
            return self._loader(dataset, hp.batch_size, sampler=sampler, drop_last=True)
        # under DDP each process gets ceil(len / world_size) samples: drop the last partial batch only
        # when a process still has a whole one (else a small split would give no training batch at all)
        _, world_size = self._distributed()
        per_process = -(-len(dataset) // world_size)
        return self._loader(dataset, hp.batch_size, shuffle=True, drop_last=per_process >= hp.batch_size)

    def sampler_seed(self) -> int:
        """``seed``, else the seed ``seed_everything`` set for this run (``PL_GLOBAL_SEED``), else 0."""
        if self.hparams.seed is not None:
            return int(self.hparams.seed)
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def val_dataloader(self) -> DataLoader | list:
        """The validation loader ([] without a validation split)."""
        if "val" not in self.datasets:
            return []  # val_split: null -> no validation
        return self._eval_loader(self.datasets["val"])

    def test_dataloader(self) -> DataLoader:
        """The test loader."""
        if "test" not in self.datasets:
            raise ConfigError("no test split: set --data.test_split")
        return self._eval_loader(self.datasets["test"])

    def _distributed(self) -> tuple[int, int]:
        """(global rank, world size) of the attached trainer's distributed strategy; (0, 1) otherwise."""
        trainer = getattr(self, "trainer", None)
        kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
        connector = getattr(trainer, "_accelerator_connector", None)
        if not kwargs or not getattr(connector, "use_distributed_sampler", True):  # the user shards the data
            return 0, 1
        return int(kwargs.get("rank", 0)), int(kwargs.get("num_replicas", 1))

    def _eval_loader(self, dataset: VOCLayoutDataset | ImageFolderDataset) -> DataLoader:
        """Validation/test loader; under DDP every process scores a disjoint share of the split.

        Lightning's default DistributedSampler pads the split with duplicates to a multiple of the world
        size, and the duplicates would be counted twice in the mIoU: here each process gets the ids
        ``rank::world_size`` instead (shares differ by at most one image; torchmetrics sums the counts).
        """
        batch_size = self.hparams.val_batch_size or self.hparams.batch_size
        collate = {"collate_fn": pad_collate} if self.hparams.eval_size is None else {}
        rank, world_size = self._distributed()
        if world_size == 1:
            return self._loader(dataset, batch_size, **collate)
        if len(dataset) < world_size:
            rank_zero_warn(
                f"the evaluation split has {len(dataset)} images for {world_size} processes: Lightning "
                "pads it with duplicates, which are scored twice"
            )
            return self._loader(dataset, batch_size, **collate)
        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        return self._loader(dataset, batch_size, sampler=sampler, **collate)

    def predict_dataloader(self) -> DataLoader:
        """Pseudo-masks: one image per batch; segmentation: ``val_batch_size`` images padded to the largest (the
        module crops each prediction back to its image), so that a CRF runs over the batch in parallel."""
        if self.hparams.task != "segmentation":
            return self._loader(self.datasets["predict"], 1)
        batch_size = self.hparams.val_batch_size or self.hparams.batch_size
        return self._loader(self.datasets["predict"], batch_size, collate_fn=pad_collate)
