"""Image-level labels of a dataset: ``cls_labels.json`` by class name and label vectors that do not fit the classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import split_ids

from epspp.data.dataset import VOCLayoutDataset
from epspp.data.io import DatasetError

C = 5  # object classes of the synthetic dataset


def test_labels_of_the_wrong_length_are_one_error(synthetic_copy: Path) -> None:
    ids = split_ids(synthetic_copy, "train")
    np.save(synthetic_copy / "cls_labels.npy", {i: np.ones(C + 1, np.float32) for i in ids})
    with pytest.raises(DatasetError, match=r"has shape \(6,\), but the dataset has 5 object classes"):
        VOCLayoutDataset(synthetic_copy, "train", C)


def test_cls_labels_json_with_class_names(synthetic_copy: Path) -> None:
    ids = split_ids(synthetic_copy, "train")
    (synthetic_copy / "cls_labels.json").write_text(json.dumps({i: ["square", "boat"] for i in ids}))
    dataset = VOCLayoutDataset(synthetic_copy, "train", C)
    assert dataset.labels[ids[0]].tolist() == [0, 1.0, 0, 0, 1.0]
    (synthetic_copy / "cls_labels.json").write_text(json.dumps({i: ["dragon"] for i in ids}))
    with pytest.raises(DatasetError, match=r"classes \['dragon'\] that classes.json does not list"):
        VOCLayoutDataset(synthetic_copy, "train", C)


def test_cls_labels_json_wins_over_cls_labels_npy(synthetic_copy: Path) -> None:
    ids = split_ids(synthetic_copy, "train")
    np.save(synthetic_copy / "cls_labels.npy", {i: np.array([1, 0, 0, 0, 0], np.float32) for i in ids})
    (synthetic_copy / "cls_labels.json").write_text(json.dumps({i: ["boat"] for i in ids}))
    labels = VOCLayoutDataset(synthetic_copy, "train", C).labels
    assert labels[ids[0]].tolist() == [0, 0, 0, 0, 1.0]
