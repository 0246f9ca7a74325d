"""`epspp demo` (what `make demo` runs): every stage in order, resumable, and a report of measured numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures.cli import CONFIGS, call_main, run_epspp, stages_in_this_process
from PIL import Image

import epspp.chain as chain
import epspp.demo as pipeline
from epspp.cli.demo import demo_main
from epspp.data.pretrain_corpus import generate_pretrain_corpus

TINY_DEMO = [
    "--",
    "--trainer.max_steps=2",
    "--trainer.limit_train_batches=2",
    "--trainer.check_val_every_n_epoch=1",
    "--trainer.val_check_interval=1.0",  # (stage 3 of the demo validates every 125 steps)
    "--trainer.log_every_n_steps=1",
    "--data.num_workers=0",
    "--data.batch_size=4",
    "--data.labeled_per_batch=2",
    "--data.crop_size=48",
    "--data.resize_long=[40, 56]",
    "--model.init_args.backbone_kwargs={channels: [8, 16, 32, 64], stem_width: 8}",
]
STAGES = [f"localization {m}" for m in ("cam", "eps", "eps++")]


def fake_stage_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the `epspp` commands instead of running them, and skip the report."""
    calls: list[list[str]] = []
    monkeypatch.setattr(chain, "run_command", lambda argv, *rest: calls.append(argv[3:]) or 0)
    monkeypatch.setattr("epspp.report.write_report", lambda root, out, stages, regime: {"table": "", "stages": stages})
    return calls


def _config_names(calls: list[list[str]]) -> list[tuple[str, str]]:
    return [(c[0], Path(c[c.index("--config") + 1]).name if "--config" in c else c[1]) for c in calls]


def test_stages_run_in_order_and_finished_ones_are_skipped(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, tmp_path: Path
) -> None:
    calls = fake_stage_runs(monkeypatch)
    out, corpus = tmp_path / "runs", tmp_path / "pretrain"
    pipeline.run_demo(synthetic_root, out, CONFIGS / "demo", [], "pretrained", corpus)
    assert _config_names(calls) == [
        ("prepare", "pretrain-corpus"),
        ("fit", "pretrain.yaml"),  # stage 0: the corpus (absent), the backbone
        # each method's train pseudo-masks, then its val ones (where the report chooses the threshold)
        ("fit", "localization_cam.yaml"),
        ("predict", "pseudo_masks.yaml"),
        ("predict", "pseudo_masks.yaml"),
        ("fit", "localization_eps.yaml"),
        ("predict", "pseudo_masks.yaml"),
        ("predict", "pseudo_masks.yaml"),
        ("fit", "localization_eps++.yaml"),
        ("predict", "pseudo_masks.yaml"),
        ("predict", "pseudo_masks.yaml"),
        ("fit", "segmentation_wsss.yaml"),
        ("fit", "segmentation_ssss.yaml"),
        ("fit", "segmentation_wsss.yaml"),
    ]
    assert calls[0][-1] == str(corpus) and str(corpus) in calls[1]
    backbone = str(out / "pretrain" / "backbone.pth")
    for command in calls[2:]:  # the papers' configs, every fit from the stage-0 backbone
        config = Path(command[command.index("--config") + 1])
        assert config.parent == CONFIGS / "demo"
        if command[0] == "fit":
            assert command[command.index("--model.init_args.pretrained_path") + 1] == backbone
    assert "--data.train_split" in calls[-1] and "labeled_10pct" in calls[-1]  # the labelled-only reference
    assert [c[c.index("--data.predict_split") + 1] for c in calls if c[0] == "predict"] == ["train", "val"] * 3
    assert str(out / "cam" / "val_masks") in calls[4]
    assert str(out / "eps++" / "pseudo_masks") in calls[11]  # WSSS trains on the EPS++ train pseudo-masks
    calls.clear()
    corpus.mkdir()  # (the fake run wrote no corpus)
    pipeline.run_demo(synthetic_root, out, CONFIGS / "demo", [], "pretrained", corpus)
    assert calls == []  # everything finished: nothing runs again
    (out / "segmentation" / "ssss" / "stage.json").unlink()
    pipeline.run_demo(synthetic_root, out, CONFIGS / "demo", [], "pretrained", corpus)
    assert [Path(c[2]).name for c in calls] == ["segmentation_ssss.yaml"]
    calls.clear()
    (out / "pretrain" / "stage.json").unlink()  # a new backbone: every stage after it runs again
    pipeline.run_demo(synthetic_root, out, CONFIGS / "demo", [], "pretrained", corpus)
    assert len(calls) == 13 and _config_names(calls)[0] == ("fit", "pretrain.yaml")


def test_the_scratch_regime_runs_the_scratch_configs_from_random_weights(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, tmp_path: Path
) -> None:
    calls = fake_stage_runs(monkeypatch)
    monkeypatch.chdir(tmp_path)  # the default --out is relative
    assert (
        demo_main(
            [
                "--regime",
                "scratch",
                "--root",
                str(synthetic_root),
                "--pretrain-root",
                str(tmp_path / "never"),
                "--configs",
                str(CONFIGS / "demo"),
            ]
        )
        == 0
    )
    assert [name for _, name in _config_names(calls)][:2] == ["localization_cam.yaml", "pseudo_masks.yaml"]
    assert len(calls) == 12 and not (tmp_path / "never").exists()  # no stage 0
    for command in calls:
        assert Path(command[command.index("--config") + 1]).parent == CONFIGS / "demo" / "scratch"
        assert "--model.init_args.pretrained_path" not in command
        where = command[command.index("--trainer.default_root_dir" if command[0] == "fit" else "--ckpt_path") + 1]
        assert where.startswith("runs/demo_scratch/")
    assert pipeline.DEFAULT_OUT["pretrained"] == "runs/demo"


def test_failed_stage_is_not_marked_finished(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(chain, "run_command", lambda *args: 1)  # every stage exits 1
    assert (
        demo_main(
            [
                "--root",
                str(synthetic_root),
                "--out",
                str(tmp_path / "runs"),
                "--pretrain-root",
                str(tmp_path / "corpus"),
            ]
        )
        == 2
    )
    assert not list((tmp_path / "runs").rglob("stage.json"))


def test_tiny_demo_end_to_end_writes_the_report(synthetic_root: Path, tmp_path: Path) -> None:
    out, corpus = tmp_path / "runs" / "demo", tmp_path / "pretrain"
    generate_pretrain_corpus(corpus, num_images=12, num_val=2, image_size=32)
    demo = ["demo", "--root", synthetic_root, "--out", out, "--pretrain-root", corpus, *TINY_DEMO]
    # the packaged configs' own path (configs/ of the repository links to them): the default of the rerun below
    with stages_in_this_process():  # (the rerun below is a process of its own, as a user starts it)
        code, stdout, stderr = call_main(
            [*map(str, demo[: -len(TINY_DEMO)]), "--configs", str(CONFIGS.resolve() / "demo"), *TINY_DEMO], tmp_path
        )
    assert code == 0, stdout[-3000:] + stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    backbone = out / "pretrain" / "backbone.pth"
    assert backbone.is_file() and report["regime"] == {
        "name": "pretrained",
        "pretrained_path": str(backbone),
        "output_stride": 8,
        "crop_size": 48,
        "eval_scale": 2.0,
        "map_size": 6,
        "ird_threshold_maps": "normalized",
        "pretrain_val_map": report["regime"]["pretrain_val_map"],
    }
    assert 0 <= report["regime"]["pretrain_val_map"] <= 100
    text = (out / "report.md").read_text()
    assert "stages 1 and 3 start from the stage-0 backbone" in text
    assert "EPS++'s IRD thresholds the **normalized** refined maps in B()" in text
    for method in ("cam", "eps", "eps++"):
        masks = report["pseudo_masks"][method]
        assert 0 <= masks["miou"] <= 100
        assert masks["count"] == 20
        # the threshold sweep over the saved scores: at the configured 0.2 it scores the written masks
        sweep = masks["bg_threshold_sweep"]
        assert list(sweep) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8"]
        assert masks["bg_threshold"] == 0.2
        assert sweep["0.2"] == pytest.approx(masks["miou"], abs=1.0)  # (scores are saved as float16)
        # the threshold is chosen on val (its best there) and train is reported at it, never chosen on train
        assert masks["chosen_on"] == "val" and masks["oracle"] is False
        key = f"{masks['chosen_bg_threshold']:g}"
        assert masks["choice_sweep"][key] == max(masks["choice_sweep"].values())
        assert masks["chosen_bg_threshold_miou"] == sweep[key]
    for variant in ("wsss", "ssss", "labeled_only"):
        assert 0 <= report["segmentation"][variant]["miou"] <= 100
    assert len(report["wall_time_s"]) == 13  # stage 0 and the twelve of stages 1-3 (the corpus was there)
    ird = report["localization"]["eps++"]["ird"]  # EPS++'s telemetry; CAM and EPS have no IRD
    assert all(
        0 <= ird["last_steps"][key] <= 1
        for key in ("inconsistent_salient", "inconsistent_background", "fg_salient", "threshold_map_salient")
    )
    assert ird["warnings"] == [] and ird["collapse_step"] is None and "ird" not in report["localization"]["eps"]
    assert "## IRD telemetry" in (out / "report.md").read_text()
    assert "| eps++ |" in (out / "report.md").read_text() and "| eps++ |" in stdout
    figure = Image.open(out / "stages.png")
    assert figure.width > figure.height  # a grid of panels: 4 rows x 8 columns
    again = run_epspp(demo, cwd=tmp_path)
    assert again.stdout.count("done before, skipping") == 13


def test_changed_root_or_overrides_rerun_the_stage_and_those_after_it(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, tmp_path: Path
) -> None:
    calls = fake_stage_runs(monkeypatch)
    out, corpus = tmp_path / "runs", tmp_path / "pretrain"
    corpus.mkdir()
    pipeline.run_demo(synthetic_root, out, CONFIGS / "demo", [], "pretrained", corpus)
    (out / "eps" / "localization" / "old.txt").write_text("from the first run")
    calls.clear()
    pipeline.run_demo(synthetic_root, out, CONFIGS / "demo", ["--trainer.max_steps=7"], "pretrained", corpus)
    fits = [c for c in calls if c[0] == "fit"]
    assert len(fits) == 7 and all("--trainer.max_steps=7" in c for c in fits)  # every fit (stage 0 too) takes them
    assert len(calls) == 13  # and the pseudo-masks of the new checkpoints are made again
    assert (out / "eps" / "localization.previous" / "old.txt").is_file()  # the old outputs are kept aside
    calls.clear()
    other = Path(shutil.copytree(synthetic_root, tmp_path / "other", ignore=shutil.ignore_patterns(".cache")))
    pipeline.run_demo(other, out, CONFIGS / "demo", ["--trainer.max_steps=7"], "pretrained", corpus)
    # another dataset root: stages 1-3 again, stage 0 (its own corpus) is kept
    assert len(calls) == 12 and all(str(other) in c for c in calls)


def test_demo_out_that_is_a_file_and_configs_found_from_anywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "report.txt").write_text("not a folder")
    assert demo_main(["--out", str(tmp_path / "report.txt"), "--root", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "report.txt").read_text() == "not a folder"
    monkeypatch.chdir(tmp_path)  # not the repository root
    assert pipeline.demo_configs(None).resolve() == (CONFIGS / "demo").resolve()


def test_a_run_folder_of_an_older_epspp_stays_finished(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path, tmp_path: Path
) -> None:
    calls = fake_stage_runs(monkeypatch)
    out, corpus = tmp_path / "runs", tmp_path / "pretrain"
    corpus.mkdir()
    pipeline.run_demo(synthetic_root, out, CONFIGS / "demo", [], "pretrained", corpus)
    for marker in out.rglob("stage.json"):  # the older markers: the command and the time only
        record = json.loads(marker.read_text())
        marker.write_text(json.dumps({"stage": record["stage"], "command": record["command"], "wall_time_s": 1.0}))
    ssss = out / "segmentation" / "ssss"
    # as the older epspp wrote it: the pseudo-masks before the root, no --ckpt_path
    (ssss / "stage.json").write_text(
        json.dumps(
            {
                "stage": "segmentation ssss",
                "command": [
                    "epspp",
                    "fit",
                    "--config",
                    str(CONFIGS / "demo" / "segmentation_ssss.yaml"),
                    "--data.pseudo_mask_dir",
                    str(out / "eps++" / "pseudo_masks"),
                    "--data.root",
                    str(synthetic_root),
                    "--trainer.default_root_dir",
                    str(ssss),
                    "--model.init_args.pretrained_path",
                    str(out / "pretrain" / "backbone.pth"),
                ],
            }
        )
    )
    calls.clear()
    pipeline.run_demo(synthetic_root, out, CONFIGS / "demo", [], "pretrained", corpus)
    assert calls == []
