"""Fault tolerance with real processes killed by SIGKILL (as a pre-emption or an out-of-memory kill does).

* ``epspp fit ... --ckpt_path last`` after a kill resumes the step count and the learning-rate schedule:
  an uninterrupted run to N steps and a run killed after k steps then resumed to N end with the same
  global step, the same scheduler state and the same learning rates (the poly schedule is over N in
  both, unlike a short first run with ``max_steps k``).
* a killed ``epspp predict`` resumes where it stopped: the masks written before the kill are kept
  untouched, the others written, and the manifest counts them all.

The kill comes from a test-only callback (``ddp_probe.KillAt``) that SIGKILLs its own process at a
given step, so that the interruption point is exact; nothing is flushed or saved by Lightning.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.cli import CONFIGS, TINY_FIT
from fixtures.ddp_probe import Proc, kill_at, probe, read_probe, run_all
from fixtures.helpers import split_ids
from PIL import Image

from epspp.data.classes import voc_palette

DEMO = CONFIGS / "demo" / "scratch"
KILLED = -signal.SIGKILL
pytestmark = pytest.mark.filterwarnings("ignore:The dirpath has changed")


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def schedule_state(ckpt: dict) -> dict:
    """What decides the learning rate of the next step: scheduler state and the optimizer's group lrs."""
    (scheduler,) = ckpt["lr_schedulers"]
    (optimizer,) = ckpt["optimizer_states"]
    return {
        "last_epoch": scheduler["last_epoch"],
        "_step_count": scheduler["_step_count"],
        "base_lrs": scheduler["base_lrs"],
        "_last_lr": scheduler["_last_lr"],
        "lr": [group["lr"] for group in optimizer["param_groups"]],
    }


@pytest.mark.parametrize(
    "devices, steps, kill_after, epoch_end",
    [
        pytest.param(1, 10, 7, 5, id="1-process"),  # 20 images, batches of 4: 5 steps an epoch
        pytest.param(2, 6, 5, 4, id="ddp-2-processes", marks=pytest.mark.slow),  # 10 images a rank: 2 steps an epoch
    ],
)
def test_fit_resumes_steps_and_lr_schedule_after_sigkill(
    devices: int, steps: int, kill_after: int, epoch_end: int, synthetic_root: Path, tmp_path: Path
) -> None:
    ddp = ["--trainer.devices", str(devices)] + (["--trainer.strategy", "ddp"] if devices > 1 else [])

    def fit(name: str, *extra: str) -> Proc:
        run = tmp_path / name
        return Proc(
            name,
            [
                "fit",
                "--config",
                DEMO / "localization_eps.yaml",
                "--data.root",
                synthetic_root,
                *TINY_FIT,
                *ddp,
                "--trainer.max_steps",
                steps,
                "--trainer.default_root_dir",
                run,
                "--trainer.logger",
                "false",
                "--trainer.num_sanity_val_steps",
                "0",
                "--trainer.check_val_every_n_epoch",
                "1",
                "--trainer.callbacks+=" + probe(tmp_path / "probe" / name),
                *extra,
            ],
            cwd=run,
            log_dir=tmp_path / "logs",
        )

    # the same configuration twice: one runs to the end, one is killed (every rank) after kill_after steps
    uninterrupted, interrupted = run_all(
        fit("uninterrupted"), fit("interrupted", "--trainer.callbacks+=" + kill_at(step=kill_after)), expect=None
    )
    assert uninterrupted.returncode == 0, uninterrupted.logs()
    assert interrupted.returncode == KILLED, interrupted.logs()
    full = load(tmp_path / "uninterrupted" / "checkpoints" / "last.ckpt")
    killed = tmp_path / "interrupted" / "checkpoints" / "last.ckpt"
    assert full["global_step"] == steps
    assert load(killed)["global_step"] == epoch_end  # the kill lost the steps after it: last.ckpt is from the epoch end
    for rank in read_probe(tmp_path / "probe" / "interrupted").values():
        assert [e["step"] for e in rank["train"]] == list(range(1, kill_after + 1))

    # resume: the same command line without the kill, plus --ckpt_path last
    resumed = fit("interrupted", "--ckpt_path", "last")
    resumed.name = "resumed"
    resumed.start().wait()
    final = load(killed)
    assert final["global_step"] == steps
    assert final["epoch"] == full["epoch"]
    assert schedule_state(final) == schedule_state(full)
    assert final["lr_schedulers"][0]["_last_lr"][0] < full["lr_schedulers"][0]["base_lrs"][0]  # it decayed
    # the resumed run went on from the epoch end (not from 0, not from the kill) with the uninterrupted run's
    # learning rates
    lrs = {e["step"]: e["train/lr"] for e in read_probe(tmp_path / "probe" / "uninterrupted")[0]["train"]}
    resumed_steps = list(range(epoch_end + 1, steps + 1))
    for rank in read_probe(tmp_path / "probe" / "interrupted").values():
        assert [e["step"] for e in rank["train"]] == resumed_steps
        assert {e["step"]: e["train/lr"] for e in rank["train"]} == {s: lrs[s] for s in resumed_steps}


def test_predict_resumes_after_sigkill(synthetic_root: Path, tmp_path: Path) -> None:
    """A killed ``epspp predict`` keeps what it wrote; the rerun writes the rest and a complete manifest."""
    ckpt_run = tmp_path / "localization"
    Proc(
        "fit",
        [
            "fit",
            "--config",
            DEMO / "localization_eps++.yaml",
            "--data.root",
            synthetic_root,
            *TINY_FIT,
            "--trainer.default_root_dir",
            ckpt_run,
            "--trainer.logger",
            "false",
            "--trainer.num_sanity_val_steps",
            "0",
        ],
        cwd=ckpt_run,
        log_dir=tmp_path / "logs",
    ).start().wait()
    out = tmp_path / "masks"
    ids = split_ids(synthetic_root, "train")

    def predict(name: str, *extra: str) -> Proc:
        return Proc(
            name,
            [
                "predict",
                "--config",
                DEMO / "pseudo_masks.yaml",
                "--data.root",
                synthetic_root,
                "--ckpt_path",
                ckpt_run / "checkpoints" / "last.ckpt",
                "--pseudo_masks.output_dir",
                out,
                "--data.num_workers",
                "0",
                "--trainer.accelerator",
                "cpu",
                "--trainer.callbacks",
                "[]",
                "--trainer.enable_progress_bar",
                "false",
                *extra,
            ],
            cwd=tmp_path,
            log_dir=tmp_path / "logs",
        )

    fresh = tmp_path / "fresh"  # an uninterrupted run beside the one that is killed, to compare with
    killed, uninterrupted = run_all(
        predict("killed", "--trainer.callbacks+=" + kill_at(predict_batch=8)),
        predict("fresh", "--pseudo_masks.output_dir", fresh),
        expect=None,
    )
    assert killed.returncode == KILLED, killed.logs()
    assert uninterrupted.returncode == 0, uninterrupted.logs()
    before = {p.stem: p.stat() for p in out.glob("*.png")}
    assert sorted(before) == ids[:8]  # one image per batch: the first 8 were written, then the kill
    assert not (out / "manifest.json").exists()
    stale = out / f".{ids[8]}.12345.tmp.png"  # what a kill in the middle of a write leaves behind
    stale.write_bytes(b"\x89PNG truncated")

    result = predict("rerun").start().wait()
    assert "predicting the 12 missing" in (tmp_path / "logs" / "rerun.out").read_text(), result.logs()
    assert sorted(p.stem for p in out.glob("*.png")) == ids
    for image_id, stat in before.items():  # the masks written before the kill were not rewritten
        now = (out / f"{image_id}.png").stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), image_id
    for image_id in ids:  # every mask is a complete palette PNG of the image's size
        with Image.open(out / f"{image_id}.png") as image:
            image.load()
            assert image.mode == "P" and image.getpalette() == voc_palette().ravel().tolist()
            with Image.open(synthetic_root / "JPEGImages" / f"{image_id}.jpg") as source:
                assert image.size == source.size
            assert np.array(image).max() <= 5
    assert not stale.exists() and sorted(p.name for p in out.iterdir()) == sorted(
        [f"{i}.png" for i in ids] + ["manifest.json", "config.yaml", "provenance.json", "scores"]
    )
    assert sorted(p.name for p in (out / "scores").iterdir()) == sorted(f"{i}.npy" for i in ids)  # none partial
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == manifest["split_size"] == manifest["evaluated"] == len(ids)
    assert manifest["written_this_run"] == len(ids) - 8

    # the masks are those of the uninterrupted run
    assert {p.name: p.read_bytes() for p in fresh.glob("*.png")} == {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert json.loads((fresh / "manifest.json").read_text())["miou"] == manifest["miou"]
