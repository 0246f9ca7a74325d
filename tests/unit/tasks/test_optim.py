"""Parameter groups of the papers' optimizers (EPS module/optimizer.py, deeplab-pytorch main.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epspp.tasks.optim import build_optimizer, poly_schedule


def _net() -> tuple[nn.Module, nn.Module]:
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1, bias=False))
    head = nn.Conv2d(4, 3, 1, bias=True)
    backbone[2].weight.requires_grad_(False)  # a frozen layer is left out
    return backbone, head


def test_eps_groups_1x_2x_10x_20x_with_decay_on_weights_only() -> None:
    backbone, head = _net()
    optimizer = build_optimizer(
        backbone,
        head,
        "sgd",
        lr=0.01,
        head_lr_mult=10,
        weight_decay=5e-4,
        momentum=5e-4,
        bias_lr_mult=2,
        bias_decay=False,
    )
    groups = [(len(g["params"]), g["lr"], g["weight_decay"]) for g in optimizer.param_groups]
    # backbone: conv weight + BN weight; conv bias + BN bias; head weight; head bias
    assert groups == [
        (2, 0.01, 5e-4),
        (2, pytest.approx(0.02), 0.0),
        (1, pytest.approx(0.1), 5e-4),
        (1, pytest.approx(0.2), 0.0),
    ]
    assert all(g["momentum"] == 5e-4 for g in optimizer.param_groups)  # the official runs' momentum
    assert all(p is not backbone[2].weight for g in optimizer.param_groups for p in g["params"])


def test_default_groups_keep_one_rate_and_decay_per_part() -> None:
    backbone, head = _net()
    optimizer = build_optimizer(backbone, head, lr=0.1)
    assert [(len(g["params"]), g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
        (4, 0.1, 5e-4),
        (2, pytest.approx(1.0), 5e-4),
    ]


@pytest.mark.parametrize(
    ("bias_lr_mult", "bias_decay", "bias_groups"),
    [
        (2.0, True, [(2, pytest.approx(0.02), 5e-4), (1, pytest.approx(0.2), 5e-4)]),  # a faster rate only
        (1.0, False, [(2, 0.01, 0.0), (1, pytest.approx(0.1), 0.0)]),  # no decay only
    ],
)
def test_biases_get_their_own_groups_when_either_their_rate_or_their_decay_differs(
    bias_lr_mult: float, bias_decay: bool, bias_groups: list
) -> None:
    """Each of the two bias options alone sets the biases apart (the weights' groups unchanged)."""
    backbone, head = _net()
    optimizer = build_optimizer(backbone, head, lr=0.01, bias_lr_mult=bias_lr_mult, bias_decay=bias_decay)
    groups = [(len(g["params"]), g["lr"], g["weight_decay"]) for g in optimizer.param_groups]
    assert groups == [(2, 0.01, 5e-4), bias_groups[0], (1, pytest.approx(0.1), 5e-4), bias_groups[1]]


def _rates(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list:
    """The first group's learning rate at each of ``steps`` optimizer + scheduler steps."""
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_poly_decay_matches_eps_polyoptimizer() -> None:
    backbone, head = _net()
    optimizer = build_optimizer(backbone, head, lr=0.01)
    scheduler = poly_schedule(optimizer, max_steps=10, power=0.9)["scheduler"]
    rates = _rates(optimizer, scheduler, 4)
    # PolyOptimizer: lr_i = lr * (1 - i / max_step) ** 0.9 at step i
    assert rates == pytest.approx([0.01 * (1 - i / 10) ** 0.9 for i in range(4)])


def test_poly_decay_of_another_power_ends_at_zero_and_a_zero_step_count_counts_as_one() -> None:
    """power 2 (not the recipe's 0.9) over 4 steps: 1, 0.5625, 0.25, 0.0625, then 0 and 0 past the end; a trainer
    that estimates 0 steps gets one (no division by 0)."""
    backbone, head = _net()
    optimizer = build_optimizer(backbone, head, lr=0.01)
    scheduler = poly_schedule(optimizer, max_steps=4, power=2.0)["scheduler"]
    rates = _rates(optimizer, scheduler, 6)
    assert rates == pytest.approx([0.01, 0.005625, 0.0025, 0.000625, 0.0, 0.0])
    optimizer = build_optimizer(backbone, head, lr=0.01)
    scheduler = poly_schedule(optimizer, max_steps=0)["scheduler"]
    assert optimizer.param_groups[0]["lr"] == 0.01
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.0


@pytest.mark.parametrize(("name", "expected"), [("adam", 0.9), ("adamw", 0.95), ("sgd", 0.95)])
def test_each_optimizer_applies_its_own_weight_decay(name: str, expected: float) -> None:
    """One step from w = 1 with a zero gradient, lr 0.1, decay 0.5, by hand: Adam adds the decay to the gradient
    (g = 0.5, its first step moves by lr: 0.9); AdamW decays the weight apart (1 - 0.1 * 0.5 = 0.95, then a zero
    step); SGD's L2 gradient 0.5 moves by lr * 0.5 (0.95)."""
    backbone, head = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    head.weight.requires_grad_(False)
    nn.init.ones_(backbone.weight)
    optimizer = build_optimizer(backbone, head, name, lr=0.1, weight_decay=0.5, momentum=0.0)
    backbone.weight.grad = backbone.weight.new_zeros(1, 1)
    optimizer.step()
    assert float(backbone.weight) == pytest.approx(expected, abs=1e-6)
