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


def test_a_whole_timm_checkpoint_fills_an_extractor_whose_names_flatten_the_first_dot(tmp_path) -> None:
    """timm's feature extractor names ConvNeXt's ``stem.0`` ``stem_0`` and ``stages.1`` ``stages_1``: a whole
    checkpoint of the network (``.safetensors``) loads into it, its ``head`` left out; a damaged file is one line."""
    import pytest
    import safetensors.torch
    import timm

    from epspp.nets.backbone import load_feature_weights
    from epspp.nets.weights import WeightsError

    if "test_convnext" not in timm.list_models("test_convnext"):
        pytest.skip(f"timm {timm.__version__} has no test_convnext")
    torch.manual_seed(0)
    source = timm.create_model("test_convnext")
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.uniform_(-1, 1)
    safetensors.torch.save_file(source.state_dict(), tmp_path / "w.safetensors")
    extractor = timm.create_model("test_convnext", features_only=True, out_indices=(-1,))
    load_feature_weights(extractor, tmp_path / "w.safetensors", "test_convnext")
    weights, loaded = source.state_dict(), extractor.state_dict()
    assert "stem_0.weight" in loaded and any(key.startswith("head.") for key in weights)
    assert all(torch.equal(value, weights[key.replace("_", ".", 1)]) for key, value in loaded.items())
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match=r"cannot read .*bad\.safetensors as safetensors .*; is it truncated\?"):
        load_feature_weights(extractor, tmp_path / "bad.safetensors", "test_convnext")
