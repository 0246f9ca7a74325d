"""Backbones from timm (any CNN timm builds with ``features_only`` and an ``output_stride``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn


def create_backbone(
    name: str,
    pretrained: bool = False,
    pretrained_path: str | None = None,
    output_stride: int = 16,
    backbone_kwargs: dict[str, Any] | None = None,
    out_indices: tuple[int, ...] = (-1,),
) -> tuple[nn.Module, list[int]]:
    """A timm feature extractor returning the feature maps of ``out_indices``, and their channel counts.

    Args:
        name: timm model name (e.g. ``resnet50``, ``resnet101``, ``resnet10t``).
        pretrained: load timm's pretrained weights (downloads unless cached).
        pretrained_path: load weights from this local file instead (offline clusters).
        output_stride: 8 or 16 (dilated last stages), or 32.
        backbone_kwargs: extra arguments for ``timm.create_model`` (e.g. ``channels`` of a ResNet).
        out_indices: feature levels to return (timm's ``out_indices``; -1 = the last).
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    kwargs: dict[str, Any] = dict(backbone_kwargs or {})
    if pretrained_path:
        path = Path(pretrained_path)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained_path {path} does not exist")
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    try:
        model = timm.create_model(
            name, pretrained=pretrained or bool(pretrained_path), features_only=True,
            output_stride=output_stride, out_indices=out_indices, **kwargs,
        )
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise ValueError(f"timm has no model '{name}' (see timm.list_models())") from error
        raise
    return model, [int(c) for c in model.feature_info.channels()]


class FeatureBackbone(nn.Module):
    """Wraps a timm features_only model so that ``forward`` returns the last feature map."""

    def __init__(self, name: str, pretrained: bool = False, pretrained_path: str | None = None,
                 output_stride: int = 16, backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.body, channels = create_backbone(name, pretrained, pretrained_path, output_stride, backbone_kwargs)
        self.out_channels = channels[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)[-1]
