"""The multi-GPU batch/learning-rate rule (epspp.batch_scaling) against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.batch_scaling import read_recipe, scale_recipe
from epspp.cli.batch_args import batch_args_main
from epspp.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("processes", "batch", "lr"),
    [
        (1, 8, 0.01),  # the recipe itself
        (2, 4, 0.01),  # divides the total: recipe kept exactly
        (4, 2, 0.01),
        (8, 1, 0.01),
        (3, 3, 0.01125),  # ceil(8 / 3) = 3, total 9: lr 0.01 x 9 / 8
        (16, 1, 0.02),  # total 16: lr doubled
    ],
)
def test_localization_recipe(processes: int, batch: int, lr: float) -> None:
    scaled = scale_recipe(8, 0.01, processes)
    assert (scaled.batch_size, scaled.labeled_per_batch) == (batch, None)
    assert scaled.lr == pytest.approx(lr)
    assert scaled.total_batch == batch * processes
    assert scaled.args() == ["--data.batch_size", str(batch), "--model.init_args.lr", f"{lr:.6g}"]


@pytest.mark.parametrize(
    ("processes", "batch", "labeled", "lr"),
    [
        (1, 10, 5, 2.5e-4),
        (2, 5, 2, 2.5e-4),  # 5 x 5 / 10 = 2.5, rounded down
        (4, 3, 1, 3e-4),  # ceil(10 / 4) = 3, total 12
        (5, 2, 1, 2.5e-4),
        (10, 2, 1, 5e-4),  # at least 2 per process (1 labelled + 1 pseudo-labelled): total 20
    ],
)
def test_semi_supervised_recipe_keeps_both_kinds_in_every_batch(
    processes: int, batch: int, labeled: int, lr: float
) -> None:
    scaled = scale_recipe(10, 2.5e-4, processes, labeled_per_batch=5)
    assert (scaled.batch_size, scaled.labeled_per_batch) == (batch, labeled)
    assert scaled.lr == pytest.approx(lr)
    assert "--data.labeled_per_batch" in scaled.args()


def test_bad_process_count_or_recipe() -> None:
    with pytest.raises(ConfigError, match="at least 1, got 0"):
        scale_recipe(8, 0.01, 0)
    with pytest.raises(ConfigError, match="batch_size=0"):
        scale_recipe(0, 0.01, 2)


def test_a_recipe_of_one_image_is_split_and_a_learning_rate_of_0_is_refused() -> None:
    """batch_size >= 1 and lr > 0 (boundary sweep): one image on one process keeps its lr; lr 0 would train nothing."""
    assert (scale_recipe(1, 0.01, 1).batch_size, scale_recipe(1, 0.01, 1).lr) == (1, 0.01)
    with pytest.raises(ConfigError, match=r"lr > 0, got batch_size=8, lr=0\.0"):
        scale_recipe(8, 0.0, 2)
    assert scale_recipe(8, 1e-9, 2).lr == pytest.approx(1e-9)


def test_reads_the_shipped_configs() -> None:
    assert read_recipe(REPO / "configs/voc/localization_eps++.yaml") == (8, 0.01, None, 1)
    assert read_recipe(REPO / "configs/voc/segmentation_ssss.yaml") == (5, 0.00025, 2, 2)  # 5 x 2 accumulated
    assert read_recipe(REPO / "configs/coco/segmentation_wsss.yaml") == (5, 0.00025, None, 2)


@pytest.mark.parametrize(
    ("processes", "batch", "accumulate", "lr"),
    [
        (1, 5, 2, 2.5e-4),  # deeplab-pytorch's 5 x 2 on one GPU
        (2, 5, 1, 2.5e-4),  # two GPUs replace the accumulation: 5 + 5
        (4, 3, 1, 3e-4),  # 12 of 10
        (8, 2, 1, 4e-4),  # 16 of 10
    ],
)
def test_accumulated_recipe_counts_its_steps_in_the_total(
    processes: int, batch: int, accumulate: int, lr: float
) -> None:
    scaled = scale_recipe(5, 2.5e-4, processes, accumulate=2)
    assert (scaled.batch_size, scaled.accumulate) == (batch, accumulate)
    assert scaled.lr == pytest.approx(lr)
    assert scaled.args()[:4] == ["--data.batch_size", str(batch), "--trainer.accumulate_grad_batches", str(accumulate)]


def test_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere.yaml does not exist"):
        read_recipe(tmp_path / "nowhere.yaml")
    partial = tmp_path / "partial.yaml"
    partial.write_text("data:\n  batch_size: 8\n")
    with pytest.raises(ConfigError, match=r"partial.yaml sets no model.init_args.lr"):
        read_recipe(partial)
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        read_recipe(broken)


def test_batch_args_splits_the_recipe_over_devices_times_nodes(capsys: pytest.CaptureFixture) -> None:
    """docs/multi_gpu.md: total / (devices x nodes). Localization's 8 on 2 GPUs x 2 nodes: 2 per GPU, lr kept;
    on 1 GPU x 8 nodes: 1 per GPU."""
    config = str(REPO / "configs/voc/localization_eps++.yaml")
    for devices, nodes, batch in (("2", "2", 2), ("1", "8", 1), ("2", "1", 4)):
        assert batch_args_main(["--config", config, "--devices", devices, "--num-nodes", nodes]) == 0
        out, err = capsys.readouterr()
        assert out.split() == ["--data.batch_size", str(batch), "--model.init_args.lr", "0.01"], (devices, nodes)
        assert f"on {int(devices) * int(nodes)} process(es): batch {batch}/GPU" in err


# ------------------------------------------- variation pass (issue 34 item 6)
def test_an_accumulation_below_one_is_refused_and_one_adds_no_override() -> None:
    with pytest.raises(ConfigError, match="accumulate_grad_batches must be at least 1, got 0"):
        scale_recipe(8, 0.01, 2, accumulate=0)
    scaled = scale_recipe(8, 0.01, 2, accumulate=1)
    assert not scaled.recipe_accumulates and "--trainer.accumulate_grad_batches" not in scaled.args()


def test_the_chosen_line_names_the_split_the_labelled_share_and_the_accumulation(tmp_path: Path) -> None:
    from epspp.batch_scaling import config_recipe

    ssss = tmp_path / "ssss.yaml"
    ssss.write_text(
        "data:\n  batch_size: 5\n  labeled_per_batch: 2\nmodel:\n  init_args:\n    lr: 0.00025\n"
        "trainer:\n  accumulate_grad_batches: 2\n"
    )
    assert config_recipe(ssss, 1)[1] == (
        "[epspp] ssss.yaml on 1 process(es): batch 5/GPU (2 labelled) x 2 accumulated, total 10 (recipe 5 x 2), "
        "lr 0.00025 (recipe 0.00025)"
    )
    # 4 processes: ceil(10 / 4) = 3 each, 3 x 2 // 5 = 1 labelled, no accumulation left: total 12, lr x 12 / 10
    assert config_recipe(ssss, 4)[1] == (
        "[epspp] ssss.yaml on 4 process(es): batch 3/GPU (1 labelled) x 1 accumulated, total 12 (recipe 5 x 2), "
        "lr 0.0003 (recipe 0.00025)"
    )
    plain = tmp_path / "plain.yaml"
    plain.write_text("data:\n  batch_size: 8\nmodel:\n  init_args:\n    lr: 0.01\n")
    assert config_recipe(plain, 3)[1] == (
        "[epspp] plain.yaml on 3 process(es): batch 3/GPU, total 9 (recipe 8), lr 0.01125 (recipe 0.01)"
    )
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"empty\.yaml sets no data\.batch_size and no model\.init_args\.lr"):
        read_recipe(empty)


@pytest.mark.parametrize(("labeled", "processes", "batch", "expected"), [(2, 4, 3, 1), (10, 2, 5, 4)])
def test_the_labelled_share_keeps_one_image_of_each_kind(
    labeled: int, processes: int, batch: int, expected: int
) -> None:
    """A share that rounds down to no labelled image keeps 1 (2 of 10 on 4 processes: 3 x 2 // 10 = 0); one that
    fills the batch keeps 1 pseudo-labelled image (10 of 10 on 2 processes: 5 each, 4 labelled)."""
    scaled = scale_recipe(10, 2.5e-4, processes, labeled_per_batch=labeled)
    assert (scaled.batch_size, scaled.labeled_per_batch) == (batch, expected)
