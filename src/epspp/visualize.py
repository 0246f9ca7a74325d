"""Pictures of the stages: colour masks, heat maps and panels (report figure, W&B panels, notebook)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from epspp.constants import IMAGENET_MEAN, IMAGENET_STD
from epspp.data.classes import voc_palette


def denormalize(
    image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """(3, H, W) normalized tensor -> (H, W, 3) uint8."""
    array = image.detach().float().cpu().numpy().transpose(1, 2, 0) * np.array(std) + np.array(mean)
    return (np.clip(array, 0, 1) * 255).astype(np.uint8)


def colorize(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 in the VOC palette (255 ignore shown white)."""
    mask = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else mask
    return voc_palette()[np.asarray(mask, dtype=np.uint8)]


def heatmap(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8, dark blue (0) through red to yellow (1)."""
    values = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else values
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    rgb = np.stack([np.clip(2 * v, 0, 1), np.clip(2 * v - 1, 0, 1), np.clip(0.5 - v, 0, 1)], axis=-1)
    return (rgb * 255).astype(np.uint8)


def overlay(image: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an RGB picture over an image."""
    return (image.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).astype(np.uint8)


def grid(rows: list[list[np.ndarray]], scale: int = 1, gap: int = 2) -> np.ndarray:
    """Tile equally sized (H, W, 3) panels into one uint8 picture (white gaps), enlarged by ``scale``."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            top, left = i * (height + gap), j * (width + gap)
            canvas[top : top + height, left : left + width] = panel
    return canvas.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else canvas


def fit_panel(picture: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, 3) picture to fit a ``size`` square (nearest neighbour, aspect kept), padded white."""
    height, width = picture.shape[:2]
    scale = size / max(height, width)
    rows = np.minimum((np.arange(max(1, round(height * scale))) / scale).astype(int), height - 1)
    cols = np.minimum((np.arange(max(1, round(width * scale))) / scale).astype(int), width - 1)
    canvas = np.full((size, size, 3), 255, np.uint8)
    resized = picture[rows][:, cols]
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas


def annotate(
    picture: np.ndarray, titles: list[str], column_width: int, legend: dict[str, tuple[int, int, int]], gap: int = 2
) -> np.ndarray:
    """Add column titles above a grid and a class-colour legend below it (white margins)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line = 14
    per_row = max(1, picture.shape[1] // 110)
    legend_rows = -(-len(legend) // per_row)
    canvas = Image.new("RGB", (picture.shape[1], picture.shape[0] + line + 4 + legend_rows * line + 6), "white")
    canvas.paste(Image.fromarray(picture), (0, line + 4))
    draw = ImageDraw.Draw(canvas)
    for index, title in enumerate(titles):
        draw.text((index * (column_width + gap) + 2, 2), title, fill="black", font=font)
    top = picture.shape[0] + line + 8
    for index, (name, colour) in enumerate(legend.items()):
        x, y = (index % per_row) * 110 + 2, top + (index // per_row) * line
        draw.rectangle([x, y + 1, x + 10, y + 11], fill=tuple(int(c) for c in colour), outline="black")
        draw.text((x + 14, y), name, fill="black", font=font)
    return np.asarray(canvas)
