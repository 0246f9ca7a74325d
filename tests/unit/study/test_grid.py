"""The study's grid: its cells, the trainings they share, and the arms of the EPS++ config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fixtures.cli import CONFIGS

from epspp.data.synthetic import generate_synthetic, write_saliency_variant
from epspp.study.grid import (
    DEFAULT_GRID,
    DEFAULT_METHODS,
    ERROR_TYPES,
    STUDY_METHODS,
    Cell,
    Training,
    saliency_grid,
    unique_trainings,
)


def test_default_grid_shares_cam_and_the_clean_point() -> None:
    cells = saliency_grid(
        ["scratch", "pretrained"],
        ["missing_class", "missing_object", "false_coverage"],
        [0, 0.25, 0.5, 0.75],
        ["cam", "eps", "eps++"],
        [0, 1],
    )
    assert len(cells) == 2 * 3 * 4 * 3 * 2
    trainings = unique_trainings(cells)
    # per regime: CAM once per seed; EPS and EPS++: the clean point + 3 error types x 3 rates, per seed
    assert len(trainings) == 2 * (2 + 2 * 2 * (1 + 9)) == 84
    assert (
        Cell("scratch", "false_coverage", 0.0, "eps", 1).training
        == Cell("scratch", "missing_class", 0.0, "eps", 1).training
        == Training("scratch", "eps", "clean", 1)
    )
    assert Cell("pretrained", "missing_object", 0.5, "cam", 0).training == Training("pretrained", "cam", "clean", 0)
    assert (
        Cell("pretrained", "missing_object", 0.5, "eps++", 0).training
        != Cell("scratch", "missing_object", 0.5, "eps++", 0).training
    )  # the regimes share no training
    ablation = Training("pretrained", "eps++/no-pamr", "missing_object_0.5", 0)
    assert ablation.folder(Path("runs")) == Path("runs/pretrained/eps++_no-pamr/missing_object_0.5/seed0")


def test_the_arms_are_the_eps_plus_plus_config_with_one_override() -> None:
    assert STUDY_METHODS["eps++/no-pamr"] == (STUDY_METHODS["eps++"][0], ["--model.init_args.ird_refine", "none"])
    assert STUDY_METHODS["eps++/softmax"] == (
        STUDY_METHODS["eps++"][0],
        ["--model.init_args.ird_threshold_maps", "softmax"],
    )
    assert STUDY_METHODS["eps++/floored"] == (
        STUDY_METHODS["eps++"][0],
        ["--model.init_args.ird_threshold_maps", "floored"],
    )
    assert STUDY_METHODS["eps++"][1] == [] and "eps++/no-pamr" not in DEFAULT_METHODS
    assert len(DEFAULT_GRID["seeds"]) >= 3


def test_eps_at_four_times_its_steps_in_both_regimes() -> None:
    config, overrides = STUDY_METHODS["eps/4x-steps"]
    assert config == STUDY_METHODS["eps"][0] and overrides[0] == "--trainer.max_steps"
    for folder in (CONFIGS / "demo", CONFIGS / "demo" / "scratch"):  # the arm's one override serves both regimes
        steps = yaml.safe_load((folder / config).read_text())["trainer"]["max_steps"]
        assert int(overrides[1]) == 4 * steps == 2000


# the error each study type must make, in the generator's own record of what it did to each image
ERROR_MADE = {"missing_class": "missing_class", "missing_object": "missing_part", "false_coverage": "false_coverage"}


@pytest.mark.parametrize("error_type", sorted(ERROR_MADE))
def test_each_error_type_drives_the_generator_rate_that_makes_that_error(tmp_path: Path, error_type: str) -> None:
    root = tmp_path / "root"
    generate_synthetic(root, num_train=6, num_val=1, image_size=32, seed=5)
    record = write_saliency_variant(root, tmp_path / "variant", **{ERROR_TYPES[error_type]: 1.0})
    made = {name: count for name, count in record["splits"]["train"].items() if name != "images" and count}
    assert set(made) == {ERROR_MADE[error_type]}


def test_saliency_names_the_arms_with_ird_the_thresholds_and_the_first_needed_order() -> None:
    from epspp.study.grid import THRESHOLDS, has_ird, saliency_name

    assert saliency_name("missing_object", 0.25) == "missing_object_0.25" and saliency_name("x", 0.0) == "clean"
    assert saliency_name("false_coverage", 1.0) == "false_coverage_1"
    ird = {m: has_ird(m) for m in ("cam", "eps", "eps/4x-steps", "eps++", "eps++/no-pamr", "eps++/softmax")}
    assert ird | {"eps++/floored": has_ird("eps++/floored")} == {
        "cam": False,
        "eps": False,
        "eps/4x-steps": False,
        "eps++": True,
        "eps++/no-pamr": True,
        "eps++/softmax": True,
        "eps++/floored": True,
    }
    assert THRESHOLDS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # docs/study.md: chosen among 0.1, 0.2, ..., 0.8
    cells = saliency_grid(["scratch"], ["missing_class"], [0.5, 0.0], ["eps", "cam"], [1, 0])
    assert unique_trainings(cells) == [
        Training("scratch", "eps", "missing_class_0.5", 1),
        Training("scratch", "eps", "clean", 1),
        Training("scratch", "cam", "clean", 1),
        Training("scratch", "eps", "missing_class_0.5", 0),
        Training("scratch", "eps", "clean", 0),
        Training("scratch", "cam", "clean", 0),
    ]
