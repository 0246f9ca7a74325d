"""Experiment tracking (W&B offline files) and the walkthrough notebook, run as users run them."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import nbformat
import numpy as np
from fixtures.cli import REPO, SCRATCH_EPSPP, TINY_FIT, run_epspp
from nbclient import NotebookClient
from PIL import Image


def _record_types(path: Path) -> list[str]:
    """The kinds of the records of a W&B run file (``run-ID.wandb``): W&B's 7-byte header, then LevelDB's log
    format (32-KiB blocks of chunks: CRC32C, length, type 1 whole / 2 first / 3 middle / 4 last) of protobufs."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, position, pieces, kinds = path.read_bytes(), 7, b"", []
    while position + 7 <= len(data):
        room = 32768 - position % 32768
        if room < 7:  # a block's tail too short for a header is padding
            position += room
            continue
        _, length, chunk = struct.unpack("<IHB", data[position : position + 7])
        if chunk == 0:
            break
        pieces += data[position + 7 : position + 7 + length]
        position += 7 + length
        if chunk in (1, 4):
            record = Record()
            record.ParseFromString(pieces)
            kinds.append(str(record.WhichOneof("record_type")))
            pieces = b""
    return kinds


def test_offline_wandb_run_contains_sample_panels_and_iou_table(synthetic_root: Path, tmp_path: Path) -> None:
    import wandb

    run_dir = tmp_path / "run"
    # a caller that used W&B (a notebook, a script) and then runs epspp: the command's run joins the caller's W&B
    # service (WANDB_SERVICE), which would keep the run open after the command ended, unless the command ends it
    wandb.teardown()  # (the service of an earlier test in this process, its variable gone with that test)
    wandb.setup()
    try:
        run_epspp(
            [
                "fit",
                "--config",
                SCRATCH_EPSPP,
                "--data.root",
                synthetic_root,
                "--trainer.default_root_dir",
                run_dir,
                "--trainer.val_check_interval",
                "2",
                "--trainer.check_val_every_n_epoch",
                "1",
                *TINY_FIT,
            ],
            cwd=tmp_path,
        )
        (run,) = (run_dir / "wandb").glob("offline-run-*")
        kinds = _record_types(next(run.glob("run-*.wandb")))
        assert kinds[-1:] == ["exit"] and "history" in kinds, "the run was written and closed when epspp returned"
    finally:
        wandb.teardown()  # (and the variable WANDB_SERVICE with it)
    images = sorted((run / "files" / "media" / "images").rglob("*.png"))
    assert images, "the sample panels were logged"
    panel = np.asarray(Image.open(images[0]))
    # 4 samples x 5 panels of 48 px (image, saliency, map, inconsistent, pseudo-mask: stage-1 training batches
    # carry no ground truth), 2-px gaps, then a legend of the masks' classes (at least one line: 19 + 2 x 4 px)
    assert panel.shape[0] >= 4 * 48 + 3 * 2 + 27 and panel.shape[1] == 5 * 48 + 4 * 2
    tables = list((run / "files" / "media" / "table").rglob("*.json"))
    assert tables, "the per-class IoU table was logged"
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["class", "IoU"] and len(table["data"]) == 6


def test_walkthrough_notebook_runs(tmp_path: Path) -> None:
    notebook = nbformat.read(REPO / "notebooks" / "01_walkthrough.ipynb", as_version=4)
    committed = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert sum("image/png" in o.get("data", {}) for o in committed) == 3, "the notebook is committed with its figures"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    sizes = {"EPSPP_NB_STEPS": "2", "EPSPP_NB_PRETRAIN_STEPS": "2", "EPSPP_NB_TRAIN": "24"}
    saved_tmpdir = os.environ.get("TMPDIR")
    # the kernel's temporary folder (the notebook's working folder, mkdtemp) inside tmp_path, removed with it
    os.environ.update(sizes, TMPDIR=str(tmp_path))
    try:
        resources = {"metadata": {"path": tmp_path}}
        client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources=resources)
        client.execute()
    finally:
        for key in sizes:
            del os.environ[key]
        if saved_tmpdir is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = saved_tmpdir
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # dataset, IRD telemetry, stages
    text = "".join(o.get("text", "") for o in outputs)
    assert "backbone.pth written" in text  # stage 0 ran, in the papers' regime
    for name in ("CAM", "EPS", "EPS++", "EPS++ (softmax B())"):
        assert any(line.startswith(f"{name} ") and len(line.split()) >= 4 for line in text.splitlines()), name
