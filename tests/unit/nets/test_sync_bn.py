"""TimmSyncBatchNorm, what ``--trainer.sync_batchnorm true`` applies: every norm of our networks (timm's fused
norm + activation layers included) becomes synchronized and comes back, with the same parameters, checkpoint keys
and outputs."""

from __future__ import annotations

import pytest
import torch

TINY_RESNET = {"backbone": "resnet10t", "backbone_kwargs": {"channels": [8, 16, 32, 64], "stem_width": 8}}


def _norms(model: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(
    "module, backbone",
    [
        ("localization", TINY_RESNET),
        ("deeplabv2", TINY_RESNET),
        ("deeplabv3plus", TINY_RESNET),
        ("localization", {"backbone": "regnetx_002"}),  # timm's fused BatchNormAct2d layers
    ],
)
def test_sync_batchnorm_converts_every_norm_and_keeps_checkpoints_and_inference(module: str, backbone: dict) -> None:
    """What ``--trainer.sync_batchnorm true`` does to our networks (the CLI's TimmSyncBatchNorm plugin)."""
    from pytorch_lightning.plugins import TorchSyncBatchNorm
    from timm.layers.norm_act import BatchNormAct2d

    from epspp.nets.sync_bn import TimmSyncBatchNorm
    from epspp.tasks import LocalizationModule, SegmentationModule

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        if module == "localization":
            return LocalizationModule(num_classes=5, output_stride=16, **backbone).eval()
        return SegmentationModule(num_classes=5, architecture=module, output_stride=16, **backbone).eval()

    model = build()
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        before = model(images)
    norms = _norms(model, torch.nn.modules.batchnorm._BatchNorm)
    fused = _norms(model, BatchNormAct2d)
    parameters = [id(p) for p in model.parameters()]
    keys = {k: v.shape for k, v in model.state_dict().items()}

    synced = TimmSyncBatchNorm().apply(model)
    assert norms > 0 and _norms(synced, torch.nn.SyncBatchNorm) == norms  # all of them
    assert [id(p) for p in synced.parameters()] == parameters  # the optimizer's parameters are the same
    assert {k: v.shape for k, v in synced.state_dict().items()} == keys  # checkpoints load either way
    with torch.no_grad():
        assert torch.equal(synced(images), before)  # nothing dropped (e.g. a fused activation)
    restored = TimmSyncBatchNorm().revert(synced).eval()  # (Lightning's revert makes new modules in train mode)
    assert _norms(restored, torch.nn.SyncBatchNorm) == 0
    assert _norms(restored, torch.nn.modules.batchnorm._BatchNorm) == norms
    assert _norms(restored, BatchNormAct2d) == fused  # (plain ones come back as Lightning's _BatchNormXd)
    with torch.no_grad():
        assert torch.equal(restored(images), before)
    if backbone["backbone"] == "regnetx_002":  # why the CLI does not use Lightning's converter as it is
        with torch.no_grad():
            assert not torch.equal(TorchSyncBatchNorm().apply(build())(images), before)


@pytest.mark.parametrize(("affine", "training"), [(True, False), (False, True)])
def test_revert_keeps_a_fused_norms_settings_statistics_activation_and_mode(affine: bool, training: bool) -> None:
    """One timm ``BatchNormAct2d`` (eps 1e-3, momentum 0.3, ReLU6, affine or not) through apply and revert: the same
    settings, statistics, parameters, activation and train/eval mode come back."""
    from timm.layers.norm_act import BatchNormAct2d, SyncBatchNormAct

    from epspp.nets.sync_bn import TimmSyncBatchNorm

    norm = BatchNormAct2d(4, eps=1e-3, momentum=0.3, affine=affine, act_layer=torch.nn.ReLU6)
    norm.running_mean.copy_(torch.arange(4.0))
    synced = TimmSyncBatchNorm().apply(norm).train(training)
    assert isinstance(synced, SyncBatchNormAct)
    restored = TimmSyncBatchNorm().revert(synced)
    assert type(restored) is BatchNormAct2d
    assert (restored.eps, restored.momentum, restored.affine, restored.training) == (1e-3, 0.3, affine, training)
    assert torch.equal(restored.running_mean, torch.arange(4.0)) and isinstance(restored.act, torch.nn.ReLU6)
    assert (restored.weight is synced.weight) if affine else restored.weight is None
