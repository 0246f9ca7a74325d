"""LightningModules that train the networks of ``epspp.nets``: localization (stage 1) and segmentation (stage 3)."""

from epspp.tasks.localization import LocalizationModule
from epspp.tasks.segmentation import SegmentationModule

__all__ = ["LocalizationModule", "SegmentationModule"]
