"""Stage 3 through the ``epspp`` command, as users run it: WSSS, SSSS, labelled-only and DeepLab-v3+
training, missing pseudo-masks, and validate/test/predict of a trained segmentation checkpoint.

Every ``epspp fit`` is a process of the console script; a module fixture starts them all at once (one
thread each) and every test waits for the one it checks.  ``validate``/``test``/``predict`` of the WSSS
checkpoint call the same ``epspp.cli.main`` in this process while the other fits run (a process spends
most of its seconds importing torch and Lightning).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures.cli import call_main
from PIL import Image

from epspp.data.datamodule import EPSDataModule
from epspp.data.dataset import VOCLayoutDataset
from epspp.data.io import write_mask_png
from epspp.tasks.segmentation import SegmentationModule

REPO = Path(__file__).resolve().parents[3]
WSSS = REPO / "configs" / "demo" / "scratch" / "segmentation_wsss.yaml"
SSSS = REPO / "configs" / "demo" / "scratch" / "segmentation_ssss.yaml"
VOC_TEST = REPO / "configs" / "voc" / "segmentation_test.yaml"
SERVER_LAYOUT = Path("results/VOC2012/Segmentation/comp6_test_cls")
C = 5
CLASS_NAMES = ["background", "disc", "square", "triangle", "train", "boat"]
MISSING = ["train_000003", "train_000007", "train_000011"]  # ids left out of the partial pseudo-mask folder
BACKBONE = ["--model.init_args.backbone_kwargs", "{channels: [16, 32, 64, 128], stem_width: 8}"]
PREDICT_TTA = ["--model.init_args.tta_scales", "[0.75, 1.0]", "--model.init_args.tta_flip", "true"]
TIMEOUT = 300
pytestmark = pytest.mark.filterwarnings("ignore:The dirpath has changed")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("epspp")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "epspp"]


@dataclass
class Run:
    """One ``epspp`` process, started at once, waited for when a test needs its result."""

    args: list[str]
    cwd: Path
    root_dir: Path
    process: subprocess.Popen | None = None
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    _files: list = field(default_factory=list)

    def start(self) -> Run:
        env = dict(
            os.environ,
            WANDB_MODE="offline",
            WANDB_SILENT="true",
            PYTHONWARNINGS="ignore",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            COLUMNS="120",
        )
        self.root_dir.mkdir(parents=True, exist_ok=True)
        out, err = (open(self.root_dir / name, "w+") for name in ("stdout.txt", "stderr.txt"))
        self._files = [out, err]
        self.process = subprocess.Popen(
            [*_command(), *self.args], cwd=self.cwd, env=env, stdout=out, stderr=err, text=True
        )
        return self

    def wait(self, check: bool = True) -> Run:
        if self.returncode is None:
            try:
                self.returncode = self.process.wait(timeout=TIMEOUT)
            finally:
                self.stop()
            self.stdout, self.stderr = ((self.root_dir / f"{n}.txt").read_text() for n in ("stdout", "stderr"))
        if check and self.returncode != 0:
            raise AssertionError(
                f"epspp {' '.join(self.args)} exited {self.returncode}\n"
                f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"
            )
        return self

    def run_in_process(self) -> Run:
        """``epspp.cli.main(args)`` in this process (no imports to pay), output captured, state restored."""
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.returncode, self.stdout, self.stderr = call_main(self.args, self.cwd)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for handle in self._files:
            handle.close()

    @property
    def checkpoint(self) -> Path:
        return self.root_dir / "checkpoints" / "last.ckpt"

    def logged(self) -> list[dict[str, str]]:
        (metrics,) = self.root_dir.glob("csv/version_*/metrics.csv")
        return list(csv.DictReader(metrics.read_text().splitlines()))


def fit_args(config: Path, root: Path, run_dir: Path, *extra: str) -> list[str]:
    """A 2-step fit on the tiny dataset; one 2-batch epoch, so that validation runs at its end."""
    logger = f"{{class_path: pytorch_lightning.loggers.CSVLogger, init_args: {{save_dir: '{run_dir}', name: csv}}}}"
    return [
        "fit",
        "--config",
        str(config),
        "--data.root",
        str(root),
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.max_steps",
        "2",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--trainer.val_check_interval",
        "1.0",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.logger",
        logger,
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--data.crop_size",
        "48",
        "--data.resize_long",
        "[40, 56]",
        "--data.eval_size",
        "48",
        *BACKBONE,
        *extra,
    ]


def eval_args(subcommand: str, root: Path, run_dir: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [
        subcommand,
        "--config",
        str(WSSS),
        "--data.root",
        str(root),
        "--trainer.default_root_dir",
        str(run_dir),
        "--ckpt_path",
        str(checkpoint),
        "--trainer.logger",
        "false",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--data.eval_size",
        "48",
        *BACKBONE,
        *extra,
    ]


# ----------------------------------------------------------------------------- data
def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


@pytest.fixture(scope="module")
def pseudo_dirs(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Noisy copies of the training ground truth as pseudo-masks: a complete folder and one missing 3 ids."""
    full = tmp_path_factory.mktemp("pseudo_full")
    partial = tmp_path_factory.mktemp("pseudo_partial")
    rng = np.random.default_rng(0)
    ids = (synthetic_root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    for image_id in ids:
        mask = _read(synthetic_root / "SegmentationClassAug" / f"{image_id}.png").copy()
        noise = rng.random(mask.shape) < 0.1
        mask[noise] = rng.integers(0, C + 1, int(noise.sum()))
        write_mask_png(full / f"{image_id}.png", mask)
        if image_id not in MISSING:
            shutil.copy(full / f"{image_id}.png", partial / f"{image_id}.png")
    return full, partial


@pytest.fixture(scope="module")
def odd_root(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the dataset whose first validation image is 56x40 (WxH) instead of 48x48."""
    root = Path(
        shutil.copytree(
            synthetic_root, tmp_path_factory.mktemp("odd") / "data", ignore=shutil.ignore_patterns(".cache")
        )
    )
    image_id = "val_000000"
    for folder, suffix, resample in (
        ("JPEGImages", "jpg", Image.BILINEAR),
        ("saliency", "png", Image.BILINEAR),
        ("SegmentationClassAug", "png", Image.NEAREST),
    ):
        path = root / folder / f"{image_id}.{suffix}"
        with Image.open(path) as image:
            image.load()
        resized = image.resize((56, 40), resample)
        if image.mode == "P":
            resized.putpalette(image.getpalette())
        resized.save(path, quality=95) if suffix == "jpg" else resized.save(path)
    return root


# ------------------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def runs(
    synthetic_root: Path, odd_root: Path, pseudo_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Run]]:
    full, partial = pseudo_dirs
    base = tmp_path_factory.mktemp("runs")
    root = synthetic_root

    def make(name: str, args: list[str]) -> Run:
        return Run(args, base, base / name)

    fits = {
        "wsss": make("wsss", fit_args(WSSS, root, base / "wsss", "--data.pseudo_mask_dir", str(full))),
        "ssss": make(
            "ssss",
            fit_args(
                SSSS,
                root,
                base / "ssss",
                "--data.pseudo_mask_dir",
                str(full),
                "--data.labeled_per_batch",
                "2",
                "--trainer.deterministic",
                "true",
            ),
        ),
        "labeled_only": make(
            "labeled_only",
            fit_args(
                WSSS,
                root,
                base / "labeled_only",
                "--data.pseudo_mask_dir",
                "null",
                "--data.train_split",
                "labeled_10pct",
            ),
        ),
        "missing": make("missing", fit_args(WSSS, root, base / "missing", "--data.pseudo_mask_dir", str(partial))),
        # one process for two checks (each process costs seconds of imports): v3+, and allow_missing
        "v3plus_allow_missing": make(
            "v3plus_allow_missing",
            fit_args(
                WSSS,
                root,
                base / "v3plus_allow_missing",
                "--data.pseudo_mask_dir",
                str(partial),
                "--data.allow_missing",
                "true",
                "--model.init_args.architecture",
                "deeplabv3plus",
            ),
        ),
    }
    for run in fits.values():
        run.start()
    all_runs = dict(fits)
    try:
        # the WSSS checkpoint is evaluated in this process while the other fits go on
        checkpoint = fits["wsss"].wait(check=False).checkpoint
        if checkpoint.is_file():
            all_runs |= {
                "validate": make("validate", eval_args("validate", root, base / "validate", checkpoint)),
                "test": make("test", eval_args("test", root, base / "test", checkpoint)),
                "predict": make(
                    "predict",
                    eval_args(
                        "predict",
                        odd_root,
                        base / "predict",
                        checkpoint,
                        "--data.predict_split",
                        "val",
                        *PREDICT_TTA,
                        "--pseudo_masks.output_dir",
                        str(base / "predictions"),
                    ),
                ),
                # the VOC server layout, after a dense CRF, 2 images of different sizes per batch
                "submission": make(
                    "submission",
                    eval_args(
                        "predict",
                        odd_root,
                        base / "submission",
                        checkpoint,
                        "--config",
                        str(VOC_TEST),
                        "--data.predict_split",
                        "val",
                        "--data.val_batch_size",
                        "2",
                        "--model.init_args.crf_workers",
                        "0",
                        "--pseudo_masks.output_dir",
                        str(base / "submission_out"),
                    ),
                ),
            }
            for name in ("validate", "test", "predict", "submission"):
                all_runs[name].run_in_process()
        yield all_runs
    finally:
        for run in all_runs.values():
            run.stop()


def _get(runs: dict[str, Run], name: str, check: bool = True) -> Run:
    if name not in runs:
        runs["wsss"].wait()  # it failed: show why
        pytest.fail(f"no {name} run")
    return runs[name].wait(check=check)


def _assert_trained(run: Run, *loss_terms: str) -> list[dict[str, str]]:
    """2 training steps, last.ckpt, a logged val/mIoU in [0, 1], and the per-class IoU table printed."""
    assert "max_steps=2" in run.stderr
    checkpoint = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
    # Lightning 2.6 refreshes last.ckpt only when a top-k checkpoint is saved: the last validation may
    # not have improved on the best one
    assert checkpoint["global_step"] in (1, 2)
    assert checkpoint["hyper_parameters"]["num_classes"] == C
    assert list(run.root_dir.glob("**/config.yaml")), "the CLI saved its config"
    rows = run.logged()
    assert len([r for r in rows if r.get("train/loss")]) == 2
    miou = [float(r["val/mIoU"]) for r in rows if r.get("val/mIoU")]
    assert miou and all(0.0 <= v <= 1.0 for v in miou)
    per_class = [float(r["val/IoU/background"]) for r in rows if r.get("val/IoU/background")]
    assert per_class, "the per-class IoU is logged too"
    for term in ("gt", "pseudo"):
        column = [r[f"train/loss_{term}"] for r in rows if r.get(f"train/loss_{term}")]
        assert bool(column) == (term in loss_terms), f"train/loss_{term} logged: {bool(column)}"
        assert all(math.isfinite(float(v)) for v in column)
    table = run.stdout[run.stdout.index("val segmentation IoU") :]
    for name in CLASS_NAMES + ["mIoU"]:
        assert any(line.split()[:1] == [name] for line in table.splitlines()), f"{name} row missing"
    # the printed mIoU is the logged one
    printed = next(line for line in table.splitlines() if line.startswith("mIoU")).split()[-1]
    assert float(printed) == pytest.approx(100 * miou[-1], abs=0.006)
    return rows


# ----------------------------------------------------------------------------- tests
def test_fit_wsss_on_a_pseudo_mask_folder(runs: dict[str, Run]) -> None:
    run = _get(runs, "wsss")
    _assert_trained(run, "pseudo")
    assert (run.root_dir / "checkpoints" / "best.ckpt").is_file()
    assert torch.load(run.checkpoint, map_location="cpu", weights_only=False)["global_step"] == 2


def test_fit_ssss_mixes_ground_truth_and_pseudo_masks(runs: dict[str, Run]) -> None:
    run = _get(runs, "ssss")
    rows = _assert_trained(run, "gt", "pseudo")
    steps = [r for r in rows if r.get("train/loss")]
    assert len(steps) == 2 and all(r.get("train/loss_gt") and r.get("train/loss_pseudo") for r in steps), (
        "every batch holds labelled and pseudo-labelled samples"
    )


def test_fit_labeled_only_uses_ground_truth(runs: dict[str, Run]) -> None:
    _assert_trained(_get(runs, "labeled_only"), "gt")


def test_fit_deeplabv3plus(runs: dict[str, Run]) -> None:
    run = _get(runs, "v3plus_allow_missing")
    _assert_trained(run, "pseudo")
    checkpoint = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["architecture"] == "deeplabv3plus"
    assert any(key.startswith("net.head.aspp.") for key in checkpoint["state_dict"])


def test_missing_pseudo_masks_fail_with_the_ids(runs: dict[str, Run]) -> None:
    run = _get(runs, "missing", check=False)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "have no pseudo-mask" in run.stderr
    assert f"{len(MISSING)} of 20 ids" in run.stderr
    assert all(image_id in run.stderr for image_id in MISSING)
    assert "allow_missing" in run.stderr
    assert "Traceback" not in run.stderr
    assert not run.checkpoint.exists()


def test_allow_missing_skips_and_says_how_many(runs: dict[str, Run]) -> None:
    run = _get(runs, "v3plus_allow_missing")
    assert f"skipping {len(MISSING)} ids without a pseudo-mask" in run.stderr
    _assert_trained(run, "pseudo")


@pytest.mark.parametrize("subcommand, prefix", [("validate", "val"), ("test", "test")])
def test_validate_and_test_print_the_iou_table(runs: dict[str, Run], subcommand: str, prefix: str) -> None:
    run = _get(runs, subcommand)
    table = run.stdout[run.stdout.index(f"{prefix} segmentation IoU") :]
    rows = {line.split()[0]: line.split()[-1] for line in table.splitlines()[2:] if line.split()}
    assert set(CLASS_NAMES + ["mIoU"]) <= set(rows)
    values = [float(rows[name]) for name in CLASS_NAMES if rows[name] != "n/a"]
    assert values and all(0.0 <= v <= 100.0 for v in values)
    assert float(rows["mIoU"]) == pytest.approx(np.mean(values), abs=0.01)
    assert f"{prefix}/mIoU" in run.stdout  # Lightning's results table


def test_predict_writes_masks_of_the_image_size_and_a_manifest(runs: dict[str, Run], odd_root: Path) -> None:
    run = _get(runs, "predict")
    out = run.root_dir.parent / "predictions"
    ids = (odd_root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(ids)
    for image_id in ids:
        with Image.open(odd_root / "JPEGImages" / f"{image_id}.jpg") as image:
            size = image.size
        with Image.open(out / f"{image_id}.png") as mask:
            assert mask.mode == "P"  # the stage-2 writer's palette PNG
            assert mask.size == size
            assert set(np.unique(np.array(mask)).tolist()) <= set(range(C + 1))
    assert _read(out / "val_000000.png").shape == (40, 56)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == len(ids) and manifest["split"] == "val"
    assert manifest["evaluated"] == len(ids)  # scored against the ground truth, in percent
    assert 0.0 <= manifest["miou"] <= 100.0 and set(manifest["per_class_iou"]) == set(CLASS_NAMES)
    assert manifest["config"]["model"]["architecture"] == "deeplabv2"
    assert Path(manifest["checkpoint"]).name == "last.ckpt"

    # the masks are the checkpoint's predictions at full resolution (with the TTA the run used)
    used = manifest["config"]["model"]
    module = SegmentationModule.load_from_checkpoint(
        run.args[run.args.index("--ckpt_path") + 1],
        map_location="cpu",
        tta_scales=tuple(used["tta_scales"]),
        tta_flip=used["tta_flip"],
    )
    module.eval()
    dataset = VOCLayoutDataset(odd_root, "val", C, mode="predict")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for sample in dataset:
            with torch.no_grad():
                expected = module.predict_logits(sample["image"][None]).argmax(dim=1)[0].numpy()
            written = _read(out / f"{sample['id']}.png")
            assert (written == expected).mean() > 0.999, sample["id"]
    finally:
        torch.set_num_threads(threads)


def test_submission_layout_after_crf_with_the_miou_of_epspp_evaluate(
    runs: dict[str, Run], odd_root: Path, tmp_path: Path
) -> None:
    pytest.importorskip("pydensecrf.densecrf")
    from epspp.cli.evaluate import evaluate_main
    from epspp.ops.crf import dense_crf, to_uint8_rgb

    run = _get(runs, "submission")
    out = run.root_dir.parent / "submission_out"
    masks = out / SERVER_LAYOUT
    ids = (odd_root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert sorted(p.stem for p in masks.glob("*.png")) == sorted(ids)
    assert not list(masks.glob("*.json")) and (out / "manifest.json").is_file()  # only PNGs in the server folder
    for image_id in ids:
        with Image.open(odd_root / "JPEGImages" / f"{image_id}.jpg") as image:
            size = image.size
        with Image.open(masks / f"{image_id}.png") as mask:
            assert mask.mode == "P" and mask.size == size
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["model"]["crf"] is True and manifest["evaluated"] == len(ids)
    report = tmp_path / "scores.json"
    assert (
        evaluate_main(["--pred-dir", str(masks), "--root", str(odd_root), "--split", "val", "--json", str(report)]) == 0
    )
    assert manifest["miou"] == json.loads(report.read_text())["miou"]

    # a mask is the argmax of the dense CRF on the checkpoint's full-resolution probabilities of its image alone
    module = SegmentationModule.load_from_checkpoint(run.args[run.args.index("--ckpt_path") + 1], map_location="cpu")
    sample = VOCLayoutDataset(odd_root, "val", C, mode="predict", with_labels=False)[0]
    with torch.no_grad():
        probs = module.eval().predict_logits(sample["image"][None])[0].numpy()
    expected = dense_crf(to_uint8_rgb(sample["image"][None])[0], probs).argmax(0)
    assert (_read(masks / f"{sample['id']}.png") == expected).mean() > 0.99


def test_command_line_tta_applies_to_a_checkpoint(runs: dict[str, Run]) -> None:
    _get(runs, "predict")
    manifest = json.loads((runs["predict"].root_dir.parent / "predictions" / "manifest.json").read_text())
    assert manifest["config"]["model"]["tta_flip"] is True
    assert manifest["config"]["model"]["tta_scales"] == [0.75, 1.0]


def test_ssss_batches_of_the_demo_config_mix_labelled_and_pseudo(
    synthetic_root: Path, pseudo_dirs: tuple[Path, Path]
) -> None:
    """The datamodule exactly as configs/demo/scratch/segmentation_ssss.yaml sets it up (its batch size)."""
    data = yaml.safe_load(SSSS.read_text())["data"]
    data |= {"root": str(synthetic_root), "pseudo_mask_dir": str(pseudo_dirs[0]), "num_workers": 0}
    datamodule = EPSDataModule(**data)
    datamodule.setup("fit")
    labeled_ids = set(
        (synthetic_root / "ImageSets" / "Segmentation" / f"{data['labeled_split']}.txt").read_text().split()
    )
    batches = list(datamodule.train_dataloader())
    assert batches
    for batch in batches:
        assert len(batch["id"]) == data["batch_size"]
        assert int(batch["is_labeled"].sum()) == data["labeled_per_batch"]
        for image_id, labeled in zip(batch["id"], batch["is_labeled"].tolist(), strict=True):
            assert (image_id in labeled_ids) == bool(labeled)
