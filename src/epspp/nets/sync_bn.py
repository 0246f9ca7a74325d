"""SyncBatchNorm for timm networks: what ``--trainer.sync_batchnorm true`` applies (see docs/multi_gpu.md).

Lightning's ``TorchSyncBatchNorm`` uses ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``, which turns
timm's fused norm + activation layers (``BatchNormAct2d``: EfficientNet, RegNet, ... backbones) into plain
``SyncBatchNorm`` and silently drops their activation.  ``TimmSyncBatchNorm`` converts them with timm's
converter instead (``SyncBatchNormAct`` keeps the activation) and reverts them to ``BatchNormAct2d``; plain
BatchNorm layers (the ResNets and DeepLab heads of the configs) are handled as Lightning does.
"""

from __future__ import annotations

import torch
from pytorch_lightning.plugins import TorchSyncBatchNorm
from timm.layers import convert_sync_batchnorm
from timm.layers.norm_act import BatchNormAct2d, SyncBatchNormAct
from torch import nn


class TimmSyncBatchNorm(TorchSyncBatchNorm):
    """Lightning layer-sync plugin: every BatchNorm, timm's ``BatchNormAct2d`` included, becomes synchronized."""

    def apply(self, model: nn.Module) -> nn.Module:
        return convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        if not isinstance(model, SyncBatchNormAct):
            return super().revert(model)  # recurses into the children through this method
        converted = BatchNormAct2d(model.num_features, model.eps, model.momentum, model.affine,
                                   model.track_running_stats)
        if model.affine:
            with torch.no_grad():
                converted.weight = model.weight
                converted.bias = model.bias
        converted.running_mean = model.running_mean
        converted.running_var = model.running_var
        converted.num_batches_tracked = model.num_batches_tracked
        converted.training = model.training
        converted.act, converted.drop = model.act, model.drop
        return converted
