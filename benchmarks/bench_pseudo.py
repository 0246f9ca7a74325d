"""Benchmark 3: pseudo-mask generation (stage 2) throughput, and where its time goes.

A real ``Trainer.predict`` with the ``PseudoMaskWriter`` (as ``epspp predict`` runs it), after a one-image
warm-up pass. Timers wrap the pieces of ``LocalizationModule.predict_step`` and of the writer (functions
patched in their modules for this process only): the network forward at every scale (and flip), the
image rescaling and the map upsampling (``F.interpolate`` in ``multiscale_maps``), the softmax maps, the
rest of ``multiscale_maps`` (flip, sum), ``normalize_maps``, PAMR (``refine: pamr``), the rest of
``predict_step`` (background score, argmax), the PNG writing, the rest of the writer (mask to uint8
numpy), the wait for the next batch (data loading as seen by the main process, Lightning's loop
included), and the manifest (mIoU against the ground truth) at the end. Everything that is not the
network forward is "work outside the network"; goal: under 20% of the stage's wall time.

Settings:

- ``demo``: ``configs/demo/pseudo_masks.yaml`` with the demo network (resnet10t 32-256, OS8; weights of
  ``runs/demo/eps++/localization/checkpoints/last.ckpt`` when present, else random), scales (1, 1.5) +
  flip, ``refine: none``, 2 workers, 300 images of 64x64 (``/tmp/bench_data/synthetic``, split
  ``bench300``);
- ``demo0``: the same with ``--data.num_workers 0`` (loading in the main process);
- ``voc``: VOC-like 500x375 images (``/tmp/bench_data/voclike``), resnet50 OS16 random weights, C=20, as
  ``configs/voc/pseudo_masks.yaml`` sets inference: scales (0.5, 1, 1.5, 2) + flip, ``inference_resize:
  pil_bicubic``, ``refine: none``; 2 workers (the VOC config says 8; this machine has 2 cores).

"resize image (scales)" times ``LocalizationModule.resize`` whole (PIL's resize and, on a GPU, the round
trip to the CPU included); "upsample maps" every other ``F.interpolate`` of ``multiscale_maps``.

Usage: ``python benchmarks/bench_pseudo.py [--device cpu|cuda] [--settings demo voc] [--quick]``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from common import (
    REPO,
    CpuMeter,
    base_parser,
    emit,
    format_load,
    format_other,
    goal,
    goals_table,
    load_snapshot,
    max_busy,
    md_table,
    setup_run,
    wait_for_quiet,
)
from datasets import DEFAULT_ROOT, ensure_synthetic, ensure_voc_like

import epspp.callbacks.mask_writer as writer_mod
import epspp.ops.cam as cam_mod
import epspp.tasks.localization as loc_mod
from epspp.callbacks import PseudoMaskWriter
from epspp.data.datamodule import EPSDataModule
from epspp.models import LocalizationModule

DEMO_CKPT = REPO / "runs/demo/eps++/localization/checkpoints/last.ckpt"
GOAL = 0.20


class Timers:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self.enabled = False

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def add(self, name: str, seconds: float) -> None:
        if self.enabled:
            self.total[name] += seconds
            self.count[name] += 1

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            label = name(*args) if callable(name) else name
            self._sync()
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            self._sync()
            self.add(label, time.perf_counter() - start)
            return result

        return timed


class LoopTimer(pl.Callback):
    """Time the main process waits between batches (data loading + loop overhead)."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.last_end: float | None = None
        self.first_wait: float | None = None

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self.last_end = time.perf_counter()

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        now = time.perf_counter()
        if self.last_end is not None:
            wait = now - self.last_end
            if batch_idx == 0:
                self.first_wait = wait  # worker start-up and the first batch
            self.timers.add("wait for the next batch (loading)", wait)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.last_end = time.perf_counter()


def instrument(module: LocalizationModule, writer: PseudoMaskWriter, timers: Timers):
    """Patch timers around the pieces of predict_step and of the writer; returns the function that undoes it."""
    saved = [
        (loc_mod, "multiscale_maps"),
        (loc_mod, "normalize_maps"),
        (cam_mod, "F"),
        (cam_mod, "object_maps"),
        (writer_mod, "write_mask_png"),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name in saved]
    orig_multiscale = loc_mod.multiscale_maps

    def multiscale(forward_cam, image, *args, **kwargs):
        return orig_multiscale(timers.wrap("network forward", forward_cam), image, *args, **kwargs)

    loc_mod.multiscale_maps = timers.wrap("multiscale_maps (total)", multiscale)
    resizing = [False]  # inside module.resize: its own F.interpolate (bilinear) is the resize's time
    original_resize = module.resize

    def resize(image, size):
        resizing[0] = True
        try:
            return original_resize(image, size)
        finally:
            resizing[0] = False

    module.resize = timers.wrap("resize image (scales)", resize)
    upsample = timers.wrap("upsample maps", F.interpolate)

    class TimedF:
        @staticmethod
        def interpolate(x, *args, **kwargs):
            return (F.interpolate if resizing[0] else upsample)(x, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(F, name)

    cam_mod.F = TimedF()
    cam_mod.object_maps = timers.wrap("softmax maps", cam_mod.object_maps)
    loc_mod.normalize_maps = timers.wrap("normalize_maps", loc_mod.normalize_maps)
    module.pamr.forward = timers.wrap("PAMR", module.pamr.forward)
    module.predict_step = timers.wrap("predict_step (total)", module.predict_step)
    writer_mod.write_mask_png = timers.wrap("PNG writing", writer_mod.write_mask_png)
    writer.write_on_batch_end = timers.wrap("writer (total)", writer.write_on_batch_end)
    writer._finish = timers.wrap("manifest + mIoU", writer._finish)  # noqa: SLF001

    def undo() -> None:
        for owner, name, value in saved:
            setattr(owner, name, value)

    return undo


def build_setting(name: str, data_root: Path, quick: bool) -> dict:
    if name == "demo0":
        setting = build_setting("demo", data_root, quick)
        setting["label"] = setting["label"].replace("refine none", "refine none, 0 workers")
        setting["workers"] = 0
        return setting
    if name == "demo":
        root = ensure_synthetic(data_root)
        options = dict(scales=(1.0, 1.5), flip=True, bg_threshold=0.2, refine="none")
        if DEMO_CKPT.is_file():
            module = LocalizationModule.load_from_checkpoint(DEMO_CKPT, map_location="cpu", **options)
            digest = hashlib.sha256(DEMO_CKPT.read_bytes()).hexdigest()[:12]
            weights = f"`{DEMO_CKPT.relative_to(REPO)}` (sha256 {digest}...)"
        else:
            torch.manual_seed(0)
            module = LocalizationModule(
                num_classes=5,
                backbone="resnet10t",
                backbone_kwargs={"channels": [32, 64, 128, 256], "stem_width": 16},
                output_stride=8,
                saliency_loss="ird",
                pamr_dilations=(1, 2),
                **options,
            )
            weights = "random (no demo checkpoint found)"
        split, count = "bench300", 300
        return dict(
            label="demo: resnet10t OS8, 64x64, scales (1, 1.5) + flip, refine none",
            module=module,
            root=root,
            split=split,
            workers=2,
            weights=weights,
            count=count,
        )
    root = ensure_voc_like(data_root)
    count = 2 if quick else 8
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()[:count]
    (root / f"ImageSets/Segmentation/bench{count}.txt").write_text("\n".join(ids) + "\n")
    torch.manual_seed(0)
    module = LocalizationModule(
        num_classes=20,
        backbone="resnet50",
        output_stride=16,
        saliency_loss="ird",
        scales=(0.5, 1.0, 1.5, 2.0),
        flip=True,
        refine="none",
        inference_resize="pil_bicubic",
    )
    return dict(
        label="voc: resnet50 OS16, 500x375, scales (0.5-2) + flip, pil_bicubic, refine none",
        module=module,
        root=root,
        split=f"bench{count}",
        workers=min(8, os.cpu_count() or 1),
        weights="random",
        count=count,
    )


def predict(setting: dict, device: torch.device, split: str, out: Path, callbacks: list) -> tuple[float, int]:
    datamodule = EPSDataModule(root=str(setting["root"]), predict_split=split, num_workers=setting["workers"])
    writer = next(c for c in callbacks if isinstance(c, PseudoMaskWriter))
    writer.output_dir = out
    trainer = pl.Trainer(
        accelerator=device.type,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.predict(setting["module"], datamodule=datamodule)
    return time.perf_counter() - start, len(list(out.glob("*.png")))


def run_setting(name: str, device: torch.device, data_root: Path, quick: bool, wait: float) -> dict:
    setting = build_setting(name, data_root, quick)
    timers = Timers(device)
    writer = PseudoMaskWriter(overwrite=True)
    loop = LoopTimer(timers)
    undo = instrument(setting["module"], writer, timers)
    root = setting["root"]
    first = (root / "ImageSets/Segmentation" / f"{setting['split']}.txt").read_text().split()[0]
    (root / "ImageSets/Segmentation/bench_warmup.txt").write_text(first + "\n")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            predict(setting, device, "bench_warmup", Path(tmp) / "warmup", [writer, loop])  # warm-up pass
            load_before = wait_for_quiet(wait)
            timers.enabled = True
            meter = CpuMeter()
            wall, written = predict(setting, device, setting["split"], Path(tmp) / "masks", [writer, loop])
            other = meter.other()
            load_after = load_snapshot()
    finally:
        undo()
    t = dict(timers.total)
    return {
        "setting": name,
        "label": setting["label"],
        "weights": setting["weights"],
        "wall": wall,
        "images": written,
        "workers": setting["workers"],
        "timers": t,
        "first_wait": loop.first_wait,
        "load": [format_load(load_before), format_load(load_after)],
        "busy": max_busy(load_before, load_after),
        "other": other,
    }


def breakdown_rows(res: dict) -> tuple[list[list], float, float]:
    t, wall = res["timers"], res["wall"]
    forward = t.get("network forward", 0.0)
    ms_parts = ["resize image (scales)", "upsample maps", "softmax maps"]
    pieces = [
        ("network forward", forward),
        ("resize image (scales)", t.get("resize image (scales)", 0.0)),
        ("upsample maps", t.get("upsample maps", 0.0)),
        ("softmax maps", t.get("softmax maps", 0.0)),
        (
            "multiscale_maps: flip, sum",
            t.get("multiscale_maps (total)", 0.0) - forward - sum(t.get(p, 0.0) for p in ms_parts),
        ),
        ("normalize_maps", t.get("normalize_maps", 0.0)),
        ("PAMR", t.get("PAMR", 0.0)),
        (
            "predict_step: background score, argmax",
            t.get("predict_step (total)", 0.0)
            - t.get("multiscale_maps (total)", 0.0)
            - t.get("normalize_maps", 0.0)
            - t.get("PAMR", 0.0),
        ),
        ("PNG writing", t.get("PNG writing", 0.0)),
        ("writer: mask to numpy, bookkeeping", t.get("writer (total)", 0.0) - t.get("PNG writing", 0.0)),
        ("wait for the next batch (loading)", t.get("wait for the next batch (loading)", 0.0)),
        ("manifest + mIoU (end of stage)", t.get("manifest + mIoU", 0.0)),
    ]
    accounted = sum(v for _, v in pieces)
    pieces.append(("other (Lightning loop, start/stop)", wall - accounted))
    n = max(res["images"], 1)
    rows = [
        [res["label"] if i == 0 else "", piece, f"{1e3 * v / n:.2f}", f"{100 * v / wall:.1f}%"]
        for i, (piece, v) in enumerate(pieces)
    ]
    outside = 1 - forward / wall
    outside_no_pamr = 1 - forward / (wall - t.get("PAMR", 0.0))
    return rows, outside, outside_no_pamr


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["demo", "demo0", "voc"], choices=["demo", "demo0", "voc"])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args()
    device = setup_run(args)
    results = [run_setting(s, device, args.data_root, args.quick, args.wait_quiet) for s in args.settings]

    summary, rows, goals = [], [], []
    for res in results:
        piece_rows, outside, outside_no_pamr = breakdown_rows(res)
        rows += piece_rows
        has_pamr = res["timers"].get("PAMR", 0.0) > 0
        summary.append(
            [
                res["label"],
                res["weights"],
                res["images"],
                res["workers"],
                f"{res['wall']:.1f}",
                f"{res['images'] / res['wall']:.2f}",
                f"{100 * outside:.1f}%",
                f"{100 * outside_no_pamr:.1f}%" if has_pamr else "-",
            ]
        )
        goals.append(
            goal(
                f"pseudo-masks ({res['setting']}): work outside the network",
                "< 20% of the stage",
                f"{100 * outside:.1f}%",
                outside < GOAL,
            )
        )
        if has_pamr:
            goals.append(
                goal(
                    f"pseudo-masks ({res['setting']}) without PAMR: work outside the network",
                    "< 20% of the stage",
                    f"{100 * outside_no_pamr:.1f}%",
                    outside_no_pamr < GOAL,
                )
            )
    lines = [
        "## 3. Pseudo-mask throughput and where the time goes",
        "",
        "Method: one `Trainer.predict` with the `PseudoMaskWriter` per setting (after a one-image warm-up "
        f"pass), device {device}; timers around the pieces of `predict_step` and of the writer. Shares are of "
        "the stage's wall time (the `trainer.predict` call); per-image figures are totals / images.",
        "",
        md_table(
            [
                "setting",
                "weights",
                "images",
                "workers",
                "wall (s)",
                "images/s",
                "outside the network",
                "outside, without PAMR",
            ],
            summary,
        ),
        "",
        md_table(["setting", "piece", "ms / image", "share of wall"], rows),
        "",
        "CPU share used by other processes during each run: "
        + "; ".join(f"{r['setting']}: {format_other(r['other'])}" for r in results)
        + ". Load: "
        + "; ".join(f"{r['setting']}: " + " -> ".join(r["load"]) for r in results),
        "",
        goals_table(goals),
        "",
    ]
    emit(args, "\n".join(lines), {"goals": goals, "results": results})


if __name__ == "__main__":
    main()
