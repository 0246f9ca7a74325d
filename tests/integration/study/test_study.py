"""`epspp study` as a user runs it, on a tiny grid: both regimes, 2 steps, 2 rates; outputs (thresholds chosen on
val, claims with verdicts, per-run scores.json), resume after a kill, the readings and labelled-fraction studies."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import pytest
from fixtures.cli import CONFIGS, call_main, in_process, stages_in_this_process
from PIL import Image

TINY = ["--num-train", "12", "--num-val", "4", "--image-size", "32", "--seeds", "0", "--no-wandb", "--jobs", "1"]
# every fit, stage 0 included: 2 steps of 4 images
FIT = [
    "--",
    "--trainer.max_steps=2",
    "--data.crop_size=32",
    "--data.resize_long=[28,40]",
    "--data.eval_size=32",
    "--data.batch_size=4",
    "--trainer.log_every_n_steps=1",
]
# one error type, CAM and EPS++, in both regimes (the default): 2 x (1 + 2) trainings
ERRORS = ["saliency-errors", "--rates", "0", "0.5", "--methods", "cam", "eps++", "--error-types", "missing_class"]
DATA = "data_5classes"


def progress(stdout: str, jobs: int) -> list[str]:
    """The study's progress lines of a run of ``jobs`` jobs, as ``"<job>: <time or done before>"`` (the
    ``k/jobs`` count, which is finishing order, and the time left stripped)."""
    prefix = re.compile(rf"\[study\] \d+/{jobs} ")
    return [prefix.sub("", line).split(";")[0] for line in stdout.splitlines() if prefix.match(line)]


def run_study(args: list, cwd: Path) -> subprocess.CompletedProcess:
    """``epspp ARGS`` and its stages in this process (one job at a time); fails with the output unless it exits 0."""
    with stages_in_this_process():
        code, out, err = call_main([str(a) for a in args], cwd)
    assert code == 0, f"exit {code}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"
    return subprocess.CompletedProcess(args, code, out, err)


def study_command(out: Path, *extra: str) -> list:
    return ["study", *ERRORS, "--out", out, "--configs", CONFIGS / "demo", *TINY, *extra, *FIT]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "out"
    run_study(study_command(out), cwd=out.parent)
    return out


def test_writes_both_regimes_with_the_threshold_chosen_on_val(study: Path) -> None:
    rows = list(csv.DictReader((study / "study.csv").open()))
    assert list(rows[0]) == [
        "regime",
        "error_type",
        "rate",
        "method",
        "seed",
        "threshold",
        "miou",
        "inconsistent_salient",
        "bg_threshold",
        "fg_salient",
        "collapse_step",
    ]
    # 2 regimes x 2 rates x 2 methods x 1 seed x 2 thresholds
    assert len(rows) == 16
    assert {r["regime"] for r in rows} == {"scratch", "pretrained"}
    assert {r["threshold"] for r in rows} == {"configured", "val_chosen"}
    for row in rows:  # IRD's telemetry for EPS++, empty for CAM
        assert (row["inconsistent_salient"] == "") == (row["method"] == "cam")
        assert (row["fg_salient"] == "") == (row["method"] == "cam")
        if row["inconsistent_salient"]:
            assert 0.0 <= float(row["inconsistent_salient"]) <= 1.0
    runs = study / "runs" / DATA
    for regime in ("scratch", "pretrained"):
        cell = runs / regime / "eps++" / "missing_class_0.5" / "seed0"
        scores = json.loads((cell / "scores.json").read_text())
        chosen = next(
            r
            for r in rows
            if r["regime"] == regime
            and r["method"] == "eps++"
            and r["rate"] == "0.5"
            and r["threshold"] == "val_chosen"
        )
        # the threshold is the val sweep's best (lowest on a tie), train is scored at it: nothing chosen on train
        val = {float(t): m for t, m in scores["val_sweep"].items()}
        assert (
            float(chosen["bg_threshold"])
            == scores["val_chosen_threshold"]
            == min(t for t, m in val.items() if m == max(val.values()))
        )
        assert float(chosen["miou"]) == pytest.approx(
            scores["train_sweep"][f"{scores['val_chosen_threshold']:g}"], abs=1e-3
        )
        assert set(scores["train_sweep"]) == {"0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8"}
        assert float(chosen["inconsistent_salient"]) == pytest.approx(scores["inconsistent_salient"], abs=1e-4)
        assert scores["ird"]["recorded_steps"] == 2 and scores["ird"]["window"] == 50
        assert set(scores["per_class_iou"]) == set(scores["per_class_iou_val_chosen"])
        for key in ("context_confusion", "context_confusion_val_chosen"):  # the train masks on rails and water
            assert 0.0 <= scores[key] <= 1.0, key
        configured = next(
            r
            for r in rows
            if r["regime"] == regime
            and r["method"] == "eps++"
            and r["rate"] == "0.5"
            and r["threshold"] == "configured"
        )
        assert float(configured["bg_threshold"]) == 0.2
        assert (cell / "val_masks" / "manifest.json").is_file()
    # the pretrained regime started from its seed's stage-0 backbone, the scratch regime from random weights
    import torch

    def started_from(regime: str, method: str) -> str | None:
        checkpoint = runs / regime / method / "clean" / "seed0" / "localization" / "checkpoints" / "last.ckpt"
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"].get("pretrained_path")

    assert started_from("pretrained", "eps++") == str(study / "pretrain" / "seed0" / "backbone.pth")
    assert started_from("scratch", "eps++") is None
    text = (study / "study.md").read_text()
    assert "## scratch: " in text and "## pretrained: " in text and "### pretrained: missing_class" in text
    assert "No number here is chosen on train" in text and "a difference between them is the regime's" in text
    claims = list(csv.DictReader((study / "study_claims.csv").open()))
    assert {c["claim"] for c in claims} == {"EPS++ > CAM"}
    # one seed: p >= 1/2, so no claim can hold or be contradicted
    assert {c["verdict"] for c in claims} == {"not significant"} and {c["n"] for c in claims} == {"1"}
    figure = Image.open(study / "study.png")
    assert figure.info["Description"] == "panels: missing class (threshold chosen on val)"
    assert sorted(p.name for p in (study / "saliency" / DATA).iterdir()) == ["clean", "missing_class_0.5"]


def test_a_killed_study_redoes_only_what_did_not_finish(study: Path) -> None:
    cell = study / "runs" / DATA / "pretrained" / "eps++" / "missing_class_0.5" / "seed0"
    checkpoint = cell / "localization" / "checkpoints" / "last.ckpt"
    stamp = checkpoint.stat().st_mtime_ns
    before = (study / "study.csv").read_text()
    (cell / "scores.json").unlink()  # killed during stage 2: its masks and marker are incomplete
    (cell / "val_masks" / "stage.json").unlink()
    (cell / "val_masks" / "manifest.json").unlink()
    result = run_study(study_command(study), cwd=study.parent)
    assert checkpoint.stat().st_mtime_ns == stamp  # stage 1 was not redone
    assert (cell / "scores.json").is_file()
    lines = progress(result.stdout, 6)
    assert len(lines) == 6  # a line per training: CAM, and EPS++ at 2 points, per regime
    redone = [line for line in lines if "done before" not in line]
    assert len(redone) == 1 and "pretrained eps++ missing_class_0.5 seed 0" in redone[0]
    assert (study / "study.csv").read_text() == before


def test_readings_trains_both_readings_and_the_ablation(study: Path) -> None:
    out = study.parent / "readings"
    run_study(
        [
            "study",
            "readings",
            "--methods",
            "eps++",
            "eps++/softmax",
            "eps++/no-pamr",
            "--regimes",
            "scratch",
            "--out",
            out,
            "--root",
            study / DATA,
            "--configs",
            CONFIGS / "demo",
            *TINY,
            *FIT,
        ],
        cwd=study.parent,
    )
    rows = list(csv.DictReader((out / "readings.csv").open()))
    assert {r["method"] for r in rows} == {"eps++", "eps++/softmax", "eps++/no-pamr"} and len(rows) == 6
    assert all(r["threshold_map_salient"] != "" and r["threshold_map_background"] != "" for r in rows)
    runs = out / "runs" / DATA / "scratch"
    import torch

    def hparams(arm: str) -> dict:
        checkpoint = runs / arm / "demo" / "seed0" / "localization" / "checkpoints" / "last.ckpt"
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]

    assert hparams("eps++")["ird_threshold_maps"] == "normalized"
    assert hparams("eps++_softmax")["ird_threshold_maps"] == "softmax"
    assert hparams("eps++_no-pamr")["ird_refine"] == "none"
    assert hparams("eps++_no-pamr")["ird_threshold_maps"] == "normalized"  # the arm follows the default reading
    text = (out / "readings.md").read_text()
    assert "| eps++/softmax | " in text and "ablation, not the paper" in text
    claims = {c["claim"] for c in csv.DictReader((out / "readings_claims.csv").open())}
    assert claims == {"PAMR helps IRD: EPS++ > EPS++ without PAMR", "normalized - softmax reading of B()"}
    assert sorted(p.name for p in (out / "saliency" / DATA).iterdir()) == ["clean", "demo"]


def test_labeled_fraction_has_ssss_on_eps_and_eps_plus_plus_masks(study: Path) -> None:
    # the saliency study's dataset (--num-classes 5): its EPS++ training at clean saliency is reused
    result = run_study(
        [
            "study",
            "labeled-fraction",
            "--fractions",
            "0.25",
            "--num-classes",
            "5",
            "--regimes",
            "pretrained",
            "--out",
            study,
            "--configs",
            CONFIGS / "demo",
            *TINY,
            *FIT,
            "--data.labeled_per_batch=2",
        ],
        cwd=study.parent,
    )
    assert sorted(progress(result.stdout, 2))[1] == "pretrained eps++ clean seed 0: done before"
    rows = list(csv.DictReader((study / "labeled_fraction.csv").open()))
    assert list(rows[0]) == ["regime", "num_classes", "fraction", "setting", "seed", "miou"] and len(rows) == 5
    assert {r["setting"] for r in rows} == {"labeled_only", "ssss", "ssss_eps", "wsss", "wsss_eps"}
    labeled = (study / DATA / "ImageSets" / "Segmentation" / "labeled_study_0.25.txt").read_text().split()
    assert len(labeled) == 3  # a quarter of the 12 training images
    from epspp.study.runner import labeled_split

    labeled_split(study / DATA, 0.5)  # nested: the half contains the quarter
    assert set(labeled) <= set(
        (study / DATA / "ImageSets" / "Segmentation" / "labeled_study_0.5.txt").read_text().split()
    )
    text = (study / "labeled_fraction.md").read_text()
    assert "## pretrained: " in text and "| 0.25 |" in text and "round(f x 12) of the 12 training images" in text
    claims = {c["claim"] for c in csv.DictReader((study / "labeled_fraction_claims.csv").open())}
    assert "SSSS (EPS masks) > labelled-only, fraction 0.25" in claims
    assert (study / "labeled_fraction.png").is_file()
    segmentation = study / "runs" / DATA / "pretrained" / "segmentation"
    import torch

    def hparams(name: str) -> dict:
        checkpoint = segmentation / name / "seed0" / "checkpoints" / "last.ckpt"
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]

    assert hparams("ssss_0.25")["pretrained_path"] == str(study / "pretrain" / "seed0" / "backbone.pth")
    config = (segmentation / "ssss_eps_0.25" / "seed0" / "config.yaml").read_text()
    assert str(study / "runs" / DATA / "pretrained" / "eps" / "clean" / "seed0" / "pseudo_masks") in config


def test_bad_arguments_are_one_line(study: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    result = in_process(
        capfd,
        "study",
        "saliency-errors",
        "--rates",
        "0.5",
        "--out",
        tmp_path / "o",
        "--configs",
        CONFIGS / "demo",
        *TINY,
    )
    assert result.returncode == 2 and "epspp study: error: --rates must include 0" in result.stderr
    for flag, values, message in (
        ("--rates", ["0", "1.5"], "1.5 is not in [0, 1]"),
        ("--rates", ["0", "nan"], "nan is not in [0, 1]"),
        ("--fractions", ["0.5", "-0.2"], "-0.2 is not in [0, 1]"),
        ("--fractions", ["0"], "--fractions must be above 0"),
    ):
        study_name = "saliency-errors" if flag == "--rates" else "labeled-fraction"
        result = in_process(
            capfd, "study", study_name, flag, *values, "--out", tmp_path / "o", "--configs", CONFIGS / "demo", *TINY
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()
    result = in_process(capfd, "study", "saliency-errors", "--out", tmp_path / "o", "--configs", tmp_path / "none")
    assert result.returncode == 2 and "config folder" in result.stderr and "does not exist" in result.stderr
    result = in_process(
        capfd, "study", "saliency-errors", "--out", tmp_path / "o", "--configs", CONFIGS / "demo" / "scratch"
    )
    assert result.returncode == 2 and "has no scratch/pseudo_masks.yaml" in result.stderr
    # the labelled-fraction study defaults to 20 classes: a 5-class dataset is refused, nothing is trained
    result = in_process(
        capfd,
        "study",
        "labeled-fraction",
        "--out",
        tmp_path / "o",
        "--root",
        study / DATA,
        "--configs",
        CONFIGS / "demo",
        *TINY,
    )
    assert result.returncode == 2 and "holds a synthetic dataset of 5 classes, not --num-classes 20" in result.stderr
    assert not (tmp_path / "o" / "runs").exists()
