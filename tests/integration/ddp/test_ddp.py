"""Every stage under DDP, with real processes: ``epspp`` with 2 CPU processes (gloo) against 1 process.

``--trainer.accelerator cpu --trainer.devices 2 --trainer.strategy ddp`` starts a second rank as a child
process, exactly as on GPUs (only the backend differs).  A test-only callback (``ddp_probe.MetricProbe``,
added with ``--trainer.callbacks+=``) writes what every rank sees: the logged metrics after
``sync_dist``, its own loss, the ids it was given.

* stage 1: a few DDP steps; the logged loss is the same on every rank (the mean of the ranks' losses);
  one checkpoint folder, one CSV log, one W&B run (rank zero writes).
* stage 2: ``epspp predict`` with 2 processes over a split of odd size writes each mask once,
  byte-identical to the 1-process run, and one manifest with the same mIoU.
* stage 3: DDP steps of the semi-supervised recipe (every batch on every rank mixes labelled and
  pseudo-labelled images), then ``epspp validate`` with 2 and 1 processes of the same checkpoint on a
  split of odd size: the same mIoU (no padding duplicate is scored), also the same as the fit's own
  validation under DDP.
* SyncBatchNorm (``--trainer.sync_batchnorm true``) converts every BatchNorm of our networks and
  changes neither their checkpoints nor their inference (training with it needs GPUs: torch's
  SyncBatchNorm rejects CPU tensors).
* the SLURM scripts: each is valid bash with the srun / tasks-per-node / GPUs-per-node layout; slow:
  ``voc-wsss.sbatch`` runs its chain under a stand-in ``srun`` that starts 2 tasks with SLURM's
  variables (Lightning's SLURM detection), and stage 1 runs under ``torchrun``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures.cli import CONFIGS, REPO, TINY_FIT
from fixtures.ddp_probe import Proc, probe, process_env, read_probe, run_all
from fixtures.helpers import split_ids

from epspp.data.classes import read_classes
from epspp.evaluate import evaluate_folder, scores_to_json

DEMO = CONFIGS / "demo" / "scratch"
SPLITS = Path("ImageSets") / "Segmentation"
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
ONE = ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
SLURM = REPO / "scripts" / "slurm"
pytestmark = pytest.mark.filterwarnings("ignore:The dirpath has changed")


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.fixture(scope="module")
def root(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the synthetic dataset with splits of odd size: ``odd7`` (7 train ids), ``val5`` (5 val ids)."""
    root = Path(
        shutil.copytree(
            synthetic_root, tmp_path_factory.mktemp("ddp") / "data", ignore=shutil.ignore_patterns(".cache")
        )
    )
    (root / SPLITS / "odd7.txt").write_text("\n".join(split_ids(root, "train")[:7]) + "\n")
    (root / SPLITS / "val5.txt").write_text("\n".join(split_ids(root, "val")[:5]) + "\n")
    return root


# ------------------------------------------------------------------ the fits
def ssss_data(root: Path) -> list[str]:
    """Stage-3 data: the ground truth as pseudo-masks, 1 labelled image a batch, validation on ``val5``."""
    return [
        "--data.root",
        str(root),
        "--data.pseudo_mask_dir",
        str(root / "SegmentationClassAug"),
        "--data.labeled_per_batch",
        "1",
        "--data.val_split",
        "val5",
        "--data.val_batch_size",
        "1",
    ]


@pytest.fixture(scope="module")
def fits(root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Proc, Path]]:
    """The DDP fits of stages 1 and 3, started together (each test waits for the one it checks).

    Stage 1: the EPS++ localization network, 4 steps, 2 validations.  Stage 3: DeepLab-v2 on the
    semi-supervised recipe, 3 steps (one epoch), one validation.  Both validate on the 5 ids of ``val5``.
    """
    loc, seg = tmp_path_factory.mktemp("localization"), tmp_path_factory.mktemp("ssss")
    common = [*TINY_FIT, *DDP, "--trainer.num_sanity_val_steps", "0", "--trainer.check_val_every_n_epoch", "1"]
    procs = {
        "localization": (
            Proc(
                "fit",
                [
                    "fit",
                    "--config",
                    DEMO / "localization_eps++.yaml",
                    "--data.root",
                    root,
                    "--data.val_split",
                    "val5",
                    *common,
                    "--trainer.max_steps",
                    "4",
                    "--trainer.default_root_dir",
                    loc,
                    "--trainer.log_every_n_steps",
                    "1",
                    "--trainer.callbacks+=" + probe(loc / "probe"),
                ],
                cwd=loc,
                log_dir=loc / "logs",
            ),
            loc,
        ),
        "segmentation": (
            Proc(
                "fit",
                [
                    "fit",
                    "--config",
                    DEMO / "segmentation_ssss.yaml",
                    *ssss_data(root),
                    *common,
                    "--trainer.max_steps",
                    "3",
                    "--trainer.val_check_interval",
                    "1.0",  # (the config validates every 125 steps)
                    "--trainer.default_root_dir",
                    seg,
                    "--trainer.logger",
                    "false",
                    "--trainer.callbacks+=" + probe(seg / "probe"),
                ],
                cwd=seg,
                log_dir=seg / "logs",
            ),
            seg,
        ),
    }
    for proc, _ in procs.values():
        proc.start()
    yield procs
    for proc, _ in procs.values():
        if proc.process.poll() is None:
            proc.wait(expect=None)


@pytest.fixture(scope="module")
def localization(fits: dict) -> Path:
    proc, run = fits["localization"]
    proc.wait()
    return run


# --------------------------------------------------------------------- stage 1
def test_stage1_fit_syncs_the_logged_loss_and_writes_once(root: Path, localization: Path) -> None:
    ranks = read_probe(localization / "probe")
    assert sorted(ranks) == [0, 1] and {r["world_size"] for r in ranks.values()} == {2}
    steps = [[entry["step"] for entry in r["train"]] for r in ranks.values()]
    assert steps == [[1, 2, 3, 4]] * 2
    # each rank trains on its own share of the split (10 of the 20 images per epoch, 2 batches of 4)
    first_epoch = [set(r["ids"]["train"][:8]) for r in ranks.values()]
    assert not first_epoch[0] & first_epoch[1]
    for first, second in zip(ranks[0]["train"], ranks[1]["train"], strict=True):
        # the ranks computed different losses, and logged the same one: their mean (sync_dist)
        assert first["local_loss"] != second["local_loss"]
        assert first["train/loss"] == second["train/loss"]
        assert first["train/loss"] == pytest.approx((first["local_loss"] + second["local_loss"]) / 2, rel=1e-5)
        for key in ("train/loss_cls", "train/loss_sal", "train/inconsistent", "train/lr"):
            assert first[key] == second[key], key
    # validation metrics (torchmetrics states summed over the ranks) agree too; the ranks shared the 5
    # validation images 3 + 2 (twice), none scored twice
    assert len(ranks[0]["val"]) == 2
    assert [len(r["ids"]["val"]) for r in ranks.values()] == [6, 4]
    assert set(ranks[0]["ids"]["val"]) | set(ranks[1]["ids"]["val"]) == set(split_ids(root, "val5"))
    for first, second in zip(ranks[0]["val"], ranks[1]["val"], strict=True):
        for key in ("val/mIoU", "val/mAP", "val/F1", "val/loss_cls"):
            assert first[key] == second[key], key
    # rank zero alone writes: one checkpoint of each kind, one CSV log, one W&B run, one config
    assert sorted(p.name for p in (localization / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    last = torch.load(localization / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4
    assert [p.name for p in (localization / "csv").iterdir()] == ["version_0"]
    assert len(list((localization / "wandb").glob("offline-run-*"))) == 1
    assert len(list(localization.rglob("config.yaml"))) == 1


# --------------------------------------------------------------------- stage 2
def test_stage2_predict_with_two_processes_equals_one(root: Path, localization: Path, tmp_path: Path) -> None:
    ckpt = localization / "checkpoints" / "last.ckpt"
    ids = split_ids(root, "odd7")  # odd: the ranks get 4 and 3 images
    out = {n: tmp_path / f"masks{n}" for n in (1, 2)}

    def predict(n: int) -> Proc:
        return Proc(
            f"predict{n}",
            [
                "predict",
                "--config",
                DEMO / "pseudo_masks.yaml",
                "--data.root",
                root,
                "--ckpt_path",
                ckpt,
                "--data.predict_split",
                "odd7",
                "--pseudo_masks.output_dir",
                out[n],
                "--data.num_workers",
                "0",
                "--trainer.callbacks",
                "[]",
                "--trainer.enable_progress_bar",
                "false",
                *(DDP if n == 2 else ONE),
            ],
            cwd=tmp_path,
            log_dir=tmp_path / "logs",
        )

    run_all(predict(1), predict(2))
    one, two = pngs(out[1]), pngs(out[2])
    assert sorted(two) == sorted(one) == sorted(ids)
    assert two == one  # byte-identical masks
    manifests = {n: json.loads((out[n] / "manifest.json").read_text()) for n in (1, 2)}
    for n in (1, 2):
        assert manifests[n]["count"] == manifests[n]["evaluated"] == manifests[n]["split_size"] == 7
        assert manifests[n]["written_this_run"] == 7  # summed over the ranks: each mask written once
        assert hidden(out[n]) == []  # no temporary file, no second manifest
        # beside the masks: the manifest, Lightning's config.yaml, how the masks were made (provenance.json) and
        # the score maps (the demo config saves them)
        assert sorted(p.name for p in out[n].iterdir() if p.suffix != ".png") == [
            "config.yaml",
            "manifest.json",
            "provenance.json",
            "scores",
        ]
        assert sorted(p.stem for p in (out[n] / "scores").iterdir()) == sorted(ids)
    for image_id in ids:
        score_maps = [(out[n] / "scores" / f"{image_id}.npy").read_bytes() for n in (1, 2)]
        assert score_maps[0] == score_maps[1]
    assert manifests[2]["miou"] == manifests[1]["miou"]
    assert manifests[2]["per_class_iou"] == manifests[1]["per_class_iou"]
    expected = scores_to_json(evaluate_folder(out[2], root, "odd7")["metric"].compute(), read_classes(root))
    assert manifests[2]["miou"] == expected["miou"]


# --------------------------------------------------------------------- stage 3
def test_stage3_fit_and_validate_with_two_processes(root: Path, fits: dict, tmp_path: Path) -> None:
    proc, run = fits["segmentation"]
    proc.wait()
    data = ssss_data(root)
    ranks = read_probe(run / "probe")
    assert [[e["step"] for e in r["train"]] for r in ranks.values()] == [[1, 2, 3]] * 2
    for first, second in zip(ranks[0]["train"], ranks[1]["train"], strict=True):
        assert first["labeled_in_batch"] == second["labeled_in_batch"] == 1  # mixed batches on every rank
        assert first["train/loss"] == second["train/loss"]
        assert first["train/loss"] == pytest.approx((first["local_loss"] + second["local_loss"]) / 2, rel=1e-5)
    val5 = split_ids(root, "val5")
    assert sorted(ranks[0]["ids"]["val"] + ranks[1]["ids"]["val"]) == val5  # no padding duplicate
    fit_miou = {r["val"][-1]["val/mIoU"] for r in ranks.values()}
    assert len(fit_miou) == 1

    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 3

    def validate(n: int) -> Proc:
        return Proc(
            f"validate{n}",
            [
                "validate",
                "--config",
                DEMO / "segmentation_ssss.yaml",
                *data,
                "--ckpt_path",
                ckpt,
                "--data.num_workers",
                "0",
                "--data.eval_size",
                "48",
                "--trainer.logger",
                "false",
                "--trainer.callbacks",
                "[]",
                "--trainer.callbacks+=" + probe(tmp_path / f"validate{n}"),
                *(DDP if n == 2 else ONE),
            ],
            cwd=tmp_path / f"validate{n}_cwd",  # two runs at once: each its own run folder (one run per folder)
            log_dir=tmp_path / "logs",
        )

    run_all(validate(1), validate(2))
    one, two = read_probe(tmp_path / "validate1"), read_probe(tmp_path / "validate2")
    assert sorted(two) == [0, 1]
    assert one[0]["ids"]["val"] == val5
    assert sorted(two[0]["ids"]["val"] + two[1]["ids"]["val"]) == val5  # 3 + 2 images, none twice
    assert not set(two[0]["ids"]["val"]) & set(two[1]["ids"]["val"])
    miou = one[0]["val"][-1]["val/mIoU"]
    assert two[0]["val"][-1]["val/mIoU"] == two[1]["val"][-1]["val/mIoU"] == miou
    assert two[0]["val"][-1]["val/pixel_accuracy"] == one[0]["val"][-1]["val/pixel_accuracy"]
    assert fit_miou == {miou}  # the fit's validation under DDP scored the same images


# --------------------------------------------------------------- SyncBatchNorm
def test_sync_batchnorm_switch_gives_the_ddp_strategy_the_timm_aware_plugin(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytorch_lightning import LightningModule

    from epspp.cli.lightning import EPSCLI
    from epspp.data.datamodule import EPSDataModule
    from epspp.nets.sync_bn import TimmSyncBatchNorm

    monkeypatch.setattr(sys, "argv", ["epspp"])  # the arguments are given below
    cli = EPSCLI(
        LightningModule,
        EPSDataModule,
        subclass_mode_model=True,
        run=False,
        args=[
            "--config",
            str(DEMO / "localization_eps.yaml"),
            "--data.root",
            str(root),
            *map(str, TINY_FIT),
            *DDP,
            "--trainer.sync_batchnorm",
            "true",
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
    )
    assert isinstance(cli.trainer.strategy._layer_sync, TimmSyncBatchNorm)


# ----------------------------------------------------------------------- SLURM
@pytest.mark.parametrize("target", ["voc-wsss", "voc-ssss", "coco-wsss"])
def test_sbatch_scripts_are_valid_bash_with_the_srun_layout(target: str, tmp_path: Path) -> None:
    script = SLURM / f"{target}.sbatch"
    text = script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True)
    for needle in (
        "#SBATCH --nodes",
        "#SBATCH --ntasks-per-node",
        "#SBATCH --gpus-per-node",
        '"$EPSPP" chain',
        "--launcher srun",
    ):
        assert needle in text, needle
    dataset, segmentation = target.split("-")
    for method in ("cam", "eps", "eps++"):  # METHOD picks stage 1's config; PRINT=1 prints the stages' commands
        result = subprocess.run(
            ["bash", str(script)],
            capture_output=True,
            text=True,
            check=True,
            env=dict(
                os.environ,
                METHOD=method,
                PRINT="1",
                SLURM_SUBMIT_DIR=str(REPO),
                SLURM_NNODES="2",
                SLURM_NTASKS_PER_NODE="4(x2)",
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
                RUN_DIR=str(tmp_path / "run"),
                DATA_ROOT=str(tmp_path / "data"),
                FIT_ARGS="--trainer.max_steps 7",
            ),
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("srun ")]
        configs = [f"localization_{method}.yaml", "pseudo_masks.yaml", f"segmentation_{segmentation}.yaml"]
        assert len(lines) == 3 and not (tmp_path / "run").exists()  # (printed, nothing ran)
        for line, config in zip(lines, configs, strict=True):
            assert f"--config configs/{dataset}/{config} " in line and (CONFIGS / dataset / config).is_file()
            assert "--trainer.devices 4 --trainer.num_nodes 2 --trainer.strategy ddp" in line
        fit_localization, predict, fit_segmentation = lines
        for fit, folder in ((fit_localization, "localization"), (fit_segmentation, f"segmentation_{segmentation}")):
            assert f"--trainer.default_root_dir {tmp_path}/run/{folder} --ckpt_path last" in fit
            assert "--trainer.sync_batchnorm true" in fit and fit.endswith(" --trainer.max_steps 7")
        assert "--trainer.sync_batchnorm" not in predict and "--trainer.max_steps" not in predict
        assert "on 8 process(es)" in result.stderr
    result = subprocess.run(["bash", str(script)], env=dict(os.environ, METHOD="eps+"), capture_output=True, text=True)
    assert result.returncode == 2 and "METHOD=eps+ is not one of: cam eps eps++" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAKE_SRUN = """#!/bin/bash
# stand-in for srun on one node: SLURM_NTASKS copies of the command with SLURM's per-task variables
pids=()
for ((task = 0; task < SLURM_NTASKS; task++)); do
  SLURM_PROCID=$task SLURM_LOCALID=$task SLURM_NODEID=0 "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""

TINY_ARGS = (
    "--trainer.max_steps 2 --trainer.precision 32-true --trainer.accelerator cpu --data.num_workers 0 "
    "--data.crop_size 48 --data.eval_size 48 --data.resize_long '[40, 56]' --model.init_args.pretrained false "
    "--model.init_args.pretrained_path null --model.init_args.backbone resnet10t --trainer.logger false "
    "--model.init_args.backbone_kwargs '{channels: [8, 16, 32, 64], stem_width: 8}'"
)


@pytest.mark.slow
def test_voc_sbatch_chain_under_a_two_task_srun(root: Path, tmp_path: Path) -> None:
    """``voc-ssss.sbatch`` as SLURM runs it, 2 tasks on 1 node: its three stages, each under ``srun`` (the scripts
    differ only in stage 3: voc-wsss.sbatch's chain is checked printed above; stages 1-2 shared between the two
    chains: tests/integration/make)."""
    voc = Path(shutil.copytree(root, tmp_path / "voc"))
    shutil.copy(voc / SPLITS / "train.txt", voc / SPLITS / "train_aug.txt")
    shutil.copy(voc / SPLITS / "labeled_10pct.txt", voc / SPLITS / "train.txt")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    run_dir = tmp_path / "runs"
    env = process_env(
        PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]),
        SLURM_SUBMIT_DIR=str(REPO),
        SLURM_JOB_ID="4242",
        SLURM_JOB_NAME="epspp-test",
        SLURM_NNODES="1",
        SLURM_NTASKS="2",
        SLURM_NTASKS_PER_NODE="2",
        SLURM_NODELIST="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        DATA_ROOT=str(voc),
        RUN_DIR=str(run_dir),
        FIT_ARGS=TINY_ARGS,
        SYNC_BN="false",  # (CPU: no SyncBN)
        PREDICT_ARGS="--data.num_workers 0 --trainer.accelerator cpu --model.init_args.scales '[1.0]'",
    )
    Proc(
        "voc-ssss",
        [],
        cwd=tmp_path,
        log_dir=tmp_path / "logs",
        env=env,
        command=["bash", str(SLURM / "voc-ssss.sbatch")],
    ).start().wait(timeout=600)
    manifest = json.loads((run_dir / "pseudo_masks" / "manifest.json").read_text())
    assert manifest["count"] == 20 and manifest["written_this_run"] == 20
    assert (run_dir / "segmentation_ssss" / "checkpoints" / "last.ckpt").is_file()
    last = torch.load(run_dir / "localization" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 2
    logs = (tmp_path / "logs" / "voc-ssss.out").read_text() + (tmp_path / "logs" / "voc-ssss.err").read_text()
    assert "localization_eps++.yaml on 2 process(es): batch 4/GPU, total 8 (recipe 8), lr 0.01" in logs
    assert (
        "segmentation_ssss.yaml on 2 process(es): batch 5/GPU (2 labelled) x 1 accumulated, total 10 (recipe "
        "5 x 2), lr 0.00025"
    ) in logs
    assert "MEMBER: 2/2" in logs  # Lightning took the ranks from SLURM's variables


@pytest.mark.slow
def test_stage1_under_torchrun(root: Path, tmp_path: Path) -> None:
    """``torchrun --nproc-per-node 2 -m epspp fit ...`` (docs/multi_gpu.md): Lightning takes torchrun's ranks."""
    run = tmp_path / "run"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "epspp",
    ]
    Proc(
        "torchrun",
        [
            "fit",
            "--config",
            DEMO / "localization_eps.yaml",
            "--data.root",
            root,
            *TINY_FIT,
            *DDP,
            "--trainer.default_root_dir",
            run,
            "--trainer.logger",
            "false",
            "--trainer.callbacks+=" + probe(run / "probe"),
        ],
        cwd=run,
        log_dir=tmp_path / "logs",
        command=torchrun,
    ).start().wait()
    ranks = read_probe(run / "probe")
    assert sorted(ranks) == [0, 1] and ranks[0]["world_size"] == 2
    assert ranks[0]["train"][-1]["train/loss"] == ranks[1]["train"][-1]["train/loss"]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]  # (no validation in 2 steps)
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 2
