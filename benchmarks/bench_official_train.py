"""Benchmark 15 (stage 1): epspp and EPS's official training code side by side on the CPU: the data pipeline and
the step.

The official code (halbielee/EPS at 0c2cdd0) is re-implemented here from its source; none of it is in the
repository:

- data: ``metadata/dataset.py``'s ``ClassificationDatasetWithSaliency``: the JPEG and its saliency PNG read by PIL
  (the saliency as RGB), both resized to one random long side in [256, 512] (PIL bicubic), flipped together with
  probability 1/2, torchvision's ``ColorJitter(0.3, 0.3, 0.3, 0.1)`` on the PIL image, per-channel ImageNet
  normalization in numpy, the saliency / 255, one random 448 crop of both into zero containers, CHW, the
  saliency's 3 channels averaged; PyTorch's default collation, batch 8. epspp: ``EPSDataModule``'s stage-1 training
  loader (``configs/voc/localization_eps.yaml``'s crop 448, resize_long 256-512, batch 8). Both in the main process
  (0 workers): what one core costs per sample; a ``DataLoader``'s workers run the same code.
- step: ``module/train.py``'s ``train_eps`` on ``network/resnet38_eps.py``: ResNet-38d (epspp's module here: the same
  layers in the same order; the official forward's dict of intermediate maps is not built), a bias-free 1x1
  ``fc8`` to C + 1 maps, global average pooling, ``multilabel_soft_margin_loss`` on the C class scores plus
  ``eps.py``'s ``get_eps_loss`` (tau 0.4, lambda 0.5); BatchNorm in eval mode and frozen, ``conv1a`` and the b2
  blocks frozen; ``PolyOptimizer`` (SGD with the weight decay as its momentum argument, lr x1/x2/x10/x20 for the
  weights/biases/``fc8``, poly 0.9). epspp: ``LocalizationModule.training_step`` + backward + optimizer and
  scheduler step with ``configs/voc/localization_eps.yaml``'s model settings (driven without a Trainer, as in
  ``bench_step.py``). ResNet-38d, crop 224, batch 2, 20 classes, random weights, one fixed batch.

The contenders alternate in one process (``common.side_by_side``: who goes first alternates between rounds), after
a warm-up call each, at 1 and 2 torch threads; reported: each round's ratio official / epspp of the time per
sample (above 1: epspp faster) and their geometric mean with a 95% t interval.

Usage: ``python benchmarks/bench_official_train.py [--rounds 6] [--threads 1 2] [--parts data step]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from bench_data import loader, pipelines
from bench_step import build, step_fn
from common import paired_ratios, side_by_side
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.transforms import functional as TF

from epspp.constants import IMAGENET_MEAN, IMAGENET_STD
from epspp.nets.resnet38d import ResNet38d

REPO = Path(__file__).resolve().parents[1]
CLASSES = 20


class OfficialSaliencyDataset(Dataset):
    """EPS's ``ClassificationDatasetWithSaliency`` (crop 448, resize 256-512), re-implemented."""

    def __init__(self, root: Path, crop: int = 448, resize: tuple[int, int] = (256, 512)) -> None:
        self.root, self.crop, self.resize = root, crop, resize
        self.ids = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
        self.color = transforms.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
        self.labels = np.eye(CLASSES, dtype=np.float32)[np.arange(len(self.ids)) % CLASSES]

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def resize_long(picture: Image.Image, long_side: int) -> Image.Image:
        width, height = picture.size
        if width < height:
            shape = (round(width * long_side / height), long_side)
        else:
            shape = (long_side, round(height * long_side / width))
        return picture.resize(shape, resample=Image.Resampling.BICUBIC)

    def random_crop(self, image: np.ndarray, saliency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        crops = []
        for space in (height - self.crop, width - self.crop):  # (container offset, image offset) per axis
            crops.append((0, random.randrange(space + 1)) if space > 0 else (random.randrange(-space + 1), 0))
        (box_top, top), (box_left, left) = crops
        rows, cols = min(self.crop, height), min(self.crop, width)
        out = []
        for array in (image, saliency):
            box = np.zeros((self.crop, self.crop, array.shape[-1]), np.float32)
            box[box_top : box_top + rows, box_left : box_left + cols] = array[top : top + rows, left : left + cols]
            out.append(box)
        return out[0], out[1]

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]:
        name = self.ids[index]
        image = Image.open(self.root / "JPEGImages" / f"{name}.jpg").convert("RGB")
        saliency = Image.open(self.root / "saliency" / f"{name}.png").convert("RGB")
        long_side = random.randint(*self.resize)
        image, saliency = self.resize_long(image, long_side), self.resize_long(saliency, long_side)
        if random.random() > 0.5:
            image, saliency = TF.hflip(image), TF.hflip(saliency)
        pixels = np.asarray(self.color(image))
        normalized = np.empty_like(pixels, np.float32)
        for channel in range(3):
            normalized[..., channel] = (pixels[..., channel] / 255.0 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        image_crop, saliency_crop = self.random_crop(normalized, np.asarray(saliency) / 255.0)
        image_tensor = torch.from_numpy(image_crop.transpose(2, 0, 1))
        saliency_tensor = torch.from_numpy(saliency_crop.transpose(2, 0, 1)).mean(dim=0, keepdim=True)
        return name, image_tensor, saliency_tensor, torch.from_numpy(self.labels[index])


class OfficialEPSNet(nn.Module):
    """EPS's ``resnet38_eps.Net``: ResNet-38d, ``fc8`` to C + 1 maps, (pooled scores, maps)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = ResNet38d()
        self.fc8 = nn.Conv2d(4096, CLASSES + 1, 1, bias=False)
        nn.init.xavier_uniform_(self.fc8.weight)
        for layer in self.body.stem():
            layer.requires_grad_(False)

    def train(self, mode: bool = True) -> OfficialEPSNet:
        super().train(mode)
        for layer in self.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.eval()
                layer.requires_grad_(False)
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cam = self.fc8(self.body(images))
        return F.avg_pool2d(cam, cam.shape[2:]).flatten(1), cam


def official_eps_loss(cam: torch.Tensor, saliency: torch.Tensor, label: torch.Tensor, tau: float, lam: float):
    """EPS's ``get_eps_loss`` (its ``.cuda()`` calls as the maps' device)."""
    b, c, h, w = cam.shape
    saliency = F.interpolate(saliency, size=(h, w))
    label_map = label.view(b, CLASSES, 1, 1).expand(b, CLASSES, h, w).bool()
    label_map_fg = torch.zeros(b, CLASSES + 1, h, w, dtype=torch.bool, device=cam.device)
    label_map_bg = torch.zeros(b, CLASSES + 1, h, w, dtype=torch.bool, device=cam.device)
    label_map_bg[:, CLASSES] = True
    sal_pred = F.softmax(cam, dim=1)
    rounded = torch.round(sal_pred[:, :-1].detach())
    overlap = (rounded * torch.round(saliency)).view(b, CLASSES, -1).sum(-1) / (rounded + 1e-4).view(
        b, CLASSES, -1
    ).sum(-1)
    valid = (overlap > tau).view(b, CLASSES, 1, 1).expand(b, CLASSES, h, w)
    label_map_fg[:, :-1] = label_map & valid
    label_map_bg[:, :-1] = label_map & ~valid
    fg_map, bg_map = torch.zeros_like(sal_pred), torch.zeros_like(sal_pred)
    fg_map[label_map_fg] = sal_pred[label_map_fg]
    bg_map[label_map_bg] = sal_pred[label_map_bg]
    fg = fg_map.sum(dim=1, keepdim=True)
    bg = 1 - bg_map.sum(dim=1, keepdim=True)
    return F.mse_loss(fg * lam + bg * (1 - lam), saliency)


class PolySGD(torch.optim.SGD):
    """EPS's ``PolyOptimizer``: SGD whose third positional argument (momentum) is the weight decay; poly 0.9."""

    def __init__(self, groups: list[dict], lr: float, weight_decay: float, max_step: int) -> None:
        super().__init__(groups, lr, weight_decay)
        self.global_step, self.max_step = 0, max_step
        self.initial = [group["lr"] for group in self.param_groups]

    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch's signature
        if self.global_step < self.max_step:
            for group, lr in zip(self.param_groups, self.initial, strict=True):
                group["lr"] = lr * (1 - self.global_step / self.max_step) ** 0.9
        super().step(closure)
        self.global_step += 1


def official_step(batch: dict) -> Callable[[], None]:
    """One ``train_eps`` iteration on ``batch``."""
    torch.manual_seed(0)
    net = OfficialEPSNet().train()
    groups: list[list[torch.Tensor]] = [[], [], [], []]
    for module in net.modules():
        if isinstance(module, nn.Conv2d) and module.weight.requires_grad:
            groups[2 if module is net.fc8 else 0].append(module.weight)
    lr, decay = 0.01, 5e-4
    optimizer = PolySGD(
        [
            {"params": groups[0], "lr": lr, "weight_decay": decay},
            {"params": groups[2], "lr": 10 * lr, "weight_decay": decay},
        ],
        lr=lr,
        weight_decay=decay,
        max_step=20000,
    )

    def step() -> None:
        pred, cam = net(batch["image"])
        loss = F.multilabel_soft_margin_loss(pred[:, :-1], batch["label"])
        loss = loss + official_eps_loss(cam, batch["saliency"], batch["label"], 0.4, 0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def epspp_step(batch: dict) -> Callable[[], None]:
    """``LocalizationModule``'s step with the VOC EPS config's model settings."""
    config = yaml.safe_load((REPO / "configs" / "voc" / "localization_eps.yaml").read_text())["model"]["init_args"]
    config = {k: v for k, v in config.items() if k not in ("pretrained", "pretrained_path", "saliency_loss")}
    module, optimizer, scheduler = build({"classes": CLASSES, "model": config}, "eps", torch.device("cpu"), False)
    return step_fn(module, optimizer, scheduler, batch, False, torch.device("cpu"))


def step_batch() -> dict:
    generator = torch.Generator().manual_seed(0)
    image = F.avg_pool2d(torch.randn(2, 3, 224, 224, generator=generator), 5, 1, 2) * 2.0
    saliency = F.avg_pool2d((torch.rand(2, 1, 224, 224, generator=generator) > 0.5).float(), 31, 1, 15)
    label = torch.zeros(2, CLASSES)
    label[0, 3] = label[1, [7, 14]] = 1
    return {"image": image, "saliency": saliency, "label": label}


def batches(batch_loader: DataLoader, count: int) -> Callable[[], None]:
    """A contender that draws ``count`` batches from a new pass over ``batch_loader`` (reshuffled) each call."""

    def draw() -> None:
        iterator = iter(batch_loader)
        for _ in range(count):
            next(iterator)

    return draw


def repeated(step: Callable[[], None], count: int) -> Callable[[], None]:
    """A contender that takes ``count`` steps each call."""

    def steps() -> None:
        for _ in range(count):
            step()

    return steps


def alternate(name: str, contenders: dict[str, Callable[[], None]], per_call: int, rounds: int, threads: int) -> None:
    """Time the two contenders in turns after a warm-up call each; print seconds per sample and the paired ratio."""
    timed = side_by_side(contenders, rounds)
    times = {key: [seconds / per_call for seconds in values] for key, values in timed.items()}
    medians = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"| {name} | {threads} | {medians['official']:.4f} | {medians['epspp']:.4f} | "
        f"{paired_ratios(times['official'], times['epspp'])} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--parts", nargs="+", choices=["data", "step"], default=["data", "step"])
    parser.add_argument("--data-batches", type=int, default=4, help="batches of 8 per contender and round")
    parser.add_argument("--steps", type=int, default=2, help="steps per contender and round")
    args = parser.parse_args()
    random.seed(0)
    torch.manual_seed(0)
    print(f"load before: {os.getloadavg()}")
    print("| part | threads | official (s/sample, median) | epspp (s/sample, median) | official / epspp per round |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        if "data" in args.parts:
            config = pipelines(Path("/tmp/bench_data"))["VOC-like stage 1 (crop 448, batch 8)"]
            official = OfficialSaliencyDataset(Path(config["root"]))
            contenders = {
                "official": batches(
                    DataLoader(official, batch_size=8, shuffle=True, drop_last=True), args.data_batches
                ),
                "epspp": batches(loader(config, 0), args.data_batches),
            }
            alternate("data pipeline, crop 448, batch 8", contenders, 8 * args.data_batches, args.rounds, threads)
        if "step" in args.parts:
            batch = step_batch()
            contenders = {"official": official_step(batch), "epspp": epspp_step(batch)}
            steps = {key: repeated(step, args.steps) for key, step in contenders.items()}
            alternate("stage-1 step, ResNet-38d crop 224, batch 2, EPS", steps, 2 * args.steps, args.rounds, threads)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
