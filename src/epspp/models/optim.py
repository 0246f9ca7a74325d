"""The papers' optimisation recipe: SGD, 10x learning rate for new layers, polynomial decay."""

from __future__ import annotations

from collections.abc import Iterable
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
) -> torch.optim.Optimizer:
    """An optimizer with two parameter groups: the pretrained backbone (``lr``) and the new head."""
    groups: list[dict] = [
        {"params": _trainable(backbone.parameters()), "lr": lr},
        {"params": _trainable(head.parameters()), "lr": lr * head_lr_mult},
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def _trainable(parameters: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in parameters if p.requires_grad]


def poly_schedule(optimizer: torch.optim.Optimizer, max_steps: int, power: float = 0.9) -> dict:
    """Lightning scheduler config: lr * (1 - step / max_steps) ** power, stepped every batch."""
    max_steps = max(1, int(max_steps))

    def factor(step: int) -> float:
        return max(0.0, 1.0 - min(step, max_steps) / max_steps) ** power

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
