"""The reproduction targets (`make voc-wsss`, `voc-ssss`, `coco-wsss`) chain the real configs.

They cannot train here (no data, no GPU): each target's `epspp chain` command runs its stages with tiny
overrides on a tiny VOC-layout tree (in this process), which proves that the configs parse and that every
stage finds the previous stage's output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fixtures.cli import REPO

TINY = (
    "--trainer.max_steps 2 --trainer.precision 32-true --trainer.accelerator cpu --data.num_workers 0 "
    "--data.batch_size 4 --data.labeled_per_batch 2 --data.crop_size 48 --data.eval_size 48 "
    "--data.resize_long '[40, 56]' --model.init_args.pretrained false --model.init_args.pretrained_path null "
    "--model.init_args.backbone resnet10t "
    "--model.init_args.backbone_kwargs '{channels: [8, 16, 32, 64], stem_width: 8}'"
)
PREDICT = "--data.num_workers 0 --trainer.accelerator cpu --model.init_args.scales '[1.0]'"
TEST = "--data.num_workers 0 --trainer.accelerator cpu --trainer.precision 32-true --model.init_args.crf_workers 0"


CHAIN_ARGS_EPSPP = """#!/bin/bash
# stand-in for epspp: records the arguments of `epspp chain` (NUL-separated) and runs nothing
printf '%s\\0' "$@" > "{log}"
"""


def make_chain(target: str, root: Path, run_dir: Path, tmp_path: Path) -> None:
    """``make TARGET``'s ``epspp chain`` command line (recorded by a stand-in for ``epspp``), then run with its stages
    in this process: the same command lines, without a process's start-up per stage (stage processes launched by
    ``epspp chain`` are tested under ``srun`` in tests/integration/ddp)."""
    from fixtures.cli import call_main, stages_in_this_process

    log, fake = tmp_path / f"{target}.args", tmp_path / "epspp"
    fake.write_text(CHAIN_ARGS_EPSPP.format(log=log))
    fake.chmod(0o755)
    subprocess.run(
        ["make", "-C", str(REPO), target, f"EPSPP={fake}", f"DATA_ROOT={root}", f"RUN_DIR={run_dir}", "GPUS=1",
         f"FIT_ARGS={TINY}", f"PREDICT_ARGS={PREDICT}", f"TEST_ARGS={TEST}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    args = log.read_text().split("\0")[:-1]
    assert args[0] == "chain" and args[args.index("--dataset") + 1] == target.split("-")[0]
    at = args.index("--epspp")
    del args[at : at + 2]  # the stages as `python -m epspp`, which run in this process
    with stages_in_this_process():
        code, out, err = call_main(args, REPO)
    assert code == 0, out[-3000:] + err[-3000:]


@pytest.fixture
def voc_tree(synthetic_copy: Path) -> Path:
    """The synthetic tree with VOC's split names (train_aug for stages 1-2, train as labelled subset, a test split)."""
    splits = synthetic_copy / "ImageSets" / "Segmentation"
    shutil.copy(splits / "train.txt", splits / "train_aug.txt")
    shutil.copy(splits / "labeled_10pct.txt", splits / "train.txt")
    shutil.copy(splits / "val.txt", splits / "test.txt")
    return synthetic_copy


def test_voc_wsss_then_ssss_share_stages_one_and_two(voc_tree: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "voc"
    make_chain("voc-wsss", voc_tree, run_dir, tmp_path)
    assert (run_dir / "localization" / "checkpoints" / "last.ckpt").is_file()
    manifest = run_dir / "pseudo_masks" / "manifest.json"
    assert manifest.is_file()
    assert len(list((run_dir / "pseudo_masks").glob("*.png"))) == 20
    assert (run_dir / "pseudo_masks" / "config.yaml").is_file()  # not in the repository root
    assert (run_dir / "segmentation_wsss" / "checkpoints" / "last.ckpt").is_file()
    test_ids = (voc_tree / "ImageSets" / "Segmentation" / "test.txt").read_text().split()
    server = run_dir / "segmentation_wsss" / "test" / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert sorted(p.stem for p in server.glob("*.png")) == sorted(test_ids)  # the last step: the test split
    stamp = manifest.stat().st_mtime_ns
    make_chain("voc-ssss", voc_tree, run_dir, tmp_path)
    assert (run_dir / "segmentation_ssss" / "checkpoints" / "last.ckpt").is_file()
    assert manifest.stat().st_mtime_ns == stamp  # stages 1-2 were done: the chain skipped them


def test_coco_wsss(synthetic_copy: Path, tmp_path: Path) -> None:
    """`make coco-wsss` chains COCO's configs."""
    run_dir = tmp_path / "coco"
    splits = synthetic_copy / "ImageSets" / "Segmentation"
    shutil.copy(splits / "val.txt", splits / "val_1000.txt")  # stage 1 validates on `prepare coco`'s val sample
    make_chain("coco-wsss", synthetic_copy, run_dir, tmp_path)
    assert (run_dir / "segmentation_wsss" / "checkpoints" / "last.ckpt").is_file()
    assert "miou" in json.loads((run_dir / "segmentation_wsss" / "test" / "manifest.json").read_text())


def test_make_help_lists_targets_and_variables() -> None:
    result = subprocess.run(["make", "-C", str(REPO), "help"], text=True, capture_output=True, check=True)
    for word in ("demo", "test", "voc-wsss", "voc-ssss", "coco-wsss", "DATA_ROOT", "RUN_DIR", "GPUS"):
        assert word in result.stdout


RECORDING_EPSPP = """#!/bin/bash
# stand-in for epspp: batch-args and chain (which runs the stages with this stand-in) run for real, every other
# command is only recorded
if [[ $1 == batch-args || $1 == chain ]]; then exec "{real}" "$@"; fi
echo "$*" >> "{log}"
"""


def printed(stdout: str, epspp: Path) -> list[str]:
    """The stage commands of ``make ... PRINT=1`` (``epspp chain --print``), without the executable."""
    return [
        line.removeprefix(f"{epspp} ")
        for line in stdout.splitlines()
        if line.split(" ")[:2] in ([str(epspp), "fit"], [str(epspp), "predict"])
    ]


@pytest.mark.parametrize(
    ("target", "gpus", "nodes", "localization", "segmentation"),
    [
        (
            "voc-wsss",
            1,
            1,
            "--data.batch_size 8 --model.init_args.lr 0.01",
            "--data.batch_size 5 --trainer.accumulate_grad_batches 2 --model.init_args.lr 0.00025",
        ),  # 5 x 2
        (
            "voc-ssss",
            2,
            1,
            "--data.batch_size 4 --model.init_args.lr 0.01",
            "--data.batch_size 5 --trainer.accumulate_grad_batches 1 --data.labeled_per_batch 2 "
            "--model.init_args.lr 0.00025",
        ),  # 2 GPUs replace the accumulation
        (
            "coco-wsss",
            4,
            2,
            "--data.batch_size 2 --model.init_args.lr 0.01",  # EPS COCO: batch 16
            "--data.batch_size 2 --trainer.accumulate_grad_batches 1 --model.init_args.lr 0.0004",
        ),  # 16 of 10
    ],
)
def test_targets_split_the_papers_total_batch_over_the_processes(
    target: str, gpus: int, nodes: int, localization: str, segmentation: str, tmp_path: Path
) -> None:
    log = tmp_path / "commands.log"
    fake = tmp_path / "epspp"
    fake.write_text(RECORDING_EPSPP.format(real=REPO / ".venv" / "bin" / "epspp", log=log))
    fake.chmod(0o755)
    result = subprocess.run(
        [
            "make",
            "-C",
            str(REPO),
            target,
            f"EPSPP={fake}",
            f"GPUS={gpus}",
            f"NODES={nodes}",
            f"DATA_ROOT={tmp_path}",
            f"RUN_DIR={tmp_path / 'run'}",
            "FIT_ARGS=--trainer.max_steps 7",
        ],
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    fit_localization, predict, fit_segmentation, predict_test = log.read_text().splitlines()
    trainer = f"--trainer.devices {gpus} --trainer.num_nodes {nodes}"
    assert all(trainer in line for line in (fit_localization, predict, fit_segmentation, predict_test))
    assert "segmentation_test.yaml" in predict_test and "--data.batch_size" not in predict_test
    assert f"{localization} --trainer.max_steps 7" in fit_localization  # FIT_ARGS last: they override
    assert f"{segmentation} --trainer.max_steps 7" in fit_segmentation
    assert "--data.batch_size" not in predict
    assert f"on {gpus * nodes} process(es)" in result.stderr  # batch-args says what it chose


@pytest.mark.parametrize(
    ("method", "config"),
    [
        (None, "localization_eps++.yaml"),
        ("cam", "localization_cam.yaml"),
        ("eps", "localization_eps.yaml"),
        ("eps++", "localization_eps++.yaml"),
    ],
)
@pytest.mark.parametrize("target", ["voc-wsss", "coco-wsss"])
def test_method_picks_the_localization_config_and_run_folder(
    target: str, method: str | None, config: str, tmp_path: Path
) -> None:
    log = tmp_path / "commands.log"
    fake = tmp_path / "epspp"
    fake.write_text(RECORDING_EPSPP.format(real=REPO / ".venv" / "bin" / "epspp", log=log))
    fake.chmod(0o755)
    chosen = [f"METHOD={method}"] if method else []
    result = subprocess.run(
        [
            "make",
            "-C",
            str(REPO),
            target,
            f"EPSPP={fake}",
            f"DATA_ROOT={tmp_path}",
            *chosen,
            "PRINT=1",
        ],  # (the default RUN_DIR is in the repository: print, write nothing)
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not log.exists()  # nothing ran
    fit_localization, predict, fit_segmentation, _ = printed(result.stdout, fake)
    dataset = target.split("-")[0]
    assert f"--config configs/{dataset}/{config} " in fit_localization
    run = f"runs/{dataset}/{method or 'eps++'}"
    assert f"--trainer.default_root_dir {run}/localization " in fit_localization
    assert f"--ckpt_path {run}/localization/checkpoints/last.ckpt" in predict
    assert f"--data.pseudo_mask_dir {run}/pseudo_masks " in fit_segmentation


@pytest.mark.parametrize("method", ["eps+", "EPS++", "cam eps"])
def test_unknown_method_is_an_error_naming_the_choices(method: str, tmp_path: Path) -> None:
    log = tmp_path / "commands.log"
    fake = tmp_path / "epspp"
    fake.write_text(RECORDING_EPSPP.format(real=REPO / ".venv" / "bin" / "epspp", log=log))
    fake.chmod(0o755)
    result = subprocess.run(
        ["make", "-C", str(REPO), "voc-ssss", f"EPSPP={fake}", f"DATA_ROOT={tmp_path}", f"METHOD={method}"],
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"METHOD={method} is not one of: cam eps eps++" in result.stderr
    assert not log.exists()  # no stage ran
