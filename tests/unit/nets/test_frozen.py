"""Frozen layers: BatchNorm fixed at its loaded statistics in training too, and parameters without gradients."""

from __future__ import annotations

import torch
from torch import nn

from epspp.nets.frozen import freeze_batchnorm, freeze_parameters


def _net() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.Conv2d(2, 1, 1))
    norm = net[1]
    norm.running_mean.copy_(torch.tensor([1.0, -2.0]))
    norm.running_var.copy_(torch.tensor([4.0, 0.25]))
    norm.weight.data.copy_(torch.tensor([2.0, 3.0]))
    norm.bias.data.copy_(torch.tensor([0.5, -1.0]))
    return net


def test_frozen_batchnorm_normalizes_with_the_loaded_statistics_in_training() -> None:
    net = freeze_batchnorm(_net()).train()
    norm = net[1]
    assert not isinstance(norm, nn.BatchNorm2d) and not list(norm.parameters())  # nothing to train
    x = torch.tensor([3.0, 0.0]).view(1, 2, 1, 1)
    # (x - mean) / sqrt(var) * weight + bias, eps 1e-5 aside: (3 - 1) / 2 * 2 + 0.5 = 2.5; (0 + 2) / 0.5 * 3 - 1 = 11
    torch.testing.assert_close(norm(x).flatten(), torch.tensor([2.5, 11.0]), rtol=1e-4, atol=1e-4)
    net(torch.randn(4, 1, 3, 3))  # a training step's forward leaves the statistics as they were
    torch.testing.assert_close(norm.running_mean, torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(norm.running_var, torch.tensor([4.0, 0.25]))


def test_a_batchnorm_itself_is_returned_frozen() -> None:
    frozen = freeze_batchnorm(nn.BatchNorm2d(3))
    assert not isinstance(frozen, nn.BatchNorm2d) and frozen.running_mean.shape == (3,)


def test_freeze_parameters_of_some_modules_only() -> None:
    net = _net()
    freeze_parameters([net[0], net[1]])
    assert [p.requires_grad for p in net.parameters()] == [False, False, False, True, True]
    freeze_parameters([])  # nothing to freeze is no error
