"""`epspp study` as a user runs it, on a tiny grid: 2 steps, 2 rates; outputs, resume after a kill."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli import CONFIGS, in_process, run_epspp
from PIL import Image

TINY = ["--num-train", "12", "--num-val", "4", "--image-size", "32", "--seeds", "0", "--no-wandb"]
FIT = ["--", "--trainer.max_steps=2", "--data.crop_size=32", "--data.resize_long=[28,40]", "--data.eval_size=32",
       "--data.batch_size=4"]
# two error types (two panels), CAM and EPS++: 1 + (1 + 2) trainings, + the demo point
ERRORS = ["saliency-errors", "--rates", "0", "0.5", "--methods", "cam", "eps++", "--error-types", "missing_class",
          "false_coverage"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "out"
    run_epspp(["study", *ERRORS, "--out", out, "--configs", CONFIGS / "demo" / "scratch", *TINY, *FIT], cwd=out.parent,
              timeout=900)
    return out


def test_writes_the_csv_the_tables_and_one_panel_per_error_type(study: Path) -> None:
    rows = list(csv.DictReader((study / "study.csv").open()))
    assert list(rows[0]) == ["error_type", "rate", "method", "seed", "threshold", "miou"]
    # 2 error types x 2 rates x 2 methods x 1 seed x 2 thresholds
    assert len(rows) == 16
    assert {r["error_type"] for r in rows} == {"missing_class", "false_coverage"}
    assert {r["threshold"] for r in rows} == {"configured", "best"}
    cam = {(r["error_type"], r["rate"], r["threshold"]): float(r["miou"]) for r in rows if r["method"] == "cam"}
    assert len(set(cam[(e, r, "configured")] for e, r, _ in cam)) == 1  # one CAM training serves every point
    clean = {r["error_type"]: r["miou"] for r in rows if r["method"] == "eps++" and r["rate"] == "0.0"
             and r["threshold"] == "best"}
    assert len(set(clean.values())) == 1  # rate 0 is shared by the error types
    scores = json.loads((study / "runs" / "eps++" / "clean" / "seed0" / "scores.json").read_text())
    assert float(clean["missing_class"]) == pytest.approx(scores["best"])
    assert set(scores["sweep"]) == {"0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8"}
    text = (study / "study.md").read_text()
    assert "## false_coverage" in text and "eps++ (best)" in text
    assert "## demo defaults (missing class 0.1, missing part 0.2, false coverage 0.2" in text
    figure = Image.open(study / "study.png")
    assert figure.info["Description"] == "panels: missing class; false coverage"
    assert sorted(p.name for p in (study / "saliency").iterdir()) == [
        "clean", "demo", "false_coverage_0.5", "missing_class_0.5"]


def test_a_killed_study_redoes_only_what_did_not_finish(study: Path) -> None:
    cell = study / "runs" / "eps++" / "false_coverage_0.5" / "seed0"
    checkpoint = cell / "localization" / "checkpoints" / "last.ckpt"
    stamp = checkpoint.stat().st_mtime_ns
    before = (study / "study.csv").read_text()
    (cell / "scores.json").unlink()  # killed during stage 2: its masks and marker are incomplete
    (cell / "pseudo_masks" / "stage.json").unlink()
    (cell / "pseudo_masks" / "manifest.json").unlink()
    result = run_epspp(["study", *ERRORS, "--out", study, "--configs", CONFIGS / "demo" / "scratch", *TINY, *FIT],
                       cwd=study.parent, timeout=600)
    assert checkpoint.stat().st_mtime_ns == stamp  # stage 1 was not redone
    assert (cell / "scores.json").is_file()
    progress = [line for line in result.stdout.splitlines() if line.startswith("[study] ") and "/5 " in line]
    # a line per training: CAM, and EPS++ at the clean point, 2 error types and the demo point
    assert len(progress) == 5
    redone = [line for line in progress if "done before" not in line]
    assert len(redone) == 1 and "eps++ false_coverage_0.5 seed 0" in redone[0]
    assert (study / "study.csv").read_text() == before


def test_labeled_fraction_writes_its_outputs(study: Path) -> None:
    run_epspp(["study", "labeled-fraction", "--fractions", "0.25", "--out", study, "--configs",
               CONFIGS / "demo" / "scratch", *TINY, *FIT, "--data.labeled_per_batch=2"], cwd=study.parent, timeout=900)
    rows = list(csv.DictReader((study / "labeled_fraction.csv").open()))
    assert list(rows[0]) == ["fraction", "setting", "seed", "miou"] and len(rows) == 3
    assert {r["setting"] for r in rows} == {"labeled_only", "ssss", "wsss"}
    labeled = (study / "data" / "ImageSets" / "Segmentation" / "labeled_study_0.25.txt").read_text().split()
    assert len(labeled) == 3  # a quarter of the 12 training images
    from epspp.study import labeled_split

    labeled_split(study / "data", 0.5)  # nested: the half contains the quarter
    assert set(labeled) <= set((study / "data" / "ImageSets" / "Segmentation" / "labeled_study_0.5.txt")
                               .read_text().split())
    assert "| 0.25 |" in (study / "labeled_fraction.md").read_text()
    assert (study / "labeled_fraction.png").is_file()


def test_bad_arguments_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    result = in_process(capfd, "study", "saliency-errors", "--rates", "0.5", "--out", tmp_path / "o", "--configs",
                        CONFIGS / "demo" / "scratch", *TINY)
    assert result.returncode == 2 and "epspp study: error: --rates must include 0" in result.stderr
    result = in_process(capfd, "study", "saliency-errors", "--out", tmp_path / "o", "--configs", tmp_path / "none")
    assert result.returncode == 2 and "config folder" in result.stderr
