"""The GPU check of issue 35: every stage on a device through epspp's commands, then timings; one JSON.

    python benchmarks/gpu/check.py --device cuda --out $OUT/gpu_check.json     (benchmarks/gpu/check.sh runs it)
    python benchmarks/gpu/check.py --dry-run --in-process --out FILE            (CPU, tiny sizes: the test's mode)

Nothing names a device but ``--device`` (the stages' ``--trainer.accelerator``).

1. Stages, on tiny synthetic data (``epspp prepare synthetic``) with the from-scratch demo configs: stage 1 fit
   (EPS++), pseudo-masks (predict), stage 3 fit (WSSS), its predictions of the val split, and ``epspp evaluate``
   of those predictions (its mIoU: ``epspp test`` would compute the same again).
2. Timings through the Lightning loop with the data loader (``epspp fit`` / ``epspp predict`` with the
   ``step_timer.StepTimer`` callback): the stage-1 step of configs/voc/localization_eps.yaml (ResNet-38d, crop
   448, batch 8, random init: the machine has no ImageNet file) in fp32, 16-mixed, bf16-mixed, bf16-mixed +
   channels_last and bf16-mixed + compile, on synthetic images resized to 500x375; pseudo-mask inference of
   configs/voc/pseudo_masks.yaml (4 scales + flip) per 500x375 image, fp32 and bf16-mixed.

Every part has a step count and a time limit, and the whole run a budget (``--budget-s``): a part that would
not fit is skipped and says so. Every fit runs with ``--trainer.logger false``: no W&B (wandb is not installed
on the GPU machine). A model option that the installed epspp lacks (``MODEL_OPTIONS``: the ``channels_last``
and ``torch_compile`` arguments of LocalizationModule) is skipped and says so. The JSON names the device, the
versions, every stage's command, exit status and seconds, and every timing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIGS = REPO / "src" / "epspp" / "configs"
SCRATCH = CONFIGS / "demo" / "scratch"
#: the model options of issue 35 item 4 that a timing variant turns on (their constructor argument names)
MODEL_OPTIONS = ("channels_last", "torch_compile")
#: the timed stage-1 variants: name -> (precision, model options turned on)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fp32": ("32-true", ()),
    "16-mixed": ("16-mixed", ()),
    "bf16-mixed": ("bf16-mixed", ()),
    "bf16-mixed+channels_last": ("bf16-mixed", ("channels_last",)),
    "bf16-mixed+compile": ("bf16-mixed", ("torch_compile",)),
}
#: the precisions of the timed pseudo-mask inference
PREDICT_PRECISIONS = ("32-true", "bf16-mixed")


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the GPU check's sizes or the dry run's."""

    image_size: int  # side of the stages' synthetic images
    num_train: int
    num_val: int
    stage_steps: int  # steps of each stage's fit
    stage_overrides: tuple[str, ...]  # extra overrides of the stages' fits and predictions
    photo_size: tuple[int, int]  # (width, height) of the timing images
    photos: int  # images of the timed pseudo-mask inference (the timing set's val split; its train split holds
    # (warmup + timed) x batch images, so that a timed fit is one epoch: no worker restarts between epochs)
    bench_overrides: tuple[str, ...]  # extra overrides of the timed fits (empty: configs/voc's ResNet-38d)
    crop: int
    batch: int
    workers: int
    warmup: int  # untimed steps (compile's graph capture, cudnn's choice of algorithms)
    timed: int  # timed steps
    stage_timeout: int  # seconds, each stage
    bench_timeout: int  # seconds, each timed fit or prediction
    compile_timeout: int  # seconds, the compiled fit


TINY_NET = (
    "--model.init_args.backbone",
    "resnet10t",
    "--model.init_args.backbone_kwargs",
    "{channels: [8, 16, 32, 64], stem_width: 8}",
)
GPU = Sizes(
    image_size=64,
    num_train=32,
    num_val=8,
    stage_steps=20,
    stage_overrides=(),
    photo_size=(500, 375),
    photos=24,
    bench_overrides=(),
    crop=448,
    batch=8,
    workers=8,
    warmup=8,
    timed=20,
    stage_timeout=60,
    bench_timeout=75,
    compile_timeout=150,
)
DRY = Sizes(
    image_size=32,
    num_train=8,
    num_val=2,
    stage_steps=1,
    stage_overrides=(
        *TINY_NET,
        "--data.num_workers",
        "0",
        "--data.crop_size",
        "32",
        "--data.eval_size",
        "32",
        "--data.resize_long",
        "[28, 40]",
    ),
    photo_size=(50, 38),
    photos=3,
    bench_overrides=(*TINY_NET, "--model.init_args.freeze_stem", "false"),
    crop=32,
    batch=2,
    workers=0,
    warmup=1,
    timed=2,
    stage_timeout=60,
    bench_timeout=60,
    compile_timeout=60,
)


@dataclass
class Result:
    """One part: its command, exit status (None: not run), seconds, why it was skipped, its log's end."""

    argv: list[str]
    exit: int | None = None
    seconds: float | None = None
    skipped: str | None = None
    log_tail: str | None = None
    timing: dict[str, Any] | None = None


class Runner:
    """Runs ``epspp`` commands in a subprocess each (or in this process), within one budget of seconds: a part
    starts only when its time limit fits in what is left; a subprocess is killed at its limit (exit 124), an
    in-process part (the dry run's) is not."""

    def __init__(self, work: Path, budget_s: float, in_process: bool) -> None:
        self.work = work
        self.deadline = time.monotonic() + budget_s
        self.in_process = in_process

    def epspp(self, name: str, args: Sequence[str], timeout: int) -> Result:
        """``epspp ARGS``; skipped when ``timeout`` seconds would overrun the budget."""
        result = Result(argv=["epspp", *map(str, args)])
        left = self.deadline - time.monotonic()
        if left < timeout:
            result.skipped = f"budget: {left:.0f} s left, the part may take {timeout} s"
            return result
        start = time.perf_counter()
        if self.in_process:
            result.exit = _in_process(list(map(str, args)))
        else:
            result.exit, result.log_tail = self._subprocess(name, list(map(str, args)), timeout)
        result.seconds = round(time.perf_counter() - start, 2)
        return result

    def _subprocess(self, name: str, args: list[str], timeout: int) -> tuple[int, str | None]:
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
        with open(log, "w") as handle:
            try:
                code = subprocess.run(
                    [sys.executable, "-m", "epspp", *args],
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=timeout,
                ).returncode
            except subprocess.TimeoutExpired:
                code = 124
        return code, None if code == 0 else log.read_text(errors="replace")[-3000:]


def _in_process(args: list[str]) -> int:
    """``epspp.cli.main(args)`` in this process: its exit status (1 for an exception that escapes it)."""
    from epspp.cli import main

    argv = sys.argv
    sys.argv = ["epspp"]  # LightningCLI warns when both sys.argv and args carry arguments
    try:
        main(args)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except Exception:  # noqa: BLE001 - a failed stage, as a process's exit status 1; the next parts still run
        traceback.print_exc()
        return 1
    finally:
        sys.argv = argv
    return 0


def _free_device_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def versions() -> dict[str, str | None]:
    """Python, the packages the check relies on, where epspp was imported from, CUDA and cuDNN."""
    import torch

    import epspp

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in (
        "epspp",
        "torch",
        "pytorch-lightning",
        "timm",
        "torchmetrics",
        "jsonargparse",
        "albumentations",
        "numpy",
    ):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["epspp_path"] = str(Path(epspp.__file__).parent)  # the installed copy, or src/ of the tree
    found["cuda"] = torch.version.cuda
    found["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    return found


def device_name(device: str) -> str:
    """The accelerator's name (``torch.cuda.get_device_name``), else the CPU's."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def missing_model_options() -> dict[str, str]:
    """The options of ``MODEL_OPTIONS`` that the installed LocalizationModule does not take, with why."""
    from epspp.tasks import LocalizationModule

    parameters = inspect.signature(LocalizationModule.__init__).parameters
    return {
        name: f"skipped: the installed epspp's LocalizationModule has no {name!r} argument"
        for name in MODEL_OPTIONS
        if name not in parameters
    }


def git_commit() -> str | None:
    """The tree's commit, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def resized_copy(source: Path, dest: Path, size: tuple[int, int]) -> Path:
    """A copy of a synthetic dataset with every image, mask and saliency map resized to ``size`` (width, height):
    VOC-size inputs for the timings."""
    from PIL import Image

    shutil.copytree(source, dest)
    for folder, resample in (
        ("JPEGImages", Image.BICUBIC),
        ("SegmentationClassAug", Image.NEAREST),
        ("saliency", Image.BILINEAR),
        ("saliency/errors", Image.NEAREST),
        ("SegmentationContext", Image.NEAREST),
    ):
        for path in sorted(p for p in (dest / folder).glob("*") if p.is_file()):
            with Image.open(path) as image:
                resized = image.resize(size, resample)
            resized.save(path, quality=95) if path.suffix == ".jpg" else resized.save(path)
    return dest


def timer_callback(out: Path, warmup: int) -> str:
    """The ``--trainer.callbacks+=`` value of a StepTimer writing to ``out``."""
    return json.dumps({"class_path": "step_timer.StepTimer", "init_args": {"out": str(out), "warmup": warmup}})


def read_timing(path: Path) -> dict[str, Any] | None:
    """The StepTimer's JSON, None when the run wrote none."""
    return json.loads(path.read_text()) if path.is_file() else None


def run_stages(runner: Runner, sizes: Sizes, device: str, data: Path) -> dict[str, Result]:
    """Every stage of the chain on the tiny synthetic dataset ``data``, through epspp's commands."""
    work = runner.work / "stages"
    on = ("--trainer.accelerator", device, "--trainer.devices", "1")
    fit = (*on, "--trainer.logger", "false", "--trainer.max_steps", str(sizes.stage_steps), *sizes.stage_overrides)
    predict = (*on, *sizes.stage_overrides)
    loc, masks, seg = work / "localization", work / "pseudo_masks", work / "segmentation"

    def config(command: str, name: str) -> list[str]:
        return [command, "--config", str(SCRATCH / name), "--data.root", str(data)]

    args = {
        "fit_stage1": [*config("fit", "localization_eps++.yaml"), "--trainer.default_root_dir", str(loc), *fit],
        "predict_pseudo_masks": [
            *config("predict", "pseudo_masks.yaml"),
            "--ckpt_path", str(loc / "checkpoints" / "last.ckpt"),
            "--pseudo_masks.output_dir", str(masks),
            *predict,
        ],
        "fit_stage3": [
            *config("fit", "segmentation_wsss.yaml"),
            "--data.pseudo_mask_dir", str(masks),
            "--trainer.default_root_dir", str(seg),
            *fit,
        ],
        "predict_stage3": [
            *config("predict", "segmentation_wsss.yaml"),
            "--ckpt_path", str(seg / "checkpoints" / "last.ckpt"),
            "--data.predict_split", "val",
            "--pseudo_masks.output_dir", str(work / "val_predictions"),
            *predict,
        ],
        "evaluate": [
            "evaluate", "--pred-dir", str(work / "val_predictions"), "--root", str(data), "--split", "val",
            "--json", str(work / "val_miou.json"),
        ],
    }  # fmt: skip
    results = {}
    for name, argv in args.items():
        results[name] = runner.epspp(name, argv, sizes.stage_timeout)
        _free_device_memory()
    return results


def time_predictions(
    runner: Runner, sizes: Sizes, device: str, photos: Path, checkpoint: Path, precisions: Sequence[str]
) -> dict[str, Result]:
    """Pseudo-mask inference of configs/voc/pseudo_masks.yaml per image of the val split, per precision."""
    work = runner.work / "timings"
    results: dict[str, Result] = {}
    for precision in precisions:
        name, timing = f"pseudo_masks_{precision}", work / f"pseudo_masks_{precision}.json"
        argv = [
            "predict", "--config", str(CONFIGS / "voc" / "pseudo_masks.yaml"),
            "--data.root", str(photos), "--data.predict_split", "val", "--data.num_workers", str(sizes.workers),
            "--ckpt_path", str(checkpoint), "--pseudo_masks.output_dir", str(work / name),
            "--pseudo_masks.report_split", "val",
            "--trainer.accelerator", device, "--trainer.devices", "1", "--trainer.precision", precision,
            "--trainer.callbacks+=" + timer_callback(timing, 1),
        ]  # fmt: skip
        if not checkpoint.is_file():
            results[name] = Result(argv=["epspp", *argv], skipped=f"no checkpoint {checkpoint} (the fp32 fit failed)")
            continue
        results[name] = runner.epspp(name, argv, sizes.bench_timeout)
        results[name].timing = read_timing(timing)
        _free_device_memory()
    return results


def run_timings(
    runner: Runner,
    sizes: Sizes,
    device: str,
    photos: Path,
    variants: Sequence[str],
    predict_precisions: Sequence[str],
    skip: dict[str, str],
) -> dict[str, Result]:
    """The stage-1 step of configs/voc/localization_eps.yaml per variant, and after the first (fp32, whose
    checkpoint it loads) pseudo-mask inference per image."""
    work = runner.work / "timings"
    work.mkdir(parents=True, exist_ok=True)
    steps = sizes.warmup + sizes.timed
    base = [
        "fit", "--config", str(CONFIGS / "voc" / "localization_eps.yaml"),
        "--data.root", str(photos), "--data.train_split", "train", "--data.val_split", "val",
        "--data.crop_size", str(sizes.crop), "--data.batch_size", str(sizes.batch),
        "--data.num_workers", str(sizes.workers),
        "--model.init_args.pretrained_path", "null",
        "--trainer.accelerator", device, "--trainer.devices", "1",
        "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0",
        "--trainer.logger", "false", "--trainer.enable_model_summary", "false",
        *sizes.bench_overrides,
    ]  # fmt: skip
    checkpoint = work / "fp32" / "checkpoints" / "last.ckpt"
    results: dict[str, Result] = {}
    fits = sorted(variants, key=lambda name: name != "fp32")  # fp32 first: the timed prediction's network
    for name in fits:
        precision, options = VARIANTS[name]
        missing = [skip[option] for option in options if option in skip]
        folder, timing = work / name, work / f"{name}.json"
        # fp32 keeps the config's last.ckpt (the timed prediction's network); the others write no checkpoint
        callbacks = (
            ["--trainer.callbacks+=" + timer_callback(timing, sizes.warmup)]
            if name == "fp32"
            else [
                "--trainer.callbacks=[" + timer_callback(timing, sizes.warmup) + "]",
                "--trainer.enable_checkpointing",
                "false",
            ]
        )
        argv = [*base, "--trainer.precision", precision, "--trainer.default_root_dir", str(folder), *callbacks]
        argv += [word for option in options for word in (f"--model.init_args.{option}", "true")]
        if missing:
            results[name] = Result(argv=["epspp", *argv], skipped="; ".join(missing))
            continue
        timeout = sizes.compile_timeout if "torch_compile" in options else sizes.bench_timeout
        results[name] = runner.epspp(f"step_{name}", argv, timeout)
        results[name].timing = read_timing(timing)
        _free_device_memory()
        if name == fits[0]:  # before the slow compiled fit, within the budget
            results.update(time_predictions(runner, sizes, device, photos, checkpoint, predict_precisions))
    return results


def summary(timings: dict[str, Result], batch: int) -> dict[str, dict[str, float | None]]:
    """Per timed part: seconds per step (or per image, batch 1 for the predictions) and images per second."""
    table = {}
    for name, result in timings.items():
        seconds = (result.timing or {}).get("seconds_per_batch")
        images = 1 if name.startswith("pseudo_masks") else batch
        table[name] = {"seconds": seconds, "images_per_second": images / seconds if seconds else None}
    return table


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread (and the subprocesses through ``OMP_NUM_THREADS``), restored afterwards."""
    import torch

    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = omp


@contextlib.contextmanager
def on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` (the StepTimer's module for an in-process run)."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def check(
    out: Path,
    work: Path,
    device: str,
    sizes: Sizes,
    budget_s: float,
    in_process: bool,
    variants: Sequence[str] = tuple(VARIANTS),
    predict_precisions: Sequence[str] = PREDICT_PRECISIONS,
) -> dict[str, Any]:
    """Run every stage and the chosen timings; write and return the JSON report."""
    started = time.perf_counter()
    runner = Runner(work, budget_s, in_process)
    data, photos = work / "synthetic", work / "photos"
    prepare = runner.epspp(
        "prepare",
        ["prepare", "synthetic", "--root", str(data), "--num-train", str(sizes.num_train),
         "--num-val", str(sizes.num_val), "--image-size", str(sizes.image_size)],
        sizes.stage_timeout,
    )  # fmt: skip
    photo_source = work / "photo_source"
    prepare_photos = runner.epspp(
        "prepare_photos",
        ["prepare", "synthetic", "--root", str(photo_source), "--num-train",
         str((sizes.warmup + sizes.timed) * sizes.batch), "--num-val", str(sizes.photos), "--image-size", "128"],
        sizes.stage_timeout,
    )  # fmt: skip
    if prepare_photos.exit == 0:
        resized_copy(photo_source, photos, sizes.photo_size)
    skip = missing_model_options()
    with on_path(HERE):
        stages = run_stages(runner, sizes, device, data)
        timings = run_timings(runner, sizes, device, photos, variants, predict_precisions, skip)
    report = {
        "device": device,
        "device_name": device_name(device),
        "dry_run": sizes is DRY,
        "versions": versions(),
        "commit": git_commit(),
        "weights": "random init (no ImageNet file for ResNet-38d on the machine): timings only, no accuracy",
        "sizes": asdict(sizes),
        "model_options_skipped": skip,
        "prepare": {"synthetic": asdict(prepare), "photos": asdict(prepare_photos)},
        "stages": {name: asdict(result) for name, result in stages.items()},
        "timings": {name: asdict(result) for name, result in timings.items()},
        "summary": summary(timings, sizes.batch),
        "all_stages_ok": prepare.exit == 0 and all(result.exit == 0 for result in stages.values()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(report, indent=1))
    os.replace(partial, out)
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: run the check, print a one-line summary per part; exit 1 when a stage failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", help="the Lightning accelerator of every part (default cuda; with --dry-run cpu)")
    parser.add_argument("--out", type=Path, help="the JSON report (default $OUT/gpu_check.json)")
    parser.add_argument("--work", type=Path, help="folder for the data and runs (default: a temporary folder)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="whole run's budget in seconds (default 450)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes and a tiny backbone (the test's mode)")
    parser.add_argument("--in-process", action="store_true", help="run the epspp commands in this process")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="timed stage-1 variants (default all)",
    )
    parser.add_argument(
        "--predict-precisions",
        nargs="+",
        default=list(PREDICT_PRECISIONS),
        help="precisions of the timed pseudo-mask inference (default %(default)s)",
    )
    args = parser.parse_args(argv)
    out = args.out or (Path(os.environ["OUT"]) / "gpu_check.json" if "OUT" in os.environ else None)
    if out is None:
        parser.error("--out FILE is needed where $OUT is not set")
    sizes = DRY if args.dry_run else GPU
    device = args.device or ("cpu" if args.dry_run else "cuda")
    with contextlib.ExitStack() as stack:
        import tempfile

        if args.dry_run:  # one thread: the dry run shares the test machine's cores
            stack.enter_context(one_thread())
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="epspp-gpu-check-")))
        report = check(out, work, device, sizes, args.budget_s, args.in_process, args.variants, args.predict_precisions)
    for group in ("stages", "timings"):
        for name, result in report[group].items():
            per = (result["timing"] or {}).get("seconds_per_batch")
            print(
                f"{group}/{name}: exit {result['exit']} {result['seconds']} s"
                + (f", {per:.4f} s/batch" if per else "")
                + (f" ({result['skipped']})" if result["skipped"] else "")
            )
    print(f"wrote {out} ({report['seconds']} s)")
    return 0 if report["all_stages_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
