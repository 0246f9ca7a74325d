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
