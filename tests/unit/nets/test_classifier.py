"""The localization network: the backbone's features through a bias-free 1x1 convolution to C+1 logit maps."""

from __future__ import annotations

import torch
from torch import nn

from epspp.nets.classifier import Classifier


class _Features(nn.Module):
    """A stand-in backbone: the image at half resolution, 3 channels."""

    out_channels = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, :, ::2, ::2]


def test_one_logit_map_per_class_and_the_background_at_the_features_size() -> None:
    net = Classifier(_Features(), num_classes=4)
    assert net.head.weight.shape == (5, 3, 1, 1) and net.head.bias is None
    assert net(torch.zeros(2, 3, 8, 6)).shape == (2, 5, 4, 3)


def test_the_head_is_a_per_pixel_linear_map_of_the_features() -> None:
    net = Classifier(_Features(), num_classes=1)
    with torch.no_grad():
        net.head.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]).view(2, 3, 1, 1))
    image = torch.zeros(1, 3, 2, 2)
    image[0, :, 0, 0] = torch.tensor([1.0, 1.0, 2.0])
    logits = net(image)  # the (0, 0) feature: 1 + 2 + 6 = 9; -1 + 1 = 0
    assert logits.flatten().tolist() == [9.0, 0.0]
