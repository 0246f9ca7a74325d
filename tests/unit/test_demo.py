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


def test_missing_inputs_are_generated_first_and_scratch_uses_its_own_configs(tmp_path: Path) -> None:
    root, corpus, out, configs = tmp_path / "data", tmp_path / "corpus", tmp_path / "out", tmp_path / "configs"
    stages = demo_stages(root, out, configs, ["--seed_everything", "3"], "pretrained", corpus)
    assert list(stages)[:3] == ["dataset", "pretrain_corpus", "pretrain"]  # generated before any fit
    assert stages["dataset"].args == ("prepare", "synthetic", "--root", str(root))
    assert stages["dataset"].folder == out / "dataset"
    assert stages["pretrain_corpus"].args == ("prepare", "pretrain-corpus", "--root", str(corpus))
    assert stages["pretrain"].folder == out / "pretrain"
    eps = stages["localization/eps++"]
    assert _value(eps.args, "--config") == str(configs / "localization_eps++.yaml")
    assert _value(eps.args, "--model.init_args.pretrained_path") == str(out / "pretrain" / "backbone.pth")
    scratch = demo_stages(root, out, configs, [], "scratch", corpus)
    assert "pretrain" not in scratch and "pretrain_corpus" not in scratch and "dataset" in scratch
    cam = scratch["localization/cam"]
    assert _value(cam.args, "--config") == str(configs / "scratch" / "localization_cam.yaml")
    assert "--model.init_args.pretrained_path" not in cam.args and cam.inputs == ()
    wsss = scratch["segmentation/wsss"]
    assert _value(wsss.args, "--config") == str(configs / "scratch" / "segmentation_wsss.yaml")
    assert _value(scratch["segmentation/labeled_only"].args, "--data.train_split") == "labeled_10pct"


def test_the_demos_configs_and_refused_options(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import pytest

    from epspp import demo
    from epspp.config_files import PACKAGED
    from epspp.errors import DatasetError

    (tmp_path / "mine").mkdir()
    assert demo.demo_configs(str(tmp_path / "mine")) == tmp_path / "mine"  # --configs DIR
    monkeypatch.chdir(tmp_path)
    assert demo.demo_configs("demo") == PACKAGED / "demo"  # no folder demo here: the packaged configs' name
    assert demo.demo_configs(None) == PACKAGED / "demo"  # no configs/demo here: the packaged ones
    (tmp_path / "configs" / "demo").mkdir(parents=True)
    assert demo.demo_configs(None) == PACKAGED / "demo"  # a folder without pseudo_masks.yaml is not them
    (tmp_path / "configs" / "demo" / "pseudo_masks.yaml").write_text("{}")
    assert demo.demo_configs(None) == Path("configs/demo")  # a checkout's configs first
    (tmp_path / "configs" / "demo" / "pseudo_masks.yaml").unlink()
    monkeypatch.setattr(demo, "PACKAGED", tmp_path / "nowhere")
    with pytest.raises(DatasetError) as error:
        demo.demo_configs(None)
    assert str(error.value) == (
        f"cannot find the demo's configs ({tmp_path / 'nowhere' / 'demo'} of the installed epspp): pass --configs DIR"
    )
    with pytest.raises(DatasetError) as error:
        demo.run_demo(tmp_path / "data", tmp_path / "out", tmp_path, [], regime="pretrain")
    assert str(error.value) == "--regime pretrain: expected one of pretrained, scratch"
    (tmp_path / "corpus").write_text("a file")
    with pytest.raises(DatasetError) as error:
        demo.run_demo(tmp_path / "data", tmp_path / "out", tmp_path, [], pretrain_root=tmp_path / "corpus")
    assert str(error.value) == f"--pretrain-root {tmp_path / 'corpus'} is a file: give a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs", "corpus", "mine"]  # nothing written


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_the_overrides_reach_every_fit_and_no_prediction(tmp_path: Path) -> None:
    root, corpus, out = tmp_path / "data", tmp_path / "corpus", tmp_path / "out"
    root.mkdir()
    corpus.mkdir()
    for regime in ("pretrained", "scratch"):
        stages = demo_stages(root, out, tmp_path / "configs", ["--x", "1"], regime, corpus)
        for key, stage in stages.items():
            expected = ("--x", "1") if stage.subcommand == "fit" else ()
            assert stage.overrides == expected, (regime, key)
            assert stage.resume is (stage.subcommand == "fit"), (regime, key)


def test_the_report_reads_the_folders_the_demo_writes(tmp_path: Path) -> None:
    """epspp.report names the methods and variants of the demo, and reads each from the folder its stage writes
    (``OUT/<method>/localization``, ``OUT/<method>/{pseudo,val}_masks``, ``OUT/segmentation/<variant>``)."""
    from epspp import report
    from epspp.chain import last_checkpoint
    from epspp.demo import SEGMENTATION

    out, stages = _stages(tmp_path)
    assert report.METHOD_NAMES == tuple(METHODS) == ("cam", "eps", "eps++")
    assert report.SEGMENTATION_NAMES == SEGMENTATION == ("wsss", "ssss", "labeled_only")
    for method in METHODS:
        assert stages[f"localization/{method}"].folder == out / method / "localization"
    assert last_checkpoint(stages["localization/eps++"].folder) == out / "eps++/localization/checkpoints/last.ckpt"
    for variant in SEGMENTATION:
        assert stages[f"segmentation/{variant}"].folder == out / "segmentation" / variant
        assert _value(stages[f"segmentation/{variant}"].args, "--trainer.default_root_dir") == str(
            out / "segmentation" / variant
        )


def test_a_file_in_place_of_the_out_or_root_folder_is_refused(tmp_path: Path) -> None:
    import pytest

    from epspp import demo
    from epspp.errors import DatasetError

    (tmp_path / "file").write_text("mine")
    for args, flag in (
        ((tmp_path / "data", tmp_path / "file"), "--out"),
        ((tmp_path / "file", tmp_path / "out"), "--root"),
    ):
        with pytest.raises(DatasetError) as error:
            demo.run_demo(*args, tmp_path, [], pretrain_root=tmp_path / "corpus")
        assert str(error.value) == f"{flag} {tmp_path / 'file'} is a file: give a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_stage_1_starts_from_the_file_the_demos_pretraining_writes(tmp_path: Path) -> None:
    """configs/demo/pretrain.yaml's BackboneExport writes ``<run folder>/<filename>``: the demo's pretrained_path."""
    import yaml

    from epspp.config_files import PACKAGED

    config = yaml.safe_load((PACKAGED / "demo" / "pretrain.yaml").read_text())
    [export] = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("BackboneExport")]
    out, stages = _stages(tmp_path)
    written = Path(_value(stages["pretrain"].args, "--trainer.default_root_dir")) / export["init_args"]["filename"]
    for key in ("localization/eps++", "segmentation/wsss"):
        assert _value(stages[key].args, "--model.init_args.pretrained_path") == str(written)
