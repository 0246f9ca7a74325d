"""Networks and LightningModules of the three stages."""

from epspp.models.localization import LocalizationModule
from epspp.models.segmentation import SegmentationModule

__all__ = ["LocalizationModule", "SegmentationModule"]
