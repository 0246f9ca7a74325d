"""DeepLab: deeplab-pytorch's DeepLab-v2 ResNet-101 (the papers'), or DeepLab heads over timm encoders.

DeepLab-v2 (Chen et al., TPAMI 2018) as used by EPS and EPS++: four dilated 3x3 convolutions
(rates 6, 12, 18, 24) on the last feature map, summed; ``backbone="deeplab_resnet101"`` is the
network and the checkpoints of kazuto1011/deeplab-pytorch (``epspp.nets.deeplab_resnet``).
DeepLab-v3+ (Chen et al., ECCV 2018): ASPP with image pooling, then a decoder that fuses the
stride-4 features.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from epspp.errors import ConfigError
from epspp.nets.backbone import create_backbone
from epspp.nets.deeplab_resnet import ASPP, deeplab_resnet101, load_deeplab_weights
from epspp.nets.frozen import freeze_batchnorm

DEEPLAB_RESNET = "deeplab_resnet101"


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPPv3(nn.Module):
    """ASPP of DeepLab-v3: 1x1, three dilated 3x3 and an image-pooling branch, projected to ``width``."""

    def __init__(self, in_channels: int, rates: tuple[int, ...], width: int = 256) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, width)] + [_conv_bn_relu(in_channels, width, 3, r) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, width, 1), nn.ReLU(inplace=True))
        self.project = _conv_bn_relu(width * (len(rates) + 2), width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features -> the projected concatenation of the branches and the image pooling."""
        pooled = self.pool(features).expand(-1, -1, *features.shape[-2:])
        return self.project(torch.cat([b(features) for b in self.branches] + [pooled], dim=1))


class DeepLab(nn.Module):
    """DeepLab-v2 or -v3+; ``forward`` gives logits at the input resolution, ``logits`` at the network's.

    Args:
        num_outputs: output classes (C+1, background included).
        architecture: ``deeplabv2`` or ``deeplabv3plus``.
        backbone: ``deeplab_resnet101`` (the papers' network, deeplab-pytorch's names and checkpoints;
            DeepLab-v2 at output stride 8 only) or a timm model name (ImageNet init).
        output_stride: 8 (papers) or 16.
        pretrained: timm's pretrained weights (``deeplab_resnet101`` needs ``pretrained_path``).
        pretrained_path: local weights file: for ``deeplab_resnet101`` ``deeplabv1_resnet101-coco.pth`` (the
            papers' init) or a trained ``deeplabv2_resnet101_msc-*.pth``; else the timm encoder's.
        backbone_kwargs: extra ``timm.create_model`` arguments.
        freeze_bn: the encoder's BatchNorm fixed at its loaded statistics, without gradient (deeplab-pytorch).
    """

    encoder: Any  # deeplab_resnet101() or a timm features_only model (its feature_info)
    head: Any  # ASPP, or for v3+ a ModuleDict of its parts

    def __init__(
        self,
        num_outputs: int,
        architecture: Literal["deeplabv2", "deeplabv3plus"] = "deeplabv2",
        backbone: str = "resnet101",
        output_stride: int = 8,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        self.is_timm = backbone != DEEPLAB_RESNET
        if not self.is_timm:
            self._build_deeplab_resnet(num_outputs, architecture, output_stride, pretrained, pretrained_path)
        else:
            self._build_timm(
                num_outputs, architecture, backbone, output_stride, pretrained, pretrained_path, backbone_kwargs
            )
        if freeze_bn:
            self.encoder = freeze_batchnorm(self.encoder)

    def _build_deeplab_resnet(
        self, num_outputs: int, architecture: str, output_stride: int, pretrained: bool, pretrained_path: str | None
    ) -> None:
        if architecture != "deeplabv2" or output_stride != 8:
            raise ConfigError(
                f"backbone {DEEPLAB_RESNET} is DeepLab-v2 at output stride 8; got architecture "
                f"{architecture}, output_stride {output_stride}"
            )
        if pretrained and not pretrained_path:
            raise ConfigError(
                f"{DEEPLAB_RESNET}'s weights are not downloadable by epspp: set pretrained_path to "
                "deeplabv1_resnet101-coco.pth (see README, 'Files you need')"
            )
        self.encoder = deeplab_resnet101()
        self.head = ASPP(2048, num_outputs)
        if pretrained_path:
            load_deeplab_weights(self.encoder, self.head, pretrained_path)

    def _build_timm(
        self,
        num_outputs: int,
        architecture: str,
        backbone: str,
        output_stride: int,
        pretrained: bool,
        pretrained_path: str | None,
        backbone_kwargs: dict[str, Any] | None,
    ) -> None:
        # v3+: the decoder needs stride-4 features, level 1 of most timm encoders (ResNet, EfficientNet)
        # but level 0 of others (ConvNeXt): request both and keep the right one (no extra compute).
        out_indices = (-1,) if architecture == "deeplabv2" else (0, 1, -1)
        self.encoder, channels = create_backbone(
            backbone, pretrained, pretrained_path, output_stride, backbone_kwargs, out_indices
        )
        reductions = self.encoder.feature_info.reduction()
        self.low_level = next((i for i in range(len(channels) - 1) if reductions[i] >= 4), 0)
        if architecture == "deeplabv2":
            self.head = ASPP(channels[-1], num_outputs)
        else:
            rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
            self.head = nn.ModuleDict(
                {
                    "aspp": ASPPv3(channels[-1], rates),
                    "low": _conv_bn_relu(channels[self.low_level], 48),
                    "fuse": nn.Sequential(_conv_bn_relu(256 + 48, 256, 3), _conv_bn_relu(256, 256, 3)),
                    "classifier": nn.Conv2d(256, num_outputs, 1),
                }
            )

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> logits (B, num_outputs, h, w) at the network's resolution (stride 8 or 4)."""
        if not self.is_timm:
            return self.head(self.encoder(images))
        features = self.encoder(images)
        if self.architecture == "deeplabv2":
            return self.head(features[-1])
        low = self.head["low"](features[self.low_level])
        high = F.interpolate(self.head["aspp"](features[-1]), low.shape[-2:], mode="bilinear", align_corners=False)
        return self.head["classifier"](self.head["fuse"](torch.cat([high, low], dim=1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> logits (B, num_outputs, H, W), bilinearly upsampled."""
        return F.interpolate(self.logits(images), images.shape[-2:], mode="bilinear", align_corners=False)
