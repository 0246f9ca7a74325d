"""The study runner's context: a labelled split added to a user's root is named for the study."""

from __future__ import annotations

from pathlib import Path

import pytest


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


def test_run_all_runs_jobs_side_by_side_and_reports_each_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import threading

    from epspp.study.runner import run_all

    def job(name: str, both_started: threading.Barrier) -> dict:
        both_started.wait()  # two jobs must run at once, or the barrier breaks
        return {"name": name}

    together = threading.Barrier(2, timeout=10)

    (tmp_path / "b.json").write_text("{}")  # b's result file exists: reported as done before
    jobs = [(n, tmp_path / f"{n}.json", lambda n=n: job(n, together)) for n in "ab"]
    assert run_all(jobs, parallel=2) == {"a": {"name": "a"}, "b": {"name": "b"}}
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and {line.split(":")[0].split(" ", 2)[2] for line in lines} == {"a", "b"}
    assert any(line.startswith("[study] ") and " b: done before;" in line for line in lines)
    with pytest.raises(threading.BrokenBarrierError):  # one at a time: the barrier never fills
        alone = threading.Barrier(2, timeout=0.5)
        run_all([(n, tmp_path / f"{n}.x", lambda n=n: job(n, alone)) for n in "cd"], parallel=1)


class Stop(Exception):
    """Raised by a stand-in runner: the stages are all the test needs."""


def test_a_training_on_the_datasets_own_saliency_and_the_error_flags_of_the_ird_arms(tmp_path: Path) -> None:
    from epspp.study.grid import Training, has_ird
    from epspp.study.runner import DATASET_SALIENCY, Context, localization

    ctx = Context(tmp_path / "out", tmp_path / "data", tmp_path, [], {}, saliency_errors=True)
    assert ctx.saliency_dir(DATASET_SALIENCY) == tmp_path / "data" / "saliency"  # no variant folder
    assert ctx.saliency_dir("clean") == tmp_path / "out" / "saliency" / "data" / "clean"
    assert [has_ird(m) for m in ("cam", "eps", "eps++", "eps++/softmax")] == [False, False, True, True]
    seen = {}

    def run(stages: list) -> None:
        seen["args"] = [list(stage.args) for stage in stages]
        raise Stop

    ctx.runner.run = run  # type: ignore[method-assign]
    for method, flagged in (("eps++/softmax", True), ("eps", False)):
        with pytest.raises(Stop):
            localization(ctx, Training("scratch", method, DATASET_SALIENCY, 0))
        fit, *predicts = seen["args"]
        assert all(str(tmp_path / "data" / "saliency") in args for args in seen["args"])
        assert ("--data.saliency_errors" in fit) == flagged
        if flagged:
            assert fit[fit.index("--data.saliency_errors") + 1] == "true"
        assert all("--data.saliency_errors" not in args for args in predicts)  # training batches only


def _segmentation_ctx(tmp_path: Path):  # noqa: ANN202
    from epspp.study.runner import Context

    root = tmp_path / "out" / "data"  # the study's own dataset
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"img{i}\n" for i in range(10)))
    return Context(tmp_path / "out", root, tmp_path / "configs", ["--trainer.max_steps", "2"], {})


def test_a_stage_3_setting_reads_its_masks_and_split_and_scores_the_last_checkpoint(tmp_path: Path) -> None:
    """val/mIoU 0.123456 of the validate run -> score 12.346 (percent, 3 decimals), cached in score.json."""
    import json

    from epspp.study.runner import StudyError, segmentation

    ctx = _segmentation_ctx(tmp_path)
    pseudo = tmp_path / "masks"
    seen: list[list] = []

    def run(stages: list, value: str = "0.123456") -> None:
        seen.append([list(stage.args) for stage in stages])
        logs = stages[1].folder / "csv" / "version_0"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "metrics.csv").write_text(f"step,val/mIoU\n0,{value}\n")

    ctx.runner.run = run  # type: ignore[method-assign]

    def value_of(args: list, flag: str) -> str:
        return args[args.index(flag) + 1]

    assert segmentation(ctx, "pretrained", "ssss", 3, 0.1, pseudo) == {"miou": 12.346}
    fit, validate = seen[-1]
    folder = ctx.runs / "pretrained" / "segmentation" / "ssss_0.1" / "seed3"
    assert value_of(fit, "--config") == str(tmp_path / "configs" / "segmentation_ssss.yaml")
    assert value_of(fit, "--data.pseudo_mask_dir") == str(pseudo)
    assert value_of(fit, "--data.labeled_split") == "labeled_study_0.1"  # labeled_split's docstring
    assert value_of(fit, "--seed_everything") == "3"
    assert value_of(fit, "--model.init_args.pretrained_path") == str(
        tmp_path / "out" / "pretrain" / "seed3" / "backbone.pth"
    )
    assert value_of(validate, "--ckpt_path") == str(folder / "checkpoints" / "last.ckpt")
    assert value_of(validate, "--trainer.default_root_dir") == str(folder / "validate")
    assert json.loads((folder / "score.json").read_text()) == {"miou": 12.346}
    assert segmentation(ctx, "pretrained", "ssss", 3, 0.1, pseudo) == {"miou": 12.346} and len(seen) == 1  # cached
    assert segmentation(ctx, "scratch", "labeled_only", 0, 0.1, None) == {"miou": 12.346}
    fit = seen[-1][0]
    assert value_of(fit, "--config") == str(tmp_path / "configs" / "scratch" / "segmentation_wsss.yaml")
    assert (
        value_of(fit, "--data.pseudo_mask_dir") == "null" and value_of(fit, "--data.train_split") == "labeled_study_0.1"
    )
    assert "--model.init_args.pretrained_path" not in fit
    segmentation(ctx, "scratch", "wsss", 0, None, pseudo)
    fit = seen[-1][0]
    assert value_of(fit, "--data.pseudo_mask_dir") == str(pseudo) and "--data.labeled_split" not in fit
    assert (ctx.runs / "scratch" / "segmentation" / "wsss" / "seed0" / "score.json").is_file()  # no fraction
    ctx.runner.run = lambda stages: run(stages, "")  # type: ignore[method-assign]
    with pytest.raises(StudyError) as error:
        segmentation(ctx, "scratch", "wsss", 1, None, pseudo)
    folder = ctx.runs / "scratch" / "segmentation" / "wsss" / "seed1" / "validate"
    assert str(error.value) == f"{folder} logged no val/mIoU: does the config have a val split?"


def test_an_existing_study_dataset_must_have_the_class_count_and_names_the_sizes_it_ignores(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import json

    from epspp.study.runner import Context, StudyError, prepare

    root = tmp_path / "data"
    root.mkdir()
    (root / "synthetic.json").write_text(json.dumps({"params": {"num_classes": 5, "num_train": 20, "image_size": 48}}))
    ctx = Context(tmp_path / "out", root, tmp_path, [], {})
    with pytest.raises(StudyError) as error:
        prepare(ctx, 7, {})
    assert str(error.value) == (
        f"{root} holds a synthetic dataset of 5 classes, not --num-classes 7: pass --num-classes 5, or another --root"
    )
    with pytest.raises(StudyError, match="^.* holds a synthetic dataset of 5 classes, not --num-classes 3: "):
        prepare(ctx, 3, {})
    prepare(ctx, 5, {"num_train": None, "num_val": None, "image_size": 64})  # None: the default, not a wish
    assert capsys.readouterr().out == (
        f"[study] note: --image-size 64 is not used: {root} exists with image_size 48 and is not regenerated (pass "
        "another --root or --out)\n"
    )


def test_a_study_dataset_of_an_older_epspp_has_5_classes(tmp_path: Path) -> None:
    """An older synthetic.json names no class count: the generator's default then, 5."""
    import json

    from epspp.study.runner import Context, StudyError, prepare

    root = tmp_path / "data"
    root.mkdir()
    (root / "synthetic.json").write_text(json.dumps({"params": {"num_train": 20}}))
    ctx = Context(tmp_path / "out", root, tmp_path, [], {})
    prepare(ctx, 5, {})
    with pytest.raises(StudyError, match="of 5 classes, not --num-classes 20"):
        prepare(ctx, 20, {})


def test_a_trainings_scores_take_each_number_from_its_file_and_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The train masks' manifest gives the configured score, the val sweep chooses the threshold and the train sweep
    is scored at it (never the other way round), IRD's summary gives the telemetry; each split's masks predicted
    into their own folder."""
    import json

    import torch

    import epspp.data.classes
    import epspp.evaluate
    import epspp.runs.logs
    from epspp.metrics import SegmentationMetrics
    from epspp.study.grid import THRESHOLDS, Training
    from epspp.study.runner import Context, localization

    ctx = Context(tmp_path / "out", tmp_path / "data", tmp_path, [], {})
    training = Training("scratch", "eps++", "clean", 2)
    folder = training.folder(ctx.runs)
    target = torch.tensor([[0, 1, 1]])

    def sweep(index: int) -> list[SegmentationMetrics]:
        """mIoU 100 at THRESHOLDS[index], else (1/3 + 0) / 2 (all background)."""
        metrics = [SegmentationMetrics(2) for _ in THRESHOLDS]
        for i, metric in enumerate(metrics):
            metric.update(target if i == index else torch.zeros_like(target), target)
        return metrics

    best = {"val": 3, "train": 5}  # val's best 0.4, train's best 0.6
    monkeypatch.setattr(epspp.data.classes, "read_classes", lambda root: ["background", "a"])
    monkeypatch.setattr(
        epspp.evaluate,
        "sweep_bg_threshold",
        lambda pred_dir, root, split, thresholds, class_names: {"metrics": sweep(best[split])},
    )
    summary = {"last_steps": {"inconsistent_salient": 0.3, "fg_salient": 0.6}, "collapse_step": 44}
    monkeypatch.setattr(epspp.runs.logs, "ird_summary", lambda logs, steps: summary)
    seen: dict[str, list] = {}

    def run(stages: list) -> None:
        seen["stages"] = stages
        manifest = {"miou": 41.5, "config": {"model": {"bg_threshold": 0.25}}, "per_class_iou": {"a": 7.0}}
        (folder / "pseudo_masks").mkdir(parents=True, exist_ok=True)
        (folder / "pseudo_masks" / "manifest.json").write_text(json.dumps(manifest))

    ctx.runner.run = run  # type: ignore[method-assign]
    scores = localization(ctx, training)
    _, *predicts = seen["stages"]
    assert [(s.folder, s.args[s.args.index("--data.predict_split") + 1]) for s in predicts] == [
        (folder / "pseudo_masks", "train"),
        (folder / "val_masks", "val"),
    ]
    assert scores["val_sweep"]["0.4"] == 100.0 and scores["train_sweep"]["0.6"] == 100.0
    assert {k: scores[k] for k in ("configured", "bg_threshold", "val_chosen", "val_chosen_threshold")} == {
        "configured": 41.5,
        "bg_threshold": 0.25,
        "val_chosen": 16.667,  # train at 0.4: background IoU 1/3, class a 0
        "val_chosen_threshold": 0.4,
    }
    assert scores["per_class_iou"] == {"a": 7.0}
    assert scores["per_class_iou_val_chosen"] == {"background": 33.333, "a": 0.0}
    assert (scores["inconsistent_salient"], scores["fg_salient"], scores["collapse_step"]) == (0.3, 0.6, 44)
    assert scores["ird"] == summary and scores["context_confusion"] is None  # no SegmentationContext
    assert json.loads((folder / "scores.json").read_text()) == scores
