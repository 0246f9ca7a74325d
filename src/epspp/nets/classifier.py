"""The localization network: a feature backbone and a 1x1 convolution to C+1 logit maps."""

from __future__ import annotations

import torch
from torch import nn

from epspp.nets.backbone import FeatureBackbone


class Classifier(nn.Module):
    """Backbone + 1x1 convolution to C+1 logit maps; GAP of the object maps gives class logits."""

    def __init__(self, backbone: FeatureBackbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(backbone.out_channels, num_classes + 1, kernel_size=1, bias=False)
        nn.init.xavier_uniform_(self.head.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> logit maps (B, C+1, h, w)."""
        return self.head(self.backbone(images))
