"""ResNet-38d (Wu, Shen & van den Hengel, "Wider or deeper", model A1): the localization network of PSA, EPS and EPS++.

Pre-activation residual blocks (BatchNorm -> ReLU -> conv), the shortcut taken from the activated input
where the shape changes; stages b2..b5 of 3x3 blocks (b5 dilated 2), two bottleneck blocks b6/b7 (dilation
4, dropout 0.3/0.5), then ReLU(BN): 4096 channels at output stride 8.  Parameter names are PSA's and EPS's
(``conv1a.weight``, ``b2.conv_branch2a.weight``, ``b4_5.bn_branch2b1.running_mean``, ``bn7.bias``), so their
converted ``.pth`` files load as they are; the MXNet ImageNet file is mapped by name (``mxnet_to_psa``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from epspp.nets.weights import WeightsError, load_checked, read_state_dict

#: the ImageNet file the PSA/EPS READMEs point to
MXNET_FILE = "ilsvrc-cls_rna-a1_cls1000_ep-0001.params"
_MXNET_KEY = re.compile(r"^(res|bn)(\d)(a|b(\d+))_(branch\w+?)_(weight|gamma|beta|moving_mean|moving_var)$")
_BN_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}


class ResBlock(nn.Module):
    """Two 3x3 convolutions, pre-activated; a 1x1 projection of the activated input when the shape changes."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        stride: int = 1,
        first_dilation: int | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = in_channels == out_channels and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(
            in_channels, mid_channels, 3, stride, padding=first_dilation, dilation=first_dilation, bias=False
        )
        self.bn_branch2b1 = nn.BatchNorm2d(mid_channels)
        self.conv_branch2b1 = nn.Conv2d(mid_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual block on ``x``."""
        activated = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(activated)
        branch = self.conv_branch2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(activated))))
        return shortcut + branch


class BottleneckBlock(nn.Module):
    """1x1 -> dilated 3x3 -> 1x1 (widths out/4, out/2, out), pre-activated, dropout before the last two convs."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, out_channels // 4, 1, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_channels // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(
            out_channels // 4, out_channels // 2, 3, padding=dilation, dilation=dilation, bias=False
        )
        self.bn_branch2b2 = nn.BatchNorm2d(out_channels // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(out_channels // 2, out_channels, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck residual block on ``x``."""
        activated = F.relu(self.bn_branch2a(x))
        branch = self.conv_branch2a(activated)
        branch = self.conv_branch2b1(self.dropout_2b1(F.relu(self.bn_branch2b1(branch))))
        branch = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(branch))))
        return self.conv_branch1(activated) + branch


class ResNet38d(nn.Module):
    """ResNet-38d feature extractor: (B, 3, H, W) normalized RGB -> (B, 4096, H/8, W/8).

    Args:
        pretrained_path: the MXNet ``ilsvrc-cls_rna-a1_cls1000_ep-0001.params`` or a PSA-named ``.pth``;
            the ImageNet classifier (``linear1000``) is dropped, any other key that does not fit is an error.
    """

    out_channels = 4096
    #: what EPS's ``resnet38_eps.Net`` keeps fixed (``not_training``)
    stem_names = ("conv1a", "b2", "b2_1", "b2_2")

    def __init__(self, pretrained_path: str | None = None) -> None:
        super().__init__()
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.b2 = ResBlock(64, 128, 128, stride=2)
        self.b2_1 = ResBlock(128, 128, 128)
        self.b2_2 = ResBlock(128, 128, 128)
        self.b3 = ResBlock(128, 256, 256, stride=2)
        self.b3_1 = ResBlock(256, 256, 256)
        self.b3_2 = ResBlock(256, 256, 256)
        self.b4 = ResBlock(256, 512, 512, stride=2)
        for i in range(1, 6):
            self.add_module(f"b4_{i}", ResBlock(512, 512, 512))
        self.b5 = ResBlock(512, 512, 1024, first_dilation=1, dilation=2)
        self.b5_1 = ResBlock(1024, 512, 1024, dilation=2)
        self.b5_2 = ResBlock(1024, 512, 1024, dilation=2)
        self.b6 = BottleneckBlock(1024, 2048, dilation=4, dropout=0.3)
        self.b7 = BottleneckBlock(2048, 4096, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(4096)
        self.blocks = [name for name, _ in self.named_children() if name.startswith("b") and name != "bn7"]
        if pretrained_path:
            load_checked(self, resnet38d_state_dict(pretrained_path), pretrained_path)

    def stem(self) -> list[nn.Module]:
        """conv1a and the b2 blocks, which EPS does not train."""
        return [getattr(self, name) for name in self.stem_names]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> the last feature map, after the final BatchNorm and ReLU."""
        x = self.conv1a(images)
        for name in self.blocks:
            x = getattr(self, name)(x)
        return F.relu(self.bn7(x))


def mxnet_to_psa(key: str) -> str | None:
    """PSA/EPS name of an MXNet ResNet-38d key (``arg:bn2b1_branch2a_gamma`` -> ``b2_1.bn_branch2a.weight``).

    Returns None for the ImageNet classifier (``linear1000``); raises WeightsError for an unknown key.
    """
    name = key.split(":", 1)[-1]
    if name.startswith("linear1000"):
        return None
    if name == "conv1a_weight":
        return "conv1a.weight"
    if name.startswith("bn7_") and name[4:] in _BN_NAMES:
        return f"bn7.{_BN_NAMES[name[4:]]}"
    match = _MXNET_KEY.match(name)
    if match is None:
        raise WeightsError(
            f"unknown key '{key}' in a ResNet-38d MXNet file (expected names like "
            "arg:res2a_branch1_weight or aux:bn2b1_branch2a_moving_mean)"
        )
    kind, stage, _, index, branch, leaf = match.groups()
    block = f"b{stage}" if index is None else f"b{stage}_{index}"
    if kind == "res":
        return f"{block}.conv_{branch}.weight" if leaf == "weight" else None
    return f"{block}.bn_{branch}.{_BN_NAMES[leaf]}" if leaf in _BN_NAMES else None


def resnet38d_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Backbone tensors of a ResNet-38d weight file under PSA names, without the ImageNet classifier.

    Accepts the MXNet ``.params`` file (read without mxnet) and PyTorch files in PSA naming: plain state
    dicts, ``module.``-prefixed (DataParallel) ones, and EPS checkpoints (their ``fc8`` classifier is dropped too).
    """
    raw = read_state_dict(path)
    state: dict[str, torch.Tensor] = {}
    if Path(path).suffix == ".params":
        for key, tensor in raw.items():
            name = mxnet_to_psa(key)
            if name is None and not key.split(":", 1)[-1].startswith("linear1000"):
                raise WeightsError(f"{path}: key '{key}' has no ResNet-38d counterpart")
            if name is not None:
                state[name] = tensor.float()
        return state
    for key, tensor in raw.items():
        key = key.removeprefix("module.")
        if not key.startswith(("fc8.", "linear1000.")):
            state[key] = tensor
    return state
