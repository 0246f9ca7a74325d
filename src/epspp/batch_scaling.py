"""The multi-GPU rule for a recipe's batch size and learning rate (``epspp batch-args``).

The papers' batch sizes are totals over all GPUs; the configs hold them as the per-process
``data.batch_size`` of one GPU.  With N processes each gets ``ceil(total / N)`` images and the
learning rate is scaled linearly with the resulting total, so a GPU count that divides the recipe's
total keeps the recipe exactly (docs/multi_gpu.md, "Batch size and learning rate").  A recipe with gradient
accumulation (``trainer.accumulate_grad_batches``, deeplab-pytorch's 5 x 2) counts it in the total, and
more processes replace accumulation steps first (5 x 2 on 2 GPUs: 5 per GPU, no accumulation).  The Makefile's
reproduction targets and the SLURM scripts both take their overrides from here.

    epspp batch-args --config configs/voc/localization_eps++.yaml --devices 4 --num-nodes 1
    --data.batch_size 2 --model.init_args.lr 0.01
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from epspp.errors import ConfigError


@dataclass(frozen=True)
class ScaledRecipe:
    """Per-process settings for ``processes`` processes."""

    batch_size: int
    lr: float
    labeled_per_batch: int | None
    processes: int
    accumulate: int = 1
    recipe_accumulates: bool = False

    @property
    def total_batch(self) -> int:
        """The total batch: per-process batch x processes x accumulated batches."""
        return self.batch_size * self.processes * self.accumulate

    def args(self) -> list[str]:
        """The ``epspp fit`` overrides that apply these settings."""
        args = ["--data.batch_size", str(self.batch_size)]
        if self.recipe_accumulates:
            args += ["--trainer.accumulate_grad_batches", str(self.accumulate)]
        if self.labeled_per_batch is not None:
            args += ["--data.labeled_per_batch", str(self.labeled_per_batch)]
        return args + ["--model.init_args.lr", f"{self.lr:.6g}"]


def scale_recipe(
    batch_size: int, lr: float, processes: int, labeled_per_batch: int | None = None, accumulate: int = 1
) -> ScaledRecipe:
    """Split a recipe's total ``batch_size x accumulate`` over ``processes`` and scale ``lr`` with the new total.

    The accumulation becomes ``max(1, accumulate // processes)``. Semi-supervised recipes
    (``labeled_per_batch`` set) keep at least 2 images per process, and the recipe's labelled share of each
    batch (rounded down, at least 1 labelled and 1 pseudo-labelled).
    """
    if processes < 1:
        raise ConfigError(f"the number of processes must be at least 1, got {processes}")
    if batch_size < 1 or lr <= 0:
        raise ConfigError(f"a recipe needs batch_size >= 1 and lr > 0, got batch_size={batch_size}, lr={lr}")
    if accumulate < 1:
        raise ConfigError(f"accumulate_grad_batches must be at least 1, got {accumulate}")
    total = batch_size * accumulate
    steps = max(1, accumulate // processes)
    per_process = math.ceil(total / (processes * steps))
    labeled = None
    if labeled_per_batch is not None:
        per_process = max(per_process, 2)
        labeled = min(max(per_process * labeled_per_batch // batch_size, 1), per_process - 1)
    return ScaledRecipe(
        per_process, lr * per_process * processes * steps / total, labeled, processes, steps, accumulate > 1
    )


def read_recipe(config: Path) -> tuple[int, float, int | None, int]:
    """``data.batch_size``, ``model.init_args.lr``, ``data.labeled_per_batch`` (or None) and
    ``trainer.accumulate_grad_batches`` (1 when unset) of a config."""
    if not config.is_file():
        raise ConfigError(f"config {config} does not exist")
    try:
        tree = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config {config} is not valid YAML: {error}") from None
    data = tree.get("data") or {}
    model_args = (tree.get("model") or {}).get("init_args") or {}
    missing = [
        key
        for key, value in (("data.batch_size", data.get("batch_size")), ("model.init_args.lr", model_args.get("lr")))
        if value is None
    ]
    if missing:
        raise ConfigError(
            f"config {config} sets no {' and no '.join(missing)}: add them, the rule scales the recipe written there"
        )
    accumulate = int((tree.get("trainer") or {}).get("accumulate_grad_batches") or 1)
    return int(data["batch_size"]), float(model_args["lr"]), data.get("labeled_per_batch"), accumulate


def config_recipe(config: Path, processes: int) -> tuple[ScaledRecipe, str]:
    """The recipe of ``config`` split over ``processes``, and the line that says what was chosen (``[epspp]
    localization_eps++.yaml on 4 process(es): batch 2/GPU, total 8 (recipe 8), lr 0.01 (recipe 0.01)``)."""
    batch_size, lr, labeled, accumulate = read_recipe(config)
    scaled = scale_recipe(batch_size, lr, processes, labeled, accumulate)
    share = "" if scaled.labeled_per_batch is None else f" ({scaled.labeled_per_batch} labelled)"
    steps = f" x {scaled.accumulate} accumulated" if scaled.recipe_accumulates else ""
    recipe = f"{batch_size} x {accumulate}" if accumulate > 1 else f"{batch_size}"
    return scaled, (
        f"[epspp] {config.name} on {scaled.processes} process(es): batch {scaled.batch_size}/GPU{share}"
        f"{steps}, total {scaled.total_batch} (recipe {recipe}), lr {scaled.lr:.6g} (recipe {lr:.6g})"
    )
