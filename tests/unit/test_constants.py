"""The shared constants pinned to their published values (not to another epspp function)."""

from __future__ import annotations

from epspp.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD


def test_imagenet_normalisation_is_torchvisions() -> None:
    # torchvision's ImageNet models (and timm's IMAGENET_DEFAULT_MEAN/STD): RGB order, 0..1 scale
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


def test_the_ignore_label_is_voc_s_255() -> None:
    assert IGNORE_INDEX == 255
