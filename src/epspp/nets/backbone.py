"""Backbones by name: ResNet-38d (the papers' localization network) or any CNN timm builds with ``features_only``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import safetensors
import safetensors.torch
import timm
import torch
from torch import nn

from epspp.errors import ConfigError
from epspp.nets.frozen import freeze_batchnorm, freeze_parameters
from epspp.nets.resnet38d import MXNET_FILE, ResNet38d
from epspp.nets.weights import WeightsError, load_checked, read_state_dict


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
        pretrained_path: load weights from this local file instead (offline clusters): a timm checkpoint of the
            network or stage 0's ``backbone.pth`` (:func:`load_feature_weights`).
        output_stride: 8 or 16 (dilated last stages), or 32.
        backbone_kwargs: extra arguments for ``timm.create_model`` (e.g. ``channels`` of a ResNet).
        out_indices: feature levels to return (timm's ``out_indices``; -1 = the last).
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    kwargs: dict[str, Any] = dict(backbone_kwargs or {})
    try:
        model: Any = timm.create_model(  # a features_only model: feature_info is not on nn.Module
            name,
            pretrained=pretrained and not pretrained_path,
            features_only=True,
            output_stride=output_stride,
            out_indices=out_indices,
            **kwargs,
        )
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise ValueError(f"timm has no model '{name}' (see timm.list_models())") from error
        raise
    if pretrained_path:
        load_feature_weights(model, Path(pretrained_path), name)
    return model, [int(c) for c in model.feature_info.channels()]


def load_feature_weights(model: nn.Module, path: Path, name: str) -> None:
    """Fill a timm feature extractor from a local file, or fail in one line naming the file and the keys.

    The file is the extractor's own state dict (the ``backbone.pth`` of stage 0, ``configs/demo/pretrain.yaml``)
    or a whole timm checkpoint (``.pth``, ``.bin``, ``.safetensors``) of the same network, whose classifier and
    other layers after the last feature level, which the extractor does not have, are left out.
    """
    if not path.is_file():
        raise WeightsError(
            f"pretrained_path {path} does not exist (stage 0's backbone.pth: run `epspp fit --config "
            "configs/demo/pretrain.yaml`; other files: README, 'Files you need')"
        )
    if path.suffix == ".safetensors":
        try:
            state = safetensors.torch.load_file(str(path))
        except (safetensors.SafetensorError, OSError) as error:
            raise WeightsError(f"cannot read {path} as safetensors ({error}); is it truncated?") from None
    else:
        state = read_state_dict(path)
    expected = model.state_dict()
    modules = {key.split(".")[0] for key in expected}
    kept: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in expected and key.replace(".", "_", 1) in expected:  # timm's extractor names blocks.0 blocks_0
            key = key.replace(".", "_", 1)
        if key.split(".")[0] in modules:
            kept[key] = value
    load_checked(model, kept, f"pretrained_path {path} (backbone {name})")


class FeatureBackbone(nn.Module):
    """A backbone whose ``forward`` returns its last feature map.

    Args:
        name: ``resnet38d`` (ResNet-38d of PSA/EPS, output stride 8) or a timm model name.
        pretrained: timm's pretrained weights (downloads unless cached); ResNet-38d needs ``pretrained_path``.
        pretrained_path: local weights: for ResNet-38d the MXNet ``.params`` file or a PSA-named ``.pth``.
        output_stride: 8, 16 or 32 (ResNet-38d: 8).
        backbone_kwargs: extra ``timm.create_model`` arguments.
        freeze_bn: every BatchNorm fixed at its loaded statistics, without gradient (EPS, deeplab-pytorch).
        freeze_stem: no gradient for the first layers: ResNet-38d conv1a and the b2 blocks (EPS); timm
            models the modules up to their first stride-4 feature level (ResNets: conv1 and layer1).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        output_stride: int = 16,
        backbone_kwargs: dict[str, Any] | None = None,
        freeze_bn: bool = False,
        freeze_stem: bool = False,
    ) -> None:
        super().__init__()
        if name == "resnet38d":
            if output_stride != 8:
                raise ConfigError(f"resnet38d has output stride 8 (dilated b5-b7), got output_stride {output_stride}")
            if pretrained and not pretrained_path:
                raise ConfigError(
                    f"ResNet-38d's ImageNet weights are not downloadable by epspp: set pretrained_path "
                    f"to {MXNET_FILE} (see README, 'Files you need') or a converted .pth"
                )
            self.body: nn.Module = ResNet38d(pretrained_path)
            self.out_channels = ResNet38d.out_channels
            stem = self.body.stem()
        else:
            self.body, channels = create_backbone(name, pretrained, pretrained_path, output_stride, backbone_kwargs)
            self.out_channels = channels[-1]
            stem = _timm_stem(self.body)
        if freeze_stem:
            freeze_parameters(stem)
        if freeze_bn:
            self.body = freeze_batchnorm(self.body)
        self.is_timm = name != "resnet38d"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> the last feature map."""
        return self.body(images)[-1] if self.is_timm else self.body(images)


def _timm_stem(body: nn.Module) -> list[nn.Module]:
    """The children of a timm features_only model up to its first feature level of stride >= 4."""
    levels = cast(Any, body).feature_info.info  # every level, not only the returned ones (timm's features_only)
    last = next(level["module"] for level in levels if level["reduction"] >= 4)
    stem: list[nn.Module] = []
    for child_name, child in body.named_children():
        stem.append(child)
        if child_name == last.split(".")[0]:
            break
    return stem
