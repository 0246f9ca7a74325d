"""Benchmark 4: data loading of stage 1 (localization) and stage 3 (segmentation) vs the training step.

Three measurements:

1. Loader alone: samples/s of the ``EPSDataModule`` training loader (real files, the stage's transforms,
   collation, worker IPC) with the configured workers and with 0 workers (the per-sample CPU cost in the
   main process), after the first batch (worker start-up), cycling epochs as needed:
   - demo stage 1 / stage 3 (``configs/demo``: 64 px, batch 16, 2 workers; stage 3 reads the ground-truth
     masks as its pseudo-masks) on ``/tmp/bench_data/synthetic``;
   - VOC-like stage 1 (crop 448, batch 8, resize_long 256-512) and stage 3 (crop 321, batch 10) on
     ``/tmp/bench_data/voclike`` (500x375 JPEGs), 2 workers (the VOC configs say 8: this machine has 2 cores).
2. Training step alone (demo settings): samples/s of the stage-1 (``none`` and ``ird``) and stage-3
   (DeepLab-v2 resnet10t) steps on an in-memory batch (module driven without a Trainer, as in benchmark 2).
3. End to end (demo settings): a real ``Trainer.fit`` (no logger, no validation, no checkpoint) for a few
   dozen steps with the real loader (configured workers at the default ``worker_nice``, i.e. niceness 19 on
   the CPU; the same at normal priority, ``worker_nice: 0``; 0 workers) and with an in-memory loader
   (pre-collated batches: no loading cost at all); steady-state samples/s from the time between steps, the
   variants run in turn twice (order reversed the second time). The loader is the bottleneck if the
   real-loader run is clearly slower than the in-memory one.

For the VOC-like pipelines the step of a ResNet on CPU is far slower than loading; the comparison uses
the r50/r18 step figures of benchmark 2 when ``--step-json`` gives its JSON output.

Usage: ``python benchmarks/bench_data.py [--device cpu|cuda] [--quick] [--step-json FILE]``.
"""

from __future__ import annotations

import json
import os
import time
import types
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import (
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
    median,
    setup_run,
    side_by_side,
    wait_for_quiet,
)
from datasets import DEFAULT_ROOT, ensure_synthetic, ensure_voc_like
from torch.utils.data import DataLoader

from epspp.data.datamodule import EPSDataModule
from epspp.models import LocalizationModule, SegmentationModule

DEMO_NET = dict(
    backbone="resnet10t",
    backbone_kwargs={"channels": [32, 64, 128, 256], "stem_width": 16},
    output_stride=8,
    optimizer="adam",
    lr=0.002,
    head_lr_mult=1.0,
    weight_decay=0.0,
)
DEMO_DATA = dict(batch_size=16, num_workers=2, crop_size=64, resize_long=(56, 80), eval_size=64)


def pipelines(data_root: Path) -> dict[str, dict]:
    synthetic, voclike = ensure_synthetic(data_root), ensure_voc_like(data_root)
    gt = lambda root: str(root / "SegmentationClassAug")  # noqa: E731 - ground truth as stand-in pseudo-masks
    return {
        "demo stage 1": dict(root=str(synthetic), task="localization", **DEMO_DATA),
        "demo stage 3 (wsss)": dict(
            root=str(synthetic), task="segmentation", pseudo_mask_dir=gt(synthetic), **DEMO_DATA
        ),
        "VOC-like stage 1 (crop 448, batch 8)": dict(
            root=str(voclike), task="localization", batch_size=8, num_workers=2, crop_size=448, resize_long=(256, 512)
        ),
        "VOC-like stage 3 (crop 321, batch 10)": dict(
            root=str(voclike),
            task="segmentation",
            batch_size=10,
            num_workers=2,
            crop_size=321,
            resize_long=(256, 512),
            pseudo_mask_dir=gt(voclike),
        ),
    }


def loader(config: dict, workers: int) -> DataLoader:
    datamodule = EPSDataModule(**{**config, "num_workers": workers, "val_split": None})
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def loader_rate(dl: DataLoader, batches: int) -> float:
    """Samples/s over ``batches`` batches after the first one (epochs cycled)."""
    it = iter(dl)
    next(it)
    samples, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(dl)
            batch = next(it)
        samples += len(batch["image"])
    return samples / (time.perf_counter() - start)


def stub(module: pl.LightningModule):
    trainer = types.SimpleNamespace(optimizers=[], global_step=10**6, estimated_stepping_batches=10**6)
    module._trainer = trainer  # noqa: SLF001
    module.log = lambda *a, **k: None
    module.log_dict = lambda *a, **k: None
    config = module.configure_optimizers()
    trainer.optimizers = [config["optimizer"]]
    optimizer = config["optimizer"]
    module.train()

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        module.training_step(batch, 0).backward()
        optimizer.step()

    return step


def demo_modules(num_classes: int) -> dict[str, pl.LightningModule]:
    torch.manual_seed(0)
    return {
        "stage 1 none": LocalizationModule(num_classes=num_classes, saliency_loss="none", **DEMO_NET),
        "stage 1 ird": LocalizationModule(
            num_classes=num_classes, saliency_loss="ird", pamr_dilations=(1, 2), ird_warmup_steps=0, **DEMO_NET
        ),
        "stage 3 wsss": SegmentationModule(num_classes=num_classes, architecture="deeplabv2", **DEMO_NET),
    }


class StepClock(pl.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.stamps.append(time.perf_counter())


class InMemory(pl.LightningDataModule):
    """Pre-collated batches served again and again: a loader that costs nothing."""

    def __init__(self, batches: list[dict]) -> None:
        super().__init__()
        self.batches = batches

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches * 100, batch_size=None, shuffle=False)


def fit_gaps(
    module: pl.LightningModule, datamodule: pl.LightningDataModule, steps: int, skip: int, device: torch.device
) -> list[float]:
    """Times between consecutive training steps of a real ``Trainer.fit`` (the first ``skip`` dropped)."""
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator=device.type,
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=datamodule)
    return [b - a for a, b in zip(clock.stamps[skip:], clock.stamps[skip + 1 :], strict=False)]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--step-json", type=Path, default=None, help="benchmark 2's JSON (VOC-like comparison)")
    args = parser.parse_args()
    device = setup_run(args)
    quick = args.quick
    configs = pipelines(args.data_root)
    load_start = wait_for_quiet(args.wait_quiet)

    # 1. loader alone
    others = {}
    meter = CpuMeter()
    loader_rows, rates = [], {}
    for name, config in configs.items():
        batches = (10 if quick else 40) if name.startswith("demo") else (3 if quick else 8)
        for workers in (config["num_workers"], 0):
            rate = loader_rate(loader(config, workers), batches)
            rates[(name, workers)] = rate
            loader_rows.append([name if workers else "", workers, f"{rate:.0f}", f"{1e3 / rate:.2f}"])

    others["loaders"] = meter.other()

    # 2. training step alone (demo)
    num_classes = 5
    modules = demo_modules(num_classes)
    batches = {}
    for stage, key in (("stage 1", "demo stage 1"), ("stage 3", "demo stage 3 (wsss)")):
        batch = next(iter(loader(configs[key], 0)))
        batches[stage] = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    steps = {}
    for name, module in modules.items():
        module.to(device)
        step = stub(module)
        data = batches["stage 1" if name.startswith("stage 1") else "stage 3"]
        steps[name] = lambda s=step, d=data: s(d)
    meter = CpuMeter()
    step_times = side_by_side(steps, 6 if quick else 20, device, warmup=2)
    others["steps"] = meter.other()
    batch_size = configs["demo stage 1"]["batch_size"]
    step_rates = {k: batch_size / median(v) for k, v in step_times.items()}

    # 3. end to end (fresh modules: the stubs above are not Trainer-attached); the variants of a stage run
    # in turn, twice (order reversed the second time), and the step gaps of both runs are pooled
    fit_steps, skip, fit_rounds = (20, 5, 1) if quick else (40, 8, 2)
    snaps = [load_start]
    e2e_rows, e2e = [], {}
    for name, key in (("stage 1 ird", "demo stage 1"), ("stage 3 wsss", "demo stage 3 (wsss)")):
        config = configs[key]
        cpu_batches = [next(iter(loader(config, 0)))]
        workers = config["num_workers"]
        variants = [
            ("in-memory batches", None),
            (f"real loader, {workers} workers (default worker_nice: 19 on the CPU)", {}),
            (f"real loader, {workers} workers at normal priority (worker_nice 0)", {"worker_nice": 0}),
            ("real loader, 0 workers", {"num_workers": 0}),
        ]
        gaps: dict[str, list[float]] = {label: [] for label, _ in variants}
        snaps.append(wait_for_quiet(args.wait_quiet))
        meter = CpuMeter()
        for r in range(fit_rounds):
            for label, overrides in variants if r % 2 == 0 else variants[::-1]:
                module = demo_modules(num_classes)[name]
                data = (
                    InMemory(cpu_batches)
                    if overrides is None
                    else EPSDataModule(**{**config, "val_split": None, **overrides})
                )
                gaps[label] += fit_gaps(module, data, fit_steps, skip, device)
        others[f"end to end {name}"] = meter.other()
        ideal = batch_size / median(gaps["in-memory batches"])
        for label, _ in variants:
            rate = batch_size / median(gaps[label])
            e2e[(name, label)] = rate
            e2e_rows.append(
                [
                    name if label.startswith("in-memory") else "",
                    label,
                    f"{1e3 * median(gaps[label]):.1f}",
                    len(gaps[label]),
                    f"{rate:.0f}",
                    "-" if label.startswith("in-memory") else f"{100 * (ideal / rate - 1):+.0f}%",
                ]
            )
    load_end = load_snapshot()
    snaps.append(load_end)

    # goals: (1) the configured loader delivers more samples/s than the step consumes; (2) end to end, the
    # real loader costs the step little. References for (2): the loading CPU time (0 workers, per sample) relative
    # to the step's time per sample, added serially or perfectly spread over the cores
    goals, cmp_rows, bounds = [], [], {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for name, key in (
        ("stage 1 none", "demo stage 1"),
        ("stage 1 ird", "demo stage 1"),
        ("stage 3 wsss", "demo stage 3 (wsss)"),
    ):
        workers = configs[key]["num_workers"]
        ratio = rates[(key, workers)] / step_rates[name]
        cmp_rows.append([name, f"{step_rates[name]:.0f}", f"{rates[(key, workers)]:.0f}", f"{ratio:.1f}x"])
        if name != "stage 1 none":
            goals.append(
                goal(
                    f"loader throughput vs step (demo {name}, {workers} workers)",
                    "loader samples/s > step samples/s",
                    f"{ratio:.1f}x",
                    ratio > 1,
                )
            )
    for name in ("stage 1 ird", "stage 3 wsss"):
        key = "demo stage 1" if name.startswith("stage 1") else "demo stage 3 (wsss)"
        workers = configs[key]["num_workers"]
        real = e2e[(name, f"real loader, {workers} workers (default worker_nice: 19 on the CPU)")]
        ideal = e2e[(name, "in-memory batches")]
        slowdown = ideal / real - 1
        serial = ideal / rates[(key, 0)]  # loading time per sample / step time per sample
        bound = serial / cores
        bounds[name] = {"serial": serial, "overlapped": bound}
        goals.append(
            goal(
                f"end to end (demo {name}, {workers} workers): real loader vs in-memory batches",
                "<= +10%",
                f"{100 * slowdown:+.1f}% (loading added serially: +{100 * serial:.0f}%, perfectly "
                f"overlapped: +{100 * bound:.0f}%)",
                slowdown <= 0.10,
            )
        )
    if args.step_json and args.step_json.is_file():
        step_json = json.loads(args.step_json.read_text())
        for res in step_json.get("results", []):
            if res["setting"] in ("r50", "r18os8"):
                batch = {"r50": 4, "r18os8": 8}[res["setting"]]
                rate = batch / median(res["times"]["ird"])
                key = "VOC-like stage 1 (crop 448, batch 8)"
                label = f"{res['label']} ird (benchmark 2) vs the VOC-like stage-1 loader"
                cmp_rows.append([label, f"{rate:.1f}", f"{rates[(key, 2)]:.0f}", f"{rates[(key, 2)] / rate:.0f}x"])

    lines = [
        "## 4. Data loading vs the training step",
        "",
        f"Method: see `benchmarks/bench_data.py`; device {device}. Loader figures exclude the first batch "
        "(worker start-up); step figures are medians of interleaved steps on an in-memory batch; end-to-end "
        "figures are the median time between consecutive `on_train_batch_start` of a real `Trainer.fit` "
        f"({fit_steps} steps, the first {skip} skipped).",
        "",
        "Loader alone:",
        "",
        md_table(["pipeline", "workers", "samples/s", "ms / sample"], loader_rows),
        "",
        "Training step alone (in-memory batch) vs the configured loader:",
        "",
        md_table(["step", "step samples/s", "loader samples/s (configured workers)", "loader / step"], cmp_rows),
        "",
        "End to end, real `Trainer.fit` (demo settings):",
        "",
        md_table(["run", "data", "ms / step", "steps timed", "samples/s", "slower than in-memory"], e2e_rows),
        "",
        "CPU share used by other processes during: "
        + "; ".join(f"{k}: {format_other(v)}" for k, v in others.items())
        + f". Load: {format_load(load_start)} -> {format_load(load_end)}",
        "",
        goals_table(goals),
        "",
    ]
    payload = {
        "goals": goals,
        "bounds": bounds,
        "cores": cores,
        "busy": max_busy(*snaps),
        "other": others,
        "loader": {f"{k[0]} / {k[1]} workers": v for k, v in rates.items()},
        "step_samples_per_s": step_rates,
        "end_to_end": {f"{k[0]} / {k[1]}": v for k, v in e2e.items()},
    }
    emit(args, "\n".join(lines), payload)


if __name__ == "__main__":
    main()
