"""Frozen layers as the reference code trains them: BatchNorm fixed at its loaded statistics, early layers fixed."""

from __future__ import annotations

from collections.abc import Iterable

from timm.layers import freeze_batch_norm_2d
from torch import nn


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm (plain, synchronized or timm's norm + activation) by a frozen copy.

    The frozen layers normalize with the loaded running statistics in training too, never update them
    and have no trainable parameters, so Lightning's ``.train()`` cannot switch them back (EPS's
    ``Net.train`` and deeplab-pytorch's ``freeze_bn`` re-apply ``eval()`` for the same effect).
    Returns the module (a new one when ``module`` itself is a BatchNorm).
    """
    return freeze_batch_norm_2d(module)


def freeze_parameters(modules: Iterable[nn.Module]) -> None:
    """No gradient for the parameters of ``modules`` (the optimizers skip parameters without one)."""
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
