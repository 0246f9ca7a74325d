"""Optional fast paths of a network: channels-last memory format and ``torch.compile`` (both off by default)."""

from __future__ import annotations

import torch
from torch import nn


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the image batch (first argument) in channels-last memory format."""
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


def use_fast_paths(net: nn.Module, channels_last: bool, torch_compile: bool) -> None:
    """Switch ``net``'s fast paths on, in place (its parameter names, and so checkpoints, do not change).

    ``channels_last``: weights and every input batch in NHWC memory format (faster convolutions with cuDNN
    and tensor cores under mixed precision; the same numbers). ``torch_compile``: ``nn.Module.compile``, the
    network's forward compiled by ``torch.compile`` on its first call (minutes for a large network; each new
    input size compiles again).
    """
    if channels_last:
        net.to(memory_format=torch.channels_last)
        net.register_forward_pre_hook(_to_channels_last)
    if torch_compile:
        net.compile()
