"""Datasets in the VOC layout, transforms, the datamodule, and the dataset generators."""

from epspp.data.classes import COCO_CLASSES, SYNTHETIC_CLASSES, VOC_CLASSES, read_classes, voc_palette
from epspp.data.datamodule import EPSDataModule
from epspp.data.dataset import VOCLayoutDataset, image_labels
from epspp.data.io import DatasetError

__all__ = [
    "COCO_CLASSES", "SYNTHETIC_CLASSES", "VOC_CLASSES", "DatasetError", "EPSDataModule", "VOCLayoutDataset",
    "image_labels", "read_classes", "voc_palette",
]
