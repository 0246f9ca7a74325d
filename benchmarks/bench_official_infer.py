"""Benchmark 11: per-image pseudo-mask inference, epspp's predict path vs EPS's official procedure, on the CPU.

The official procedure (halbielee/EPS ``infer.py``, re-implemented here from /work/notes/official-eps-35.md;
no official code in the repository): a PIL bicubic pyramid of the uint8 picture at scales 0.5/1/1.5/2
(every scale resized, 1.0 included), numpy normalization, a flipped copy of each, 8 forwards of batch 1,
softmax over the C+1 channels, bilinear upsampling of all of them to the image size, then in numpy: the
object maps times the label vector, flipped back, summed over the 8 inputs, divided by their maximum + 1e-5,
background 0.2, argmax. epspp: ``LocalizationModule.predict_step`` on the same picture (normalized as the
data module does), as ``configs/voc/pseudo_masks.yaml`` sets it (``inference_resize: pil_bicubic``, refine
none), and with ``inference_resize: bicubic``. Same network and weights (random: the speed does not depend
on them; the masks of the two procedures are compared for agreement), on a 500x375 photo (skimage's
``coffee``, resized) labelled with 2 classes. The contenders alternate in one process, at 1 and 2 threads;
reported: the median per-image time of each and the ratio official / epspp.

Each runs under the allocator its own process would have: epspp's contenders with ``epspp.cli.memory``'s
settings (what the ``epspp`` command sets: freed memory kept for reuse), the official procedure with glibc's as a
warmed-up process has them (blocks over 32 MiB mapped and unmapped on free; the heap trimmed above 64 MiB), the
heap given back (``malloc_trim``) before each official round; epspp's heap is given back too when the official
round comes, so each epspp round pays its first pass's page faults again, which its own process pays once.
``--steady``: each contender in its own process, as a run over a folder has it (the official one with glibc's
allocator untouched, epspp's with ``epspp.cli.memory``'s settings), its first image untimed; then the processes
take turns, one image at a time (one runs while the other waits), the order alternating between rounds.

Usage: ``python benchmarks/bench_official_infer.py [--backbones resnet38d resnet18] [--repeats 3] [--threads 1 2]
[--steady]``.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import resource
import statistics
import time
from multiprocessing.connection import Connection

import numpy as np
import torch
import torch.nn.functional as F
from common import paired_ratios
from PIL import Image
from skimage import data as skdata

from epspp.cli.memory import M_MMAP_MAX, M_TRIM_THRESHOLD, keep_freed_memory
from epspp.constants import IMAGENET_MEAN, IMAGENET_STD
from epspp.tasks import LocalizationModule

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
SCALES = (0.5, 1.0, 1.5, 2.0)
THRESHOLD = 0.2
LABELLED = (4, 14)  # two of VOC's 20 classes


def glibc_defaults() -> None:
    """glibc's allocator as a warmed-up process has it by default: its dynamic mmap threshold at its 32-MiB
    ceiling, the trim threshold twice that, mmap allowed (65,536 maps); the kept heap given back."""
    libc = ctypes.CDLL(None)
    for parameter, value in ((M_MMAP_MAX, 65536), (M_MMAP_THRESHOLD, 32 * 2**20), (M_TRIM_THRESHOLD, 64 * 2**20)):
        libc.mallopt(parameter, value)
    libc.malloc_trim(0)


def photo() -> np.ndarray:
    """A 500x375 (width x height) RGB photo, uint8."""
    return np.asarray(Image.fromarray(skdata.coffee()).resize((500, 375), Image.Resampling.BICUBIC))


def normalize(picture: np.ndarray) -> np.ndarray:
    """EPS's Normalize + HWC_to_CHW: ImageNet mean/std on x/255, float32, (3, H, W)."""
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(((picture.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))


@torch.no_grad()
def official(net: torch.nn.Module, picture: np.ndarray, label: np.ndarray) -> np.ndarray:
    """EPS ``infer.py`` for one image: the uint8 mask."""
    height, width = picture.shape[:2]
    image = Image.fromarray(picture)
    inputs = []
    for scale in SCALES:
        scaled = normalize(
            np.asarray(image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC))
        )
        inputs += [scaled, np.flip(scaled, -1).copy()]
    sum_cam = np.zeros((len(label), height, width), np.float32)
    for index, array in enumerate(inputs):
        cam = F.softmax(net(torch.from_numpy(array).unsqueeze(0)), dim=1)
        cam = F.interpolate(cam, (height, width), mode="bilinear", align_corners=False)[0]
        fg = cam[:-1].numpy() * label.reshape(-1, 1, 1)
        sum_cam += np.flip(fg, -1) if index % 2 else fg
    norm_cam = sum_cam / (sum_cam.max(axis=(1, 2), keepdims=True) + 1e-5)
    classes = np.nonzero(label)[0]
    scores = np.concatenate([np.full((1, height, width), THRESHOLD, np.float32), norm_cam[classes]])
    return np.concatenate([[0], classes + 1])[scores.argmax(axis=0)].astype(np.uint8)


@torch.no_grad()
def epspp(module: LocalizationModule, batch: dict) -> np.ndarray:
    """epspp's ``predict_step`` and the writer's move of the mask to a uint8 array."""
    return module.predict_step(batch, 0)["mask"][0].to(torch.uint8).numpy()


def build(backbone: str) -> LocalizationModule:
    """A random-weight localization network (C = 20) in eval mode."""
    torch.manual_seed(0)
    kwargs = dict(output_stride=8) if backbone == "resnet38d" else dict(output_stride=16)
    return LocalizationModule(backbone=backbone, saliency_loss="eps", bg_threshold=THRESHOLD, **kwargs).eval()


def inputs() -> tuple[np.ndarray, np.ndarray, dict]:
    """The photo, its label vector and the batch epspp's ``predict_step`` reads."""
    picture = photo()
    label = np.zeros(20, np.float32)
    label[list(LABELLED)] = 1
    batch = {
        "image": torch.from_numpy(normalize(picture))[None],
        "label": torch.from_numpy(label)[None],
        "id": ["coffee"],
        "mask": torch.zeros(1, 375, 500, dtype=torch.long),
        "has_mask": torch.tensor([False]),
    }
    return picture, label, batch


def one_image(name: str, module: LocalizationModule, picture: np.ndarray, label: np.ndarray, batch: dict) -> tuple:
    """Contender ``name`` on the photo: (seconds, seconds of system time, mask)."""
    module.hparams.inference_resize = name
    start, system = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    mask = official(module.net, picture, label) if name == "official" else epspp(module, batch)
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_stime - system, mask


def contender_process(name: str, backbone: str, threads: int, connection: Connection) -> None:
    """``--steady``'s process of one contender: an image each time it is told to (``True``), until ``False``."""
    torch.set_num_threads(threads)
    if name != "official":
        keep_freed_memory()
    module, (picture, label, batch) = build(backbone), inputs()
    while connection.recv():
        connection.send(one_image(name, module, picture, label, batch))


def run(backbone: str, threads: list[int], repeats: int, resizes: list[str], steady: bool) -> list[list[str]]:
    """Rows of the table for one backbone."""
    module = None if steady else build(backbone)
    picture, label, batch = inputs()
    rows = []
    for count in threads:
        torch.set_num_threads(count)
        times: dict[str, list[float]] = {"official": [], **{name: [] for name in resizes}}
        masks: dict[str, np.ndarray] = {}
        connections = {}
        if steady:
            spawn = multiprocessing.get_context("spawn")
            for name in times:
                connections[name], child = spawn.Pipe()
                spawn.Process(target=contender_process, args=(name, backbone, count, child), daemon=True).start()
        for repeat in range(repeats + 1):  # round 0 warms up (steady: each process's first image)
            order = list(times) if repeat % 2 == 0 else list(times)[::-1]  # who goes first alternates
            for name in order:
                if steady:
                    connections[name].send(True)
                    seconds, system, masks[name] = connections[name].recv()
                else:
                    glibc_defaults() if name == "official" else keep_freed_memory()
                    seconds, system, masks[name] = one_image(name, module, picture, label, batch)
                print(f"round {repeat}, {count} threads, {name}: {seconds:.2f} s ({system:.2f} s system)", flush=True)
                if repeat:
                    times[name].append(seconds)
        for connection in connections.values():
            connection.send(False)
        med = {name: statistics.median(values) for name, values in times.items()}
        for name in resizes:
            agree = float((masks[name] == masks["official"]).mean())
            ratios = paired_ratios(times["official"], times[name])
            print(f"{backbone}, {count} threads, official / epspp {name} per round: {ratios}")
            rows.append(
                [
                    backbone,
                    str(count),
                    f"{med['official']:.2f}",
                    f"epspp {name}: {med[name]:.2f}",
                    f"{med['official'] / med[name]:.2f}",
                    f"{100 * agree:.3f}%",
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet38d", "resnet18"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--resizes",
        nargs="+",
        choices=["pil_bicubic", "bicubic"],
        default=["pil_bicubic", "bicubic"],
        help="the inference_resize settings of epspp to time against the official procedure",
    )
    parser.add_argument(
        "--steady",
        action="store_true",
        help="each contender in its own process, its first image untimed (a process's steady state over a folder)",
    )
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}")
    print("| backbone | threads | official (s/img) | epspp (s/img) | official / epspp | mask agreement |")
    print("|---|---|---|---|---|---|")
    for backbone in args.backbones:
        for row in run(backbone, args.threads, args.repeats, args.resizes, args.steady):
            print("| " + " | ".join(row) + " |", flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
