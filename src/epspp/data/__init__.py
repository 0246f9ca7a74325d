"""Datasets in the VOC layout, transforms, the datamodule, and the dataset generators.

``EPSDataModule`` is imported lazily so that ``epspp prepare`` does not pay for Lightning's import.
"""

from epspp.data.classes import COCO_CLASSES, SYNTHETIC_CLASSES, VOC_CLASSES, read_classes, voc_palette
from epspp.data.io import DatasetError

__all__ = [
    "COCO_CLASSES",
    "SYNTHETIC_CLASSES",
    "VOC_CLASSES",
    "DatasetError",
    "EPSDataModule",
    "read_classes",
    "voc_palette",
]


def __getattr__(name: str):  # noqa: ANN202 (module attribute hook)
    if name == "EPSDataModule":
        from epspp.data.datamodule import EPSDataModule

        return EPSDataModule
    raise AttributeError(f"module 'epspp.data' has no attribute '{name}'")
