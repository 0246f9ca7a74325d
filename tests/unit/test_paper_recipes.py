"""The papers' hyper-parameters in the shipped VOC and COCO configs, pinned to the values ARCHITECTURE.md cites
(EPS/EPS++ stage 1: SGD lr 0.01, poly 0.9, 1x/2x/10x/20x groups, momentum 5e-4; VOC batch 8, crop 448, long side
256-512, 20k iterations, tau 0.4, lam 0.5; COCO batch 16, crop 321, long side 256-448, 256.5k, tau 0.4, lam 0.9;
stage 3 deeplab-pytorch: SGD lr 2.5e-4, momentum 0.9, wd 5e-4, poly 0.9, batch 5 x 2, crop 321, scales 0.5-1.5,
20k iterations)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import epspp

CONFIGS = Path(epspp.__file__).parent / "configs"
STAGE1 = {"voc": (8, 448, [256, 512], 20000), "coco": (16, 321, [256, 448], 256500)}


def _load(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


@pytest.mark.parametrize("dataset", sorted(STAGE1))
@pytest.mark.parametrize("method", ["eps", "eps++"])
def test_stage_1_recipe_is_the_papers(dataset: str, method: str) -> None:
    config = _load(f"{dataset}/localization_{method}.yaml")
    model, data = config["model"]["init_args"], config["data"]
    batch, crop, long_side, steps = STAGE1[dataset]
    assert (data["batch_size"], data["crop_size"], data["resize_long"]) == (batch, crop, long_side)
    assert config["trainer"]["max_steps"] == steps
    assert (model["lr"], model["poly_power"], model["weight_decay"]) == (0.01, 0.9, 0.0005)
    assert (model["head_lr_mult"], model["bias_lr_mult"]) == (10.0, 2.0)
    assert model["momentum"] == 0.0005  # EPS's PolyOptimizer passes weight_decay into SGD's momentum slot
    if method == "eps":
        assert (model["tau"], model["lam"]) == (0.4, 0.5 if dataset == "voc" else 0.9)


def test_stage_3_recipe_is_deeplab_pytorchs() -> None:
    config = _load("voc/segmentation_wsss.yaml")
    model, data, trainer = config["model"]["init_args"], config["data"], config["trainer"]
    assert (model["lr"], model["momentum"], model["weight_decay"], model["poly_power"]) == (0.00025, 0.9, 0.0005, 0.9)
    assert (model["head_lr_mult"], model["bias_lr_mult"], model["bias_decay"]) == (10.0, 2.0, False)
    assert (data["batch_size"], trainer["accumulate_grad_batches"], trainer["max_steps"]) == (5, 2, 20000)
    assert (data["crop_size"], data["train_scales"]) == (321, [0.5, 0.75, 1.0, 1.25, 1.5])
    assert model["msc_scales"] == [1.0, 0.75, 0.5]
