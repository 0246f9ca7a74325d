"""The localization backbone (epspp.nets.backbone.FeatureBackbone) over a timm model: which layers
``freeze_stem`` freezes."""

from __future__ import annotations

import torch
from fixtures.helpers import TINY, TINY_KWARGS

from epspp.nets.backbone import FeatureBackbone


def _top_modules(backbone: FeatureBackbone, trainable: bool) -> set[str]:
    return {name.split(".")[0] for name, p in backbone.body.named_parameters() if p.requires_grad == trainable}


def test_freeze_stem_of_a_timm_resnet_stops_at_its_first_stride_4_level() -> None:
    """A timm ResNet's stem is conv1, bn1 and layer1 (its first level at stride 4, as EPS leaves ResNet-38d's
    conv1a and b2 untrained): those have no gradient, layer2 onwards train."""
    torch.manual_seed(0)
    frozen = FeatureBackbone(TINY, output_stride=16, backbone_kwargs=TINY_KWARGS, freeze_stem=True)
    assert [(level["module"], level["reduction"]) for level in frozen.body.feature_info.info][:3] == [
        ("act1", 2),
        ("layer1", 4),
        ("layer2", 8),
    ]
    assert _top_modules(frozen, trainable=False) == {"conv1", "bn1", "layer1"}
    assert _top_modules(frozen, trainable=True) == {"layer2", "layer3", "layer4"}
    free = FeatureBackbone(TINY, output_stride=16, backbone_kwargs=TINY_KWARGS)
    assert _top_modules(free, trainable=False) == set()


def test_freeze_bn_of_a_timm_backbone_fixes_every_batchnorm_and_leaves_the_convolutions_training() -> None:
    """``freeze_bn`` on a timm network (the option away from its default): no BatchNorm2d left, the statistics unchanged
    by a forward in training mode, every convolution still trainable."""
    torch.manual_seed(0)
    frozen = FeatureBackbone(TINY, output_stride=16, backbone_kwargs=TINY_KWARGS, freeze_bn=True).train()
    assert not [m for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    convs = [m for m in frozen.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.requires_grad for m in convs)
    statistics = {k: v.clone() for k, v in frozen.state_dict().items() if "running" in k}
    frozen(torch.randn(2, 3, 40, 56))
    assert statistics and all(torch.equal(v, frozen.state_dict()[k]) for k, v in statistics.items())


def test_a_local_weights_file_replaces_timms_download(monkeypatch, tmp_path) -> None:
    """``pretrained`` with ``pretrained_path``: timm is asked for no weights, the local file is loaded instead;
    ``pretrained`` alone asks timm for them."""
    import timm

    from epspp.nets import backbone as backbone_module
    from epspp.nets.backbone import create_backbone

    calls: list = []
    real = timm.create_model
    monkeypatch.setattr(
        timm,
        "create_model",
        lambda name, **kw: calls.append(kw["pretrained"]) or real(name, **kw | {"pretrained": False}),
    )
    monkeypatch.setattr(backbone_module, "load_feature_weights", lambda model, path, name: calls.append((path, name)))
    create_backbone(TINY, pretrained=True, pretrained_path=str(tmp_path / "w.pth"), backbone_kwargs=TINY_KWARGS)
    create_backbone(TINY, pretrained=True, backbone_kwargs=TINY_KWARGS)
    assert calls == [False, (tmp_path / "w.pth", TINY), True]
