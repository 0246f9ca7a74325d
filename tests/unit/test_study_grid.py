"""The study's grid, saliency variants and aggregation, without training anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import read_png

from epspp.data.synthetic import generate_synthetic, write_saliency_variant
from epspp.study import (
    DEFAULT_METHODS,
    STUDY_METHODS,
    Cell,
    Training,
    plot_lines,
    saliency_grid,
    saliency_markdown,
    saliency_rows,
    summarize,
    unique_trainings,
)


def test_default_grid_shares_cam_and_the_clean_point() -> None:
    cells = saliency_grid(["scratch", "pretrained"], ["missing_class", "missing_object", "false_coverage"],
                          [0, 0.25, 0.5, 0.75], ["cam", "eps", "eps++"], [0, 1])
    assert len(cells) == 2 * 3 * 4 * 3 * 2
    trainings = unique_trainings(cells)
    # per regime: CAM once per seed; EPS and EPS++: the clean point + 3 error types x 3 rates, per seed
    assert len(trainings) == 2 * (2 + 2 * 2 * (1 + 9)) == 84
    assert Cell("scratch", "false_coverage", 0.0, "eps", 1).training \
        == Cell("scratch", "missing_class", 0.0, "eps", 1).training == Training("scratch", "eps", "clean", 1)
    assert Cell("pretrained", "missing_object", 0.5, "cam", 0).training == Training("pretrained", "cam", "clean", 0)
    assert Cell("pretrained", "missing_object", 0.5, "eps++", 0).training \
        != Cell("scratch", "missing_object", 0.5, "eps++", 0).training  # the regimes share no training
    ablation = Training("pretrained", "eps++/no-pamr", "missing_object_0.5", 0)
    assert ablation.folder(Path("runs")) == Path("runs/pretrained/eps++_no-pamr/missing_object_0.5/seed0")


def test_the_ablation_arm_is_the_eps_plus_plus_config_without_pamr() -> None:
    assert STUDY_METHODS["eps++/no-pamr"] == (STUDY_METHODS["eps++"][0], ["--model.init_args.ird_refine", "none"])
    assert STUDY_METHODS["eps++"][1] == [] and "eps++/no-pamr" not in DEFAULT_METHODS


def test_rows_and_the_mean_and_spread_over_seeds() -> None:
    cells = saliency_grid(["scratch"], ["missing_class"], [0.0, 0.5], ["eps", "eps++"], [0, 1])
    scores = {Training("scratch", "eps", "clean", 0): {"configured": 40.0, "best": 50.0},
              Training("scratch", "eps", "clean", 1): {"configured": 44.0, "best": 51.0},
              Training("scratch", "eps", "missing_class_0.5", 0): {"configured": 30.0, "best": 35.5},
              Training("scratch", "eps", "missing_class_0.5", 1): {"configured": 31.0, "best": 36.5}}
    for seed, share in ((0, 0.5), (1, 0.9)):  # IRD's telemetry: the share of salient pixels dropped
        for saliency in ("clean", "missing_class_0.5"):
            scores[Training("scratch", "eps++", saliency, seed)] = {"configured": 20.0, "best": 21.0,
                                                                     "inconsistent_salient": share}
    rows = saliency_rows(cells, scores)
    assert len(rows) == 16 and list(rows[0]) == ["regime", "error_type", "rate", "method", "seed", "threshold", "miou",
                                                 "inconsistent_salient"]
    assert {r["inconsistent_salient"] for r in rows if r["method"] == "eps"} == {""}  # no IRD, no telemetry
    stats = summarize(rows, ("error_type", "rate", "method", "threshold"))
    assert stats[("missing_class", 0.0, "eps", "configured")] == pytest.approx((42.0, 2.0, 2))  # mean, half-range
    assert stats[("missing_class", 0.5, "eps", "best")] == pytest.approx((36.0, 0.5, 2))
    health = summarize(rows, ("method", "threshold"), "inconsistent_salient")
    assert ("eps", "best") not in health and health[("eps++", "best")] == pytest.approx((0.7, 0.2, 4))
    text = saliency_markdown(rows, ["scratch"], ["missing_class"], [0.0, 0.5], ["eps", "eps++"], [0, 1],
                             {("scratch", "missing_class", 0.5, "eps++"): 1})
    assert "| rate | eps (configured) | eps (best) | eps++ (configured) | eps++ (best) | eps++ N∩S |" in text
    assert "| 0.5 | 30.5 ± 0.5 | 36.0 ± 0.5 | 20.0 ± 0.0 | 21.0 ± 0.0 | 0.70 ± 0.20 [1/2] |" in text
    assert "| 0 | 42.0 ± 2.0 | 50.5 ± 0.5 | 20.0 ± 0.0 | 21.0 ± 0.0 | 0.70 ± 0.20 [0/2] |" in text


def test_the_figure_has_a_colour_per_series_and_a_line_style_per_regime(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.plot

    def plot(self, *args, **kwargs):
        drawn.append((kwargs["label"], kwargs["color"], kwargs["linestyle"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    lines = {(name, regime): ([1.0, 2.0], [0.1, 0.1]) for regime in ("scratch", "pretrained") for name in ("a", "b")}
    plot_lines(tmp_path / "f.png", ["p"], [0.0, 1.0], lambda _: lines, "x", lambda p: f"panel {p}")
    assert drawn == [("a (scratch)", "C0", "--"), ("b (scratch)", "C1", "--"), ("a (pretrained)", "C0", "-"),
                     ("b (pretrained)", "C1", "-")]
    from PIL import Image

    assert Image.open(tmp_path / "f.png").info["Description"] == "panels: panel p"


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


def test_the_tables_go_to_wandb_with_the_empty_telemetry_of_cam_and_eps(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from PIL import Image

    from epspp.study import STUDY_COLUMNS, log_to_wandb

    cells = saliency_grid(["scratch"], ["missing_class"], [0.0], ["eps", "eps++"], [0])
    scores = {Training("scratch", "eps", "clean", 0): {"configured": 40.0, "best": 50.0},
              Training("scratch", "eps++", "clean", 0): {"configured": 41.0, "best": 51.0,
                                                          "inconsistent_salient": 0.5}}
    rows = saliency_rows(cells, scores)  # "" for EPS, a number for EPS++: one column of two types in the CSV
    Image.new("RGB", (8, 8)).save(tmp_path / "f.png")
    log_to_wandb(tmp_path, "study/test", STUDY_COLUMNS, rows, tmp_path / "f.png")
    assert list((tmp_path / "wandb").glob("offline-run-*"))
