"""`epspp study` as a user runs it, on a tiny grid: both regimes, the ablation arm, 2 steps, 2 rates; outputs,
resume after a kill."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from cli import CONFIGS, in_process, run_epspp
from PIL import Image

TINY = ["--num-train", "12", "--num-val", "4", "--image-size", "32", "--seeds", "0", "--no-wandb"]
# every fit, stage 0 included: 2 steps of 4 images
FIT = ["--", "--trainer.max_steps=2", "--data.crop_size=32", "--data.resize_long=[28,40]", "--data.eval_size=32",
       "--data.batch_size=4", "--trainer.log_every_n_steps=1"]
# one error type, CAM, EPS++ and the ablation arm, in both regimes (the default): 2 x (1 + 2 x 2) trainings
ERRORS = ["saliency-errors", "--rates", "0", "0.5", "--methods", "cam", "eps++", "eps++/no-pamr", "--error-types",
          "missing_class"]
DATA = "data_5classes"


def progress(stdout: str, jobs: int) -> list[str]:
    """The study's progress lines of a run of ``jobs`` jobs, as ``"<job>: <time or done before>"`` (the
    ``k/jobs`` count, which is finishing order, and the time left stripped)."""
    prefix = re.compile(rf"\[study\] \d+/{jobs} ")
    return [prefix.sub("", line).split(";")[0] for line in stdout.splitlines() if prefix.match(line)]


def study_command(out: Path, *extra: str) -> list:
    return ["study", *ERRORS, "--out", out, "--configs", CONFIGS / "demo", *TINY, *extra, *FIT]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "out"
    run_epspp(study_command(out), cwd=out.parent, timeout=900)
    return out


def test_writes_both_regimes_the_ablation_arm_and_irds_telemetry(study: Path) -> None:
    rows = list(csv.DictReader((study / "study.csv").open()))
    assert list(rows[0]) == ["regime", "error_type", "rate", "method", "seed", "threshold", "miou",
                             "inconsistent_salient"]
    # 2 regimes x 2 rates x 3 methods x 1 seed x 2 thresholds
    assert len(rows) == 24
    assert {r["regime"] for r in rows} == {"scratch", "pretrained"}
    assert {r["method"] for r in rows} == {"cam", "eps++", "eps++/no-pamr"}
    assert {r["threshold"] for r in rows} == {"configured", "best"}
    for row in rows:  # IRD's share of salient pixels in N for the IRD methods, empty for CAM
        assert (row["inconsistent_salient"] == "") == (row["method"] == "cam")
        if row["inconsistent_salient"]:
            assert 0.0 <= float(row["inconsistent_salient"]) <= 1.0
    runs = study / "runs" / DATA
    for regime in ("scratch", "pretrained"):
        cell = runs / regime / "eps++" / "missing_class_0.5" / "seed0"
        scores = json.loads((cell / "scores.json").read_text())
        row = next(r for r in rows if r["regime"] == regime and r["method"] == "eps++" and r["rate"] == "0.5"
                   and r["threshold"] == "best")
        assert float(row["miou"]) == pytest.approx(scores["best"], abs=1e-3)
        assert float(row["inconsistent_salient"]) == pytest.approx(scores["inconsistent_salient"], abs=1e-4)
        assert set(scores["sweep"]) == {"0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8"}
    # the pretrained regime started from its seed's stage-0 backbone, the scratch regime from random weights
    import torch

    def started_from(regime: str, method: str) -> str | None:
        checkpoint = runs / regime / method / "clean" / "seed0" / "localization" / "checkpoints" / "last.ckpt"
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"].get("pretrained_path")

    assert started_from("pretrained", "eps++") == str(study / "pretrain" / "seed0" / "backbone.pth")
    assert started_from("scratch", "eps++") is None
    ablation = runs / "pretrained" / "eps++_no-pamr" / "clean" / "seed0" / "localization" / "checkpoints" / "last.ckpt"
    hparams = torch.load(ablation, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["ird_refine"] == "none" and hparams["saliency_loss"] == "ird"
    assert (study / "pretrain" / "seed0" / "backbone.pth").is_file()
    text = (study / "study.md").read_text()
    assert "## scratch: " in text and "## pretrained: " in text and "### pretrained: missing_class" in text
    assert "eps++/no-pamr N∩S" in text and "ablation, not the paper" in text
    figure = Image.open(study / "study.png")
    assert figure.info["Description"] == "panels: missing class (best threshold)"
    assert sorted(p.name for p in (study / "saliency" / DATA).iterdir()) == ["clean", "missing_class_0.5"]


def test_a_killed_study_redoes_only_what_did_not_finish(study: Path) -> None:
    cell = study / "runs" / DATA / "pretrained" / "eps++" / "missing_class_0.5" / "seed0"
    checkpoint = cell / "localization" / "checkpoints" / "last.ckpt"
    stamp = checkpoint.stat().st_mtime_ns
    before = (study / "study.csv").read_text()
    (cell / "scores.json").unlink()  # killed during stage 2: its masks and marker are incomplete
    (cell / "pseudo_masks" / "stage.json").unlink()
    (cell / "pseudo_masks" / "manifest.json").unlink()
    result = run_epspp(study_command(study), cwd=study.parent, timeout=600)
    assert checkpoint.stat().st_mtime_ns == stamp  # stage 1 was not redone
    assert (cell / "scores.json").is_file()
    lines = progress(result.stdout, 10)
    assert len(lines) == 10  # a line per training: CAM, EPS++ and the ablation at 2 points, per regime
    redone = [line for line in lines if "done before" not in line]
    assert len(redone) == 1 and "pretrained eps++ missing_class_0.5 seed 0" in redone[0]
    assert (study / "study.csv").read_text() == before


def test_the_demo_point_is_reported_per_regime(study: Path) -> None:
    out = study.parent / "demo_point"
    run_epspp(["study", "saliency-errors", "--rates", "0", "--methods", "cam", "eps++", "--error-types",
               "missing_class", "--regimes", "scratch", "--demo-point", "--out", out, "--root", study / DATA,
               "--configs", CONFIGS / "demo", *TINY, *FIT], cwd=study.parent, timeout=600)
    text = (out / "study.md").read_text()
    assert "## demo defaults (missing class 0.1, missing part 0.2, false coverage 0.2" in text
    assert "| scratch | " in text.split("## demo defaults")[1]
    assert sorted(p.name for p in (out / "saliency" / DATA).iterdir()) == ["clean", "demo"]


def test_labeled_fraction_writes_both_regimes(study: Path) -> None:
    # the saliency study's dataset (--num-classes 5): its EPS++ trainings at clean saliency are reused
    result = run_epspp(["study", "labeled-fraction", "--fractions", "0.25", "--num-classes", "5", "--out", study,
                        "--configs", CONFIGS / "demo", *TINY, *FIT, "--data.labeled_per_batch=2"],
                       cwd=study.parent, timeout=900)
    # the two reused trainings run in parallel threads, so their k/2 order is whichever finished first
    assert sorted(progress(result.stdout, 2)) == [
        "pretrained eps++ clean seed 0: done before", "scratch eps++ clean seed 0: done before"]
    rows = list(csv.DictReader((study / "labeled_fraction.csv").open()))
    assert list(rows[0]) == ["regime", "num_classes", "fraction", "setting", "seed", "miou"] and len(rows) == 6
    assert {(r["regime"], r["setting"]) for r in rows} == {(g, s) for g in ("scratch", "pretrained")
                                                            for s in ("labeled_only", "ssss", "wsss")}
    assert {r["num_classes"] for r in rows} == {"5"}
    labeled = (study / DATA / "ImageSets" / "Segmentation" / "labeled_study_0.25.txt").read_text().split()
    assert len(labeled) == 3  # a quarter of the 12 training images
    from epspp.study import labeled_split

    labeled_split(study / DATA, 0.5)  # nested: the half contains the quarter
    assert set(labeled) <= set((study / DATA / "ImageSets" / "Segmentation" / "labeled_study_0.5.txt")
                               .read_text().split())
    text = (study / "labeled_fraction.md").read_text()
    assert "## pretrained: " in text and "| 0.25 |" in text and "round(f x 12) of the 12 training images" in text
    assert (study / "labeled_fraction.png").is_file()
    segmentation = study / "runs" / DATA / "pretrained" / "segmentation" / "ssss_0.25" / "seed0"
    import torch

    hparams = torch.load(segmentation / "checkpoints" / "last.ckpt", map_location="cpu",
                         weights_only=True)["hyper_parameters"]
    assert hparams["pretrained_path"] == str(study / "pretrain" / "seed0" / "backbone.pth")


def test_bad_arguments_are_one_line(study: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    result = in_process(capfd, "study", "saliency-errors", "--rates", "0.5", "--out", tmp_path / "o", "--configs",
                        CONFIGS / "demo", *TINY)
    assert result.returncode == 2 and "epspp study: error: --rates must include 0" in result.stderr
    result = in_process(capfd, "study", "saliency-errors", "--out", tmp_path / "o", "--configs", tmp_path / "none")
    assert result.returncode == 2 and "config folder" in result.stderr and "does not exist" in result.stderr
    result = in_process(capfd, "study", "saliency-errors", "--out", tmp_path / "o", "--configs",
                        CONFIGS / "demo" / "scratch")
    assert result.returncode == 2 and "has no scratch/pseudo_masks.yaml" in result.stderr
    # the labelled-fraction study defaults to 20 classes: a 5-class dataset is refused, nothing is trained
    result = in_process(capfd, "study", "labeled-fraction", "--out", tmp_path / "o", "--root", study / DATA,
                        "--configs", CONFIGS / "demo", *TINY)
    assert result.returncode == 2 and "holds a synthetic dataset of 5 classes, not --num-classes 20" in result.stderr
    assert not (tmp_path / "o" / "runs").exists()
