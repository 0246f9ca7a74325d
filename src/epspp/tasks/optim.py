"""The papers' optimisation recipe: SGD, parameter groups with 10x for new layers (2x for biases), poly decay."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

OptimizerName = Literal["sgd", "adam", "adamw"]


def build_optimizer(
    backbone: nn.Module,
    head: nn.Module,
    name: OptimizerName = "sgd",
    lr: float = 0.01,
    head_lr_mult: float = 10.0,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    bias_lr_mult: float = 1.0,
    bias_decay: bool = True,
) -> torch.optim.Optimizer:
    """An optimizer over the parameter groups backbone weights and biases, head weights and biases.

    Weights of the pretrained backbone train at ``lr``, the new head's at ``head_lr_mult * lr``; biases at
    ``bias_lr_mult`` times their part's rate, without weight decay when ``bias_decay`` is False.  EPS's
    ``get_optimizer`` (1x, 2x, 10x, 20x) and deeplab-pytorch's ``main.py`` (1x, 10x, 20x) are
    ``head_lr_mult=10, bias_lr_mult=2, bias_decay=False``.  With the defaults biases share their part's group
    (two groups).  Parameters without gradient and empty groups are left out.
    """
    groups: list[dict] = []
    separate_biases = bias_lr_mult != 1.0 or not bias_decay
    for part, part_lr in ((backbone, lr), (head, lr * head_lr_mult)):
        weights, biases = _split_biases(part)
        if not separate_biases:
            weights, biases = weights + biases, []
        groups.append({"params": weights, "lr": part_lr, "weight_decay": weight_decay})
        bias_wd = weight_decay if bias_decay else 0.0
        groups.append({"params": biases, "lr": part_lr * bias_lr_mult, "weight_decay": bias_wd})
    groups = [group for group in groups if group["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def _split_biases(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Trainable parameters of ``module``: (those not named ``bias``, the biases)."""
    weights, biases = [], []
    for name, parameter in module.named_parameters():
        if parameter.requires_grad:
            (biases if name.rsplit(".", 1)[-1] == "bias" else weights).append(parameter)
    return weights, biases


def poly_schedule(optimizer: torch.optim.Optimizer, max_steps: int, power: float = 0.9) -> dict:
    """Lightning scheduler config: lr * (1 - step / max_steps) ** power, stepped every batch."""
    max_steps = max(1, int(max_steps))

    def factor(step: int) -> float:
        return max(0.0, 1.0 - min(step, max_steps) / max_steps) ** power

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
