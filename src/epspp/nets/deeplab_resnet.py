"""DeepLab-v2's network as kazuto1011/deeplab-pytorch builds it (the one EPS and EPS++ train in stage 3).

MSRA ResNet-101 (the caffe DeepLab's): a 7x7 stride-2 stem with BN and ReLU, a 3x3 stride-2 max pool
(padding 1, ceil mode), bottlenecks with the stride on the 1x1 ``reduce`` conv and a projection
``shortcut`` in the first block of every layer, layer4 / layer5 dilated 2 / 4 (output stride 8), and
ASPP-v2: four 3x3 convolutions with rates 6, 12, 18, 24 straight to class logits, summed.  Parameter
names are deeplab-pytorch's (``layer2.block1.reduce.conv.weight``, ``aspp.c0.bias``), so its checkpoints
load as they are: the COCO init ``deeplabv1_resnet101-coco.pth`` (backbone; its ``fc`` classifier is
skipped) and trained ``deeplabv2_resnet101_msc-*.pth`` (keys prefixed ``base.``, ASPP included).

The network expects caffe's input, BGR in 0..255 minus (104.008, 116.669, 122.675); epspp's data are
RGB normalized with the ImageNet mean / std (the datamodule's defaults), and ``CaffeInput`` converts.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from epspp.constants import IMAGENET_MEAN, IMAGENET_STD
from epspp.nets.weights import load_checked, read_state_dict

#: deeplab-pytorch's ``configs/voc12.yaml`` IMAGE.MEAN, in B, G, R order (0..255)
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)
BLOCKS = (3, 4, 23, 3)
ASPP_RATES = (6, 12, 18, 24)


class CaffeInput(nn.Module):
    """ImageNet-normalized RGB -> BGR in 0..255 minus ``CAFFE_MEAN_BGR`` (no parameters, no state)."""

    scale: torch.Tensor
    offset: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        std, mean = torch.tensor(IMAGENET_STD, dtype=torch.float64), torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
        self.register_buffer("scale", std.flip(0).view(1, 3, 1, 1) * 255, persistent=False)
        offset = mean.flip(0) * 255 - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64)
        self.register_buffer("offset", offset.view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized RGB -> (B, 3, H, W) mean-subtracted BGR 0..255."""
        return images.flip(1) * self.scale.to(images.dtype) + self.offset.to(images.dtype)


class ConvBN(nn.Sequential):
    """Conv (no bias) -> BN (eps 1e-5) [-> ReLU], named ``conv``, ``bn``, ``relu``."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1, relu: bool = True
    ) -> None:
        super().__init__()
        padding = dilation * (kernel // 2)
        self.add_module("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch, eps=1e-5))
        if relu:
            self.add_module("relu", nn.ReLU())


class Bottleneck(nn.Module):
    """MSRA bottleneck: the stride on the 1x1 ``reduce``; ``shortcut`` projects in a layer's first block."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dilation: int, project: bool) -> None:
        super().__init__()
        mid = out_ch // 4
        self.reduce = ConvBN(in_ch, mid, 1, stride)
        self.conv3x3 = ConvBN(mid, mid, 3, 1, dilation)
        self.increase = ConvBN(mid, out_ch, 1, relu=False)
        self.shortcut = ConvBN(in_ch, out_ch, 1, stride, relu=False) if project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck block on ``x``."""
        return F.relu(self.increase(self.conv3x3(self.reduce(x))) + self.shortcut(x))


def res_layer(blocks: int, in_ch: int, out_ch: int, stride: int, dilation: int) -> nn.Sequential:
    """``block1`` .. ``blockN``; only the first strides and projects."""
    return nn.Sequential(
        OrderedDict(
            (
                f"block{i + 1}",
                Bottleneck(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, dilation, i == 0),
            )
            for i in range(blocks)
        )
    )


def deeplab_resnet101() -> nn.Sequential:
    """The dilated MSRA ResNet-101 (output stride 8, 2048 channels), ``CaffeInput`` first."""
    stem = nn.Sequential(OrderedDict(conv1=ConvBN(3, 64, 7, 2), pool=nn.MaxPool2d(3, 2, 1, ceil_mode=True)))
    return nn.Sequential(
        OrderedDict(
            input=CaffeInput(),
            layer1=stem,
            layer2=res_layer(BLOCKS[0], 64, 256, 1, 1),
            layer3=res_layer(BLOCKS[1], 256, 512, 2, 1),
            layer4=res_layer(BLOCKS[2], 512, 1024, 1, 2),
            layer5=res_layer(BLOCKS[3], 1024, 2048, 1, 4),
        )
    )


class ASPP(nn.Module):
    """DeepLab-v2's ASPP under deeplab-pytorch's names ``c0`` .. ``c3``: dilated 3x3 convs to logits, summed."""

    def __init__(self, in_channels: int, num_outputs: int, rates: tuple[int, ...] = ASPP_RATES) -> None:
        super().__init__()
        for i, rate in enumerate(rates):
            conv = nn.Conv2d(in_channels, num_outputs, 3, padding=rate, dilation=rate)
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(cast(torch.Tensor, conv.bias))  # a Conv2d with bias=True
            self.add_module(f"c{i}", conv)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features -> the sum of the dilated branches' logits."""
        return sum(branch(features) for branch in self.children())


def split_deeplab_state(
    state: dict[str, torch.Tensor], head_shapes: dict[str, torch.Size]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """Split a deeplab-pytorch state dict into backbone and ASPP parts.

    The ``base.`` prefix of ``MSC``-wrapped checkpoints is removed; ``layer*`` keys are the backbone;
    ``aspp.*`` keys the head when their shapes match ``head_shapes`` (same class count), else skipped;
    ``fc.*`` (DeepLab-v1's classifier in the COCO init) is skipped.

    Returns:
        (backbone state, head state (empty when skipped), notes on what was skipped). Keys of any
        other name are left in the backbone state, for the caller's loader to report as unexpected.
    """
    backbone: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    for key, value in state.items():
        name = key.removeprefix("base.")
        if name.startswith("aspp."):
            head[name.removeprefix("aspp.")] = value
        elif name.startswith("fc."):
            notes.append(f"{key} {tuple(value.shape)}")
        else:
            backbone[name] = value
    if head and any(head_shapes.get(k) != v.shape for k, v in head.items()):  # another class count
        notes += [f"aspp.{k} {tuple(v.shape)}" for k, v in head.items()]
        head = {}
    return backbone, head, notes


def load_deeplab_weights(encoder: nn.Module, head: nn.Module, path: str | Path) -> None:
    """Fill ``encoder`` (``deeplab_resnet101()``) and ``head`` (``ASPP``) from a deeplab-pytorch file.

    Prints a note for what is skipped (the COCO init's ``fc``, an ASPP of another class count); any
    other missing, unexpected or mis-shaped key is a ``WeightsError`` naming the keys.
    """
    state = read_state_dict(path)
    backbone, aspp, skipped = split_deeplab_state(state, {k: v.shape for k, v in head.state_dict().items()})
    load_checked(encoder, backbone, path)
    if aspp:
        load_checked(head, aspp, path)
    if skipped:
        fresh = "" if aspp else "; the ASPP starts from N(0, 0.01)"
        print(f"[epspp] {path}: skipped another classifier's keys {', '.join(skipped)}{fresh}", file=sys.stderr)
