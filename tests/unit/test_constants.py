"""The shared constants pinned to their published values (not to another epspp function)."""

from __future__ import annotations

from epspp.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD


def test_imagenet_normalisation_is_torchvisions() -> None:
    # torchvision's ImageNet models (and timm's IMAGENET_DEFAULT_MEAN/STD): RGB order, 0..1 scale
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


def test_the_ignore_label_is_voc_s_255() -> None:
    assert IGNORE_INDEX == 255


def test_the_saliency_error_flags_are_the_documented_bits() -> None:
    """docs/data.md and docs/monitoring_ird.md: ``<saliency_dir>/errors/<id>.png``, bit flags 1 missing class,
    2 missing part, 4 false coverage, 8 halo; the injected-error region E is bits 1, 2 or 4 (not the halo)."""
    from epspp.constants import ERRORS_DIR, FALSE_COVERAGE, HALO, INJECTED, MISSING_CLASS, MISSING_PART

    assert (MISSING_CLASS, MISSING_PART, FALSE_COVERAGE, HALO) == (1, 2, 4, 8)
    assert INJECTED == 7 and ERRORS_DIR == "errors"
