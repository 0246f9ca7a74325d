"""The study's grid, saliency variants and aggregation, without training anything."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import read_png

from epspp.data.synthetic import generate_synthetic, write_saliency_variant
from epspp.study.figures import plot_lines
from epspp.study.grid import (
    DEFAULT_GRID,
    DEFAULT_METHODS,
    STUDY_METHODS,
    Cell,
    Training,
    saliency_grid,
    unique_trainings,
)
from epspp.study.stats import Estimate, verdict
from epspp.study.studies import saliency_claims, saliency_markdown, saliency_rows, summarize


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


def test_the_arms_are_the_eps_plus_plus_config_with_one_override() -> None:
    assert STUDY_METHODS["eps++/no-pamr"] == (STUDY_METHODS["eps++"][0], ["--model.init_args.ird_refine", "none"])
    assert STUDY_METHODS["eps++/softmax"] == (STUDY_METHODS["eps++"][0],
                                              ["--model.init_args.ird_threshold_maps", "softmax"])
    assert STUDY_METHODS["eps++"][1] == [] and "eps++/no-pamr" not in DEFAULT_METHODS
    assert len(DEFAULT_GRID["seeds"]) >= 3


def test_the_95_percent_t_interval_and_the_verdict_rules_by_hand() -> None:
    # 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    three = Estimate((1.0, 2.0, 3.0))
    assert three.mean == 2.0 and three.half == pytest.approx(2.484138, abs=1e-6)
    assert verdict(three, +1) == "not significant"  # [-0.48, 4.48] holds 0
    shifted = Estimate((3.0, 4.0, 5.0))  # [1.52, 6.48]
    assert verdict(shifted, +1) == "holds" and verdict(shifted, -1) == "contradicted"
    assert verdict(shifted, None) == "differs" and verdict(shifted, +1, testable=False) == "not testable"
    # -1, 2, 5: mean 2, sd 3 -> half 7.45: the interval [-5.45, 9.45] holds 0
    assert verdict(Estimate((-1.0, 2.0, 5.0)), +1) == "not significant"
    assert verdict(Estimate((4.0,)), +1) == "not significant"  # one seed: no interval
    # two seeds: t(0.975, 1) = 12.706, the "12.7 times" of issue 26: 1, 3 -> sd sqrt(2), half 12.706
    assert Estimate((1.0, 3.0)).half == pytest.approx(12.7062, abs=1e-3)


def test_rows_claims_and_tables_over_three_seeds() -> None:
    cells = saliency_grid(["scratch"], ["missing_class"], [0.0, 0.5], ["cam", "eps", "eps++"], [0, 1, 2])
    scores = {}
    for s in range(3):
        scores[Training("scratch", "cam", "clean", s)] = {"configured": 30.0 + s, "bg_threshold": 0.2,
                                                          "val_chosen": 50.0, "val_chosen_threshold": 0.5}
        scores[Training("scratch", "eps", "clean", s)] = {"configured": 40.0 + 2 * s, "bg_threshold": 0.2,
                                                          "val_chosen": 51.0 + s, "val_chosen_threshold": 0.3}
        scores[Training("scratch", "eps", "missing_class_0.5", s)] = {"configured": 38.0 + 2 * s, "bg_threshold": 0.2,
                                                                      "val_chosen": 50.0 + s,
                                                                      "val_chosen_threshold": 0.3}
        for saliency, base in (("clean", 45.0), ("missing_class_0.5", 44.0 - s)):
            scores[Training("scratch", "eps++", saliency, s)] = {
                "configured": base + s, "bg_threshold": 0.2, "val_chosen": base + s + 1, "val_chosen_threshold": 0.4,
                "inconsistent_salient": 0.5 + 0.1 * s, "fg_salient": 0.4, "collapse_step": 120 if s == 2 and
                saliency != "clean" else None}
    rows = saliency_rows(cells, scores)
    assert len(rows) == 3 * 2 * 3 * 2 and list(rows[0])[:8] == ["regime", "error_type", "rate", "method", "seed",
                                                                 "threshold", "miou", "inconsistent_salient"]
    assert {r["threshold"] for r in rows} == {"configured", "val_chosen"}
    assert {r["inconsistent_salient"] for r in rows if r["method"] == "eps"} == {None}  # no IRD, no telemetry
    chosen = [r for r in rows if r["method"] == "eps" and r["threshold"] == "val_chosen"]
    assert {r["bg_threshold"] for r in chosen} == {0.3}  # the chosen threshold is in the CSV
    stats = summarize(rows, ("error_type", "rate", "method", "threshold"))
    assert stats[("missing_class", 0.0, "eps", "configured")].mean == pytest.approx(42.0)
    assert stats[("missing_class", 0.0, "eps", "configured")].half == pytest.approx(2 * 2.484138, abs=1e-5)

    claims = {(c.name, c.threshold): c for c in saliency_claims(scores, ["scratch"], ["missing_class"], [0.0, 0.5],
                                                                 ["cam", "eps", "eps++"], [0, 1, 2])}
    # EPS - CAM at bg 0.2: 10, 11, 12 -> mean 11, sd 1: holds
    co = claims[("saliency fixes co-occurrence: EPS > CAM", "bg 0.2")]
    assert co.difference.values == (10.0, 11.0, 12.0) and co.verdict == "holds"
    assert co.row()["per_seed"] == "0:+10.000;1:+11.000;2:+12.000" and co.row()["low"] == pytest.approx(8.516, abs=1e-3)
    # EPS++ - EPS at bg 0.2: 5, 4, 3 -> holds; its degradation under missing class: EPS++ 44-s-45 = -1-s,
    # EPS -2 -> (-1+2, -2+2, -3+2) = (1, 0, -1): not significant
    assert claims[("EPS++ > EPS", "bg 0.2")].verdict == "holds"
    lost = claims[("EPS++ loses less than EPS under missing class 0.5", "bg 0.2")]
    assert lost.difference.values == (1.0, 0.0, -1.0) and lost.verdict == "not significant"
    # the val-chosen claims are there too
    assert claims[("EPS++ > EPS", "threshold chosen on val")].difference.values == (-5.0, -5.0, -5.0)
    assert claims[("EPS++ > EPS", "threshold chosen on val")].verdict == "contradicted"
    text = saliency_markdown(rows, list(claims.values()), ["scratch"], ["missing_class"], [0.0, 0.5],
                             ["cam", "eps", "eps++"], [0, 1, 2])
    assert "| rate | cam (bg 0.2) | cam (val) | eps (bg 0.2) | eps (val) | eps++ (bg 0.2) | eps++ (val) | eps++ N∩S |" \
        in text
    assert "| 0 | 31.0 ± 2.5 | 50.0 ± 0.0 (0.5/0.5/0.5) | 42.0 ± 5.0 | 52.0 ± 2.5 (0.3/0.3/0.3) |" in text
    assert "0.60 ± 0.25 [1/3]" in text  # the rate-0.5 EPS++ point: seed 2's warning fired
    assert "| saliency fixes co-occurrence: EPS > CAM | scratch | bg 0.2 | 3 | +11.0 [+8.5, +13.5] | +10.0, +11.0, " \
           "+12.0 | **holds** |" in text


def test_a_collapse_at_clean_saliency_makes_the_eps_plus_plus_claims_not_testable() -> None:
    scores = {}
    for s in range(3):
        scores[Training("pretrained", "eps", "clean", s)] = {"configured": 50.0 + s, "bg_threshold": 0.2,
                                                             "val_chosen": 55.0, "val_chosen_threshold": 0.3}
        scores[Training("pretrained", "eps++", "clean", s)] = {"configured": 20.0, "bg_threshold": 0.2,
                                                               "val_chosen": 21.0, "val_chosen_threshold": 0.2,
                                                               "collapse_step": 80 if s == 1 else None}
    claims = saliency_claims(scores, ["pretrained"], ["missing_class"], [0.0], ["eps", "eps++"], [0, 1, 2])
    assert {c.verdict for c in claims} == {"not testable"}
    assert "eps++ collapsed at clean saliency" in claims[0].note


def test_the_figure_has_a_colour_per_series_and_a_line_style_per_regime(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.plot

    def plot(self, *args, **kwargs):
        drawn.append((kwargs["label"], kwargs["color"], kwargs["linestyle"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    lines = {(name, regime): ([1.0, 2.0], [0.1, 0.1], [False, name == "b"]) for regime in ("scratch", "pretrained")
             for name in ("a", "b")}
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
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # W&B's table artifact keeps a folder there
    from PIL import Image

    from epspp.study.figures import log_to_wandb
    from epspp.study.studies import STUDY_COLUMNS

    cells = saliency_grid(["scratch"], ["missing_class"], [0.0], ["eps", "eps++"], [0])
    scores = {Training("scratch", "eps", "clean", 0): {"configured": 40.0, "bg_threshold": 0.2, "val_chosen": 50.0,
                                                       "val_chosen_threshold": 0.3},
              Training("scratch", "eps++", "clean", 0): {"configured": 41.0, "bg_threshold": 0.2, "val_chosen": 51.0,
                                                         "val_chosen_threshold": 0.3, "inconsistent_salient": 0.5}}
    rows = saliency_rows(cells, scores)  # None for EPS, a number for EPS++: one column of two types in the CSV
    Image.new("RGB", (8, 8)).save(tmp_path / "f.png")
    log_to_wandb(tmp_path, "study/test", STUDY_COLUMNS, rows, tmp_path / "f.png")
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_a_labelled_split_added_to_a_users_root_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from epspp.study.runner import Context, labeled_split

    root = tmp_path / "mine"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"img{i}\n" for i in range(10)))
    assert not Context(tmp_path / "study", root, tmp_path, [], {}).owns_root
    assert Context(tmp_path, root, tmp_path, [], {}).owns_root
    assert labeled_split(root, 0.2, own_root=False) == "labeled_study_0.2"
    written = (root / "ImageSets" / "Segmentation" / "labeled_study_0.2.txt").read_text().split()
    assert len(written) == 2 and set(written) <= {f"img{i}" for i in range(10)}
    assert "note: adding the labelled split" in capsys.readouterr().out
    labeled_split(root, 0.2, own_root=False)  # there already: no second note
    assert capsys.readouterr().out == ""
