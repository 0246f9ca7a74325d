"""The study's grid, saliency variants and aggregation, without training anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import read_png

from epspp.data.synthetic import generate_synthetic, write_saliency_variant
from epspp.study import Cell, Training, saliency_grid, saliency_rows, summarize, unique_trainings


def test_default_grid_shares_cam_and_the_clean_point() -> None:
    cells = saliency_grid(["missing_class", "missing_object", "false_coverage"], [0, 0.25, 0.5, 0.75],
                          ["cam", "eps", "eps++"], [0, 1])
    assert len(cells) == 3 * 4 * 3 * 2
    trainings = unique_trainings(cells)
    # CAM once per seed; EPS and EPS++: the clean point + 3 error types x 3 rates, per seed
    assert len(trainings) == 2 + 2 * 2 * (1 + 9) == 42
    assert Cell("false_coverage", 0.0, "eps", 1).training == Cell("missing_class", 0.0, "eps", 1).training \
        == Training("eps", "clean", 1)
    assert Cell("missing_object", 0.5, "cam", 0).training == Training("cam", "clean", 0)
    assert Cell("missing_object", 0.5, "eps++", 0).training == Training("eps++", "missing_object_0.5", 0)


def test_rows_and_the_mean_and_spread_over_seeds() -> None:
    cells = saliency_grid(["missing_class"], [0.0, 0.5], ["eps"], [0, 1])
    scores = {Training("eps", "clean", 0): {"configured": 40.0, "best": 50.0},
              Training("eps", "clean", 1): {"configured": 44.0, "best": 51.0},
              Training("eps", "missing_class_0.5", 0): {"configured": 30.0, "best": 35.5},
              Training("eps", "missing_class_0.5", 1): {"configured": 31.0, "best": 36.5}}
    rows = saliency_rows(cells, scores)
    assert len(rows) == 8 and set(rows[0]) == {"error_type", "rate", "method", "seed", "threshold", "miou"}
    stats = summarize(rows, ("error_type", "rate", "method", "threshold"))
    assert stats[("missing_class", 0.0, "eps", "configured")] == pytest.approx((42.0, 2.0, 2))  # mean, half-range
    assert stats[("missing_class", 0.5, "eps", "best")] == pytest.approx((36.0, 0.5, 2))


def test_saliency_variant_keeps_images_and_masks_and_injects_only_its_error(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "data", num_train=24, num_val=4, image_size=32, missing_class_rate=0.0,
                              missing_part_rate=0.0, false_coverage_rate=0.0)
    clean = write_saliency_variant(root, tmp_path / "clean")
    half = write_saliency_variant(root, tmp_path / "half", missing_class_rate=0.5)
    full = write_saliency_variant(root, tmp_path / "full", missing_class_rate=1.0)
    assert clean["splits"]["train"] == {"images": 24, "missing_class": 0, "missing_part": 0, "false_coverage": 0}
    assert 0 < half["splits"]["train"]["missing_class"] < 24 and half["splits"]["train"]["false_coverage"] == 0
    assert full["splits"]["train"]["missing_class"] == 24  # every image has a class to lose
    ids = [f"train_{i:06d}" for i in range(24)] + [f"val_{i:06d}" for i in range(4)]
    changed = 0
    for image_id in ids:
        base = read_png(root / "saliency" / f"{image_id}.png")
        assert np.array_equal(read_png(tmp_path / "clean" / f"{image_id}.png"), base)  # rate 0 = the dataset's
        half_map, full_map = (read_png(tmp_path / v / f"{image_id}.png") for v in ("half", "full"))
        # an image that lost a class at rate 0.5 lost the same one at rate 1 (the draws are nested)
        if not np.array_equal(half_map, base):
            changed += 1
            assert np.array_equal(half_map, full_map)
        assert half_map.sum() <= base.sum() and full_map.sum() <= base.sum()  # a missing class only removes
    assert changed == half["splits"]["train"]["missing_class"] + half["splits"]["val"]["missing_class"]
    assert json.loads((tmp_path / "half" / "saliency.json").read_text())["rates"]["missing_class_rate"] == 0.5


def test_regenerating_a_saliency_variant_keeps_the_users_files_and_refuses_other_folders(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "data", num_train=3, num_val=1, image_size=32, missing_class_rate=0.0,
                              missing_part_rate=0.0, false_coverage_rate=0.0)
    write_saliency_variant(root, tmp_path / "variant", missing_class_rate=1.0)
    (tmp_path / "variant" / "my_notes.txt").write_text("mine")
    write_saliency_variant(root, tmp_path / "variant")  # the study reruns with another rate
    assert (tmp_path / "variant" / "my_notes.txt").read_text() == "mine"
    assert np.array_equal(read_png(tmp_path / "variant" / "train_000000.png"),
                          read_png(root / "saliency" / "train_000000.png"))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="not a saliency variant"):
        write_saliency_variant(root, tmp_path / "photos")
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"not ours"
