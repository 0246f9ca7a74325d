"""Values that cannot work, refused when the config is read, before a network is built or data are read.

One function per configured class, called by the first line after ``save_hyperparameters`` of its
``__init__`` (the Python API) and by ``check_config``, which the CLI calls before anything is instantiated.
Each error names the option as the command line spells it (``--model.init_args.bg_threshold must be in
(0, 1), got 1.5``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from epspp.constants import IGNORE_INDEX
from epspp.errors import ConfigError

#: the largest seed that numpy, torch and Lightning all accept (0 is the smallest)
MAX_SEED = 2**32 - 1
#: processes or threads one command may start: loader workers, parallel jobs, devices per node, nodes
MAX_PROCESSES = 1024
#: the longest image side a stage resizes or crops to (VOC's recipes use 448-512; 4096 x 4096 crops of a batch
#: of 8 already need tens of GiB of activations)
MAX_SIDE = 4096
#: the largest factor an image is scaled by (multi-scale inference, training scales)
MAX_SCALE = 8.0
#: object classes an 8-bit PNG mask holds: ids 1..254 (0 is the background, 255 the ignore label)
MAX_OBJECT_CLASSES = IGNORE_INDEX - 1


def check_range(option: str, value: int, low: int, high: int) -> None:
    """Fail in one line naming ``option``, ``value`` and the range when ``value`` is not an integer in [low, high]
    (a count of processes, pixels or a seed)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{option} must be an integer in [{low}, {high}], got {value!r}")


def check_class_count(option: str, count: int) -> None:
    """Object classes that 8-bit PNG masks can hold (1..254): class 291 would be written as 35."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_OBJECT_CLASSES:
        raise ConfigError(
            f"{option} must be in [1, {MAX_OBJECT_CLASSES}], got {count!r}: masks are 8-bit PNGs holding ids "
            f"0..{MAX_OBJECT_CLASSES} (0 = background) and {IGNORE_INDEX} = ignore"
        )


def _finite(option: str, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{option} must be a finite number, got {value}")


def _positive(option: str, value: float) -> None:
    _finite(option, value)
    if not value > 0:
        raise ConfigError(f"{option} must be > 0, got {value}")


def _at_least(option: str, value: float, low: float) -> None:
    _finite(option, value)
    if not value >= low:
        raise ConfigError(f"{option} must be >= {low}, got {value}")


def _open_interval(option: str, value: float, low: float, high: float) -> None:
    if not low < value < high:
        raise ConfigError(f"{option} must be in ({low:g}, {high:g}), got {value}")


def _closed_interval(option: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{option} must be in [{low:g}, {high:g}], got {value}")


def _scales(option: str, values: Sequence[float] | None, empty_ok: bool) -> None:
    values = list(values or [])
    if (not values and not empty_ok) or any(not 0 < v <= MAX_SCALE for v in values):
        what = "a list of positive numbers" if empty_ok else "a non-empty list of positive numbers"
        what += f" <= {MAX_SCALE:g}"
        raise ConfigError(f"{option} must be {what}, got {values}")


def _optimizer(prefix: str, hp: Mapping[str, Any]) -> None:
    """The optimizer and schedule options that LocalizationModule and SegmentationModule share."""
    for name in ("lr", "head_lr_mult", "bias_lr_mult"):
        _positive(f"{prefix}{name}", hp[name])
    _at_least(f"{prefix}weight_decay", hp["weight_decay"], 0)
    _at_least(f"{prefix}poly_power", hp["poly_power"], 0)
    if not 0 <= hp["momentum"] < 1:
        raise ConfigError(f"{prefix}momentum must be in [0, 1), got {hp['momentum']}")


def check_localization_options(hp: Mapping[str, Any]) -> None:
    """The options of ``LocalizationModule`` (its saved hyper-parameters)."""
    prefix = "--model.init_args."
    check_class_count(f"{prefix}num_classes", hp["num_classes"])
    _optimizer(prefix, hp)
    _scales(f"{prefix}scales", hp["scales"], empty_ok=False)
    _open_interval(f"{prefix}bg_threshold", hp["bg_threshold"], 0, 1)
    _closed_interval(f"{prefix}tau", hp["tau"], 0, 1)
    _closed_interval(f"{prefix}lam", hp["lam"], 0, 1)
    _at_least(f"{prefix}saliency_weight", hp["saliency_weight"], 0)
    for name in ("pamr_iter", "ird_warmup_steps", "eps_warmup_steps"):
        _at_least(f"{prefix}{name}", hp[name], 0)
    if hp.get("ird_refine", "pamr") not in ("pamr", "none"):
        raise ConfigError(f"{prefix}ird_refine must be pamr (the paper) or none, got {hp['ird_refine']!r}")
    if hp.get("ird_threshold_maps", "normalized") not in ("normalized", "softmax", "floored"):
        raise ConfigError(
            f'{prefix}ird_threshold_maps must be normalized, softmax or floored (docs/architecture.md, "How we '
            f"read IRD's B()\"), got {hp['ird_threshold_maps']!r}"
        )
    _open_interval(f"{prefix}ird_floor_fraction", hp["ird_floor_fraction"], 0, 1)
    if not 0 <= hp["ird_floor"] < 1:
        raise ConfigError(f"{prefix}ird_floor must be in [0, 1), got {hp['ird_floor']}")
    dilations = list(hp["pamr_dilations"] or [])
    if not dilations or any(d < 1 for d in dilations):
        raise ConfigError(f"{prefix}pamr_dilations must be a non-empty list of integers >= 1, got {dilations}")


def check_segmentation_options(hp: Mapping[str, Any]) -> None:
    """The options of ``SegmentationModule`` (its saved hyper-parameters)."""
    prefix = "--model.init_args."
    check_class_count(f"{prefix}num_classes", hp["num_classes"])
    _optimizer(prefix, hp)
    _scales(f"{prefix}msc_scales", hp["msc_scales"], empty_ok=True)
    _scales(f"{prefix}tta_scales", hp["tta_scales"], empty_ok=False)
    _at_least(f"{prefix}pseudo_weight", hp["pseudo_weight"], 0)
    _at_least(f"{prefix}crf_workers", hp["crf_workers"], 0)


def check_data_options(hp: Mapping[str, Any]) -> None:
    """The options of ``EPSDataModule`` (its saved hyper-parameters) not checked in its ``__init__``."""
    low, high = hp["resize_long"]
    if not 0 < low <= high <= MAX_SIDE:
        raise ConfigError(
            f"--data.resize_long must be [low, high] with 0 < low <= high <= {MAX_SIDE}, got [{low}, {high}]"
        )
    for name in ("crop_size", "eval_size"):
        if hp.get(name) is not None:
            check_range(f"--data.{name}", hp[name], 1, MAX_SIDE)
    if hp.get("num_workers") is not None:
        check_range("--data.num_workers", hp["num_workers"], 0, MAX_PROCESSES)
    if hp.get("seed") is not None:
        check_range("--data.seed", hp["seed"], 0, MAX_SEED)
    if hp["train_scales"] is not None:
        _scales("--data.train_scales", hp["train_scales"], empty_ok=False)
    _positive("--data.eval_scale", hp.get("eval_scale", 1.0))
    _closed_interval("--data.eval_scale", hp.get("eval_scale", 1.0), 0, MAX_SCALE)
    _at_least("--data.color_jitter", hp["color_jitter"], 0)
    _closed_interval("--data.jitter_hue", hp["jitter_hue"], 0, 0.5)
    _closed_interval("--data.jitter_p", hp["jitter_p"], 0, 1)
    if hp.get("saliency_errors") and not (hp["task"] == "localization" and hp["with_saliency"]):
        raise ConfigError(
            "--data.saliency_errors true reads the saliency's error flags for stage 1: it needs --data.task "
            f"localization and --data.with_saliency true, got {hp['task']} and {hp['with_saliency']}"
        )
    if any(not s > 0 for s in hp["std"]):
        raise ConfigError(f"--data.std must be positive in every channel, got {list(hp['std'])}")


def check_devices(devices: Any) -> None:
    """``--trainer.devices``: a positive count, -1 (all), ``auto`` or device ids; never none at all."""
    count = int(devices) if isinstance(devices, str) and devices.strip().lstrip("-").isdigit() else devices
    if (
        isinstance(count, int) and not isinstance(count, bool) and (count == 0 or count < -1 or count > MAX_PROCESSES)
    ) or count == []:
        raise ConfigError(
            f"--trainer.devices must be a positive count, -1 (all), 'auto' or a list of device ids "
            f"such as [0, 1], got {devices} (a count is at most {MAX_PROCESSES})"
        )


def check_trainer_options(trainer: Mapping[str, Any]) -> None:
    """The trainer's counts that Lightning divides by without checking them (a ZeroDivisionError mid-run)."""
    for name in ("accumulate_grad_batches", "check_val_every_n_epoch"):
        value = trainer.get(name)
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise ConfigError(f"--trainer.{name} must be an integer >= 1, got {value}")
    if trainer.get("num_nodes") is not None:
        check_range("--trainer.num_nodes", trainer["num_nodes"], 1, MAX_PROCESSES)


MODEL_CHECKS = {"LocalizationModule": check_localization_options, "SegmentationModule": check_segmentation_options}


def check_config(config: Any) -> None:
    """A stage's parsed config (``devices``, the model's and the data's options), before anything is built.

    The CLI instantiates the datamodule (which may generate a dataset) before the model: the model's
    options are checked here too, so a bad value is refused before any data are touched.
    """
    check_devices(config.trainer.get("devices"))
    seed = config.get("seed_everything")
    if not isinstance(seed, bool) and seed is not None:  # true: Lightning draws a seed
        check_range("--seed_everything", seed, 0, MAX_SEED)
    check_trainer_options(config.trainer)
    model = config.get("model")
    check = MODEL_CHECKS.get(str(getattr(model, "class_path", "")).rpartition(".")[2])
    if check is not None:
        check(model.init_args)
    if config.get("data") is not None:
        check_data_options(config.data)


#: saliency loss -> (its warm-up option, what a fit that ends within the warm-up never trains)
WARMUPS: dict[str | None, tuple[str | None, str | None]] = {
    "ird": ("ird_warmup_steps", "IRD never drops a pixel (EPS++ without its inconsistent-region drop)"),
    "eps": ("eps_warmup_steps", "EPS's overlap test never runs"),
}


def warmup_note(config: Any) -> str | None:
    """One line when a fit's ``max_steps`` ends within its saliency loss's warm-up (None otherwise)."""
    args = getattr(config.get("model"), "init_args", None) or {}
    max_steps = config.trainer.get("max_steps")
    option, what = WARMUPS.get(args.get("saliency_loss"), (None, None))
    if option is None or max_steps is None or max_steps <= 0 or (args.get(option) or 0) < max_steps:
        return None
    return (
        f"--model.init_args.{option} {args.get(option)} >= --trainer.max_steps {max_steps}: {what} in this "
        f"run; lower --model.init_args.{option} (e.g. {max_steps // 5}) to train the full loss"
    )
