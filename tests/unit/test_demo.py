"""The demo's stages (epspp.demo.demo_stages): which folder each stage writes and which folders it reads."""

from __future__ import annotations

from pathlib import Path

from epspp.demo import METHODS, demo_stages


def _value(args: tuple[str, ...], flag: str) -> str:
    return args[args.index(flag) + 1]


def _stages(tmp_path: Path) -> tuple[Path, dict]:
    root, corpus, out = tmp_path / "data", tmp_path / "pretrain_data", tmp_path / "out"
    root.mkdir()
    corpus.mkdir()  # both present: no dataset or corpus stage
    return out, demo_stages(root, out, tmp_path / "configs", [], "pretrained", corpus)


def test_each_methods_train_and_val_masks_go_to_their_own_folders(tmp_path: Path) -> None:
    out, stages = _stages(tmp_path)
    for method in METHODS:
        for key, split in (("pseudo_masks", "train"), ("val_masks", "val")):
            stage = stages[f"{key}/{method}"]
            assert stage.folder == out / method / key
            assert _value(stage.args, "--data.predict_split") == split
            assert _value(stage.args, "--pseudo_masks.output_dir") == str(out / method / key)
            assert stage.inputs == (out / method / "localization",)


def test_stage_3_learns_from_the_train_masks_of_eps_plus_plus(tmp_path: Path) -> None:
    out, stages = _stages(tmp_path)
    written = stages["pseudo_masks/eps++"].folder  # the train split's EPS++ masks (the papers' pipeline)
    assert written == out / "eps++" / "pseudo_masks"
    for variant in ("wsss", "ssss"):
        stage = stages[f"segmentation/{variant}"]
        assert _value(stage.args, "--data.pseudo_mask_dir") == str(written)
        assert stage.inputs == (out / "pretrain", written)
    labelled_only = stages["segmentation/labeled_only"]
    assert _value(labelled_only.args, "--data.pseudo_mask_dir") == "null"
    assert labelled_only.inputs == (out / "pretrain",)


def test_stage_3_trains_each_variant_with_its_own_config(tmp_path: Path) -> None:
    """docs/stages.md: weakly supervised with segmentation_wsss.yaml, semi-supervised (labelled subset +
    pseudo-masks) with segmentation_ssss.yaml; the labelled-only baseline is the WSSS config on labeled_10pct."""
    _, stages = _stages(tmp_path)
    configs = tmp_path / "configs"
    for variant, config in (("wsss", "wsss"), ("ssss", "ssss"), ("labeled_only", "wsss")):
        args = stages[f"segmentation/{variant}"].args
        assert args[0] == "fit" and _value(args, "--config") == str(configs / f"segmentation_{config}.yaml")
    assert _value(stages["segmentation/labeled_only"].args, "--data.train_split") == "labeled_10pct"
    assert "--data.train_split" not in stages["segmentation/ssss"].args
