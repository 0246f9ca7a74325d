"""Checkpoints written before issue 33 name ``epspp.models.<Module>`` in their hyper-parameters: they still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from fixtures.helpers import TINY, TINY_KWARGS

import epspp.models
from epspp.tasks import LocalizationModule


def test_old_import_path_names_the_same_classes() -> None:
    assert epspp.models.LocalizationModule is LocalizationModule


@pytest.mark.parametrize("loader", [LocalizationModule, epspp.models.LocalizationModule, pl.LightningModule])
def test_a_checkpoint_naming_epspp_models_loads(tmp_path: Path, loader: type) -> None:
    model = LocalizationModule(
        num_classes=2,
        class_names=["background", "a", "b"],
        backbone=TINY,
        backbone_kwargs=TINY_KWARGS,
        pretrained=False,
    )
    hyper = dict(model.hparams) | {
        "_class_path": "epspp.models.LocalizationModule",
        "_instantiator": "pytorch_lightning.cli.instantiate_module",
    }
    path = tmp_path / "old.ckpt"
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": hyper, "pytorch-lightning_version": pl.__version__}, path
    )
    loaded = loader.load_from_checkpoint(path, map_location="cpu")
    assert isinstance(loaded, LocalizationModule)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
